"""Claim cards from boards: the seed row, the comparator and the paired difference of a claim.

``card(claim, board)`` reads one claim (``coreset_bench.claims.Claim``) on the board of one of
its profiles and returns a ``Card``; the verdict comes from ``coreset_bench.claims.verdict``,
the one rule. Every interval here is the board's own (``stats.paired_bootstrap`` through
``Variant.paired``, ``stats.bootstrap_mean``): the paired hierarchical bootstrap over seeds and
test points where cells store per-point results, over target models where they store
per-target results, else the t-interval over seeds; the same code gives the board's gains and
its "vs leader" intervals. What a card pools is what a board table pools: the mean over the
claim's axis points (``Claim.where``) of each seed, paired by (axis point, seed, test point).

How the rows are found:

* the *seed row* and a named comparator (``Row``): the board row of that method whose
  parameters hold the row's parameters; among several, the one with the installed defaults;
* ``RANDOM``: the row of method ``random``; ``FULL``: the row of method ``full``, paired with the
  seed's cell at the same setting (every axis but ``budget``), since it runs at budget 1.0 only;
* ``BEST_NON_SEED``: among the rows that are not the seed system's (``Claim.system_methods``),
  complete on the claim's cells, unflagged and above the floor, the best by mean;
* a ``Threshold``: the seed row's mean (with its own interval) minus the fixed value.

``cards(claims, boards)`` reads every claim on every profile it names that has a board, and
says "not testable: no results" for the others; ``load_records`` gathers records from entry
directories and/or a store, as ``coreset-bench leaderboard`` does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from coreset_bench import claims as C
from coreset_bench.claims import Card, Claim, Difference, Judgement, Row, Threshold
from coreset_bench.tracks.base import Profile, Track

from . import stats
from .board import Board, Variant, _floors, _is_accuracy, _test_group, build_board
from .data import point_key, source_label
from .stats import Interval

__all__ = ["card", "cards", "load_records", "boards_from_records", "no_results_card", "claim_points", "find_row", "scale_unit"]


def _diff(iv: Interval | None, label: str = "") -> Difference | None:
    if iv is None:
        return None
    lo, hi = (iv.bounds() if iv.defined else (None, None))
    return Difference(iv.mean, lo, hi, iv.se if iv.defined else None, iv.reason, label, iv.method, iv.n)


def _matches(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return any(_matches(value, w) for w in wanted)
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)) and not isinstance(value, bool):
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    return str(value) == str(wanted)


def claim_points(claim: Claim, profile: Profile) -> tuple[list[str], list[dict[str, Any]]]:
    """The profile's axis points the claim is about (``Claim.where``), as keys and axis dicts."""
    aps = [ap for ap in profile.axis_points() if all(a in ap and _matches(ap[a], w) for a, w in claim.where.items())]
    return [point_key(ap) for ap in aps], aps


def _installed_defaults(method: str) -> dict[str, Any] | None:
    from coreset_bench import registry

    try:
        return dict(registry.method(method).params)
    except LookupError:
        return None


def find_row(board: Board, row: Row) -> tuple[Variant | None, str]:
    """The board row ``row`` names, or (None, why not)."""
    cands = [v for v in board.variants if v.method == row.method and all(k in v.params and v.params[k] == x for k, x in row.params.items())]
    if not cands:
        have = sorted({v.label for v in board.variants if v.method == row.method})
        extra = f" (its rows there: {', '.join(have)})" if have else ""
        return None, f"no results of {row.label()} on {board.profile.id}{extra}"
    published = [v for v in cands if not source_label(v.version)]
    if published:  # a claim is read on the published rows; a local or reproduction row only without them
        cands = published
    if len(cands) == 1:
        return cands[0], ""
    defaults = _installed_defaults(row.method)
    if defaults is not None:
        want = {**defaults, **dict(row.params)}
        exact = [v for v in cands if v.params == want]
        if len(exact) == 1:
            return exact[0], ""
    return None, f"{row.label()} is ambiguous on {board.profile.id}: rows {', '.join(sorted(v.label for v in cands))}; name the parameter that picks one"


def _flags(v: Variant, keys: Iterable[tuple[str, int]], ignore: Sequence[str]) -> dict[str, int]:
    return {f: n for f, n in v.flags(keys).items() if f not in ignore}


