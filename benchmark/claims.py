"""Claim cards: a seed paper's claim, declared before any run, and the rule that judges it.

A *claim* (``Claim``) names the paper, the quoted claim, the track and the profiles it is tested
on, the metric, the *seed row* (the paper's method with its parameters), the *comparator* and
the kind of claim with the paper's number. Built-in tracks declare the claims of their seed
papers (``Track.claims()``); a third-party method package declares claims about its own method
through the ``register_claims`` hook. Both are judged by ``verdict`` below, one rule for all.

A *card* (``Card``) is one claim read on one profile: the paired difference seed − comparator
with its 95 % interval, the minimum detectable effect, the verdict and its reason. Cards are
computed from a board by ``coreset_bench.leaderboard.claims`` (the same paired hierarchical
bootstrap, or its per-target / per-seed fallback, that the board uses for gains and for "vs
leader"); this module holds the declarations and the rule, and imports nothing of the board.

Declaring a claim::

    from coreset_bench.claims import Claim, Paper, Row, BEST_NON_SEED, SUPERIORITY

    Claim(
        id="mymethod-clean", system="MyMethod",
        paper=Paper("2501.01234", "MyMethod: better coresets", 2025, "ICML"),
        quote="MyMethod improves clean accuracy by 3 points over the best baseline",
        track="coreset", profiles=("coreset/quick@2",), metric="clean_acc",
        seed=Row("mymethod"), comparator=BEST_NON_SEED, kind=SUPERIORITY, effect=0.03,
        paper_number="+3 points (CIFAR-10, ResNet-18, 10 %)", where={"training": "standard"},
    )

Units: ``effect`` and ``margin`` are in the metric's own unit (an accuracy of 0.07 is 7 points);
a card shows differences in points (× 100) when the metric is a fraction (``Claim.percent``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# ---- kinds, comparators, verdicts -------------------------------------------------------------

SUPERIORITY = "superiority"
NON_INFERIORITY = "non-inferiority"
MONOTONE = "monotone-trend"
KINDS = (SUPERIORITY, NON_INFERIORITY, MONOTONE)

#: comparators that are not a named row
RANDOM = "random"  # the ``random`` row of the profile
FULL = "full"  # the ``full`` (all data) row, paired at the same setting whatever its budget
BEST_NON_SEED = "best-non-seed"  # the best complete, unflagged row above the floor that is not the seed system's

SUPPORTED = "supported"
SMALLER = "supported, smaller than claimed"
SATURATION_NOT_SHOWN = "supported, saturation not shown"
CONTRADICTED = "contradicted"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable"
VERDICTS = (SUPPORTED, SMALLER, SATURATION_NOT_SHOWN, CONTRADICTED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE)

#: z_{0.975} + z_{0.80}: the MDE of a two-sided 5 % test with 80 % power is this many standard errors
MDE_FACTOR = 2.8

#: the ten seed systems every built-in track's claims cover (``Claim.system`` of a built-in claim)
SEED_SYSTEMS = (
    "EasyCore",
    "CLD",
    "LTC",
    "TRIM",
    "Curvature MIA",
    "Privacy-memorization-curvature links",
    "Verifix",
    "IDKD",
    "PKD + WISE",
    "Intelligent Pooling",
)


def system_order(system: str) -> tuple[int, str]:
    """Sort key: the seed systems in ``SEED_SYSTEMS`` order, then any other system by name."""
    return (SEED_SYSTEMS.index(system), "") if system in SEED_SYSTEMS else (len(SEED_SYSTEMS), system.lower())


class ClaimError(ValueError):
    """A claim declaration that cannot be judged (one line naming the field and the fix)."""


# ---- declarations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Paper:
    """The paper a claim comes from: arXiv id (``2510.11018``; "" when it has none), title,
    year/venue when known, and ``link`` for a paper that is not on arXiv (its DOI or page)."""

    arxiv: str
    title: str
    year: int | None = None
    venue: str = ""
    link: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise ClaimError("a claim's Paper needs its title")
        if self.arxiv and not re.match(r"^\d{4}\.\d{4,5}$", str(self.arxiv)):
            raise ClaimError(f"arXiv id {self.arxiv!r} is not of the form 2510.11018 (leave it empty and give link= for another paper)")

    @property
    def url(self) -> str:
        return self.link or (f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else "")

    def short(self) -> str:
        """``arXiv 2510.11018`` (or the title when there is no arXiv id)."""
        return f"arXiv {self.arxiv}" if self.arxiv else self.title

    def as_dict(self) -> dict[str, Any]:
        return {"arxiv": self.arxiv, "title": self.title, "year": self.year, "venue": self.venue, "url": self.url}


@dataclass(frozen=True)
class Row:
    """A board row: a method name and the parameters that pick it.

    A row of the board matches when its method is ``method`` and its parameters hold every
    ``params`` item; among several matches, the one whose parameters are the installed defaults
    (updated by ``params``) is taken; otherwise the match is ambiguous (not testable, with the
    rows named), and the claim must name the parameter that tells them apart.
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        if not self.params:
            return self.method
        return f"{self.method} ({', '.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"


