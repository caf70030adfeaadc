"""Seed-level statistics of the leaderboard: means with 95 % t-intervals, paired gains, ties.

Every interval here is over *repeats* (seeds), the independent replicates of the benchmark:

* ``t_interval(values)``: mean ± t_{n-1, 0.975} · s / sqrt(n) (Student's t, ``scipy.stats.t``);
  with one value the mean is reported and the interval is undefined (``half_width`` None).
* ``repeat_means(values, points, repeats)``: the per-repeat mean of a metric over a set of axis
  points (e.g. every budget of a setting). A repeat counts only when every point has a value at
  that repeat, so a mean over several points never silently averages a partial matrix.
* ``paired_gain(method, baseline, points, repeats, direction)``: per repeat, the mean over the
  points of (method − baseline) at the same axes and repeat. Two methods at the same axes and
  repeat share the cell seed (``Cell.seed``), so this is a paired comparison; the t-interval is
  over the per-repeat differences. The sign is oriented so that a positive gain is always an
  improvement (``baseline − method`` for metrics where lower is better).
* ``ties_with_leader(intervals, direction)``: the leader is the best mean; a row ties with it when
  the two intervals overlap. A row without an interval (one seed) is a point.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from scipy import stats as _sps

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided t-interval over ``n`` values (``half_width`` None when n < 2)."""

    mean: float
    half_width: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def bounds(self) -> tuple[float, float]:
        """(low, high), a point when the interval is undefined."""
        if self.half_width is None:
            return (self.mean, self.mean)
        return (self.mean - self.half_width, self.mean + self.half_width)

    def overlaps(self, other: Interval) -> bool:
        lo, hi = self.bounds()
        olo, ohi = other.bounds()
        return lo <= ohi and olo <= hi

    def as_dict(self) -> dict[str, float | int | None]:
        return {"mean": self.mean, "ci95": self.half_width, "n": self.n}


@lru_cache(maxsize=1024)
def t_critical(df: int, confidence: float = CONFIDENCE) -> float:
    """Two-sided critical value of Student's t with ``df`` degrees of freedom."""
    return float(_sps.t.ppf(0.5 + confidence / 2.0, df))


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval | None:
    """Mean and t-interval half-width of ``values``; None for no values."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return None
    mean = math.fsum(vals) / n
    if n < 2:
        return Interval(mean, None, 1)
    var = math.fsum((v - mean) ** 2 for v in vals) / (n - 1)
    half = t_critical(n - 1, confidence) * math.sqrt(var / n)
    return Interval(mean, half, n)


Point = Hashable  # an axis point (canonical key of the non-seed axes)
CellValues = Mapping[tuple[Point, int], float]  # (axis point, repeat) -> value


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


def mean_over_points(values: CellValues, points: Sequence[Point], repeats: Iterable[int]) -> Interval | None:
    """t-interval over repeats of the per-repeat mean over ``points``."""
    return t_interval(repeat_means(values, points, repeats).values())


def paired_differences(
    method: CellValues, baseline: CellValues, points: Sequence[Point], repeats: Iterable[int], direction: str = "max"
) -> dict[int, float]:
    """Per repeat, mean over ``points`` of the oriented difference method − baseline."""
    sign = 1.0 if direction == "max" else -1.0
    diffs = {k: sign * (v - baseline[k]) for k, v in method.items() if k in baseline}
    return repeat_means(diffs, points, repeats)


def paired_gain(
    method: CellValues, baseline: CellValues, points: Sequence[Point], repeats: Iterable[int], direction: str = "max"
) -> Interval | None:
    """Gain of ``method`` over ``baseline``, paired by (axis point, repeat), with its t-interval."""
    return t_interval(paired_differences(method, baseline, points, repeats, direction).values())


def is_better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "max" else a < b


def leader(intervals: Mapping[str, Interval | None], direction: str = "max") -> str | None:
    """The name with the best mean (ties on the mean go to the first name in sorted order)."""
    best: str | None = None
    for name in sorted(intervals):
        iv = intervals[name]
        if iv is None:
            continue
        if best is None or is_better(iv.mean, intervals[best].mean, direction):  # type: ignore[union-attr]
            best = name
    return best


def ties_with_leader(intervals: Mapping[str, Interval | None], direction: str = "max") -> tuple[str | None, set[str]]:
    """(leader, names whose interval overlaps the leader's), the leader excluded from the set."""
    top = leader(intervals, direction)
    if top is None:
        return None, set()
    lead = intervals[top]
    assert lead is not None
    tied = {name for name, iv in intervals.items() if name != top and iv is not None and iv.overlaps(lead)}
    return top, tied