def _flag_text(flags: Mapping[str, int]) -> str:
    return ", ".join(f"{f} ({n} cell{'s' if n != 1 else ''})" for f, n in sorted(flags.items()))


class _Reader:
    """The claim's cells on one board: points, repeats, test groups, floor."""

    def __init__(self, claim: Claim, board: Board) -> None:
        self.claim, self.board = claim, board
        self.metric = claim.metric
        self.direction = claim.direction or dict(board.track.metric_directions).get(claim.metric, "max")
        self.points, self.axes = claim_points(claim, board.profile)
        self.repeats = [int(r) for r in board.profile.seeds]
        self.groups = {p: _test_group(p) for v in board.variants for p in v.points}
        self.groups.update({p: _test_group(p) for p in self.points})
        self.span = board.ranges.get(self.metric, stats.UNBOUNDED)
        self.floor: float | None = None
        if _is_accuracy(self.metric) and self.direction == "max":
            fl = _floors(board.variants)
            if self.points and all(p in fl for p in self.points):
                self.floor = sum(fl[p] for p in self.points) / len(self.points)

    def cells(self, v: Variant, points: Sequence[str] | None = None) -> list[tuple[str, int]]:
        pts = set(self.points if points is None else points)
        return sorted(k for k in v.expected if k[0] in pts)

    def incomplete(self, v: Variant, points: Sequence[str] | None = None) -> str:
        """Why ``v`` does not cover the claim's cells (empty when it does)."""
        pts = self.points if points is None else points
        exp = self.cells(v, pts)
        missing_points = [p for p in pts if not any(k[0] == p for k in exp)]
        if missing_points:
            return f"{v.label} does not run at {len(missing_points)} of the claim's {len(pts)} axis points"
        vals = v.values(self.metric)
        done = [k for k in exp if k in vals]
        if len(done) < len(exp):
            return f"{v.label} has {len(done)} of its {len(exp)} cells of the claim's setting done with {self.metric}"
        return ""

    def interval(self, v: Variant, points: Sequence[str] | None = None) -> Interval | None:
        return v.interval(self.metric, list(self.points if points is None else points), self.repeats, self.groups)

    def at_floor(self, v: Variant) -> bool:
        if self.floor is None:
            return False
        iv = self.interval(v)
        if iv is None:
            return False
        low = iv.low if iv.defined else iv.mean
        return low is not None and low <= self.floor + 1e-12


def scale_unit(claim: Claim, track: Track | None) -> tuple[float, str]:
    """(display factor, unit) of the claim's differences: points (× 100) for a metric the track
    bounds within [0, 1] (or ``Claim.percent``), else the metric's own unit."""
    percent = claim.percent
    if percent is None:
        bounds = dict(getattr(track, "metric_bounds", None) or {}).get(claim.metric)
        props = tuple(getattr(track, "proportion_metrics", None) or ())
        try:
            lo, hi = bounds if bounds is not None else (None, None)
        except (TypeError, ValueError):
            lo = hi = None
        percent = claim.metric in props or (lo is not None and hi is not None and float(lo) >= 0.0 and float(hi) <= 1.0)
    return (100.0, "points") if percent else (1.0, "")


def _base(claim: Claim, board: Board) -> Card:
    scale, unit = scale_unit(claim, board.track)
    r_dir = claim.direction or dict(board.track.metric_directions).get(claim.metric, "max")
    return Card(claim, board.profile.id, Judgement(C.NOT_TESTABLE, ""), seed_label=claim.seed.label(),
                comparator_label=C.comparator_label(claim.comparator), direction=r_dir, scale=scale, unit=unit,
                notes=[claim.note] if claim.note else [])


def _untestable(c: Card, reason: str) -> Card:
    c.judgement = C.verdict(c.claim.kind, None, not_testable=reason)
    return c


def no_results_card(claim: Claim, profile_id: str, track: Track | None = None) -> Card:
    """The card of a profile with no results (or not installed here)."""
    scale, unit = scale_unit(claim, track)
    c = Card(claim, profile_id, Judgement(C.NOT_TESTABLE, ""), seed_label=claim.seed.label(), comparator_label=C.comparator_label(claim.comparator),
             scale=scale, unit=unit, notes=[claim.note] if claim.note else [])
    return _untestable(c, f"no results of {profile_id}")