@dataclass(frozen=True)
class Threshold:
    """A fixed value the seed row is compared with (e.g. a hit-rate target of 0.99)."""

    value: float
    label: str = ""

    def text(self) -> str:
        return self.label or f"the fixed value {self.value:g}"


Comparator = Row | Threshold | str  # a named row, a fixed value, or RANDOM / FULL / BEST_NON_SEED


def comparator_label(c: Comparator | None) -> str:
    if c is None:
        return "the seed row at the previous level"
    if isinstance(c, Row):
        return c.label()
    if isinstance(c, Threshold):
        return c.text()
    return {BEST_NON_SEED: "the best non-seed row", RANDOM: "random", FULL: "full data"}.get(c, str(c))


_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, declared before any result is read.

    ``kind``: ``SUPERIORITY`` (the seed row beats ``comparator`` by ``effect``, or just beats it
    when ``effect`` is None), ``NON_INFERIORITY`` (it is no worse than ``comparator`` by more than
    ``margin``), or ``MONOTONE`` (the seed row's metric rises, ``trend="increasing"``, or falls
    along ``trend_axis``, in the profile's order of that axis's values; ``saturates``: and the
    rise slows at the end; no comparator: each level is compared with the previous one).
    ``comparator``: a ``Row``, a ``Threshold`` (a fixed value), ``RANDOM``, ``FULL`` (paired at the
    same setting, whatever budget the full-data row runs at) or ``BEST_NON_SEED`` (the best row of
    the setting by mean that is complete, unflagged, above the floor and not the seed system's;
    chosen after the fact, so the pick favours the comparator: conservative for superiority).

    ``where``: the axis filter of the setting the claim is about (``{"training": "standard"}``,
    ``{"noise": "symmetric", "rate": 0.25}``; a list of values allows several); the claim is read
    over every axis point of the profile that matches, pooled as the board pools a table.
    ``direction``: "max" or "min", default the track's ``metric_directions`` for ``metric``.
    ``system_methods``: other methods that belong to the seed system (variants of the paper's
    method), never picked as ``BEST_NON_SEED``. ``subject_flags``: cell flags that are what the
    claim measures (e.g. "missed the hit-rate target" for "the target is met") and therefore do
    not make it untestable. ``percent``: show differences in points (× 100); default: when the
    track bounds the metric within [0, 1]. ``readings``: the anchor of the long reading in
    ``results/README.md`` (default ``claim-<system slug>``). ``note``: one line every card of
    the claim shows (e.g. which setting of the rows is read).
    """

    id: str
    system: str
    paper: Paper
    quote: str
    track: str
    profiles: Sequence[str]
    metric: str
    seed: Row
    kind: str
    comparator: Comparator | None = None
    effect: float | None = None
    margin: float | None = None
    paper_number: str = ""
    where: Mapping[str, Any] = field(default_factory=dict)
    direction: str | None = None
    system_methods: Sequence[str] = ()
    subject_flags: Sequence[str] = ()
    trend_axis: str = ""
    trend: str = "increasing"
    saturates: bool = False
    percent: bool | None = None
    readings: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        def bad(what: str) -> ClaimError:
            return ClaimError(f"claim {self.id!r}: {what}")

        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise ClaimError(f"claim id {self.id!r} must be lowercase letters, digits, '.', '_' or '-' (e.g. 'mymethod-clean')")
        object.__setattr__(self, "profiles", tuple(self.profiles))
        object.__setattr__(self, "system_methods", tuple(self.system_methods))
        object.__setattr__(self, "subject_flags", tuple(self.subject_flags))
        object.__setattr__(self, "where", dict(self.where))
        if not self.system or not isinstance(self.system, str):
            raise bad("system must name the method or paper the claim is about")
        if not isinstance(self.paper, Paper):
            raise bad("paper must be a coreset_bench.claims.Paper(arxiv, title)")
        if not self.quote:
            raise bad("quote the claim as the paper states it")
        if not self.profiles:
            raise bad("name at least one profile it is tested on, e.g. profiles=('coreset/quick@2',)")
        for p in self.profiles:
            if not isinstance(p, str) or not re.match(r"^[^/\s]+/[^@\s]+@\d+$", p) or not p.startswith(self.track + "/"):
                raise bad(f"profile {p!r} is not a profile id of track {self.track!r} (track/name@version)")
        if not self.metric:
            raise bad("name the metric it is judged on")
        if not isinstance(self.seed, Row):
            raise bad("seed must be a coreset_bench.claims.Row(method, params)")
        if self.kind not in KINDS:
            raise bad(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == MONOTONE:
            if self.comparator is not None:
                raise bad("a monotone-trend claim compares the seed row with itself at the previous level; leave comparator unset")
        elif not isinstance(self.comparator, (Row, Threshold)) and self.comparator not in (RANDOM, FULL, BEST_NON_SEED):
            raise bad(f"comparator {self.comparator!r} must be a Row, a Threshold, or one of {RANDOM!r}, {FULL!r}, {BEST_NON_SEED!r}")
        if self.direction not in (None, "max", "min"):
            raise bad(f"direction {self.direction!r} must be 'max', 'min' or None (the track's)")
        for name, v in (("effect", self.effect), ("margin", self.margin)):
            if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0):
                raise bad(f"{name} must be a positive number in the metric's unit (0.07 for 7 points of accuracy)")
        if self.kind == NON_INFERIORITY and self.margin is None:
            raise bad("a non-inferiority claim needs its margin (e.g. margin=0.01 for 1 point)")
        if self.kind != NON_INFERIORITY and self.margin is not None:
            raise bad(f"margin applies to non-inferiority claims; a {self.kind} claim states an effect")
        if self.kind == NON_INFERIORITY and self.effect is not None:
            raise bad("a non-inferiority claim states its margin, not an effect")
        if self.kind == MONOTONE:
            if not self.trend_axis:
                raise bad("a monotone-trend claim names its trend_axis (e.g. 'epsilon')")
            if self.trend not in ("increasing", "decreasing"):
                raise bad(f"trend {self.trend!r} must be 'increasing' or 'decreasing'")
        elif self.saturates:
            raise bad("saturates applies to monotone-trend claims")
        if self.seed.method in self.system_methods:
            object.__setattr__(self, "system_methods", tuple(m for m in self.system_methods if m != self.seed.method))

    @property
    def anchor(self) -> str:
        return self.readings or "claim-" + slug(self.system)

    @property
    def amount(self) -> float | None:
        """The claimed effect (superiority, trend) or the margin (non-inferiority)."""
        return self.margin if self.kind == NON_INFERIORITY else self.effect

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "system": self.system,
            "paper": self.paper.as_dict(),
            "quote": self.quote,
            "track": self.track,
            "profiles": list(self.profiles),
            "metric": self.metric,
            "seed": {"method": self.seed.method, "params": dict(self.seed.params)},
            "comparator": comparator_label(self.comparator),
            "kind": self.kind,
            "effect": self.effect,
            "margin": self.margin,
            "paper_number": self.paper_number,
            "where": dict(self.where),
            "trend_axis": self.trend_axis or None,
        }


def slug(text: str) -> str:
    out = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in text.lower())
    return "-".join(p for p in out.split("-") if p) or "x"


# ---- the rule ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A paired difference, oriented so that positive is the claimed direction, with its 95 %
    interval (``low``/``high`` None: undefined, ``reason`` says why) and its standard error (None:
    unknown). ``label`` names it (a trend step)."""

    mean: float
    low: float | None = None
    high: float | None = None
    se: float | None = None
    reason: str = ""
    label: str = ""
    method: str = ""  # "bootstrap", "t", ...
    n: int = 0

    @property
    def defined(self) -> bool:
        return self.low is not None and self.high is not None and self.high > self.low


