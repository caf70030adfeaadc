"""Reproducing a published entry: re-run a sample of its cells, compare with the published numbers.

Same cell, same seed, same machine gives the same numbers; across machines it cannot be promised
for training on floats (another CPU's SIMD kernels sum in another order, and training amplifies
the last bit). ``coreset-bench reproduce ENTRY`` makes that visible instead of hidden:

1. **Sample.** ``choose_cells``: the entry's cells sorted by cell key, the first ``--cells N``
   (a deterministic choice: the same entry gives the same sample on every machine; cell keys are
   hashes, so the sample spreads over the axes and repeats without favouring any).
2. **Re-run** them with the installed method (same name, version and parameters) into a store of
   their own (default ``results/reproduce.db``: a reproduction never mixes with local runs).
3. **Judge** each metric (``judge``): the paired differences d_c = reproduced_c − published_c,
   their mean with a 95 % t-interval, against the entry's seed-to-seed spread s (the pooled
   standard deviation over repeats of each axis point). A reproduction on another machine is at
   worst another training run, so d_c has a standard deviation of at most √2·s and the mean of n
   differences lies within ``noise band`` = 1.96·√2·s/√n of 0 when nothing systematic differs:

   * every d_c = 0: **reproduced exactly**;
   * |mean d| ≤ noise band: **reproduced within noise**;
   * |mean d| > noise band: **systematic deviation** (flagged: more than seed-to-seed scatter
     explains; a different library, machine or code path changes the results);
   * no spread (an entry with one repeat per point): the interval alone is reported, and a
     deviation is flagged only when the interval excludes 0.

``coreset-bench leaderboard --entries results/entries --db results/reproduce.db --label
reproduction`` shows the reproduced cells as their own labelled rows beside the published ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054

EXACT = "reproduced exactly"
WITHIN = "reproduced within noise"
DEVIATION = "systematic deviation"
NO_SPREAD_OK = "no deviation found (no seed spread to judge against)"
NO_SPREAD_DEV = "deviation (no seed spread to judge against)"


def choose_cells(cells: Iterable[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    """The first ``n`` cells by key: the deterministic sample ``reproduce`` re-runs."""
    return sorted(cells, key=lambda c: str(c["key"]))[: max(0, int(n))]


def seed_spread(cells: Iterable[Mapping[str, Any]], metric: str) -> float | None:
    """Pooled standard deviation over repeats of ``metric`` in the entry (per axis point, then
    pooled over points by their degrees of freedom); None with no point of ≥ 2 repeats."""
    by_point: dict[str, list[float]] = {}
    for c in cells:
        v = (c.get("metrics") or {}).get(metric)
        if v is None or not math.isfinite(float(v)):
            continue
        by_point.setdefault(_point(c.get("axes") or {}), []).append(float(v))
    ss, dof = 0.0, 0
    for vals in by_point.values():
        if len(vals) < 2:
            continue
        mean = math.fsum(vals) / len(vals)
        ss += math.fsum((v - mean) ** 2 for v in vals)
        dof += len(vals) - 1
    return math.sqrt(ss / dof) if dof else None


def _point(axes: Mapping[str, Any]) -> str:
    return repr(sorted((str(k), repr(v)) for k, v in axes.items()))


@dataclass
class Judgement:
    """The reading of one metric of a reproduction (numbers in the metric's own units)."""

    metric: str
    n: int
    mean: float
    low: float | None
    high: float | None
    spread: float | None
    band: float | None
    verdict: str
    percent: bool = False

    @property
    def flagged(self) -> bool:
        return self.verdict in (DEVIATION, NO_SPREAD_DEV)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flagged": self.flagged}

    def text(self) -> str:
        s = 100.0 if self.percent else 1.0
        unit = " pp" if self.percent else ""

        def f(x: float) -> str:
            return f"{x * s:+.2f}" if self.percent else f"{x:+.4g}"

        iv = f"[{f(self.low)}, {f(self.high)}]" if self.low is not None and self.high is not None else "(no interval: n=1)"
        spread = f"seed-to-seed spread {self.spread * s:.2f}{unit}, noise band ±{self.band * s:.2f}{unit}" if self.spread is not None and self.band is not None else "no seed spread in the entry"
        return f"{self.metric}: reproduced − published {f(self.mean)}{unit} {iv} over {self.n} cell(s); {spread}: {self.verdict}"


def judge(metric: str, published: Sequence[float], reproduced: Sequence[float], spread: float | None, percent: bool = False) -> Judgement:
    """The verdict on paired values of one metric (see the module docstring for the rule)."""
    from .leaderboard.stats import t_interval

    if len(published) != len(reproduced) or not published:
        raise ValueError(f"{metric}: {len(published)} published and {len(reproduced)} reproduced values; pair at least one")
    d = [float(r) - float(p) for p, r in zip(published, reproduced)]
    iv = t_interval(d)
    assert iv is not None
    low, high = iv.low, iv.high
    n = len(d)
    band = Z95 * math.sqrt(2.0) * spread / math.sqrt(n) if spread is not None else None
    if all(x == 0.0 for x in d):
        verdict = EXACT
    elif band is not None:
        verdict = WITHIN if abs(iv.mean) <= band else DEVIATION
    else:
        excludes = low is not None and high is not None and (low > 0 or high < 0)
        verdict = NO_SPREAD_DEV if excludes else NO_SPREAD_OK
    return Judgement(metric, n, iv.mean, low, high, spread, band, verdict, percent)


def compare(entry_cells: Sequence[Mapping[str, Any]], chosen: Sequence[Mapping[str, Any]], runs: Mapping[str, Mapping[str, Any]], metrics: Sequence[str]) -> list[Judgement]:
    """A ``Judgement`` per metric over the chosen cells that were reproduced (``runs``: cell key ->
    a finished run's metrics); a metric no pair has is left out."""
    from .progress import fraction_metric

    out = []
    for m in metrics:
        pub, rep = [], []
        for c in chosen:
            got = runs.get(str(c["key"]))
            p = (c.get("metrics") or {}).get(m)
            r = None if got is None else got.get(m)
            if p is None or r is None or not (math.isfinite(float(p)) and math.isfinite(float(r))):
                continue
            pub.append(float(p))
            rep.append(float(r))
        if not pub:
            continue
        pct = fraction_metric([*pub, *rep], m)
        out.append(judge(m, pub, rep, seed_spread(entry_cells, m), pct))
    return out