def card(claim: Claim, board: Board) -> Card:
    """The card of ``claim`` read on ``board`` (one of the claim's profiles)."""
    c = _base(claim, board)
    rd = _Reader(claim, board)
    if claim.track != board.track.name:
        return _untestable(c, f"the claim is about track {claim.track!r}, the board is of {board.track.name!r}")
    if not rd.points:
        return _untestable(c, f"no axis point of {board.profile.id} matches {claim.where}")
    if claim.kind == C.MONOTONE and claim.trend_axis not in board.profile.axes:
        return _untestable(c, f"{board.profile.id} has no {claim.trend_axis!r} axis")
    seed, why = find_row(board, claim.seed)
    if seed is None:
        return _untestable(c, why)
    c.seed_label = seed.label
    problem = rd.incomplete(seed)
    if problem:
        return _untestable(c, "the seed row is incomplete: " + problem)
    c.cells = len(rd.cells(seed))
    flags = _flags(seed, rd.cells(seed), claim.subject_flags)
    if flags:
        return _untestable(c, f"the seed row {seed.label} is flagged: {_flag_text(flags)}")
    if rd.at_floor(seed):
        assert rd.floor is not None
        return _untestable(c, f"the seed row {seed.label} is at the constant-classifier floor ({rd.floor * c.scale:.2f}{' %' if c.scale == 100.0 else ''}) with 95 % confidence")
    if claim.kind == C.MONOTONE:
        return _trend(c, rd, seed)
    comp = claim.comparator
    if isinstance(comp, Threshold):
        iv = rd.interval(seed)
        if iv is None:
            return _untestable(c, "no seed covers every axis point of the claim")
        sign = 1.0 if rd.direction == "max" else -1.0
        lo, hi = iv.bounds() if iv.defined else (None, None)
        ends = sorted((sign * (lo - comp.value), sign * (hi - comp.value))) if lo is not None and hi is not None else [None, None]
        d = Difference(sign * (iv.mean - comp.value), ends[0], ends[1], iv.se if iv.defined else None, iv.reason, method=iv.method, n=iv.n)
        return _judge(c, d)
    other, why = _comparator(rd, seed, comp)
    if other is None:
        return _untestable(c, why)
    c.comparator_label = other.label if not comp == C.BEST_NON_SEED else f"{other.label} (best non-seed row)"
    if comp == C.FULL:
        d = _paired_full(rd, seed, other)
    else:
        problem = rd.incomplete(other)
        if problem:
            return _untestable(c, "the comparator is incomplete: " + problem)
        d = _diff(seed.paired(other, rd.metric, rd.points, rd.repeats, rd.direction, rd.groups))
    if d is None:
        return _untestable(c, f"no seed has both {seed.label} and {other.label} at every axis point of the claim")
    oflags = other.flags(rd.cells(other) if comp != C.FULL else sorted(other.done))
    if oflags:
        c.notes.append(f"the comparator {other.label} is flagged: {_flag_text(oflags)}")
    return _judge(c, d)


def _judge(c: Card, d: Difference) -> Card:
    c.difference = d
    c.judgement = C.verdict(c.claim.kind, d, effect=c.claim.effect, margin=c.claim.margin)
    return c


def _comparator(rd: _Reader, seed: Variant, comp: Any) -> tuple[Variant | None, str]:
    board = rd.board
    if isinstance(comp, Row):
        return find_row(board, comp)
    if comp in (C.RANDOM, C.FULL):
        return find_row(board, Row(comp))
    # BEST_NON_SEED
    own = {rd.claim.seed.method, *rd.claim.system_methods}
    best: tuple[float, Variant] | None = None
    sign = 1.0 if rd.direction == "max" else -1.0
    skipped = 0
    for v in board.variants:
        if v.method in own or v is seed:
            continue
        if rd.incomplete(v) or v.flags(rd.cells(v)) or rd.at_floor(v):
            skipped += 1
            continue
        iv = rd.interval(v)
        if iv is None:
            skipped += 1
            continue
        if best is None or sign * iv.mean > sign * best[0]:
            best = (iv.mean, v)
    if best is None:
        return None, f"no other row of {board.profile.id} is complete, unflagged and above the floor at the claim's setting ({skipped} rows left out)"
    return best[1], ""