@dataclass(frozen=True)
class Judgement:
    verdict: str
    reason: str
    mde: float | None = None
    underpowered: bool | None = None


def verdict(
    kind: str,
    difference: Difference | None,
    *,
    effect: float | None = None,
    margin: float | None = None,
    steps: Sequence[Difference] = (),
    saturation: Difference | None = None,
    saturates: bool = False,
    not_testable: str = "",
) -> Judgement:
    """The verdict on a claim: the one rule every card is judged by, fixed before any result.

    ``difference`` is the paired difference d = seed − comparator over the claim's cells, oriented
    so that d > 0 is the claimed direction (the metric's direction, or the claimed trend), with
    its 95 % interval [lo, hi] from the board's paired hierarchical bootstrap (per-test-point or
    per-target replicates, percentile method) or, where cells hold no such data, its fallback
    t-interval over seeds. ``effect`` E and ``margin`` M are positive, in the metric's unit.

    **Not testable** (checked first; ``not_testable`` holds the reason): the seed row is flagged
    in a cell of the claim (a degenerate model, or a track flag that is not the claim's subject),
    it is at the constant-classifier floor (the low end of its interval at or below it, the
    board's rule), it or the comparator has no results (or not all cells) on the profile, or no
    cell pairs them.

    **Superiority** (the paper claims an effect E; E may be None for "beats it"):

    * *supported* when the interval excludes 0 in the claimed direction (lo > 0); *supported,
      smaller than claimed* when it also lies wholly below E (hi < E);
    * *contradicted* when it excludes 0 the other way (hi < 0);
    * *not reproduced* when it includes 0 but excludes E (lo <= 0 <= hi < E);
    * *inconclusive* when it includes both 0 and E (or E is None and it includes 0).

    **Non-inferiority** (margin M): *supported* when lo >= −M; *contradicted* when hi < −M;
    else *inconclusive*.

    **Monotone trend** (levels L1 < … < Lk of the trend axis; ``steps`` are the consecutive
    paired differences m(L_{i+1}) − m(L_i), ``difference`` is m(Lk) − m(L1), all oriented so
    that the claimed trend is positive):

    * *contradicted* when some step's interval lies wholly below 0 (a reversal the data
      establish) or the first-to-last interval does (hi < 0);
    * *supported* when the first-to-last interval excludes 0 in the claimed direction (lo > 0)
      and no step reverses; when the claim says the trend *saturates*, ``saturation`` is the
      paired difference (largest earlier step − last step), and it must exclude 0 (lo > 0: the
      last step is smaller than the largest step before it), else the verdict is *supported,
      saturation not shown*;
    * else *inconclusive*.

    An undefined interval (too few seeds, or zero width) decides nothing: it counts as including
    every value, so it gives *inconclusive* (never supported or contradicted).

    **Power.** The minimum detectable effect is MDE = 2.8 × SE, with SE the standard error of
    the difference (the standard deviation of the bootstrap replicates that gave the interval,
    or s / sqrt(n) of the t-fallback over seeds): the true difference a two-sided 5 % test finds
    with 80 % power (1.96 + 0.84). The card is *underpowered* when MDE > E (superiority, trend)
    or MDE > M (non-inferiority), or when SE is unknown (no interval: no power can be shown);
    ``underpowered`` is None when the claim states no E (nothing to compare the MDE with).
    """
    if not_testable:
        return Judgement(NOT_TESTABLE, not_testable)
    if difference is None:
        return Judgement(NOT_TESTABLE, "no paired difference could be formed")
    se = difference.se if difference.se is not None and math.isfinite(difference.se) and difference.defined else None
    mde = MDE_FACTOR * se if se is not None else None
    amount = margin if kind == NON_INFERIORITY else effect
    under = None if amount is None else (mde is None or mde > amount)
    lo, hi = (difference.low, difference.high) if difference.defined else (None, None)
    why_undefined = f"the interval is undefined ({difference.reason or 'too little data'})"

    def out(v: str, reason: str) -> Judgement:
        return Judgement(v, reason, mde, under)

    if kind == SUPERIORITY:
        if lo is None or hi is None:
            return out(INCONCLUSIVE, why_undefined)
        if lo > 0:
            if effect is not None and hi < effect:
                return out(SMALLER, "the interval excludes 0 and lies wholly below the claimed effect")
            return out(SUPPORTED, "the interval excludes 0 in the claimed direction")
        if hi < 0:
            return out(CONTRADICTED, "the interval excludes 0 in the other direction")
        if effect is not None and hi < effect:
            return out(NOT_REPRODUCED, "the interval includes 0 and excludes the claimed effect")
        return out(INCONCLUSIVE, "the interval includes 0 and the claimed effect" if effect is not None else "the interval includes 0")
    if kind == NON_INFERIORITY:
        if margin is None:
            raise ClaimError("a non-inferiority verdict needs its margin")
        if lo is None or hi is None:
            return out(INCONCLUSIVE, why_undefined)
        if lo >= -margin:
            return out(SUPPORTED, "the low end of the interval is at or above −margin")
        if hi < -margin:
            return out(CONTRADICTED, "the whole interval lies below −margin")
        return out(INCONCLUSIVE, "the interval straddles −margin")
    if kind == MONOTONE:
        for s in steps:
            if s.defined and s.high is not None and s.high < 0:
                return out(CONTRADICTED, f"step {s.label or '?'} reverses the claimed trend (its interval lies below 0)")
        if lo is not None and hi is not None and hi < 0:
            return out(CONTRADICTED, "the first-to-last difference lies below 0")
        if lo is None or hi is None:
            return out(INCONCLUSIVE, "first to last: " + why_undefined)
        if lo > 0:
            if not saturates:
                return out(SUPPORTED, "the first-to-last interval excludes 0 in the claimed direction and no step reverses")
            if saturation is not None and saturation.defined and saturation.low is not None and saturation.low > 0:
                return out(SUPPORTED, "the trend holds and the last step is smaller than the largest step before it")
            why = "its interval includes 0" if saturation is not None and saturation.defined else (
                "it has no interval" if saturation is not None else "fewer than three levels")
            return out(SATURATION_NOT_SHOWN, f"the trend holds; the last step is not shown smaller than the largest earlier one ({why})")
        return out(INCONCLUSIVE, "the first-to-last interval includes 0")
    raise ClaimError(f"unknown claim kind {kind!r}; kinds: {', '.join(KINDS)}")


