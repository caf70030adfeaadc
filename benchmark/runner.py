"""Expand profiles into cells, skip what the store has, run the rest, store the results.

Executors:

* ``inprocess`` (default with ``--jobs 1`` and no time-out): cells run one after another in the
  driver process.
* ``process`` (``--jobs N``, or any run with a cell time-out): N long-lived worker processes
  (forked, each with ``cores // N`` torch threads so the machine is not oversubscribed). A cell
  past its time-out, or whose worker dies, fails on its own; the worker is replaced. Workers
  exit when the driver dies, even by ``kill -9`` (``coreset_bench.lifetime.die_with_parent``).
* ``ray``: cells become Ray tasks (see ``coreset_bench.ray_executor``).

Only the driver writes the store: workers return results. A cell is claimed (``running``, with a
lease the driver's heartbeat keeps fresh) before it starts and becomes ``done`` (metrics,
artifacts, timings in one transaction) or ``failed`` (error and traceback). An interrupted run
leaves ``interrupted`` rows (its own status: not a failure, never ranked), and ``failed`` rows of
cells that raised; a rerun executes both again; ``done`` cells are never run
twice, and a cell another live run holds is waited for, not computed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import queue
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import env as envmod
from . import registry as plugins
from .kinds import Method
from .lifetime import die_with_parent
from sqlalchemy.exc import SQLAlchemyError

from .store import Store, StoreError
from .cells import Cell, CellContext, CellFailure, CellResult, Profile, with_dataset
from .tracks.base import Track


@dataclass
class Planned:
    cell: Cell
    method: Method


@dataclass
class Plan:
    track: Track
    profile: Profile
    todo: list[Planned]
    done: list[Planned]


@dataclass
class Outcome:
    cell: Cell
    status: str  # done | failed
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    elsewhere: bool = False  # finished by another run on the same store while this one ran


def expand(track: Track, profile: Profile, method: Method, *, seeds: Sequence[int] | None = None, dataset: str | None = None) -> list[Cell]:
    """Cells of ``profile`` for ``method``, with optional seed and dataset overrides.

    A dataset override makes a derived profile (``NAME:DATASET``) with its own id; seed
    overrides only change which repeats run.
    """
    prof = with_dataset(profile, dataset) if dataset is not None else profile
    if seeds is not None:
        prof = dataclasses.replace(prof, seeds=tuple(seeds))
    return track.cells(prof, method)


def make_plan(track: Track, profile: Profile, methods: Sequence[Method], store: Store, *, seeds: Sequence[int] | None = None, dataset: str | None = None, references: bool = True) -> Plan:
    wanted: list[Method] = list(methods)
    if references:
        names = {m.name for m in wanted}
        for ref in track.reference_methods:
            if ref not in names:
                try:
                    wanted.append(track.reference(profile, ref))
                except LookupError:
                    continue
    planned = [Planned(c, m) for m in wanted for c in expand(track, profile, m, seeds=seeds, dataset=dataset)]
    if dataset is not None:
        profile = with_dataset(profile, dataset)
    seen: set[str] = set()
    unique = []
    for p in planned:
        if p.cell.key not in seen:
            seen.add(p.cell.key)
            unique.append(p)
    done = store.done_keys([p.cell.key for p in unique])
    return Plan(track, profile, [p for p in unique if p.cell.key not in done], [p for p in unique if p.cell.key in done])


# ---- executing one cell (in any process) ------------------------------------------------------


def run_one(track_name: str, method_name: str, params: dict[str, Any], cell: Cell, ctx: CellContext) -> CellResult:
    """Run one cell. Used by every executor; raises on failure.

    The method is the registry's ``method_name``; a track on the pipeline applies the cell's
    parameters itself (``Track.accept``, once); for a track with its own ``run_cell`` they are
    applied here."""
    track = plugins.track(track_name)
    method = plugins.method(method_name)
    if params and not Track.uses_pipeline(track):
        method = method.with_params(**params)
    with envmod.cell_scope(ctx.device):
        result = track.run_cell(cell, method, ctx)
    _check_result(result, method_name)
    return result


def _check_result(result: Any, method_name: str) -> None:
    import math

    if not isinstance(result, CellResult):
        raise CellFailure(f"track returned {type(result).__name__}, not a CellResult (plugin {method_name!r})")
    bad = [k for k, v in result.metrics.items() if not isinstance(v, (int, float)) or (isinstance(v, float) and math.isnan(v) and not k.startswith("class_acc_"))]
    if bad:
        raise CellFailure(f"plugin {method_name!r} produced non-numeric or NaN metrics: {', '.join(bad[:5])}")


def _format_error(exc: BaseException, method_name: str) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, CellFailure):
        return msg
    if f"plugin {method_name!r}" not in msg:  # a bare substring test is fooled by e.g. 'kaboom' in 'kaboom!'
        return f"plugin {method_name!r} failed: {type(exc).__name__}: {msg}"
    return f"{type(exc).__name__}: {msg}"


# ---- executors --------------------------------------------------------------------------------


Event = tuple[str, Any]  # ("started", key) | ("progress", (key, what, frac)) | ("result", (key, ok, payload, tb))


class InProcessExecutor:
    def __init__(self, ctx: CellContext) -> None:
        self.ctx = ctx
        self.running: set[str] = set()  # keys of the cells executing now (what Ctrl-C cuts short)

    def run(self, items: Sequence[Planned], on_progress: Callable[[str, str, float], None]) -> Iterator[tuple[Planned, bool, Any, str | None, float]]:
        for p in items:
            key = p.cell.key
            ctx = dataclasses.replace(self.ctx, progress=lambda w, f, k=key: on_progress(k, w, f))
            t0 = time.perf_counter()
            self.running.add(key)
            try:
                res = run_one(p.cell.track, p.method.name, dict(p.method.params), p.cell, ctx)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a plugin failure fails its cell only
                self.running.discard(key)
                yield p, False, _format_error(exc, p.method.name), traceback.format_exc(), time.perf_counter() - t0
                continue
            self.running.discard(key)
            # yield outside the try: a GeneratorExit (the caller stopped) must not be caught above
            yield p, True, res, None, time.perf_counter() - t0

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def _worker(wid: int, tasks: Any, results: Any, parent_pid: int) -> None:
    die_with_parent(parent_pid)  # a killed driver (even kill -9) takes its workers with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C
    while True:
        item = tasks.get()
        if item is None:
            return
        key, track_name, method_name, params, cell, ctx_args = item
        ctx = CellContext(*ctx_args[:4], progress=lambda w, f: results.put(("progress", (key, w, f))), prefetch_signals=ctx_args[4], hidden_salt=ctx_args[5], store_path=ctx_args[6])
        try:
            res = run_one(track_name, method_name, params, cell, ctx)
            results.put(("result", (wid, key, True, res, None)))
        except BaseException as exc:  # noqa: BLE001
            results.put(("result", (wid, key, False, _format_error(exc, method_name), traceback.format_exc())))


class ProcessExecutor:
    """N forked workers; per-cell time-out; a dead or hung worker fails only its cell."""

    def __init__(self, ctx: CellContext, jobs: int, timeout_s: float | None) -> None:
        self.ctx = ctx
        self.jobs = max(1, jobs)
        self.timeout_s = timeout_s
        self.mpctx = mp.get_context("fork")
        self.results = self.mpctx.Queue()
        self.workers: dict[int, tuple[Any, Any]] = {}
        self._next = 0
        self.running: set[str] = set()  # keys of the cells a worker is executing now

    def _spawn(self) -> int:
        wid = self._next
        self._next += 1
        tasks = self.mpctx.Queue()
        p = self.mpctx.Process(target=_worker, args=(wid, tasks, self.results, os.getpid()), daemon=True)
        with _sigint_held():  # a Ctrl-C during the fork is raised after it, not lost in it
            p.start()
            self.workers[wid] = (p, tasks)
        return wid

    def run(self, items: Sequence[Planned], on_progress: Callable[[str, str, float], None]) -> Iterator[tuple[Planned, bool, Any, str | None, float]]:
        pending = list(items)
        busy: dict[int, tuple[Planned, float]] = {}
        idle = list(self.workers)  # workers left idle by an earlier batch are reused
        idle += [self._spawn() for _ in range(min(self.jobs, len(pending)) - len(idle))]
        ctx_args = (self.ctx.results_dir, self.ctx.cache_dir, self.ctx.data_dir, self.ctx.device, self.ctx.prefetch_signals, self.ctx.hidden_salt, self.ctx.store_path)
        while pending or busy:
            while idle and pending:
                wid = idle.pop()
                p = pending.pop(0)
                self.workers[wid][1].put((p.cell.key, p.cell.track, p.method.name, dict(p.method.params), p.cell, ctx_args))
                busy[wid] = (p, time.perf_counter())
                self.running.add(p.cell.key)
            try:
                kind, payload = self.results.get(timeout=0.5)
            except queue.Empty:
                kind, payload = "", None
            if kind == "progress":
                on_progress(*payload)
            elif kind == "result":
                wid, key, ok, res, tb = payload
                if wid in busy:
                    p, t0 = busy.pop(wid)
                    self.running.discard(p.cell.key)
                    idle.append(wid)
                    yield p, ok, res, tb, time.perf_counter() - t0
            now = time.perf_counter()
            for wid, (p, t0) in list(busy.items()):
                proc = self.workers[wid][0]
                timed_out = self.timeout_s is not None and now - t0 > self.timeout_s
                if timed_out or not proc.is_alive():
                    if timed_out:
                        msg = f"plugin {p.method.name!r} timed out: the cell ran past its {self.timeout_s:g} s limit"
                    else:
                        msg = f"plugin {p.method.name!r} crashed its worker process (exit code {proc.exitcode})"
                    self._kill(wid)
                    busy.pop(wid)
                    self.running.discard(p.cell.key)
                    yield p, False, msg, None, now - t0
                    if pending:
                        idle.append(self._spawn())

    def _kill(self, wid: int) -> None:
        proc, _tasks = self.workers.pop(wid)
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)

    def abort(self) -> None:
        """Ctrl-C: kill every worker now (their cells are cut short; waiting for them to notice
        a closed queue would keep the user waiting seconds without a word)."""
        for proc, _tasks in self.workers.values():
            if proc.is_alive():
                proc.kill()
        for proc, _tasks in self.workers.values():
            proc.join(timeout=5)
        self.workers.clear()

    def close(self) -> None:
        for wid, (proc, tasks) in list(self.workers.items()):
            try:
                tasks.put(None)
            except Exception:  # noqa: BLE001
                pass
        for wid, (proc, _t) in list(self.workers.items()):
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
        self.workers.clear()


def make_executor(name: str, ctx: CellContext, jobs: int, timeout_s: float | None, address: str | None = None) -> Any:
    if name == "ray":
        from .ray_executor import RayExecutor

        # the executor receives the cell function: ray_executor never imports this module
        return RayExecutor(ctx, jobs, timeout_s, address, cell_fn=run_one, format_error=_format_error)
    if name == "process" or jobs > 1 or timeout_s is not None:
        return ProcessExecutor(ctx, jobs, timeout_s)
    if name != "inprocess":
        raise ValueError(f"unknown executor {name!r}; use inprocess, process or ray")
    return InProcessExecutor(ctx)


WAIT_POLL_S = 2.0  # how often a run re-checks cells that another live run is computing


def execute(
    plan: Plan,
    store: Store,
    ctx: CellContext,
    *,
    jobs: int = 1,
    executor: str = "inprocess",
    timeout_s: float | None = None,
    address: str | None = None,
    on_done: Callable[[Outcome], None] | None = None,
    on_progress: Callable[[str, str, float], None] | None = None,
    hidden_salt: str | None = None,
    on_interrupt: Callable[[int], None] | None = None,
) -> list[Outcome]:
    """Run the plan's cells; the driver alone writes the store. Returns one outcome per cell.

    Hidden generated data: for a track with ``hidden_data`` and a ``salted`` profile, the
    context carries the store's salt (``hidden_salt_for``: ``hidden_salt`` requested, else the
    store's own, created at its first such run), and every run row records the salt in effect
    in its environment (``hidden_salt``; "" = public seeds), so the run reproduces.

    Each cell is claimed first (``Store.claim``: a lease in one write transaction, refreshed by
    a heartbeat thread while this run lasts). A cell another live run holds is not computed
    here: this run waits for it and reports its stored result, or takes it over if that run
    fails it or dies (its lease goes stale). So two runs on one database compute each cell once.
    """
    timeout = timeout_s if timeout_s is not None else plan.profile.timeout_s
    prefetch = frozenset().union(*(getattr(p.method, "signals", frozenset()) for p in plan.todo))
    hidden = bool(getattr(plan.track, "hidden_data", False))
    with _store_errors(store):
        salt = hidden_salt_for(plan, store, hidden_salt) if plan.todo else ""
    # the store's file travels with the context: ``Track.protected`` refuses it to contestants
    # (it holds the salt) even when --db puts it outside ``ctx.results_dir``
    store_file = getattr(store, "sqlite_path", None)
    ctx = dataclasses.replace(ctx, prefetch_signals=ctx.prefetch_signals | prefetch, hidden_salt=salt,
                              store_path=Path(store_file).resolve() if store_file is not None else ctx.store_path)
    outcomes: list[Outcome] = []
    started: set[str] = set()
    envs: dict[str, dict[str, Any]] = {}
    exe: Any = None
    progress = on_progress or (lambda k, w, f: None)

    def report(out: Outcome) -> None:
        started.discard(out.cell.key)
        outcomes.append(out)
        if on_done is not None:
            on_done(out)

    def claim(items: Sequence[Planned]) -> tuple[list[Planned], list[Planned]]:
        mine, elsewhere = [], []
        with _store_errors(store):
            for p in items:
                env = envs.setdefault(p.method.name, envmod.environment(ctx.device, p.method))
                state = store.claim(p.cell, p.method, {**env, "hidden_salt": salt} if hidden else env)
                if state == "claimed":
                    started.add(p.cell.key)
                    mine.append(p)
                elif state == "busy":
                    elsewhere.append(p)
                else:  # done by a concurrent run since the plan was made
                    report(_stored_outcome(store, p))
        return mine, elsewhere

    with store.keep_leases():
        try:
            todo, waiting = claim(plan.todo)
            while todo or waiting:
                if todo:
                    if exe is None:
                        exe = make_executor(executor, ctx, jobs, timeout, address)
                    if not isinstance(exe, InProcessExecutor):  # costliest first (stable: plan order within a cost)
                        todo.sort(key=lambda p: -float(plan.track.cost_hint(p.cell)))
                    for out in _run_claimed(exe, todo, store, progress):
                        report(out)
                    todo = []
                if waiting:
                    progress("", f"waiting for {len(waiting)} cell(s) another run on this database is computing", 0.0)
                    time.sleep(WAIT_POLL_S)
                    todo, waiting = claim(waiting)
        except KeyboardInterrupt:
            # every cell this run holds and did not finish, including one whose claim was
            # committed an instant before the interrupt (not yet in ``started``): interrupted,
            # never a failure, never left "running"; a second Ctrl-C cannot cut this short.
            # Only the cells executing now were cut short; the other claimed ones never started.
            with _sigint_deferred():
                running = getattr(exe, "running", None) if exe is not None else set()
                cut = len(running) if running is not None else None  # None: an executor that does not say
                if on_interrupt is not None:
                    on_interrupt(cut if cut is not None else len(started))  # at once: the Ctrl-C was heard
                abort = getattr(exe, "abort", None)
                if abort is not None:
                    abort()
                n = store.interrupt_running([p.cell.key for p in plan.todo], INTERRUPT_NOTE)
            raise RunInterrupted(n, None if cut is None else min(cut, n)) from None
        finally:
            if exe is not None:
                exe.close()
    return outcomes


def hidden_salt_for(plan: Plan, store: Store, requested: str | None = None) -> str:
    """The salt in effect for ``plan``'s hidden generated data: "" (public seeds) for a track
    without ``hidden_data`` or a profile that is not ``salted``; else ``store.hidden_salt``
    (``requested``, checked against the store's, or the store's own, created if it has none)."""
    if not (getattr(plan.track, "hidden_data", False) and getattr(plan.profile, "salted", True)):
        return ""
    return store.hidden_salt(requested)


INTERRUPT_NOTE = "interrupted (Ctrl-C); rerun the same command to finish the missing cells"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``execute``; ``interrupted`` cells were marked (none are failures): ``cut``
    of them were executing (cut short), the other ``not_started`` were claimed and waiting."""

    def __init__(self, interrupted: int, cut: int | None = None) -> None:
        super().__init__(f"{interrupted} cell(s) marked interrupted")
        self.interrupted = interrupted
        self.cut = interrupted if cut is None else cut
        self.not_started = interrupted - self.cut


