"""The cluster-pool simulator and the demand traces of the ``pooling`` track.

One implementation, used by the track, by the conformance kit (``kit.simulate_pool``) and by
plugins for back-testing (``from coreset_bench.tracks.pooling.sim import simulate``).

Semantics (per step t of ``step_seconds``; spec tracks-phase2.md §5.3):

1. creations started at ``t - lead`` join the ready pool;
2. ``d_t`` requests arrive: ``hits = min(ready, d_t)`` take ready clusters (oldest first), each
   miss is served by an on-demand creation outside the pool and waits ``lead`` steps;
3. with a ``ttl``, ready clusters idle longer than ``ttl`` steps are deleted;
4. controller: with target ``P_t``, if ``ready + in_flight < P_t`` start the difference
   (immediate replenishment of taken clusters), if ``ready > P_t`` delete the surplus (oldest
   first); in-flight creations are never cancelled;
5. ``idle += ready`` cluster-steps.

The state is a vector over K independent pools (``targets`` of shape (K, T)), so a static
frontier or a back-test of many candidate policies is one pass over time; a closed-loop policy
(``plan_fn``) is K = 1.
"""

from __future__ import annotations

import csv
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

STEP_SECONDS = 60.0
DEFAULT_START = "2026-01-05T00:00:00"  # a Monday


from ...validation import PlanOutputError as PlanError  # noqa: E402 - a ValueError and a CellFailure; its public name here



class TraceError(ValueError):
    """A trace reference or file cannot be read; the message says what is expected."""


@dataclass
class SimResult:
    """Totals of one simulated pool (arrays are per step; ``K`` = 1 unless batched)."""

    hits: np.ndarray
    misses: np.ndarray
    idle_steps: np.ndarray  # ready cluster-steps
    pool_creations: np.ndarray
    ttl_deleted: np.ndarray
    lead: int
    step_seconds: float
    steps: int
    ready: np.ndarray | None = None  # (K, T) ready clusters after each step (record=True)
    targets: np.ndarray | None = None  # (K, T) the target in force each step (record=True)

    @property
    def requests(self) -> np.ndarray:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> np.ndarray | float:
        """hits / requests; NaN where there were no requests."""
        req = self.requests.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(req > 0, self.hits / np.maximum(req, 1), np.nan)
        return float(out[0]) if out.shape == (1,) else out

    def _scalar(self, a: np.ndarray) -> Any:
        return a[0].item() if a.shape == (1,) else a

    @property
    def idle_hours(self) -> Any:
        return self._scalar(self.idle_steps * self.step_seconds / 3600.0)

    @property
    def miss_wait_min(self) -> Any:
        return self._scalar(self.misses * self.lead * self.step_seconds / 60.0)

    @property
    def on_demand(self) -> Any:
        return self._scalar(self.misses)

    def one(self, k: int) -> "SimResult":
        """Row ``k`` of a batched result."""
        sl = slice(k, k + 1)
        return SimResult(self.hits[sl], self.misses[sl], self.idle_steps[sl], self.pool_creations[sl], self.ttl_deleted[sl], self.lead, self.step_seconds, self.steps,
                         None if self.ready is None else self.ready[sl], None if self.targets is None else self.targets[sl])