# ---- cards ------------------------------------------------------------------------------------


@dataclass
class Card:
    """One claim read on one profile (computed by ``coreset_bench.leaderboard.claims``)."""

    claim: Claim
    profile: str
    judgement: Judgement
    difference: Difference | None = None
    seed_label: str = ""
    comparator_label: str = ""
    direction: str = "max"
    scale: float = 1.0  # display factor: 100 for a fraction metric (differences in points)
    unit: str = ""  # "points" or the metric's own unit ("")
    steps: list[Difference] = field(default_factory=list)
    cells: int = 0  # seed cells behind the card
    notes: list[str] = field(default_factory=list)
    #: the package that declared the claim (``register_claims``); "" for a track's own claim
    declared_by: str = ""

    @property
    def verdict(self) -> str:
        return self.judgement.verdict

    def num(self, x: float | None, signed: bool = False) -> str:
        if x is None or not math.isfinite(x):
            return "—"
        v = x * self.scale
        if abs(v) < 0.005 and self.scale == 100.0:
            v = 0.0
        text = f"{v:.2f}" if self.scale == 100.0 or abs(v) >= 0.01 or v == 0 else f"{v:.3g}"
        if signed and not text.startswith("-"):
            text = "+" + text
        return text.replace("-", "−")

    def unit_suffix(self) -> str:
        return f" {self.unit}" if self.unit else ""

    def difference_text(self) -> str:
        """``+3.21 [2.95, 3.48] points`` (or the mean with "no interval")."""
        d = self.difference
        if d is None:
            return "—"
        if d.defined:
            return f"{self.num(d.mean, True)} [{self.num(d.low)}, {self.num(d.high)}]{self.unit_suffix()}"
        return f"{self.num(d.mean, True)}{self.unit_suffix()} (no interval)"

    def amount_text(self) -> str:
        c = self.claim
        if c.kind == NON_INFERIORITY:
            return f"margin {self.num(c.margin)}{self.unit_suffix()}"
        if c.kind == MONOTONE:
            what = f"{c.trend} in {c.trend_axis}" + (", saturating" if c.saturates else "")
            return what + (f", {self.num(c.effect, True)}{self.unit_suffix()}" if c.effect is not None else "")
        if c.effect is None:
            return "> 0"
        return f"{self.num(c.effect, True)}{self.unit_suffix()}"

    def mde_text(self) -> str:
        m = self.judgement.mde
        return "—" if m is None else f"{self.num(m)}{self.unit_suffix()}"

    def what(self) -> str:
        """``easycore − the best non-seed row (herding)`` / ``trend of x along epsilon``."""
        if self.claim.kind == MONOTONE:
            return f"{self.seed_label}: {self.claim.metric} along {self.claim.trend_axis}"
        return f"{self.seed_label} − {self.comparator_label}"

    def as_dict(self) -> dict[str, Any]:
        """JSON form: numbers in the displayed unit (``unit``; raw × ``scale``)."""

        def scaled(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else x * self.scale

        d = self.difference
        out = self.claim.describe()
        out.pop("profiles")
        out.update({
            "profile": self.profile,
            "seed_row": self.seed_label,
            "comparator_row": self.comparator_label,
            "direction": self.direction,
            "unit": self.unit,
            "scale": self.scale,
            "effect": scaled(self.claim.effect),
            "margin": scaled(self.claim.margin),
            "difference": None if d is None else scaled(d.mean),
            "interval": [scaled(d.low), scaled(d.high)] if d is not None and d.defined else None,
            "interval_method": d.method if d is not None else None,
            "interval_note": d.reason if d is not None and not d.defined else "",
            "se": scaled(d.se) if d is not None else None,
            "mde": scaled(self.judgement.mde),
            "verdict": self.verdict,
            "reason": self.judgement.reason,
            "underpowered": self.judgement.underpowered,
            "cells": self.cells,
            "steps": [{"step": s.label, "difference": scaled(s.mean), "interval": [scaled(s.low), scaled(s.high)] if s.defined else None} for s in self.steps],
            "notes": list(self.notes),
            "declared_by": self.declared_by or f"track {self.claim.track}",
            "readings": f"results/README.md#{self.claim.anchor}",
            "text": {"difference": self.difference_text(), "claimed": self.amount_text(), "mde": self.mde_text()},
        })
        return out


def verdict_class(v: str) -> str:
    """A CSS-friendly name of a verdict (``supported-smaller-than-claimed``)."""
    return slug(v)