@contextlib.contextmanager
def _sigint_handler(handler: Any) -> Iterator[Any]:
    """Install ``handler`` for SIGINT while the block runs and restore the previous one after;
    yields the previous handler, or None outside the main thread (signals are not ours there)."""
    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield None
        return
    try:
        yield old
    finally:
        signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold off SIGINT while the driver records an interrupt (main thread only; elsewhere a
    no-op): a second Ctrl-C arrives after the bookkeeping, not in the middle of it."""
    with _sigint_handler(signal.SIG_IGN):
        yield


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Record a SIGINT instead of raising it while the block runs, then raise it (main thread only).

    A Ctrl-C that lands inside ``os.fork()`` makes Python run the SIGINT handler in an at-fork
    callback (multiprocessing's, logging's), where exceptions are printed and ignored: the
    KeyboardInterrupt was lost and the run went on as if nothing had been pressed."""
    got: list[int] = []
    with _sigint_handler(lambda signum, frame: got.append(signum)) as old:
        yield
    if got and old is not None:
        if old is signal.default_int_handler:
            raise KeyboardInterrupt
        if callable(old):
            old(signal.SIGINT, None)


def _run_claimed(exe: Any, todo: list[Planned], store: Store, on_progress: Callable[[str, str, float], None]) -> Iterator[Outcome]:
    for p, ok, payload, tb, secs in exe.run(todo, on_progress):
        key = p.cell.key
        with _store_errors(store):
            if ok:
                res: CellResult = payload
                if store.finish(key, metrics=res.metrics, timings=res.timings, info=res.info, artifacts=res.artifacts):
                    out = Outcome(p.cell, "done", metrics=dict(res.metrics), seconds=secs)
                else:  # a run that took over our (stale) lease stored it first: report what is stored
                    out = _stored_outcome(store, p, secs)
            else:
                store.fail(key, str(payload), tb, {"total_s": secs})
                out = Outcome(p.cell, "failed", error=str(payload), seconds=secs)
        yield out  # outside the `with`: an exception in the consumer is not a store error


