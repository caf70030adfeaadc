"""The ranking model of one track profile: rows, columns, statistics, coverage, flags, ties.

Design of a board (one per track + profile); the statistics are defined in ``stats``:

* A *row* is one method variant: (method name, method version, parameters).
* Axes other than the seed are split into the *column axis* (``budget`` when the profile has
  one) and the *setting* axes (dataset, architecture, training recipe, ...). Each setting gets a
  table whose columns are the budgets: the primary metric at each budget, mean with its 95 %
  interval (paired hierarchical bootstrap over seeds and test points where cells store
  per-point correctness, else a t-interval over seeds, undefined below 3 seeds or at zero width).
* Metric ranges are the track's declarations (``Track.metric_bounds``,
  ``Track.proportion_metrics``; ``metric_ranges``): intervals of a bounded metric are clipped to
  its range, paired differences to [−(hi − lo), hi − lo], and a 0/1 metric gets a
  Clopper-Pearson interval over its cells (``stats``). Undeclared metrics are unbounded.
* A row's *score* in a setting table is the mean of the primary metric over the table's axis
  points; its *gain* is the paired difference to the track's baseline (same axes and repeat,
  hence the same seed and test points).
* Settings are never averaged into one score (standard and TRADES accuracies live on different
  scales). When a profile has more than one setting, an *overall* table comes first: its columns
  are the settings side by side, and rows are ordered by their *mean rank* over the settings.
* A row is *ranked* only when it covers every axis point of the table, every expected cell is
  done, and no cell is flagged (``info["flags"]``: a degenerate model). Flagged rows are shown
  with their flags and never lead; rows that run on part of the matrix by design (full data at
  budget 1.0) are *reference* rows; rows with missing cells are *incomplete*, with coverage.
* The *leader* is the ranked row with the best score (best mean rank on the overall table); a
  ranked row is *tied* with it when the paired interval of (leader − row) contains 0 or is
  undefined (on the overall table: tied in every setting).
* The *baseline* is the track's baseline method as installed here: the same name, version and
  package; a published entry can never become the baseline.
* Accuracy tables show the constant-classifier floor (1/C, ``info["chance_floor"]``, else one
  over the length of ``info["class_histogram"]``) as a reference row. In a setting table a row
  whose score is not above that floor with 95 % confidence (the low end of its interval, or its
  mean where the interval is undefined, at or below the floor) is *at floor*: shown, never
  ranked, never the leader, since always predicting one class does as well. When every row is
  at floor the table has no leader (e.g. undefended CIFAR models under AutoAttack at 8/255); on
  the overall table such a row is not ranked in every setting.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np

from coreset_bench import registry as plugins
from coreset_bench.tracks.base import Profile, Track

from . import stats
from .data import base_version, hidden_salt_of, point_key, variant_key, version_key
from .stats import Interval, MetricRange

COLUMN_AXIS = "budget"


@dataclass
class Variant:
    """One method variant on one profile, with its records indexed by (axis point, repeat)."""

    method: str
    version: str
    params: dict[str, Any]
    package: str
    records: list[dict[str, Any]] = field(default_factory=list)
    done: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    expected: set[tuple[str, int]] = field(default_factory=set)
    points: set[str] = field(default_factory=set)  # the axis points of ``expected``
    label: str = ""
    _values: dict[str, dict[tuple[str, int], float]] = field(default_factory=dict)
    _bits: dict[str, dict[tuple[str, int], Any]] = field(default_factory=dict)
    _intervals: dict[tuple[Any, ...], Interval | None] = field(default_factory=dict)
    #: metric -> its declared range (``metric_ranges``); a metric not listed is unbounded
    ranges: Mapping[str, MetricRange] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return variant_key({"method": self.method, "method_version": self.version, "params": self.params})

    @property
    def failed(self) -> int:
        return sum(1 for r in self.records if r["status"] == "failed")

    def values(self, metric: str) -> dict[tuple[str, int], float]:
        """(axis point, repeat) -> value of ``metric`` over done, expected cells."""
        hit = self._values.get(metric)
        if hit is None:
            hit = {}
            for k, rec in self.done.items():
                v = rec["metrics"].get(metric)
                if v is not None and k in self.expected and math.isfinite(v):
                    hit[k] = float(v)
            self._values[metric] = hit
        return hit

    def bits(self, metric: str) -> dict[tuple[str, int], Any]:
        """(axis point, repeat) -> per-test-point correctness of ``metric`` (float 0/1 array).

        Only cells whose ``info["per_point"][metric]`` decodes and agrees with the cell's metric
        value (mean of the bits within half a test point) are used; others fall back to seeds.
        """
        hit = self._bits.get(metric)
        if hit is None:
            hit = {}
            vals = self.values(metric)
            for k, rec in self.done.items():
                pp = rec["info"].get("per_point") if isinstance(rec.get("info"), Mapping) else None
                spec = pp.get(metric) if isinstance(pp, Mapping) else None
                if k not in vals or not isinstance(spec, Mapping):
                    continue
                try:
                    vec = stats.decode_bits(spec.get("n"), spec.get("bits"))
                except (ValueError, TypeError):
                    continue
                if abs(float(vec.mean()) - vals[k]) <= 0.5 / vec.size + 1e-6:
                    hit[k] = vec
            for k, rec in self.done.items():
                if k in hit or k not in vals:
                    continue
                vec = _per_target(rec, metric)
                if vec is not None and abs(float(vec.mean()) - vals[k]) <= 1e-9 * max(1.0, abs(vals[k])):
                    hit[k] = vec
            self._bits[metric] = hit
        return hit

    def interval(self, metric: str, points: Sequence[str], repeats: Sequence[int], groups: Mapping[str, Any]) -> Interval | None:
        """``stats.bootstrap_mean`` of ``metric`` over ``points`` (memoized: tables share columns)."""
        key = ("mean", metric, tuple(points), tuple(repeats))
        if key not in self._intervals:
            span = self.ranges.get(metric, stats.UNBOUNDED)
            self._intervals[key] = stats.bootstrap_mean(self.values(metric), self.bits(metric), points, repeats, groups, span)
        return self._intervals[key]

    def paired(self, other: Variant, metric: str, points: Sequence[str], repeats: Sequence[int], direction: str, groups: Mapping[str, Any]) -> Interval | None:
        """``stats.paired_bootstrap`` of (self − other), oriented by ``direction`` (memoized);
        clipped to the range of a difference of the metric (``MetricRange.difference``). Cells
        are paired only where both were computed on the same hidden generated data (the same
        ``hidden_salt``): a cell whose partner has another salt is left out of the comparison."""
        key = ("paired", other.key, metric, tuple(points), tuple(repeats), direction)
        if key not in self._intervals:
            span = self.ranges.get(metric, stats.UNBOUNDED)
            mine, theirs = self.values(metric), other.values(metric)
            my_bits, their_bits = self.bits(metric), other.bits(metric)
            apart = {k for k in mine.keys() & theirs.keys() if hidden_salt_of(self.done[k]) != hidden_salt_of(other.done[k])}
            if apart:
                mine = {k: v for k, v in mine.items() if k not in apart}
                theirs = {k: v for k, v in theirs.items() if k not in apart}
                my_bits = {k: v for k, v in my_bits.items() if k not in apart}
                their_bits = {k: v for k, v in their_bits.items() if k not in apart}
            self._intervals[key] = stats.paired_bootstrap(mine, theirs, my_bits, their_bits, points, repeats, direction, groups, span)
        return self._intervals[key]

    def flags(self, keys: Iterable[tuple[str, int]]) -> dict[str, int]:
        """Flag -> number of done cells among ``keys`` that carry it (``info["flags"]``, or for
        cells stored before the track recorded flags, ``derived_flags``)."""
        out: dict[str, int] = {}
        for k in keys:
            rec = self.done.get(k)
            info = rec.get("info") if rec is not None else None
            fl = info.get("flags") if isinstance(info, Mapping) else None
            if fl is None and rec is not None:
                fl = derived_flags(rec)
            if isinstance(fl, list):
                for f in dict.fromkeys(str(x) for x in fl):
                    out[f] = out.get(f, 0) + 1
        return out


def derived_flags(rec: Mapping[str, Any]) -> list[str]:
    """Conservative flags for a cell stored before the track recorded ``info["flags"]``
    (e.g. ``coreset/quick@1``), from what such cells carry:

    * ``subset-class-coverage (derived)``: a class is absent from the subset
      (``info["class_histogram"]`` has a zero);
    * ``class-never-correct (derived)``: the model classifies no test sample of some class
      correctly (a ``class_acc_<c>`` metric is exactly 0), the trace of a model that never
      predicts that class.

    Weaker than the track's own flags (which use the pool's class shares and the prediction
    histogram), so a cell that passes here may still be degenerate.
    """
    out: list[str] = []
    info = rec.get("info")
    hist = info.get("class_histogram") if isinstance(info, Mapping) else None
    if isinstance(hist, list) and hist and any(isinstance(h, (int, float)) and h == 0 for h in hist):
        out.append("subset-class-coverage (derived)")
    metrics = rec.get("metrics")
    if isinstance(metrics, Mapping) and any(
        str(k).startswith("class_acc_") and isinstance(v, (int, float)) and v == 0.0 for k, v in metrics.items()
    ):
        out.append("class-never-correct (derived)")
    return out


@dataclass
class Column:
    label: str
    points: list[str]
    value: Any = None  # the column axis value (budget) or the setting dict
    title: str = ""
    #: a point outside the profile's matrix that some method runs by design (``full`` at budget
    #: 1.0); shown, never part of the matrix a row must cover to be ranked
    extra: bool = False


@dataclass
class Row:
    variant: Variant
    cols: list[Interval | None]
    col_applicable: list[bool]
    col_complete: list[bool]
    col_gain: list[Interval | None]
    score: Interval | None
    gain: Interval | None
    secondary: dict[str, Interval | None]
    selection_s: float | None
    total_s: float | None
    realized_ratio: float | None
    realized_short: int
    done: int
    expected: int
    ranked: bool
    status: str  # "ranked" | "reference" | "incomplete" | "flagged" | "at floor"
    note: str = ""
    rank: int | None = None
    leader: bool = False
    tied: bool = False
    baseline: bool = False
    #: flag -> number of flagged cells of this row in the table (degenerate models)
    flags: dict[str, int] = field(default_factory=dict)
    #: paired interval of (leader − row) that decided ``tied`` (None for the leader)
    vs_leader: Interval | None = None
    #: overall table: mean rank over the settings, and the rank in each setting
    mean_rank: float | None = None
    setting_ranks: list[int | None] = field(default_factory=list)
    #: mean over cells of this row's end-to-end time divided by the baseline's at the same cell
    #: (axis point and repeat) on the same machine (platform, device, threads); None without one
    cost_ratio: float | None = None


@dataclass
class Table:
    title: str
    slug: str
    columns: list[Column]
    points: list[str]
    rows: list[Row]
    kind: str  # "overall" | "setting"
    setting: dict[str, Any] = field(default_factory=dict)
    #: the points a row must cover to be ranked (the profile's matrix within this table)
    rank_points: list[str] = field(default_factory=list)
    #: per column, the constant-classifier accuracy (1/C) when the cells declare it, else None
    floor: list[float | None] = field(default_factory=list)

    @property
    def ranked_rows(self) -> list[Row]:
        return [r for r in self.rows if r.ranked]


@dataclass
class Board:
    track: Track
    profile: Profile
    variants: list[Variant]
    baseline: Variant | None
    tables: list[Table]
    column_axis: str | None
    primary: str
    direction: str
    secondary: list[str]
    fraction_metrics: set[str]
    warnings: list[str] = field(default_factory=list)
    #: metric -> its declared range (``metric_ranges``; unbounded when not listed)
    ranges: dict[str, MetricRange] = field(default_factory=dict)
    #: metric -> its declared unit (``metric_units``; "" when not listed)
    units: Mapping[str, str] = field(default_factory=dict)
    #: what the tables' floor row is: ``FLOOR_CONSTANT`` or ``FLOOR_CHANCE`` ("" without one)
    floor_what: str = ""

    @property
    def main(self) -> Table:
        return self.tables[0]

    def unit(self, metric: str) -> str:
        """The declared unit of ``metric`` ("" when the track declares none)."""
        return str(self.units.get(metric, "") or "")


def _machine(rec: Mapping[str, Any]) -> tuple[str, str, str]:
    """What the environment record says about the machine a cell ran on."""
    env = rec.get("environment") or {}
    return (str(env.get("platform", "")), str(env.get("device_name") or env.get("device", "")), str(env.get("threads", "")))


def _cost_ratio(v: Variant, baseline: Variant | None, keys: Sequence[tuple[str, int]]) -> float | None:
    """Mean of (this cell's total time / the baseline's at the same cell), over cells whose two
    records ran on the same machine: a loaded or slower machine cannot make a method look slow."""
    if baseline is None:
        return None
    ratios = []
    for k in keys:
        a, b = v.done.get(k), baseline.done.get(k)
        if a is None or b is None or _machine(a) != _machine(b):
            continue
        ta, tb = a["timings"].get("total_s"), b["timings"].get("total_s")
        if isinstance(ta, (int, float)) and isinstance(tb, (int, float)) and tb > 0 and math.isfinite(ta) and math.isfinite(tb):
            ratios.append(float(ta) / float(tb))
    return math.fsum(ratios) / len(ratios) if ratios else None


def method_stand_in(track: Track, name: str, version: str, params: Mapping[str, Any]) -> Any:
    """The installed method (with these params) when its version matches, else a plain stand-in.

    ``Track.cells`` and ``Track.applicable`` need a method object; results of a method that is
    not installed here (an entry from elsewhere) still get the right matrix from a stand-in.
    """
    try:
        installed = plugins.method(name)
    except LookupError:
        installed = None
    if installed is not None and str(installed.version) == base_version(version):  # ``1.0+local``: a labelled source of 1.0
        obj = copy.copy(installed)
        obj.params = dict(params)
        return obj
    return SimpleNamespace(
        name=name, version=version, params=dict(params), kind=track.contestant_kind, package="", tracks=(), summary="", citation=""
    )


def expected_cells(track: Track, profile: Profile, method: str, version: str, params: Mapping[str, Any]) -> set[tuple[str, int]]:
    """(axis point, repeat) of every cell the profile asks of this method variant."""
    m = method_stand_in(track, method, version, params)
    known: dict[Any, str] = {}
    for ap in profile.axis_points():
        try:
            known[tuple(ap.items())] = point_key(ap)
        except TypeError:  # unhashable axis values: computed per cell below
            pass
    out = set()
    for c in track.cells(profile, m):
        try:
            pk = known.get(tuple(c.axes.items())) or point_key(c.axes)
        except TypeError:
            pk = point_key(c.axes)
        out.add((pk, int(c.repeat)))
    return out


def _setting_label(setting: Mapping[str, Any]) -> str:
    return " · ".join(str(v) for v in setting.values()) or "all"


def _setting_title(setting: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text.lower())
    return "-".join(p for p in out.split("-") if p) or "x"


def _column_label(b: Any) -> str:
    return f"{b:g}" if isinstance(b, float) else str(b)


def profile_layout(profile: Profile, extra_points: Sequence[Mapping[str, Any]] = ()) -> tuple[str | None, list[tuple[dict[str, Any], list[Column]]]]:
    """(column axis, [(setting, columns)]) of a profile, in the profile's axis order.

    ``extra_points``: axis points outside the profile's matrix that methods run by design; each
    becomes an extra column of its setting (after the profile's budgets, in budget order).
    """
    axes = list(profile.axes)
    col_axis = COLUMN_AXIS if COLUMN_AXIS in profile.axes else None
    if col_axis is None:
        cols = [Column(_setting_label(ap), [point_key(ap)], dict(ap), _setting_title(ap)) for ap in profile.axis_points()]
        cols += [Column(_setting_label(ap), [point_key(ap)], dict(ap), _setting_title(ap), extra=True) for ap in extra_points]
        return None, [({}, cols)]
    setting_axes = [a for a in axes if a != col_axis]
    settings: dict[str, tuple[dict[str, Any], list[Column]]] = {}
    for ap in profile.axis_points():
        setting = {a: ap[a] for a in setting_axes}
        settings.setdefault(point_key(setting), (setting, []))[1].append(
            Column(_column_label(ap[col_axis]), [point_key(ap)], ap[col_axis], f"{col_axis}={ap[col_axis]}")
        )

    def order(ap: Mapping[str, Any]) -> tuple[int, Any]:
        b = ap.get(col_axis)
        return (0, b) if isinstance(b, (int, float)) else (1, str(b))

    for ap in sorted(extra_points, key=order):
        setting = {a: ap.get(a) for a in setting_axes}
        b = ap.get(col_axis)
        settings.setdefault(point_key(setting), (setting, []))[1].append(
            Column(_column_label(b), [point_key(ap)], b, f"{col_axis}={b}", extra=True)
        )
    return col_axis, list(settings.values())


def _mean(xs: Iterable[float]) -> float | None:
    vals = [float(x) for x in xs]
    return math.fsum(vals) / len(vals) if vals else None


def _row(
    v: Variant,
    columns: Sequence[Column],
    points: Sequence[str],
    rank_points: Sequence[str],
    repeats: Sequence[int],
    primary: str,
    direction: str,
    secondary: Sequence[str],
    baseline: Variant | None,
    groups: Mapping[str, Any],
    overall: bool = False,
) -> Row:
    pset = set(points)
    exp = {k for k in v.expected if k[0] in pset}
    exp_points = [p for p in points if any((p, r) in exp for r in repeats)]
    vals = v.values(primary)
    base_vals = baseline.values(primary) if baseline is not None and baseline is not v else None
    done_keys = [k for k in exp if k in vals]
    cols: list[Interval | None] = []
    applicable: list[bool] = []
    complete: list[bool] = []
    gains: list[Interval | None] = []
    exp_point_set = set(exp_points)
    for c in columns:
        cp = [p for p in c.points if p in exp_point_set]
        applicable.append(bool(cp))
        if not cp:
            cols.append(None)
            complete.append(True)
            gains.append(None)
            continue
        cols.append(v.interval(primary, cp, repeats, groups))
        complete.append(all((p, r) in vals for p in cp for r in repeats if (p, r) in exp))
        gains.append(v.paired(baseline, primary, cp, repeats, direction, groups) if baseline is not None and base_vals is not None else None)
    full_matrix = bool(rank_points) and exp_point_set.issuperset(rank_points)
    # a row on the whole matrix is scored over the matrix; a reference row over its own points
    score_points = list(rank_points) if full_matrix else exp_points
    score = v.interval(primary, score_points, repeats, groups)
    # the overall table (several settings) shows neither a gain nor secondary metrics averaged
    # across settings: standard and TRADES numbers are not averaged
    gain = v.paired(baseline, primary, score_points, repeats, direction, groups) if baseline is not None and base_vals is not None and not overall else None
    sec = {m: v.interval(m, score_points, repeats, groups) for m in secondary} if not overall else {}
    flags = v.flags(done_keys)
    done_recs = [v.done[k] for k in done_keys]
    sel = _mean(r["timings"]["selection_s"] for r in done_recs if "selection_s" in r["timings"])
    tot = _mean(r["timings"]["total_s"] for r in done_recs if "total_s" in r["timings"])
    cost_ratio = _cost_ratio(v, baseline, done_keys)
    ratios = []
    short = 0
    for r in done_recs:
        b, real = r["info"].get("budget"), r["info"].get("realized_size")
        if isinstance(b, (int, float)) and isinstance(real, (int, float)) and b > 0:
            ratios.append(real / b)
            short += real != b
    realized = _mean(ratios) if short else None
    is_complete = len(done_keys) == len(exp) and len(exp) > 0
    if not full_matrix and is_complete:
        status = "reference"
        where = [c.title or c.label for c, a in zip(columns, applicable) if a]
        note = f"runs on part of the matrix only: {'; '.join(where)}"
    elif not is_complete:
        status = "incomplete"
        note = f"{len(done_keys)} of {len(exp)} cells done"
        if v.failed:
            note += f", {v.failed} failed"
    elif flags:
        status = "flagged"
        note = "flagged in " + ", ".join(f"{n} cell{'s' if n != 1 else ''} ({f})" for f, n in sorted(flags.items()))
    else:
        status = "ranked"
        note = ""
    return Row(
        variant=v,
        cols=cols,
        col_applicable=applicable,
        col_complete=complete,
        col_gain=gains,
        score=score,
        gain=gain,
        secondary=sec,
        selection_s=sel,
        total_s=tot,
        cost_ratio=cost_ratio,
        realized_ratio=realized,
        realized_short=short,
        done=len(done_keys),
        expected=len(exp),
        ranked=status == "ranked" and score is not None,
        status=status,
        note=note,
        baseline=baseline is v,
        flags=flags,
    )


_STATUS_ORDER = {"at floor": 0, "flagged": 1, "reference": 2, "incomplete": 3}


def _vs_leader(lead: Row, row: Row, points: Sequence[str], repeats: Sequence[int], primary: str, direction: str, groups: Mapping[str, Any]) -> Interval | None:
    """Paired interval of (leader − row), oriented so that positive means the leader is better."""
    return lead.variant.paired(row.variant, primary, points, repeats, direction, groups)


def _order(rows: list[Row], direction: str, points: Sequence[str], repeats: Sequence[int], primary: str, groups: Mapping[str, Any]) -> list[Row]:
    sign = -1.0 if direction == "max" else 1.0
    ranked = sorted((r for r in rows if r.ranked), key=lambda r: (sign * r.score.mean, r.variant.label))  # type: ignore[union-attr]
    others = sorted(
        (r for r in rows if not r.ranked),
        key=lambda r: (
            _STATUS_ORDER.get(r.status, 4),
            sign * r.score.mean if r.status == "at floor" and r.score is not None else 0.0,
            -(r.done / r.expected if r.expected else 0.0),
            r.variant.label,
        ),
    )
    for i, r in enumerate(ranked):
        r.rank = i + 1
    if ranked:
        lead = ranked[0]
        lead.leader = True
        for r in ranked[1:]:
            r.vs_leader = _vs_leader(lead, r, points, repeats, primary, direction, groups)
            r.tied = stats.is_tied(r.vs_leader)
    return ranked + others


#: what a floor is, by its origin: the constant classifier of an accuracy (read from the cells)
#: or the no-skill value a track declares (``Track.metric_chance``)
FLOOR_CONSTANT = "constant-classifier floor"
FLOOR_CHANCE = "chance level"


def _mark_at_floor(rows: list[Row], floor: float, what: str = FLOOR_CONSTANT, text: str = "") -> None:
    """Unrank the rows whose score is not above ``floor`` with 95 % confidence: the low end of
    the score's interval (its mean where undefined) is at or below it. ``what``: the floor's
    name; ``text``: the floor's value as shown (default: in percent)."""
    shown = text or f"{floor * 100:.1f} %"
    why = "always predicting one class does as well" if what == FLOOR_CONSTANT else "no better than no skill"
    for r in rows:
        if not r.ranked or r.score is None:
            continue
        low = r.score.low if r.score.defined else r.score.mean
        if low is not None and low <= floor + 1e-12:
            r.ranked = False
            r.status = "at floor"
            r.note = f"not above the {what} ({shown}) with 95 % confidence ({why}): shown, never ranked"


def build_table(
    title: str,
    slug: str,
    kind: str,
    columns: list[Column],
    variants: Sequence[Variant],
    repeats: Sequence[int],
    primary: str,
    direction: str,
    secondary: Sequence[str],
    baseline: Variant | None,
    setting: dict[str, Any] | None = None,
    rank_points: Sequence[str] | None = None,
    groups: Mapping[str, Any] | None = None,
    floors: Mapping[str, float] | None = None,
    floor_what: str = FLOOR_CONSTANT,
    floor_text: str = "",
) -> Table:
    """A ranking table; ``rank_points`` defaults to the points of its non-extra columns.

    ``groups``: axis point -> test-set group (points of one group share their test points);
    ``floors``: axis point -> constant-classifier accuracy.
    """
    groups = groups or {}
    points = [p for c in columns for p in c.points]
    ranked_on = list(rank_points) if rank_points is not None else [p for c in columns if not c.extra for p in c.points]
    rows = [_row(v, columns, points, ranked_on, repeats, primary, direction, secondary, baseline, groups, kind == "overall") for v in variants]
    rows = [r for r in rows if r.expected > 0]
    floor: list[float | None] = []
    for c in columns:
        fl = {round(floors[p], 12) for p in c.points if floors and p in floors}
        floor.append(fl.pop() if len(fl) == 1 and all(floors and p in floors for p in c.points) else None)
    if kind == "setting" and direction == "max":
        ranked_floors = [f for c, f in zip(columns, floor) if not c.extra]
        if ranked_floors and all(f is not None for f in ranked_floors):
            _mark_at_floor(rows, sum(ranked_floors) / len(ranked_floors), floor_what, floor_text)  # type: ignore[arg-type]
    return Table(title, slug, columns, points, _order(rows, direction, ranked_on, repeats, primary, groups), kind, setting or {}, ranked_on, floor)


def rank_overall(overall: Table, settings: Sequence[Table], repeats: Sequence[int], primary: str, direction: str, groups: Mapping[str, Any]) -> None:
    """Order the overall table by mean rank over the settings (never by an average across them).

    A row is ranked when it is ranked (complete, unflagged) in every setting; ranks per setting
    are recomputed among those rows. The leader has the best mean rank (ties: the better rank
    sum of paired wins is not attempted; the label decides); a row is tied with the leader when
    the paired interval of (leader − row) contains 0 or is undefined in every setting.
    """
    by_setting = [{r.variant.key: r for r in t.rows} for t in settings]
    cands = [r for r in overall.rows if r.ranked and all(r.variant.key in m and m[r.variant.key].ranked for m in by_setting)]
    for r in overall.rows:
        r.rank, r.leader, r.tied, r.vs_leader = None, False, False, None
        if r.ranked and r not in cands:
            r.ranked = False
            at_floor = [t.title for t, m in zip(settings, by_setting) if r.variant.key in m and m[r.variant.key].status == "at floor"]
            if at_floor and not r.flags:
                r.status = "at floor"
                r.note = "at the floor in " + "; ".join(at_floor) + ": not ranked in every setting"
            else:
                r.status = "flagged" if r.flags else "incomplete"
                r.note = r.note or "not ranked in every setting"
    scores = {r.variant.key: [m[r.variant.key].score.mean for m in by_setting] for r in cands}  # type: ignore[union-attr]
    sign = -1.0 if direction == "max" else 1.0
    mr = stats.mean_ranks({"\x00".join(k): v for k, v in scores.items()}, direction)
    for r in cands:
        r.mean_rank = mr["\x00".join(r.variant.key)]
        r.setting_ranks = [1 + sum(1 for o in cands if sign * scores[o.variant.key][s] < sign * scores[r.variant.key][s]) for s in range(len(settings))]
    ranked = sorted(cands, key=lambda r: (r.mean_rank, r.variant.label))
    others = sorted((r for r in overall.rows if r not in cands), key=lambda r: (_STATUS_ORDER.get(r.status, 3), -(r.done / r.expected if r.expected else 0.0), r.variant.label))
    for i, r in enumerate(ranked):
        r.rank = i + 1
    if ranked:
        lead = ranked[0]
        lead.leader = True
        for r in ranked[1:]:
            diffs = [_vs_leader(lead, r, t.rank_points, repeats, primary, direction, groups) for t in settings]
            r.tied = all(stats.is_tied(d) for d in diffs)
    overall.rows = ranked + others


def _labels(variants: Sequence[Variant]) -> None:
    by_name: dict[str, list[Variant]] = {}
    for v in variants:
        by_name.setdefault(v.method, []).append(v)
    for name, vs in by_name.items():
        if len(vs) == 1:
            vs[0].label = name
            continue
        versions = {v.version for v in vs}
        for v in vs:
            parts = [name]
            if len(versions) > 1:
                parts[0] = f"{name}@{v.version}"
            same_version = [w for w in vs if w.version == v.version]
            if len(same_version) > 1:
                keys = sorted({k for w in same_version for k in w.params})
                differing = [k for k in keys if len({repr(w.params.get(k)) for w in same_version}) > 1]
                parts.append("(" + ", ".join(f"{k}={v.params.get(k)}" for k in differing) + ")")
            v.label = " ".join(parts)


def primary_metric(track: Track, profile: Profile) -> str:
    """The track's primary metric on ``profile`` (``track.primary_for(profile)`` where defined)."""
    fn = getattr(track, "primary_for", None)
    return str(fn(profile)) if callable(fn) else track.primary_metric


def suite_baseline(track: Track, variants: Sequence[Variant], primary: str, warnings: list[str] | None = None) -> Variant | None:
    """The track's baseline row: the baseline method as installed here (same name, version and package).

    A row of that name from elsewhere (another version, another package: a published entry) is
    never the baseline. Among matching rows (different parameters), the installed defaults come
    first, then the most cells.
    """
    name = track.baseline_method
    if not name:
        return None
    try:
        inst = plugins.method(name)
    except LookupError:
        if warnings is not None and any(v.method == name for v in variants):
            warnings.append(f"the baseline method {name!r} is not installed here, so no row is used as the baseline")
        return None
    pkg = str(getattr(inst, "package", "") or "")
    cands = [v for v in variants if v.method == name and str(v.version) == str(inst.version) and (v.package or "") == pkg]
    if not cands:
        if warnings is not None and any(v.method == name for v in variants):
            warnings.append(f"no results of the installed baseline {name}@{inst.version} ({pkg}); gains are not shown")
        return None
    defaults = dict(getattr(inst, "params", {}) or {})
    return max(cands, key=lambda v: (v.params == defaults, len(v.values(primary))))


def _per_target(rec: Mapping[str, Any], metric: str) -> np.ndarray | None:
    """The per-target values of ``metric`` of a privacy/memorization cell (``info["per_target"]``,
    one dict per target model, the cell's value being their mean): the replicates the board's
    bootstrap resamples where a cell has no per-test-point data, so that one seed with T targets
    still gets an interval over targets (paired across attacks, which share the targets)."""
    info = rec.get("info")
    per = info.get("per_target") if isinstance(info, Mapping) else None
    if not isinstance(per, list) or len(per) < 2:
        return None
    try:
        vals = [float(d[metric]) for d in per]
    except (KeyError, TypeError, ValueError):
        return None
    vec = np.asarray(vals, dtype=np.float64)
    return vec if np.all(np.isfinite(vec)) else None


def _test_group(point: str) -> Any:
    """Points of one dataset share their test points (the bootstrap resamples them together)."""
    try:
        axes = json.loads(point)
    except ValueError:
        return point
    return json.dumps(axes.get("dataset")) if isinstance(axes, dict) else point


def _is_family(name: str) -> bool:
    return any(ch in name for ch in "*?[")


class MetricRanges(dict):  # type: ignore[type-arg]
    """Metric -> ``MetricRange``, as declared. A key holding ``*``, ``?`` or ``[`` declares a
    family of metrics (``fnmatch``, e.g. ``class_acc_*``): lookups (``get``, ``in``, ``[]``) try
    the exact name first, then the families in declaration order."""

    def family(self, name: Any) -> MetricRange | None:
        if isinstance(name, str):
            for pattern, span in self.items():
                if _is_family(pattern) and fnmatch.fnmatchcase(name, pattern):
                    return span
        return None

    def __missing__(self, name: Any) -> MetricRange:
        span = self.family(name)
        if span is None:
            raise KeyError(name)
        return span

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or self.family(name) is not None

    def get(self, name: Any, default: Any = None) -> Any:
        if dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        span = self.family(name)
        return default if span is None else span


def metric_ranges(track: Track, warnings: list[str] | None = None) -> MetricRanges:
    """Metric -> range from the track's declarations (``Track.metric_bounds``,
    ``Track.proportion_metrics``); a track without them (a third-party one) declares nothing and
    its metrics stay unbounded. A malformed declaration is left out with a one-line warning.

    The one reader of those declarations: the board clips intervals to them, and the entry
    validator (``entries``) rejects values outside them. Keys may name families (``MetricRanges``).
    """
    out = MetricRanges()
    bounds = getattr(track, "metric_bounds", None) or {}
    props = getattr(track, "proportion_metrics", None) or ()
    name = getattr(track, "name", "?")
    if not isinstance(bounds, Mapping):
        bounds = {}
        if warnings is not None:
            warnings.append(f"track {name!r}: metric_bounds is not a mapping of metric -> (low, high); its metrics are shown unbounded")
    for m, b in bounds.items():
        try:
            lo, hi = b
            lo = None if lo is None else float(lo)
            hi = None if hi is None else float(hi)
            if (lo is not None and not math.isfinite(lo)) or (hi is not None and not math.isfinite(hi)) or (lo is not None and hi is not None and not lo < hi):
                raise ValueError
        except (TypeError, ValueError):
            if warnings is not None:
                warnings.append(f"track {name!r}: metric_bounds[{m!r}] = {b!r} is not (low, high) with low < high (None for an open side); {m} is shown unbounded")
            continue
        out[str(m)] = MetricRange(lo, hi)
    for m in props if isinstance(props, (list, tuple, set, frozenset)) else ():
        out[str(m)] = stats.PROPORTION
    return out


#: units whose values are fractions in [0, 1] shown times 100
PERCENT_UNITS = ("%", "pp")


def metric_units(track: Track, warnings: list[str] | None = None) -> MetricRanges:
    """Metric -> unit from the track's declaration (``Track.metric_units``; keys may name
    families, as in ``MetricRanges``); the board's only source of units, never the values."""
    out = MetricRanges()
    units = getattr(track, "metric_units", None) or {}
    if not isinstance(units, Mapping):
        if warnings is not None:
            warnings.append(f"track {getattr(track, 'name', '?')!r}: metric_units is not a mapping of metric -> unit; its metrics are shown as plain numbers")
        return out
    for m, u in units.items():
        out[str(m)] = str(u or "")
    return out


def metric_chance(track: Track) -> dict[str, float]:
    """Metric -> its declared no-skill value (``Track.metric_chance``); malformed ones are left out."""
    out: dict[str, float] = {}
    for m, v in (getattr(track, "metric_chance", None) or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[str(m)] = float(v)
    return out


def _is_accuracy(metric: str) -> bool:
    return metric == "acc" or metric.endswith("_acc")


def _floors(variants: Sequence[Variant]) -> dict[str, float]:
    """Axis point -> constant-classifier accuracy (``info["chance_floor"]``, else 1 / #classes)."""
    out: dict[str, float] = {}
    for v in variants:
        for (p, _r), rec in v.done.items():
            if p in out:
                continue
            info = rec.get("info") or {}
            fl = info.get("chance_floor")
            hist = info.get("class_histogram")
            if isinstance(fl, (int, float)) and not isinstance(fl, bool) and 0.0 < fl <= 1.0:
                out[p] = float(fl)
            elif isinstance(hist, list) and hist:
                out[p] = 1.0 / len(hist)
    return out


def build_board(track: Track, profile: Profile, records: Sequence[Mapping[str, Any]]) -> Board:
    """The board of one profile from its records (records of other profiles are ignored)."""
    primary = primary_metric(track, profile)
    directions = dict(track.metric_directions)
    direction = directions.get(primary, "max")
    warnings: list[str] = []
    repeats = [int(r) for r in profile.seeds]
    variants: dict[tuple[str, str, str], Variant] = {}
    stray = 0
    for rec in records:
        if rec["profile"] != profile.id:
            continue
        vk = variant_key(rec)
        v = variants.get(vk)
        if v is None:
            v = Variant(rec["method"], rec["method_version"], dict(rec["params"]), rec.get("package") or "")
            v.expected = expected_cells(track, profile, v.method, v.version, v.params)
            v.points = {e[0] for e in v.expected}
            variants[vk] = v
        v.records.append(rec)
        k = (rec["point"], int(rec["repeat"]))
        if k not in v.expected:  # axes or repeat outside what the profile asks of this method
            stray += 1
            continue
        if rec["status"] == "done":
            v.done[k] = rec
    if stray:
        warnings.append(f"{stray} runs lie outside the profile's matrix (axes or repeat) and are not shown")
    salts = sorted({hidden_salt_of(r) for v in variants.values() for r in v.done.values()})
    if len(salts) > 1:
        from coreset_bench.salt import salt_id

        warnings.append(
            f"cells of {len(salts)} hidden-data salts ({', '.join(salt_id(s) for s in salts)}): their generated data differ, "
            "so comparisons pair only cells of the same salt (rerun with one --hidden-salt to compare them all)"
        )
    vlist = sorted(variants.values(), key=lambda v: (v.method, version_key(v.version), v.key[2]))
    ranges = metric_ranges(track, warnings)
    for v in vlist:
        v.ranges = ranges
    _labels(vlist)
    baseline = suite_baseline(track, vlist, primary, warnings)
    # secondary metrics: the track's, then the other metrics it declares a direction for, each
    # shown only when some run reports it
    wanted = [m for m in (*track.secondary_metrics, *directions) if m != primary]
    secondary = [m for m in dict.fromkeys(wanted) if any(v.values(m) for v in vlist)]
    # units are the track's declarations only (a correlation in [0, 1] is never shown in %)
    units = metric_units(track, warnings)
    fraction_metrics = {m for m in [primary, *secondary] if units.get(m, "") in PERCENT_UNITS}
    extra = sorted({p for v in vlist for p in v.points} - {point_key(ap) for ap in profile.axis_points()})
    col_axis, layout = profile_layout(profile, [json.loads(p) for p in extra])
    all_points = {p for v in vlist for p in v.points}
    groups = {p: _test_group(p) for p in all_points}
    chance = metric_chance(track)
    floor_what, floor_text = "", ""
    if primary in chance:  # the track's declared no-skill value (an AUC of 0.5, a correlation of 0)
        floors = dict.fromkeys(all_points, chance[primary])
        floor_what = FLOOR_CHANCE
        floor_text = f"{chance[primary] * 100:g} %" if primary in fraction_metrics else f"{chance[primary]:g}"
    else:
        floors = _floors(vlist) if _is_accuracy(primary) else {}
        floor_what = FLOOR_CONSTANT if floors else ""
    tables: list[Table] = []
    args = (repeats, primary, direction, secondary, baseline)
    fl = {"groups": groups, "floors": floors, "floor_what": floor_what or FLOOR_CONSTANT, "floor_text": floor_text}
    for setting, cols in layout:
        title = _setting_title(setting) or profile.short
        tables.append(build_table(title, _slug(_setting_label(setting)), "setting", cols, vlist, *args, setting=setting, **fl))
    if len(layout) > 1:
        cols = [Column(_setting_label(s), [p for c in cs for p in c.points], dict(s), _setting_title(s)) for s, cs in layout]
        rank = [p for _, cs in layout for c in cs if not c.extra for p in c.points]
        overall = build_table("Overall", "overall", "overall", cols, vlist, *args, rank_points=rank, **fl)
        rank_overall(overall, tables, repeats, primary, direction, groups)
        tables.insert(0, overall)
    return Board(track, profile, vlist, baseline, tables, col_axis, primary, direction, secondary, fraction_metrics, warnings, ranges, units, floor_what)
