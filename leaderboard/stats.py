"""Statistics of the leaderboard: intervals, paired comparisons with the leader, ties, ranks.

This module is the one place that defines what the board's numbers mean.

Intervals (95 %, ``CONFIDENCE``)
--------------------------------
* **Paired hierarchical bootstrap** (``bootstrap_mean``, ``paired_bootstrap``), used whenever
  every cell involved stores per-test-point correctness (``info["per_point"][metric]``: ``n``
  and the little-endian ``np.packbits`` of the 0/1 vector, ``decode_bits``). One replicate
  resamples the repeats (seeds) with replacement, then, within each resampled repeat, the test
  points with replacement (drawn exactly as multinomial counts over the distinct values, which is
  the same distribution as resampling indices), and recomputes the statistic: the mean over
  repeats of the mean over the table's axis points of the mean over test points. Test points of
  one repeat are resampled once per *group* of axis points (the points of one dataset), so a
  test point keeps one weight across the budgets and recipes it was scored at; a group whose
  points hold different numbers of test points falls back to the t-interval below. For a
  comparison the vectors are the per-point differences ``a − b`` of two methods at the same
  (axes, repeat) — the track scores the same test points in the same order for every method
  there, so the comparison is paired. ``BOOTSTRAP_B`` = 2000 replicates, fixed seed
  ``BOOTSTRAP_SEED`` (deterministic), **percentile method**: the interval is the 2.5th and 97.5th
  percentiles of the replicates (asymmetric in general). The centre is the observed statistic.
* **Fallback t-interval** (``seed_interval``), for cells without per-point data (older entries):
  mean ± t_{n-1, 0.975} · s / sqrt(n) over the per-repeat values. It is *undefined*
  (``half_width`` None, shown as "interval undefined") when n < ``MIN_SEEDS`` (3) or the width is
  0: a zero-width interval from equal per-seed values is not exactness, it is too little data.
  ``t_interval`` is the plain formula (entries' per-point aggregates use it as is: their
  ``ci95`` is the raw half-width, an integrity check recomputed on load, never clipped and
  never shown; the board recomputes its intervals from the cells).
* A bootstrap interval of width 0 (every resampled value equal, e.g. two methods right and wrong
  on exactly the same test points) is undefined as well.
* Each defined interval carries the **standard error** of its mean (``Interval.se``): the
  standard deviation of the bootstrap replicates, or s / sqrt(n) of the t-interval. Claim cards
  (``coreset_bench.claims``) read the minimum detectable effect, 2.8 × SE, from it.

Bounded and 0/1 metrics (``MetricRange``, declared by the track: ``Track.metric_bounds``,
``Track.proportion_metrics``; a metric it does not declare is unbounded and nothing changes)
-------------------------------------------------------------------------------------------------
* A mean of a **bounded** metric (an accuracy in [0, 1], seconds >= 0) gets its interval
  **clipped** to the metric's range (``clip``): the t-interval over 3 seeds of accuracies near
  100 % (e.g. 95.5 ± 4.5 %) is shown as [91.0, 100.0], not [91.0, 100.0x]. The t-interval is
  clipped, **not re-derived** (no logit or Wilson transform): inside the range it is the same
  interval, and the clipped part held no possible value. A percentile bootstrap of values in the
  range already lies in it. ``Interval.clipped`` records that clipping happened.
* A **paired difference** of a bounded metric is not bounded by the metric's range: a difference
  of two values in [lo, hi] lies in [−(hi − lo), hi − lo] (of two accuracies: [−1, 1]), so gains
  and comparisons with the leader are clipped to that (``MetricRange.difference``); a metric with
  an open side (``idle_saving`` <= 1) has unbounded differences.
* A **0/1 metric** (one yes/no per cell, e.g. the pooling track's ``slo_met``) gets a
  **Clopper-Pearson** interval for a proportion over its cells (``proportion_interval``): k
  successes in N = points × repeats cells (the mean over points and repeats is exactly k/N). A
  t-interval over three 0/1 seed means is ±143 % wide and centred where no value can lie.
  Clopper-Pearson (the exact binomial interval: Beta quantiles) rather than Wilson because
  board cells are few (N ~ 3-12): Clopper-Pearson keeps coverage >= 95 % at every true rate
  and every N, where Wilson's coverage dips below nominal near 0 and 1 at small N (Brown, Cai &
  DasGupta, 2001) — exactly where SLO rates live — and a board should err wide rather than claim
  a difference. It is never of width 0 (k = 0 gives [0, 1 − 0.025^(1/N)]). Cells are treated as
  independent trials: points with different true rates make the count *less* dispersed than a
  binomial (conservative), while points that share a seed's trace are correlated (not
  modelled). Cells whose values are not all 0 or 1 fall back to the clipped interval above.
  A paired difference of a 0/1 metric uses the clipped fallback over repeats, in [−1, 1].

Definitions
-----------
* ``repeat_means(values, points, repeats)``: per repeat, the mean of a metric over a set of axis
  points; a repeat counts only when every point has a value at that repeat.
* *Gain* over the baseline: paired difference (method − baseline, oriented so that positive is
  better), per repeat and point, with the intervals above.
* *Leader*: the best mean among the table's ranked rows. A ranked row is complete over the
  table's matrix and has no flagged cell (``info["flags"]``: degenerate model, e.g. a class
  missing from the subset or never predicted); flagged rows are shown, marked, and never lead.
* *Tied with the leader*: the paired interval of (leader − row) contains 0, or is undefined (no
  difference is established). It is a paired comparison with the leader, never interval overlap.
* Several settings (e.g. standard and TRADES training) are never averaged into one score: each
  setting is ranked on its own, and the overall table orders rows by their *mean rank* over the
  settings (``mean_ranks``); a row is tied with the overall leader when it is tied with it in
  every setting.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from scipy import stats as _sps

CONFIDENCE = 0.95
MIN_SEEDS = 3  # fewer seeds: the fallback t-interval is undefined
BOOTSTRAP_B = 2000
BOOTSTRAP_SEED = 20_261_129
MAX_POINTS = 10_000_000  # largest per-point vector accepted (test points of one cell)


@dataclass(frozen=True)
class Interval:
    """A mean with its 95 % interval over ``n`` repeats.

    ``half_width`` is set for a symmetric t-interval; ``lo``/``hi`` for a percentile bootstrap
    interval. Neither set: the interval is undefined (``reason`` says why).
    """

    mean: float
    half_width: float | None
    n: int
    lo: float | None = None
    hi: float | None = None
    method: str = "t"  # "t" | "bootstrap" | "proportion"
    reason: str = ""
    points: int = 0  # test points per repeat behind a bootstrap interval
    #: the interval was cut to the metric's declared range (``clip``); ``half_width`` keeps the
    #: unclipped t half-width, ``lo``/``hi`` the shown ends
    clipped: bool = False
    #: standard error of the mean: the standard deviation of the bootstrap replicates, or
    #: s / sqrt(n) of the t-interval (None where the interval is undefined or a proportion's);
    #: claim cards turn it into a minimum detectable effect (``coreset_bench.claims``)
    se: float | None = None

    @property
    def low(self) -> float | None:
        if self.lo is not None:
            return self.lo
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        if self.hi is not None:
            return self.hi
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def defined(self) -> bool:
        lo, hi = self.low, self.high
        return lo is not None and hi is not None and hi > lo

    def bounds(self) -> tuple[float, float]:
        """(low, high), a point when the interval is undefined."""
        lo, hi = self.low, self.high
        if lo is None or hi is None:
            return (self.mean, self.mean)
        return (lo, hi)

    def contains(self, x: float) -> bool:
        lo, hi = self.bounds()
        return lo <= x <= hi

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "ci95": self.half_width, "n": self.n}


@dataclass(frozen=True)
class MetricRange:
    """The values a metric can take: ``low`` <= x <= ``high`` (None: open on that side), and
    whether it is a 0/1 value per cell (``proportion``, which implies [0, 1])."""

    low: float | None = None
    high: float | None = None
    proportion: bool = False

    @property
    def bounded(self) -> bool:
        return self.low is not None or self.high is not None

    def difference(self) -> MetricRange:
        """The range of a paired difference a − b of two values in this range: [−w, w] with
        w = high − low when both ends are finite, else unbounded (never the metric's own range)."""
        if self.low is None or self.high is None:
            return UNBOUNDED
        w = self.high - self.low
        return MetricRange(-w, w)

    def text(self, scale: float = 1.0) -> str:
        lo = "(−∞" if self.low is None else f"[{self.low * scale:g}"
        hi = "∞)" if self.high is None else f"{self.high * scale:g}]"
        return f"{lo}, {hi}"


UNBOUNDED = MetricRange()
PROPORTION = MetricRange(0.0, 1.0, proportion=True)


def clip(iv: Interval | None, span: MetricRange) -> Interval | None:
    """``iv`` cut to ``span`` (the t-interval clipped, not re-derived; ``Interval.clipped``).

    Undefined intervals, unbounded ranges and intervals already inside are returned as they are;
    so is an interval whose mean lies outside the range (values that break the declaration are
    shown as measured, never given an interval that excludes their own mean).
    """
    if iv is None or not iv.defined or not span.bounded:
        return iv
    lo, hi = iv.bounds()
    new_lo = lo if span.low is None else max(lo, span.low)
    new_hi = hi if span.high is None else min(hi, span.high)
    if new_lo == lo and new_hi == hi:
        return iv
    if not new_lo <= iv.mean <= new_hi or not new_hi > new_lo:
        return iv
    return replace(iv, lo=new_lo, hi=new_hi, clipped=True)


def proportion_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion, k successes in n trials:
    [B(α/2; k, n − k + 1), B(1 − α/2; k + 1, n − k)] with B the Beta quantile, 0 at k = 0 and 1
    at k = n (Clopper & Pearson, Biometrika 1934)."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    a = 1.0 - confidence
    lo = 0.0 if k == 0 else float(_sps.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(_sps.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def proportion_mean(values: CellValues, points: Sequence[Point], repeats: Iterable[int]) -> Interval | None:
    """Mean of a 0/1 metric over ``points`` and repeats (repeats covering every point) with its
    Clopper-Pearson interval over those cells (``n`` = cells). None when no repeat covers every
    point or some value is not exactly 0 or 1 (the caller falls back to ``bootstrap_mean``)."""
    per = repeat_means(values, points, repeats)
    if not per:
        return None
    cells = [values[(p, r)] for r in per for p in points]
    if any(v not in (0.0, 1.0) for v in cells):
        return None
    k, n = int(sum(cells)), len(cells)
    lo, hi = proportion_interval(k, n)
    return Interval(math.fsum(per.values()) / len(per), None, n, lo=lo, hi=hi, method="proportion")


@lru_cache(maxsize=1024)
def t_critical(df: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided critical value of Student's t with ``df`` degrees of freedom."""
    return float(_sps.t.ppf(0.5 + confidence / 2.0, df))


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval | None:
    """Mean and t-interval half-width of ``values``; None for no values (plain formula)."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return None
    mean = math.fsum(vals) / n
    if n < 2:
        return Interval(mean, None, 1)
    var = math.fsum((v - mean) ** 2 for v in vals) / (n - 1)
    se = math.sqrt(var / n)
    half = t_critical(n - 1, confidence) * se
    return Interval(mean, half, n, se=se)


def seed_interval(values: Iterable[float], span: MetricRange = UNBOUNDED) -> Interval | None:
    """The fallback t-interval over seeds, undefined when n < ``MIN_SEEDS`` or its width is 0;
    clipped to ``span`` (the range of the values: for differences, ``MetricRange.difference``)."""
    iv = t_interval(values)
    if iv is None:
        return None
    if iv.n < MIN_SEEDS:
        return Interval(iv.mean, None, iv.n, reason=f"n={iv.n} seeds is too few for an interval")
    if iv.half_width is None or not math.isfinite(iv.half_width) or _negligible(iv.half_width, iv.mean):
        return Interval(iv.mean, None, iv.n, reason=f"zero width over n={iv.n} seeds: equal values are not exactness")
    return clip(iv, span)


def _negligible(width: float, mean: float) -> bool:
    """A width that is zero up to floating-point rounding (equal values summed in another order)."""
    return width <= 1e-12 + 1e-9 * abs(mean)


Point = Hashable  # an axis point (canonical key of the non-seed axes)
CellValues = Mapping[tuple[Point, int], float]  # (axis point, repeat) -> value
CellBits = Mapping[tuple[Point, int], np.ndarray]  # (axis point, repeat) -> per-test-point values


def repeat_means(values: CellValues, points: Sequence[Point], repeats: Iterable[int]) -> dict[int, float]:
    """Per repeat, the mean over ``points`` of ``values``; repeats missing any point are left out."""
    out: dict[int, float] = {}
    k = len(points)
    if k == 0:
        return out
    for r in repeats:
        acc = 0.0
        for p in points:
            v = values.get((p, r))
            if v is None:
                break
            acc += v
        else:
            out[r] = acc / k
    return out


def paired_differences(
    method: CellValues, baseline: CellValues, points: Sequence[Point], repeats: Iterable[int], direction: str = "max"
) -> dict[int, float]:
    """Per repeat, mean over ``points`` of the oriented difference method − baseline."""
    sign = 1.0 if direction == "max" else -1.0
    diffs = {k: sign * (v - baseline[k]) for k, v in method.items() if k in baseline}
    return repeat_means(diffs, points, repeats)


# ---- per-point data and the hierarchical bootstrap -------------------------------------------


def decode_bits(n: int, hexbits: str) -> np.ndarray:
    """The 0/1 vector of ``n`` test points from ``np.packbits(..., bitorder="little").hex()``.

    ``ValueError`` when the length is wrong or padding bits are set.
    """
    if not isinstance(n, int) or isinstance(n, bool) or not 0 < n <= MAX_POINTS:
        raise ValueError(f"n must be an integer in 1..{MAX_POINTS}")
    if not isinstance(hexbits, str) or len(hexbits) != 2 * ((n + 7) // 8):
        raise ValueError(f"bits must be {2 * ((n + 7) // 8)} hex digits for n={n}")
    raw = np.frombuffer(bytes.fromhex(hexbits), dtype=np.uint8)
    bits = np.unpackbits(raw, bitorder="little")
    if bits[n:].any():
        raise ValueError("padding bits past n are set")
    return bits[:n].astype(np.float64)


def hierarchical_bootstrap(blocks: Sequence[Sequence[tuple[np.ndarray, float]]], b: int = BOOTSTRAP_B, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``b`` bootstrap replicates of mean_r Σ_g w_g · mean(v_{r,g}).

    ``blocks[r]`` holds, for repeat r, the (vector over test points, weight) of each group.
    Repeats are resampled with replacement, then each group's test points within every
    resampled repeat (as multinomial counts over the vector's distinct values).
    """
    n_rep = len(blocks)
    rng = np.random.default_rng(seed)
    rep = rng.integers(0, n_rep, size=(b, n_rep))
    out = np.zeros((b, n_rep))
    for r, groups in enumerate(blocks):
        mask = rep == r
        c = int(mask.sum())
        if c == 0:
            continue
        acc = np.zeros(c)
        for vec, w in groups:
            vals, counts = np.unique(vec, return_counts=True)
            n = int(vec.size)
            draws = rng.multinomial(n, counts / n, size=c)
            acc += w * (draws @ vals) / n
        out[mask] = acc
    return out.mean(axis=1)


def _blocks(
    cells: CellBits, points: Sequence[Point], repeats: Sequence[int], groups: Mapping[Point, Hashable]
) -> list[list[tuple[np.ndarray, float]]] | None:
    """Per repeat, the group vectors (mean over the group's points); None when they do not align."""
    k = len(points)
    order: dict[Hashable, list[Point]] = {}
    for p in points:
        order.setdefault(groups.get(p, p), []).append(p)
    out = []
    for r in repeats:
        blocks = []
        for pts in order.values():
            vecs = [cells[(p, r)] for p in pts]
            if len({v.size for v in vecs}) != 1:
                return None
            blocks.append((np.mean(vecs, axis=0), len(pts) / k))
        out.append(blocks)
    return out


def _percentile_interval(mean: float, reps: np.ndarray, n: int, points: int) -> Interval:
    lo, hi = (float(x) for x in np.percentile(reps, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)]))
    if not hi > lo or _negligible(hi - lo, mean):
        return Interval(mean, None, n, method="bootstrap", reason="zero width: the resampled values are all equal", points=points)
    return Interval(mean, None, n, lo=lo, hi=hi, method="bootstrap", points=points, se=float(np.std(reps, ddof=1)))


def bootstrap_mean(
    values: CellValues,
    bits: CellBits,
    points: Sequence[Point],
    repeats: Iterable[int],
    groups: Mapping[Point, Hashable] | None = None,
    span: MetricRange = UNBOUNDED,
) -> Interval | None:
    """Mean over ``points`` and repeats with its bootstrap interval; the fallback t-interval when
    some cell it uses has no per-point data. None when no repeat covers every point.

    ``span``: the metric's range; the interval is clipped to it, and a ``proportion`` metric whose
    cells are all 0/1 gets the Clopper-Pearson interval over its cells instead.
    """
    repeats = list(repeats)
    if span.proportion:
        iv = proportion_mean(values, points, repeats)
        if iv is not None:
            return iv
    return clip(_bootstrap_or_t(repeat_means(values, points, repeats), bits, points, groups), span)


def _bootstrap_or_t(per: Mapping[int, float], bits: CellBits, points: Sequence[Point], groups: Mapping[Point, Hashable] | None) -> Interval | None:
    """The interval of the mean of the per-repeat values ``per``: the hierarchical bootstrap over
    ``bits`` when every (point, repeat) has aligned per-point data, else the t-interval."""
    if not per:
        return None
    reps = sorted(per)
    if all((p, r) in bits for p in points for r in reps):
        blocks = _blocks(bits, points, reps, groups or {})
        if blocks is not None:
            mean = math.fsum(per.values()) / len(per)
            return _percentile_interval(mean, hierarchical_bootstrap(blocks), len(reps), max(v.size for bl in blocks for v, _ in bl))
    return seed_interval(per.values())


def paired_bootstrap(
    method: CellValues,
    baseline: CellValues,
    method_bits: CellBits,
    baseline_bits: CellBits,
    points: Sequence[Point],
    repeats: Iterable[int],
    direction: str = "max",
    groups: Mapping[Point, Hashable] | None = None,
    span: MetricRange = UNBOUNDED,
) -> Interval | None:
    """Gain of ``method`` over ``baseline`` paired by (axis point, repeat, test point).

    The paired hierarchical bootstrap where both sides have per-point data of equal length at
    every cell used, else the fallback t-interval over the per-repeat differences; ``span`` is
    the *metric's* range, and the difference is clipped to ``span.difference()`` (two accuracies
    differ by at most 1 either way), never to the metric's own range.
    """
    per = paired_differences(method, baseline, points, repeats, direction)
    sign = 1.0 if direction == "max" else -1.0
    keys = [(p, r) for p in points for r in per]
    diffs = {k: sign * (method_bits[k] - baseline_bits[k]) for k in keys if k in method_bits and k in baseline_bits and method_bits[k].size == baseline_bits[k].size}
    return clip(_bootstrap_or_t(per, diffs, points, groups), span.difference())


def paired_gain(
    method: CellValues, baseline: CellValues, points: Sequence[Point], repeats: Iterable[int], direction: str = "max", span: MetricRange = UNBOUNDED
) -> Interval | None:
    """Gain of ``method`` over ``baseline`` without per-point data: the fallback t-interval."""
    return paired_bootstrap(method, baseline, {}, {}, points, repeats, direction, span=span)


def mean_over_points(values: CellValues, points: Sequence[Point], repeats: Iterable[int], span: MetricRange = UNBOUNDED) -> Interval | None:
    """Fallback t-interval over repeats of the per-repeat mean over ``points`` (``span``: as in
    ``bootstrap_mean``)."""
    return bootstrap_mean(values, {}, points, repeats, span=span)


def is_tied(diff: Interval | None) -> bool:
    """A row is tied with the leader when the interval of (leader − row) contains 0 or is undefined."""
    return diff is None or not diff.defined or diff.contains(0.0)


def is_better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "max" else a < b


def mean_ranks(scores: Mapping[str, Sequence[float]], direction: str = "max") -> dict[str, float]:
    """Mean over settings of each name's rank (1 = best; equal means share the average rank).

    ``scores[name][s]`` is the name's mean in setting s; every name has every setting.
    """
    names = sorted(scores)
    if not names:
        return {}
    n_set = len(scores[names[0]])
    total = dict.fromkeys(names, 0.0)
    sign = -1.0 if direction == "max" else 1.0
    for s in range(n_set):
        ranks = _sps.rankdata([sign * scores[n][s] for n in names], method="average")
        for n, rk in zip(names, ranks):
            total[n] += float(rk)
    return {n: total[n] / n_set for n in names}