def _paired_full(rd: _Reader, seed: Variant, full: Variant) -> Difference | None:
    """seed − full, with full's cell at the same setting (every axis but the budget)."""
    by_setting: dict[str, str] = {}
    for p in full.points:
        axes = json.loads(p)
        axes.pop("budget", None)
        by_setting[point_key(axes)] = p
    values, bits = {}, {}
    fv, fb = full.values(rd.metric), full.bits(rd.metric)
    for p, ap in zip(rd.points, rd.axes):
        key = point_key({a: x for a, x in ap.items() if a != "budget"})
        fp = by_setting.get(key)
        if fp is None:
            return None
        for r in rd.repeats:
            if (fp, r) in fv:
                values[(p, r)] = fv[(fp, r)]
            if (fp, r) in fb:
                bits[(p, r)] = fb[(fp, r)]
    iv = stats.paired_bootstrap(seed.values(rd.metric), values, seed.bits(rd.metric), bits, rd.points, rd.repeats, rd.direction, rd.groups, rd.span)
    return _diff(iv)


def _trend(c: Card, rd: _Reader, seed: Variant) -> Card:
    """Consecutive-level differences along the trend axis, first to last, and saturation."""
    claim = rd.claim
    axis = claim.trend_axis
    levels = [x for x in rd.board.profile.axes[axis] if any(_matches(ap[axis], x) for ap in rd.axes)]
    if len(levels) < 2:
        return _untestable(c, f"the claim's setting has {len(levels)} level(s) of {axis}; a trend needs two")
    sign = 1.0 if claim.trend == "increasing" else -1.0
    vals, bits = seed.values(rd.metric), seed.bits(rd.metric)
    # level -> {(setting without the trend axis, repeat): value}
    lv_vals: list[dict[tuple[str, int], float]] = []
    lv_bits: list[dict[tuple[str, int], Any]] = []
    common: list[str] = []
    for x in levels:
        v_out, b_out = {}, {}
        keys = []
        for p, ap in zip(rd.points, rd.axes):
            if not _matches(ap[axis], x):
                continue
            k = point_key({a: y for a, y in ap.items() if a != axis})
            keys.append(k)
            for r in rd.repeats:
                if (p, r) in vals:
                    v_out[(k, r)] = sign * vals[(p, r)]
                if (p, r) in bits:
                    b_out[(k, r)] = sign * bits[(p, r)]
        lv_vals.append(v_out)
        lv_bits.append(b_out)
        common = keys if not common else [k for k in common if k in keys]
    groups = {k: _test_group(k) for k in common}
    span = rd.span

    def paired(a: int, b: int) -> Interval | None:
        return stats.paired_bootstrap(lv_vals[b], lv_vals[a], lv_bits[b], lv_bits[a], common, rd.repeats, "max", groups, span)

    def label(a: int, b: int) -> str:
        return f"{axis} {levels[a]} → {levels[b]}"

    steps = [_diff(paired(i, i + 1), label(i, i + 1)) for i in range(len(levels) - 1)]
    c.steps = [s for s in steps if s is not None]
    first_last = _diff(paired(0, len(levels) - 1), label(0, len(levels) - 1))
    if first_last is None:
        return _untestable(c, f"no seed covers every level of {axis}")
    saturation = None
    if claim.saturates and len(c.steps) >= 2 and len(c.steps) == len(levels) - 1:
        # step vectors: the change from level i to i + 1, paired by (setting, repeat, test point)
        def step(i: int) -> tuple[dict[Any, float], dict[Any, Any]]:
            sv = {k: lv_vals[i + 1][k] - lv_vals[i][k] for k in lv_vals[i + 1] if k in lv_vals[i]}
            sb = {k: lv_bits[i + 1][k] - lv_bits[i][k] for k in lv_bits[i + 1] if k in lv_bits[i] and lv_bits[i][k].size == lv_bits[i + 1][k].size}
            return sv, sb

        last = len(c.steps) - 1
        biggest = max(range(last), key=lambda i: c.steps[i].mean)
        (bv, bb), (lv, lb) = step(biggest), step(last)
        sat = stats.paired_bootstrap(bv, lv, bb, lb, common, rd.repeats, "max", groups, stats.UNBOUNDED)
        saturation = _diff(sat, f"({label(biggest, biggest + 1)}) − ({label(last, last + 1)})")
        if saturation is not None:
            c.notes.append(f"saturation: largest earlier step − last step = {c.num(saturation.mean, True)}"
                           + (f" [{c.num(saturation.low)}, {c.num(saturation.high)}]" if saturation.defined else " (no interval)") + c.unit_suffix())
    c.comparator_label = f"{c.seed_label} at the previous {axis}"
    c.difference = first_last
    c.judgement = C.verdict(C.MONOTONE, first_last, effect=claim.effect, steps=c.steps, saturation=saturation, saturates=claim.saturates)
    c.direction = "max" if sign > 0 else "min"
    return c