def _take_oldest(ages: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Remove ``amount`` (K,) clusters from the age histogram ``ages`` (A, K), oldest first."""
    if ages.shape[0] == 1:
        ages[0] -= amount
        return ages
    rev = ages[::-1]  # oldest first
    cum = np.cumsum(rev, axis=0)
    left = np.maximum(cum - amount[None, :], 0)
    rev_new = np.diff(np.vstack([np.zeros((1, ages.shape[1]), dtype=ages.dtype), left]), axis=0)
    return rev_new[::-1].copy()


def simulate(
    demand: np.ndarray,
    targets: np.ndarray | int | None = None,
    *,
    plan_fn: Callable[[int, int, int], np.ndarray] | None = None,
    lead: int = 5,
    decision_every: int = 1,
    max_pool: int | None = None,
    ttl: int | None = None,
    step_seconds: float = STEP_SECONDS,
    record: bool = False,
) -> SimResult:
    """Simulate pools over ``demand`` (T,) requests per step.

    ``targets``: an int (a constant pool), a (T,) or a (K, T) array of per-step targets (K pools
    at once). Or ``plan_fn(t, ready, in_flight) -> targets`` called every ``decision_every`` steps
    (t counted from 0 here), whose first ``decision_every`` entries (rounded, clipped to
    [0, max_pool]) are used. ``lead`` >= 1 is the creation latency; ``ttl`` (steps) deletes
    ready clusters idle longer than that.
    """
    d = np.asarray(demand)
    if d.ndim != 1:
        raise ValueError(f"demand must be 1-D (requests per step), got shape {d.shape}")
    T = d.shape[0]
    lead = int(lead)
    if lead < 1:
        raise ValueError(f"lead must be >= 1 step, got {lead}")
    if (targets is None) == (plan_fn is None):
        raise ValueError("give exactly one of targets= and plan_fn=")
    if plan_fn is None:
        tg = np.asarray(targets)
        if tg.ndim == 0:
            tg = np.full((1, T), int(tg), dtype=np.int64)
        elif tg.ndim == 1:
            tg = tg[None, :]
        if tg.shape[1] != T:
            raise ValueError(f"targets cover {tg.shape[1]} steps, demand {T}")
        tg = np.rint(tg).astype(np.int64)
        if max_pool is not None:
            tg = np.clip(tg, 0, int(max_pool))
        K = tg.shape[0]
    else:
        K = 1
        tg = None
    A = 1 if ttl is None else int(ttl) + 2
    if K == 1 and A == 1:
        return _simulate_one(d, None if tg is None else tg[0], plan_fn, lead, decision_every, max_pool, float(step_seconds), record)
    ages = np.zeros((A, K), dtype=np.int64)
    pipe = np.zeros((lead, K), dtype=np.int64)  # pipe[t % lead]: creations completing at t
    in_flight = np.zeros(K, dtype=np.int64)
    hits = np.zeros(K, dtype=np.int64)
    misses = np.zeros(K, dtype=np.int64)
    idle = np.zeros(K, dtype=np.int64)
    created = np.zeros(K, dtype=np.int64)
    ttl_del = np.zeros(K, dtype=np.int64)
    rec_ready = np.zeros((K, T), dtype=np.int32) if record else None
    rec_tg = np.zeros((K, T), dtype=np.int32) if record else None
    current = np.zeros(decision_every if plan_fn is not None else 1, dtype=np.int64)
    dl = d.astype(np.int64).tolist()
    for t in range(T):
        slot = t % lead
        arrive = pipe[slot]
        if arrive.any():
            ages[0] += arrive
            in_flight -= arrive
            pipe[slot] = 0
        ready = ages.sum(axis=0) if A > 1 else ages[0]
        dt = dl[t]
        if dt:
            h = np.minimum(ready, dt)
            hits += h
            misses += dt - h
            ages = _take_oldest(ages, h)
        if A > 1:
            ttl_del += ages[-1]
            ages[-1] = 0
        if plan_fn is not None:
            if t % decision_every == 0:
                r_now = int(ages.sum())
                arr = np.asarray(plan_fn(t, r_now, int(in_flight[0])), dtype=np.float64)
                arr = np.rint(arr[:decision_every]).astype(np.int64)
                current = np.clip(arr, 0, None if max_pool is None else int(max_pool))
            p = current[min(t % decision_every, len(current) - 1)]
            p = np.array([p], dtype=np.int64)
        else:
            p = tg[:, t]  # type: ignore[index]
        ready = ages.sum(axis=0) if A > 1 else ages[0].copy()
        short = p - ready - in_flight
        new = np.maximum(short, 0)
        if new.any():
            pipe[slot] += new  # completes at t + lead (same slot, next round)
            in_flight += new
            created += new
        surplus = np.maximum(ready - p, 0)
        if surplus.any():
            ages = _take_oldest(ages, surplus)
            ready = ready - surplus
        idle += ready
        if record:
            rec_ready[:, t] = ready  # type: ignore[index]
            rec_tg[:, t] = p  # type: ignore[index]
        if A > 1:
            ages[1:] = ages[:-1].copy()
            ages[0] = 0
    return SimResult(hits, misses, idle, created, ttl_del, lead, float(step_seconds), T, rec_ready, rec_tg)


def _simulate_one(d, tg, plan_fn, lead, decision_every, max_pool, step_seconds, record) -> SimResult:
    """``simulate`` for one pool without TTL, in plain Python scalars (several times faster than
    the vector loop at K = 1; the same semantics, step for step)."""
    T = len(d)
    dl = d.astype(np.int64).tolist()
    tl = tg.tolist() if tg is not None else None
    pipe = [0] * lead
    ready = in_flight = hits = misses = idle = created = 0
    rec_ready = [0] * T if record else None
    rec_tg = [0] * T if record else None
    current: list[int] = [0]
    cap = None if max_pool is None else int(max_pool)
    for t in range(T):
        slot = t % lead
        a = pipe[slot]
        if a:
            ready += a
            in_flight -= a
            pipe[slot] = 0
        dt = dl[t]
        if dt:
            h = ready if ready < dt else dt
            hits += h
            misses += dt - h
            ready -= h
        if plan_fn is not None:
            if t % decision_every == 0:
                arr = np.rint(np.asarray(plan_fn(t, ready, in_flight), dtype=np.float64)[:decision_every]).astype(np.int64)
                arr = np.clip(arr, 0, cap)
                current = arr.tolist()
            p = current[min(t % decision_every, len(current) - 1)]
        else:
            p = tl[t]  # type: ignore[index]
        short = p - ready - in_flight
        if short > 0:
            pipe[slot] += short
            in_flight += short
            created += short
        if ready > p:
            ready = p if p > 0 else 0
        idle += ready
        if record:
            rec_ready[t] = ready  # type: ignore[index]
            rec_tg[t] = p  # type: ignore[index]
    one = lambda x: np.array([x], dtype=np.int64)  # noqa: E731
    return SimResult(one(hits), one(misses), one(idle), one(created), one(0), lead, step_seconds, T,
                     np.array([rec_ready], dtype=np.int32) if record else None, np.array([rec_tg], dtype=np.int32) if record else None)


# --------------------------------------------------------------------------------------------
# the hindsight static frontier
# --------------------------------------------------------------------------------------------


@dataclass
class Frontier:
    """Constant pools P = 0..P*: hit rate and idle hours of each (both non-decreasing in P)."""

    pools: np.ndarray
    hit: np.ndarray
    idle_hours: np.ndarray

    @property
    def p_star(self) -> int:
        return int(self.pools[-1])

    def idle_at(self, hit_rate: float) -> float:
        """Idle hours of the static pool with hit rate ``hit_rate``, interpolated linearly between
        the two integer pools that bracket it (exact at integer pools; NaN without requests)."""
        if not np.isfinite(hit_rate):
            return float("nan")
        h, idle = self.hit, self.idle_hours
        if hit_rate <= h[0]:
            return float(idle[0])
        if hit_rate >= h[-1]:
            return float(idle[-1])
        j = int(np.searchsorted(h, hit_rate, side="left"))  # h[j-1] < hit_rate <= h[j]
        lo, hi = j - 1, j
        if h[hi] == h[lo]:
            return float(idle[lo])
        w = (hit_rate - h[lo]) / (h[hi] - h[lo])
        return float(idle[lo] + w * (idle[hi] - idle[lo]))

    def as_array(self) -> np.ndarray:
        return np.stack([self.pools.astype(np.float64), self.hit, self.idle_hours], axis=1)


def static_frontier(demand: np.ndarray, *, lead: int, max_pool: int = 1000, ttl: int | None = None, step_seconds: float = STEP_SECONDS, chunk: int = 64) -> Frontier:
    """Simulate constant pools 0, 1, ... until the first that serves every request a pool can
    serve (all but those of the first ``lead`` steps, before any creation completes: hit rate
    1.0 when those are zero), or ``max_pool``."""
    d = np.asarray(demand)
    total = float(d.sum())
    best = 1.0 if total == 0 else (total - float(d[:lead].sum())) / total
    pools: list[int] = []
    hit: list[float] = []
    idle: list[float] = []
    p0 = 0
    while p0 <= max_pool:
        ps = np.arange(p0, min(p0 + chunk, max_pool + 1))
        res = simulate(demand, np.repeat(ps[:, None], len(demand), axis=1), lead=lead, ttl=ttl, step_seconds=step_seconds)
        hr = np.nan_to_num(np.asarray(res.hit_rate, dtype=np.float64).reshape(-1), nan=1.0)
        ih = np.asarray(res.idle_hours, dtype=np.float64).reshape(-1)
        for p, h, i in zip(ps, hr, ih):
            pools.append(int(p))
            hit.append(float(h))
            idle.append(float(i))
            if h >= best - 1e-12:
                return Frontier(np.array(pools), np.maximum.accumulate(np.array(hit)), np.array(idle))
        p0 += chunk
    return Frontier(np.array(pools), np.maximum.accumulate(np.array(hit)), np.array(idle))


def smallest_static_pool(demand: np.ndarray, target: float, *, lead: int, max_pool: int = 1000, step_seconds: float = STEP_SECONDS) -> int:
    """The smallest constant pool whose hit rate on ``demand`` is >= ``target`` (``max_pool`` if none)."""
    fr = static_frontier(demand, lead=lead, max_pool=max_pool, step_seconds=step_seconds)
    ok = np.flatnonzero(fr.hit >= target)
    return int(fr.pools[ok[0]]) if len(ok) else int(max_pool)


def hold(targets: np.ndarray, decision_every: int) -> np.ndarray:
    """Per-step targets as a controller deciding every ``decision_every`` steps applies them:
    the value at each decision step held until the next (last axis)."""
    a = np.asarray(targets)
    idx = (np.arange(a.shape[-1]) // decision_every) * decision_every
    return a[..., idx]


def forward_sums(demand: np.ndarray, width: int, offset: int = 0) -> np.ndarray:
    """``out[t] = sum(demand[t + offset : t + offset + width])`` (zero past the end)."""
    d = np.asarray(demand, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(d)])
    T = len(d)
    lo = np.minimum(np.arange(T) + offset, T)
    hi = np.minimum(lo + width, T)
    return c[hi] - c[lo]


# --------------------------------------------------------------------------------------------
# running a provisioning method (shared by the track and the conformance kit)
# --------------------------------------------------------------------------------------------


def is_weekend(start: str, days: np.ndarray | int) -> np.ndarray:
    """Whether day index ``days`` (from the day of ``start``) falls on a Saturday or Sunday."""
    s = datetime.fromisoformat(start) if start else datetime.fromisoformat(DEFAULT_START)
    return (s.weekday() + np.asarray(days)) % 7 >= 5


def calibration_days(t: int, steps_per_day: int, *, n: int, same_type: bool = True, start: str = DEFAULT_START) -> tuple[int, ...]:
    """The history days a method calibrates on at a fit at step ``t`` (the profile's rule, the
    same for every method): the last ``n`` whole days before ``t`` (day d = steps
    [d · spd, (d + 1) · spd)), and with ``same_type`` only those of the day type (weekday or
    weekend) of the day that ``t`` falls in, the day about to be served; where fewer than ``n``
    days of that type exist, as many as exist, and where none exists, the last ``n`` days of any
    type. Ascending; empty when the history holds no whole day."""
    D = int(t) // int(steps_per_day)  # whole days before t (a fit mid-day: the partial day is left out)
    past = np.arange(D)
    if not len(past) or n < 1:
        return ()
    if same_type:
        same = past[is_weekend(start, past) == bool(is_weekend(start, D))]
        if len(same):
            return tuple(int(d) for d in same[-int(n) :])
    return tuple(int(d) for d in past[-int(n) :])



@dataclass
class MethodRun:
    sim: SimResult
    plans: list[np.ndarray] = field(default_factory=list)
    clipped: int = 0
    #: seconds of the method's own calls (measured where it runs: the contestant worker's clock
    #: for a method in the worker, which the method could tamper with; this process's otherwise)
    fit_s: float = 0.0
    plan_s: float = 0.0
    #: this process's clock around the same calls (transfers to and from the worker included):
    #: the plan time budget ``plan_timeout_s`` is checked on it
    fit_wall_s: float = 0.0
    plan_wall_s: float = 0.0
    plan_calls: int = 0
    fits: int = 0
    #: per fit: {"t": steps since the evaluation start, **view.info the method wrote in fit}
    fit_info: list[dict[str, Any]] = field(default_factory=list)


def check_plan(name: str, plan: Any, horizon: int, t: int) -> np.ndarray:
    """The plan as float64 (horizon,), or ``PlanError`` naming the plugin and the problem (the
    kind's one output check, ``coreset_bench.validation.check_plan``)."""
    from ...validation import check_plan as _check

    return _check(plan, horizon, name, t)


def info_values(info: Any) -> dict[str, Any]:
    """What a method wrote to ``view.info`` in ``fit``, as JSON values: strings, booleans, None
    and numbers kept (numbers as floats, NaN and inf included), anything else as its ``str``; a
    non-dict is read as empty. The contestant worker sends this back, so a cell records the same
    values wherever its method ran."""
    if not isinstance(info, dict):
        return {}
    out: dict[str, Any] = {}
    for k, v in info.items():
        if isinstance(v, (str, bool)) or v is None:
            out[str(k)] = v
        elif isinstance(v, (int, float, np.number)) and not isinstance(v, np.bool_):
            out[str(k)] = float(v)
        else:
            out[str(k)] = str(v)
    return out


class PlanningState:
    """The contestant's side of a provisioning run: the demand observed so far and the public
    settings, from which every ``ProvisioningView`` is built (the harness's in-process runs and
    the contestant worker build their views with this same class). It never holds a step of
    demand past the step the view is at; ``view.future`` is filled only from what the harness
    passes for a privileged method."""

    def __init__(self, history: np.ndarray, *, horizon: int, step_seconds: float, seed: int, start: str, lead: int, decision_every: int,
                 target_hit_rate: float, cost_idle: float, cost_miss: float, max_pool: int, tune_margin: float | None) -> None:
        self._known = np.array(history, dtype=np.int64).reshape(-1)  # exactly the steps seen: nothing beyond
        self.n = len(self._known)
        self.settings = dict(horizon=int(horizon), step_seconds=float(step_seconds), seed=int(seed), start=str(start), lead=int(lead), decision_every=int(decision_every),
                             target_hit_rate=float(target_hit_rate), cost_idle=float(cost_idle), cost_miss=float(cost_miss), max_pool=int(max_pool))
        self.tune_margin = None if tune_margin is None else float(tune_margin)
        self.rng = np.random.default_rng(int(seed))

    def observe(self, steps: np.ndarray) -> None:
        """Append the demand of the steps since the last view."""
        d = np.asarray(steps, dtype=np.int64).reshape(-1)
        if len(d):
            self._known = np.concatenate([self._known, d])
            self.n = len(self._known)

    def view(self, t: int, ready: int, in_flight: int, *, calib: tuple[int, ...] | None = None, future: np.ndarray | None = None) -> Any:
        from ...kinds import ProvisioningView

        if int(t) != self.n:
            raise ValueError(f"a view at step {t} needs the demand up to it; {self.n} steps are known")
        history = self._known.copy()
        history.setflags(write=False)
        if future is not None:
            future = np.asarray(future, dtype=np.int64).copy()
            future.setflags(write=False)
        return ProvisioningView(
            history=history, t=int(t), ready=int(ready), in_flight=int(in_flight), rng=self.rng, future=future,
            calib_days=None if calib is None else tuple(int(d) for d in calib), tune_margin=self.tune_margin, **self.settings,
        )


    # ---- the calls of a session in the contestant worker (``contestant._session``) ----
    calls = ("fit", "plan")

    def fit_view(self, new: np.ndarray, t: int, ready: int, in_flight: int, calib: tuple[int, ...] | None) -> Any:
        self.observe(new)
        return self.view(t, ready, in_flight, calib=calib)

    def plan_view(self, new: np.ndarray, t: int, ready: int, in_flight: int, future: np.ndarray | None) -> Any:
        self.observe(new)
        return self.view(t, ready, in_flight, future=future)

    @staticmethod
    def fit_plain(raw: Any, view: Any, name: str) -> str:
        """What ``fit`` wrote to ``view.info``, as JSON text (``info_values``)."""
        import json

        return json.dumps(info_values(view.info))

    @staticmethod
    def plan_plain(raw: Any, view: Any, name: str) -> np.ndarray:
        """The plan as float64 numbers (the harness checks them: ``validation.check_plan``)."""
        from ...contestant import ContestantOutputError

        try:
            return np.ascontiguousarray(np.asarray(raw.detach().cpu().numpy() if hasattr(raw, "detach") else raw, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ContestantOutputError(f"plugin {name!r}: plan at step {view.t} is not numeric ({exc})") from None


class LocalAgent:
    """A provisioning method called in this process (the conformance kit, the harness's own
    ``static`` reference). ``coreset_bench.contest`` has the same calls through the contestant
    worker (``RemoteAgent``): ``fit`` returns ``info_values`` of the view's ``info``, ``plan``
    the raw plan, both given the demand since the previous call."""

    def __init__(self, method: Any, state: PlanningState) -> None:
        self.method, self.state = method, state
        self.name = str(getattr(method, "name", "?"))

    def fit(self, new: np.ndarray, t: int, ready: int, in_flight: int, calib: tuple[int, ...] | None) -> dict[str, Any]:
        view = self.state.fit_view(new, t, ready, in_flight, calib)
        self.method.fit(view)
        return info_values(view.info)

    def plan(self, new: np.ndarray, t: int, ready: int, in_flight: int, future: np.ndarray | None) -> Any:
        return self.method.plan(self.state.plan_view(new, t, ready, in_flight, future))


@dataclass
class Simulation:
    """The harness's side of one provisioning run: the whole trace (its evaluation days
    included: it never leaves the harness) and the settings ``run_method`` takes. ``state()`` is
    what the contestant receives (``PlanningState``: the history up to ``start_step`` and the
    public settings); ``privileged`` is the track's decision, made once before the contest."""

    demand: np.ndarray
    start_step: int
    settings: dict[str, Any]
    privileged: bool = False

    def state(self) -> PlanningState:
        st = self.settings
        lead, de = int(st.get("lead", 5)), int(st.get("decision_every", 5))
        return PlanningState(np.asarray(self.demand, dtype=np.int64)[: self.start_step], horizon=lead + de, step_seconds=float(st.get("step_seconds", STEP_SECONDS)),
                             seed=int(st.get("seed", 0)), start=str(st.get("start", DEFAULT_START)), lead=lead, decision_every=de,
                             target_hit_rate=float(st.get("target_hit_rate", 0.99)), cost_idle=float(st.get("cost_idle", 1.0)), cost_miss=float(st.get("cost_miss", 100.0)),
                             max_pool=int(st.get("max_pool", 200)), tune_margin=st.get("tune_margin"))

    def run(self, method: Any, *, state: PlanningState | None = None, agent: Callable[[PlanningState], Any] | None = None, privileged: bool | None = None,
            guard: Callable[[str, Callable[[], Any]], Any] | None = None) -> "MethodRun":
        return run_method(method, self.demand, start_step=self.start_step, privileged=self.privileged if privileged is None else privileged,
                          state=state, agent=agent, guard=guard, **self.settings)


def run_method(
    method: Any,
    demand: np.ndarray,
    *,
    start_step: int,
    lead: int = 5,
    decision_every: int = 5,
    max_pool: int = 200,
    step_seconds: float = STEP_SECONDS,
    seed: int = 0,
    start: str = DEFAULT_START,
    target_hit_rate: float = 0.99,
    cost_idle: float = 1.0,
    cost_miss: float = 100.0,
    refit_every: int | None = None,
    ttl: int | None = None,
    plan_timeout_s: float | None = None,
    guard: Callable[[str, Callable[[], Any]], Any] | None = None,
    record: bool = False,
    calib_days: int | None = None,
    calib_same_type: bool = True,
    tune_margin: float | None = None,
    privileged: bool | None = None,
    agent: Callable[[PlanningState], Any] | None = None,
    state: PlanningState | None = None,
) -> MethodRun:
    """Drive a ``ProvisioningMethod`` over ``demand[start_step:]``: ``fit`` at the start (and every
    ``refit_every`` steps) with the history so far, ``plan`` every ``decision_every`` steps for
    ``lead + decision_every`` targets, each plan checked (``PlanError``), rounded and clipped to
    ``max_pool``. ``view.future`` (the next ``horizon`` steps, zero past the end) is given only
    to ``privileged`` methods: ``privileged`` as decided by the caller (the track decides it once,
    from the method's declaration, before the contest), else the method's ``privileged``. A mean
    plan time over ``plan_timeout_s`` raises ``PlanError``.
    ``guard(name, fn)`` wraps every call (the contestant guard). What a method writes to
    ``view.info`` in ``fit`` (its realized parameters, ``info_values``) is kept in
    ``MethodRun.fit_info``, with ``calib_days``, the days it was asked to calibrate on, counted
    from the evaluation start (-1 = the last history day).

    ``agent(state)``: who runs the method's calls, given the ``PlanningState`` its views are
    built from (default ``LocalAgent``, in this process; the contest passes one that calls the
    contestant worker). Only the demand of the steps already simulated reaches it. ``state``:
    that ``PlanningState`` when the caller built it (``Simulation.state``: the contest's view).

    Calibration (the profile's, the same for every method): with ``calib_days`` = n, every
    ``fit`` view carries ``view.calib_days`` = ``calibration_days(t, spd, n=n,
    same_type=calib_same_type)`` and ``view.tune_margin`` = ``tune_margin``; without it both are
    None (the method's own defaults)."""
    horizon = lead + decision_every
    if privileged is None:
        privileged = bool(getattr(method, "privileged", False))
    name = str(getattr(method, "name", "?"))
    call = guard or (lambda _n, fn: fn())
    out = MethodRun(sim=None)  # type: ignore[arg-type]
    demand = np.asarray(demand, dtype=np.int64)
    eval_demand = demand[start_step:]
    if state is not None and (state.n != start_step or state.settings["horizon"] != horizon):
        raise ValueError(f"the planning state holds {state.n} steps and horizon {state.settings['horizon']}; this run starts at step {start_step} with horizon {horizon}")
    state = state if state is not None else PlanningState(demand[:start_step], horizon=horizon, step_seconds=step_seconds, seed=seed, start=start, lead=lead, decision_every=decision_every,
                          target_hit_rate=target_hit_rate, cost_idle=cost_idle, cost_miss=cost_miss, max_pool=max_pool, tune_margin=tune_margin)
    runner = agent(state) if agent is not None else LocalAgent(method, state)
    spd = int(round(86400 / float(step_seconds)))
    known = [start_step]  # the steps of demand the agent holds

    def since(t: int) -> np.ndarray:
        new = demand[known[0] : t]
        known[0] = t
        return new

    def do_fit(t: int, ready: int, in_flight: int) -> None:
        calib = calibration_days(t, spd, n=int(calib_days), same_type=calib_same_type, start=start) if calib_days else None
        new = since(t)
        t0 = time.perf_counter()
        info = call(name, lambda: runner.fit(new, t, ready, in_flight, calib))
        wall = time.perf_counter() - t0
        own = getattr(runner, "last_seconds", None)
        out.fit_s += wall if own is None else own
        out.fit_wall_s += wall
        out.fits += 1
        extra = {} if calib is None else {"calib_days": [d - start_step // spd for d in calib]}
        out.fit_info.append({"t": t - start_step, **extra, **info})

    do_fit(start_step, 0, 0)

    def plan_fn(t_rel: int, ready: int, in_flight: int) -> np.ndarray:
        t = start_step + t_rel
        if refit_every and t_rel > 0 and t_rel % refit_every == 0:
            do_fit(t, ready, in_flight)
        future = None
        if privileged:
            future = np.zeros(horizon, dtype=np.int64)
            chunk = demand[t : t + horizon]
            future[: len(chunk)] = chunk
        new = since(t)
        t0 = time.perf_counter()
        plan = call(name, lambda: runner.plan(new, t, ready, in_flight, future))
        wall = time.perf_counter() - t0
        own = getattr(runner, "last_seconds", None)
        out.plan_s += wall if own is None else own
        out.plan_wall_s += wall
        out.plan_calls += 1
        if plan_timeout_s and out.plan_calls >= 5 and out.plan_wall_s / out.plan_calls > plan_timeout_s:
            raise PlanError(f"plugin {name!r}: plan calls take {out.plan_wall_s / out.plan_calls:.2f}s on average, over the {plan_timeout_s:g}s budget")
        arr = check_plan(name, plan, horizon, t)
        out.plans.append(arr.copy())
        out.clipped += int((np.rint(arr[:decision_every]) > max_pool).sum())
        return arr

    out.sim = simulate(eval_demand, plan_fn=plan_fn, lead=lead, decision_every=decision_every, max_pool=max_pool, ttl=ttl, step_seconds=step_seconds, record=record)
    return out


# --------------------------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------------------------


@dataclass
class Trace:
    """Requests per step, the ISO time of step 0, the step length, and the steps per day."""

    name: str
    demand: np.ndarray
    start: str = DEFAULT_START
    step_seconds: float = STEP_SECONDS

    @property
    def steps_per_day(self) -> int:
        return int(round(86400 / self.step_seconds))

    @property
    def days(self) -> int:
        return len(self.demand) // self.steps_per_day


SYNTH_KINDS = ("diurnal", "scheduled", "bursty", "hourly", "overdispersed")

#: ``hourly``: extra rate (requests per minute) in each of the first ``HOURLY_MINUTES`` minutes
#: of every hour 09:00..18:00 of weekdays, on top of ``diurnal``
HOURLY_EXTRA = 12.0
HOURLY_MINUTES = 2
#: ``overdispersed``: the flat diurnal shape 1 + amp · cos(2π (time of day − peak)) (0.6 .. 1.4,
#: highest at 13:12), weekend level, the σ of the mean-one day-level lognormal, and the shape of
#: the mean-one per-minute Gamma factor (Gamma(k)-Poisson counts: variance λ + λ² / k)
OVERDISPERSED = {"amplitude": 0.4, "peak": 0.55, "weekend": 0.7, "day_sigma": 0.2, "gamma_shape": 2.0}


def _guard(what: str) -> None:
    from ...data import _check_not_contestant

    _check_not_contestant(what)


def _bursts(rng: np.random.Generator, steps: int, step_seconds: float) -> np.ndarray:
    """Multiplicative bursts: starts ~ a Poisson process with a 10-hour mean gap, each 15-90
    minutes long at x U(1.3, 2.5)."""
    mult = np.ones(steps)
    per_hour = 3600.0 / step_seconds
    pos = rng.exponential(10 * per_hour)
    while pos < steps:
        dur = int(rng.uniform(15, 90) * 60 / step_seconds)
        mult[int(pos) : int(pos) + dur] = rng.uniform(1.3, 2.5)
        pos += rng.exponential(10 * per_hour)
    return mult


def synth_rate(kind: str, days: int, rng: np.random.Generator, *, step_seconds: float = STEP_SECONDS, base: float = 2.6, start: str = DEFAULT_START) -> np.ndarray:
    """The per-step intensity λ(t) of ``synth-sessions:<kind>`` (``synth_sessions`` draws
    Poisson counts of it). With t in days from ``start`` (a Monday by default), ``tod`` its time
    of day, weekdays Monday-Friday:

    * ``diurnal``: base · (0.2 + 2 · max(0, sin(π (tod − 0.3) / 0.5))²) · (1 on weekdays, 0.4 on
      weekends) · (1 + 0.1 t / days): half of every day at 0.2 × base, an 11:1 peak-to-trough
      ratio, the easy control;
    * ``scheduled``: ``diurnal`` + 3 requests per step in the first step of every hour
      09:00..18:00 of weekdays;
    * ``bursty``: ``diurnal`` × bursts (``_bursts``: on average one every 10 hours, 15-90 minutes
      at × U(1.3, 2.5));
    * ``hourly``: ``diurnal`` + ``HOURLY_EXTRA`` (12) requests per minute in the first
      ``HOURLY_MINUTES`` (2) minutes of every hour 09:00..18:00 of weekdays: job waves on the
      clock that a forecaster can anticipate and a reactive rule cannot (about 24 extra requests
      per wave, 10 waves per weekday);
    * ``overdispersed``: base · (1 + 0.4 cos(2π (tod − 0.55))) (0.6 .. 1.4) · (1 on weekdays,
      0.7 on weekends) · growth · L_day · bursts · G_t, with a day-level lognormal
      L_day = exp(0.2 Z − 0.02) (mean 1) and a per-step G_t ~ Gamma(2, 1/2) (mean 1), so counts
      are Gamma(2)-Poisson (variance λ + λ² / 2) on a flat, noisy profile (``OVERDISPERSED``).

    For ``bursty`` and ``overdispersed`` the intensity is random (drawn from ``rng``).
    Guarded: a contestant that calls it while it is evaluated fails its cell (``LeakageError``)."""
    _guard("generate the pooling trace")
    if kind not in SYNTH_KINDS:
        raise TraceError(f"unknown synthetic trace kind {kind!r}; use one of synth-sessions:{{{','.join(SYNTH_KINDS)}}}")
    steps = int(days * 86400 / step_seconds)
    t_days = np.arange(steps) * step_seconds / 86400.0
    tod = t_days % 1.0
    dow = (datetime.fromisoformat(start).weekday() + np.floor(t_days).astype(int)) % 7
    growth = 1.0 + 0.1 * t_days / max(days, 1)
    if kind == "overdispersed":
        od = OVERDISPERSED
        shape = 1.0 + od["amplitude"] * np.cos(2 * np.pi * (tod - od["peak"]))
        weekly = np.where(dow < 5, 1.0, od["weekend"])
        n_days = int(np.ceil(steps * step_seconds / 86400.0))
        sigma = float(od["day_sigma"])
        level = np.exp(sigma * rng.standard_normal(n_days) - 0.5 * sigma**2)[np.floor(t_days).astype(int)]
        rate = base * shape * weekly * growth * level * _bursts(rng, steps, step_seconds)
        k = float(od["gamma_shape"])
        return rate * rng.gamma(k, 1.0 / k, steps)
    diurnal = 0.2 + 2.0 * np.maximum(0.0, np.sin(np.pi * (tod - 0.3) / 0.5)) ** 2
    weekly = np.where(dow < 5, 1.0, 0.4)
    rate = base * diurnal * weekly * growth
    if kind == "bursty":
        rate = rate * _bursts(rng, steps, step_seconds)
    if kind == "scheduled":
        secs = np.arange(steps) * step_seconds
        on_hour = (secs % 3600 < step_seconds) & (tod >= 9 / 24) & (tod < 18 / 24 + 1e-9) & (dow < 5)
        rate = rate + 3.0 * on_hour
    if kind == "hourly":
        secs = np.arange(steps) * step_seconds
        hour = np.floor(secs % 86400 / 3600 + 1e-9)
        wave = (secs % 3600 < HOURLY_MINUTES * 60.0) & (hour >= 9) & (hour <= 18) & (dow < 5)
        rate = rate + HOURLY_EXTRA * wave
    return rate


def synth_sessions(kind: str, *, days: int = 14, seed: int = 0, step_seconds: float = STEP_SECONDS) -> Trace:
    """Generated session requests (Poisson counts of ``synth_rate``), seeded; guarded: a
    contestant that regenerates it to read the future fails its cell (``LeakageError``). The
    track derives ``seed`` from the profile, trace and repeat, salted with the results store's
    secret for hidden data (``CellContext.hidden_seed``), so the public strings alone do not
    rebuild it."""
    _guard("generate the pooling trace")
    rng = np.random.default_rng(seed)
    rate = synth_rate(kind, days, rng, step_seconds=step_seconds)
    return Trace(f"synth-sessions:{kind}", rng.poisson(rate).astype(np.int64), DEFAULT_START, step_seconds)


AZURE_FIXED = ["HashOwner", "HashApp", "HashFunction", "Trigger"]


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def load_azure_functions(path: str | Path, *, idle_gap: int = 10, aggregate: str = "activations", trigger: str | None = None, app_sample: float = 1.0) -> Trace:
    """The Azure Functions Trace 2019 (``invocations_per_function_md.anon.dNN.csv`` files in
    ``path``, or one such file): per app, invocations summed per minute; an activation is a
    minute with invocations after at least ``idle_gap`` idle minutes (the first minute of the
    trace counts as after a gap). ``aggregate="activations"``: demand = activations per minute;
    ``"active_apps"``: apps with invocations per minute. ``trigger`` keeps one trigger type;
    ``app_sample`` keeps apps whose HashApp hashes below that fraction. Guarded like the
    generators: the file holds the evaluation days (``LeakageError`` inside a contestant)."""
    _guard("load the pooling trace")
    p = Path(path)
    files = sorted(p.glob("invocations_per_function_md.anon.d*.csv")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise TraceError(f"azure-functions:{path}: no invocations_per_function_md.anon.dNN.csv files found there")
    if aggregate not in ("activations", "active_apps"):
        raise TraceError(f"azure-functions: aggregate must be 'activations' or 'active_apps', got {aggregate!r}")
    expected = AZURE_FIXED + [str(i) for i in range(1, 1441)]
    days: list[dict[str, np.ndarray]] = []
    apps: set[str] = set()
    for f in files:
        per_app: dict[str, np.ndarray] = {}
        with open(f, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != expected:
                got = ",".join((header or [])[:6]) + ("..." if header and len(header) > 6 else "")
                raise TraceError(f"{f.name}: header must be HashOwner,HashApp,HashFunction,Trigger,1,...,1440 (the Azure Functions 2019 per-minute format); got {got or 'an empty file'}")
            for lineno, row in enumerate(reader, start=2):
                if len(row) != len(expected):
                    raise TraceError(f"{f.name} line {lineno}: {len(row)} columns, expected {len(expected)} (HashOwner,HashApp,HashFunction,Trigger,1,...,1440)")
                if trigger is not None and row[3] != trigger:
                    continue
                app = row[1]
                if app_sample < 1.0 and int(hashlib.sha256(app.encode()).hexdigest()[:8], 16) / 2**32 >= app_sample:
                    continue
                try:
                    counts = np.array(row[4:], dtype=np.int64)
                except ValueError:
                    raise TraceError(f"{f.name} line {lineno}: the minute columns 1..1440 must be integer counts") from None
                per_app[app] = per_app.get(app, 0) + counts
        days.append(per_app)
        apps.update(per_app)
    T = 1440 * len(files)
    demand = np.zeros(T, dtype=np.int64)
    for app in sorted(apps):
        series = np.concatenate([day.get(app, np.zeros(1440, dtype=np.int64)) for day in days])
        active = series > 0
        if aggregate == "active_apps":
            demand += active
            continue
        idx = np.flatnonzero(active)
        if not len(idx):
            continue
        gaps = np.diff(np.concatenate([[-idle_gap - 1], idx])) - 1  # idle minutes before each active minute
        demand[idx[gaps >= idle_gap]] += 1
    return Trace(f"azure-functions:{path}", demand, DEFAULT_START, 60.0)


def load_counts_csv(path: str | Path) -> Trace:
    """A plain ``timestamp,count`` CSV (ISO timestamps, strictly increasing, evenly spaced; the
    step is the first difference). Errors are one line naming the expected columns. Guarded
    like the generators (``LeakageError`` inside a contestant)."""
    _guard("load the pooling trace")
    p = Path(path)
    if not p.is_file():
        raise TraceError(f"counts-csv:{path}: no such file (expected a CSV with columns timestamp,count)")
    stamps: list[datetime] = []
    counts: list[int] = []
    with open(p, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header] != ["timestamp", "count"]:
            raise TraceError(f"{p.name}: header must be timestamp,count (ISO time, requests in that step); got {','.join(header or []) or 'an empty file'}")
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise TraceError(f"{p.name} line {lineno}: expected 2 columns timestamp,count, got {len(row)}")
            try:
                ts = datetime.fromisoformat(row[0].strip())
                c = int(float(row[1]))
            except ValueError as exc:
                raise TraceError(f"{p.name} line {lineno}: expected timestamp,count (ISO time, integer count): {_one_line(str(exc))}") from None
            if c < 0:
                raise TraceError(f"{p.name} line {lineno}: count {c} is negative; counts are requests per step (>= 0) in timestamp,count rows")
            if stamps and ts <= stamps[-1]:
                raise TraceError(f"{p.name} line {lineno}: timestamp {row[0].strip()} is not after the previous one; timestamp,count rows must be strictly increasing")
            stamps.append(ts)
            counts.append(c)
    if len(stamps) < 2:
        raise TraceError(f"{p.name}: needs at least 2 rows of timestamp,count")
    step = (stamps[1] - stamps[0]).total_seconds()
    for i in range(2, len(stamps)):
        if (stamps[i] - stamps[i - 1]).total_seconds() != step:
            raise TraceError(f"{p.name} line {i + 2}: uneven step ({(stamps[i] - stamps[i - 1]).total_seconds():g}s after {step:g}s); timestamp,count rows must be evenly spaced")
    return Trace(f"counts-csv:{path}", np.array(counts, dtype=np.int64), stamps[0].isoformat(), step)


def resolve_trace(ref: str, *, seed: int = 0, days: int = 14, data_dir: Path | None = None) -> Trace:
    """``synth-sessions:KIND``, ``azure-functions:PATH`` or ``counts-csv:FILE`` (every one guarded:
    ``LeakageError`` inside a contestant)."""
    _guard("generate the pooling trace")
    kind, _, arg = ref.partition(":")
    if kind == "synth-sessions":
        return synth_sessions(arg, days=days, seed=seed)
    if not arg:
        raise TraceError(f"trace {ref!r} needs a path: azure-functions:PATH or counts-csv:FILE")
    path = Path(arg)
    if not path.is_absolute() and data_dir is not None and not path.exists():
        path = Path(data_dir) / path
    if kind == "azure-functions":
        return load_azure_functions(path)
    if kind == "counts-csv":
        return load_counts_csv(path)
    raise TraceError(f"unknown trace {ref!r}; use synth-sessions:{{{','.join(SYNTH_KINDS)}}}, azure-functions:PATH or counts-csv:FILE")


def calendar(start: str, t0: int, n: int, step_seconds: float = STEP_SECONDS) -> tuple[np.ndarray, np.ndarray]:
    """(minute of day, day of week) of steps ``t0 .. t0+n-1`` of a trace starting at ``start``."""
    s = datetime.fromisoformat(start) if start else datetime.fromisoformat(DEFAULT_START)
    sec0 = s.hour * 3600 + s.minute * 60 + s.second
    secs = sec0 + (t0 + np.arange(n)) * step_seconds
    day = np.floor(secs / 86400).astype(np.int64)
    minute = ((secs % 86400) // 60).astype(np.int64)
    return minute, (s.weekday() + day) % 7


__all__ = [
    "Frontier", "LocalAgent", "MethodRun", "PlanError", "PlanningState", "Simulation", "SimResult", "Trace", "TraceError", "calendar", "calibration_days", "check_plan", "forward_sums", "hold", "info_values", "is_weekend",
    "load_azure_functions", "load_counts_csv", "resolve_trace", "run_method", "simulate", "smallest_static_pool", "static_frontier",
    "synth_rate", "synth_sessions",
]