def _stored_outcome(store: Store, p: Planned, seconds: float = 0.0) -> Outcome:
    """The outcome of a cell as stored (finished by another run)."""
    with _store_errors(store):
        rows = store.runs(key=p.cell.key)
        mets = store.metrics_for([rows[0].id]).get(rows[0].id, {}) if rows and rows[0].id is not None else {}
    return Outcome(p.cell, "done", metrics=dict(mets), seconds=seconds, elsewhere=True)


@contextlib.contextmanager
def _store_errors(store: Store) -> Iterator[None]:
    """Turn a failed write (full disk, lost database) into one clear ``StoreError``.

    Each cell's rows are written in one transaction, so a failed write leaves no partial cell;
    finished cells stay stored and a rerun completes the rest.
    """
    try:
        yield
    except OSError as exc:
        raise StoreError(f"cannot write results ({exc.strerror or exc}) under {store.artifacts_dir.parent}; free space or fix permissions and rerun (finished cells are kept)") from exc
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", exc)
        raise StoreError(f"cannot write to the results database {store.url} ({orig}); fix it and rerun (finished cells are kept)") from exc


def default_context(results_dir: Path, device: str, data_dir: Path | None) -> CellContext:
    return CellContext(results_dir=results_dir, cache_dir=results_dir / "cache", data_dir=data_dir, device=device)