# ---- many claims, many boards -----------------------------------------------------------------


def cards(claims: Iterable[Claim], boards: Mapping[str, Board], tracks: Mapping[str, Track] | None = None) -> list[Card]:
    """Every claim read on every profile it names: from its board, else "no results"."""
    from coreset_bench import registry

    out = []
    for cl in claims:
        for pid in cl.profiles:
            b = boards.get(pid)
            if b is None:
                c = no_results_card(cl, pid, (tracks or {}).get(cl.track))
            else:
                try:
                    c = card(cl, b)
                except Exception as exc:  # noqa: BLE001 - one claim must never take down the others
                    c = _untestable(_base(cl, b), f"the card failed: {type(exc).__name__}: {exc}")
            c.declared_by = registry.claim_package(cl.id)
            out.append(c)
    # the seed systems first, in their fixed order; a system's claims in declaration order
    return sorted(out, key=lambda c: C.system_order(c.claim.system))


def boards_from_records(records: Sequence[Mapping[str, Any]], tracks: Mapping[str, Track], profiles: Iterable[str] | None = None) -> tuple[dict[str, Board], list[str]]:
    """The board of every profile in ``records`` (or only ``profiles``), with warnings."""
    want = set(profiles) if profiles is not None else None
    by_profile: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        if r.get("status") == "interrupted":
            continue
        if want is None or r["profile"] in want:
            by_profile.setdefault(r["profile"], []).append(r)
    boards: dict[str, Board] = {}
    warnings: list[str] = []
    for pid, recs in sorted(by_profile.items()):
        track = tracks.get(recs[0]["track"])
        profile = next((p for p in track.profiles() if p.id == pid), None) if track is not None else None
        if track is None or profile is None:
            warnings.append(f"{len(recs)} runs of {pid}: the track or profile is not installed here")
            continue
        try:
            boards[pid] = build_board(track, profile, recs)
        except Exception as exc:  # noqa: BLE001
            warnings.append(f"{pid}: the board failed: {type(exc).__name__}: {exc}")
    return boards, warnings


def load_records(entries_dirs: Sequence[str | Path] = (), store: Any = None, tracks: Mapping[str, Track] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Records from validated entries and/or a store, with a line per rejected entry and per
    conflict: with entries, the store's runs join as their own labelled rows
    (``data.join_source``) and never replace a published number."""
    from .data import join_source, load_store_records
    from .entries import entry_records, load_entries, one_line_error

    records: list[dict[str, Any]] = load_store_records(store) if store is not None else []
    problems: list[str] = []
    if entries_dirs:
        known = {p.id: p for t in (tracks or {}).values() for p in t.profiles()} if tracks is not None else None
        loaded = load_entries([Path(d) for d in entries_dirs], known, tracks=tracks)
        problems += [f"rejected {p}: {why}" for p, why in loaded.rejected]
        published: list[dict[str, Any]] = []
        keys: set[str] = set()
        for path, obj in loaded.accepted:
            try:
                recs = entry_records(obj, str(path))
            except Exception as exc:  # noqa: BLE001
                problems.append(f"rejected {path}: {one_line_error('could not be read', exc)}")
                continue
            fresh = [r for r in recs if r["key"] not in keys]
            keys.update(r["key"] for r in fresh)
            published.extend(fresh)
        # the store joins as its own labelled source; it never replaces a published number
        records, conflicts, _same = join_source(published, records, "local")
        problems += [f"conflict: {c}" for c in conflicts]
    return records, problems
