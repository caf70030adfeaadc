"""The ranking model of one track profile: rows, columns, statistics, coverage, ties.

Design of a board (one per track + profile):

* A *row* is one method variant: (method name, method version, parameters).
* Axes other than the seed are split into the *column axis* (``budget`` when the profile has
  one) and the *setting* axes (dataset, architecture, training recipe, ...). Each setting gets a
  table whose columns are the budgets: the primary metric at each budget, mean ± 95 % CI over
  seeds, as coreset papers print it. When a profile has more than one setting, an *overall* table
  comes first, whose columns are the settings (each the mean over its budgets).
* A row's *score* is the mean of the primary metric over all of the table's axis points, taken
  per repeat and then t-interval'd over repeats; its *gain* is the same over paired differences
  to the track's baseline method (same axes and repeat, hence the same seed).
* A row is *ranked* only when it covers every axis point of the table (so its score averages the
  same matrix as the others) and every expected cell is done. Rows that run on part of the matrix
  by design (e.g. full-data training at budget 1.0) are shown as *reference* rows; rows with
  missing cells are marked *incomplete*, with their coverage; neither is ranked or compared to
  the leader, and no average of theirs is computed over cells that are not there.
* The leader is the ranked row with the best score; a ranked row whose score interval overlaps
  the leader's is *tied with the leader*.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from coreset_bench import registry as plugins
from coreset_bench.tracks.base import Profile, Track

from . import stats
from .data import point_key, variant_key
from .stats import Interval

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
    status: str  # "ranked" | "reference" | "incomplete"
    note: str = ""
    rank: int | None = None
    leader: bool = False
    tied: bool = False
    baseline: bool = False


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

    @property
    def main(self) -> Table:
        return self.tables[0]


def method_stand_in(track: Track, name: str, version: str, params: Mapping[str, Any]) -> Any:
    """The installed method (with these params) when its version matches, else a plain stand-in.

    ``Track.cells`` and ``Track.applicable`` need a method object; results of a method that is
    not installed here (an entry from elsewhere) still get the right matrix from a stand-in.
    """
    try:
        installed = plugins.method(name)
    except LookupError:
        installed = None
    if installed is not None and str(installed.version) == str(version):
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
        cols.append(stats.mean_over_points(vals, cp, repeats))
        complete.append(all((p, r) in vals for p in cp for r in repeats if (p, r) in exp))
        gains.append(stats.paired_gain(vals, base_vals, cp, repeats, direction) if base_vals is not None else None)
    full_matrix = bool(rank_points) and exp_point_set.issuperset(rank_points)
    # a row on the whole matrix is scored over the matrix; a reference row over its own points
    score_points = list(rank_points) if full_matrix else exp_points
    score = stats.mean_over_points(vals, score_points, repeats)
    gain = stats.paired_gain(vals, base_vals, score_points, repeats, direction) if base_vals is not None else None
    sec = {m: stats.mean_over_points(v.values(m), score_points, repeats) for m in secondary}
    done_recs = [v.done[k] for k in done_keys]
    sel = _mean(r["timings"]["selection_s"] for r in done_recs if "selection_s" in r["timings"])
    tot = _mean(r["timings"]["total_s"] for r in done_recs if "total_s" in r["timings"])
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
        realized_ratio=realized,
        realized_short=short,
        done=len(done_keys),
        expected=len(exp),
        ranked=status == "ranked" and score is not None,
        status=status,
        note=note,
        baseline=baseline is v,
    )


def _order(rows: list[Row], direction: str) -> list[Row]:
    sign = -1.0 if direction == "max" else 1.0
    ranked = sorted((r for r in rows if r.ranked), key=lambda r: (sign * r.score.mean, r.variant.label))  # type: ignore[union-attr]
    others = sorted(
        (r for r in rows if not r.ranked),
        key=lambda r: (r.status != "reference", -(r.done / r.expected if r.expected else 0.0), r.variant.label),
    )
    # keys in ranking order, so that the leader stats picks is the first ranked row
    lead, tied = stats.ties_with_leader({f"{i:08d}": r.score for i, r in enumerate(ranked)}, direction)
    for i, r in enumerate(ranked):
        r.rank = i + 1
        r.leader = f"{i:08d}" == lead
        r.tied = f"{i:08d}" in tied
    return ranked + others


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
) -> Table:
    """A ranking table; ``rank_points`` defaults to the points of its non-extra columns."""
    points = [p for c in columns for p in c.points]
    ranked_on = list(rank_points) if rank_points is not None else [p for c in columns if not c.extra for p in c.points]
    rows = [_row(v, columns, points, ranked_on, repeats, primary, direction, secondary, baseline) for v in variants]
    rows = [r for r in rows if r.expected > 0]
    return Table(title, slug, columns, points, _order(rows, direction), kind, setting or {}, ranked_on)


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
    vlist = sorted(variants.values(), key=lambda v: (v.method, v.version, v.key[2]))
    _labels(vlist)
    baseline = None
    if track.baseline_method:
        cands = [v for v in vlist if v.method == track.baseline_method]
        if cands:
            baseline = max(cands, key=lambda v: (len(v.values(primary)), v.version))
    # secondary metrics: the track's, then the other metrics it declares a direction for, each
    # shown only when some run reports it
    wanted = [m for m in (*track.secondary_metrics, *directions) if m != primary]
    secondary = [m for m in dict.fromkeys(wanted) if any(v.values(m) for v in vlist)]
    fraction_metrics = set()
    for m in [primary, *secondary]:
        seen = [x for v in vlist for x in v.values(m).values()]
        if seen and all(0.0 <= x <= 1.0 for x in seen):
            fraction_metrics.add(m)
    extra = sorted({p for v in vlist for p in v.points} - {point_key(ap) for ap in profile.axis_points()})
    col_axis, layout = profile_layout(profile, [json.loads(p) for p in extra])
    tables: list[Table] = []
    args = (repeats, primary, direction, secondary, baseline)
    if len(layout) > 1:
        cols = [Column(_setting_label(s), [p for c in cs for p in c.points], dict(s), _setting_title(s)) for s, cs in layout]
        rank = [p for _, cs in layout for c in cs if not c.extra for p in c.points]
        tables.append(build_table("Overall", "overall", "overall", cols, vlist, *args, rank_points=rank))
    for setting, cols in layout:
        title = _setting_title(setting) or profile.short
        tables.append(build_table(title, _slug(_setting_label(setting)), "setting", cols, vlist, *args, setting=setting))
    return Board(track, profile, vlist, baseline, tables, col_axis, primary, direction, secondary, fraction_metrics, warnings)
