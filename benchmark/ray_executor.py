"""Ray executor: each cell becomes a Ray task that declares its CPU and GPU needs.

``coreset-bench run ... --executor ray [--address ADDR] [--jobs N]``. Without an address a
local Ray instance is started (``--jobs`` CPUs) and shut down at the end; with one, the driver
connects to that cluster. Workers load plugins through the same entry points (the project and
its plugin packages must be installed on every node). Results travel back to the driver, which
alone writes the store. The signal cache lives under the results directory: on a cluster, put it
on a shared file system (``--db`` and the working directory on shared storage) so proxy runs
are shared across nodes; without one each node recomputes what it lacks, and every cell still
records the proxy's cost.

A cell past its time-out is cancelled (``ray.cancel(force=True)``) and fails on its own. A task
whose worker process dies (killed, out of memory, its node lost) is retried by Ray up to
``RETRIES`` times on any node (``CORESET_BENCH_RAY_RETRIES``); a plugin's own exception is never
retried (it is returned as the cell's failure). Nothing a task computed reaches the store until
the driver writes it, so a retried cell is stored once. Every cell records the Ray node that ran
it in ``info["ray_node"]`` (the node id's first 12 hex digits).

This module never imports ``coreset_bench.runner``: the runner hands the executor its cell
function (``run_one``) and error formatter, so the dependency runs one way only (runner ->
ray_executor, lazily, when ``--executor ray`` is chosen).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .cells import CellContext


#: ``run_one(track_name, method_name, params, cell, ctx) -> CellResult``: runs one cell, raises on failure
CellFn = Callable[[str, str, dict[str, Any], Any, CellContext], Any]
#: ``format_error(exc, method_name) -> str``: the one-line error stored with a failed cell
FormatFn = Callable[[BaseException, str], str]


def _remote_cell(cell_fn: CellFn, format_error: FormatFn, track_name: str, method_name: str, params: dict[str, Any], cell: Any, ctx_args: tuple[Any, ...]) -> tuple[bool, Any, str | None]:
    # cell_fn and format_error are module-level functions: Ray pickles them by reference
    ctx = CellContext(*ctx_args[:4], prefetch_signals=ctx_args[4], hidden_salt=ctx_args[5], store_path=ctx_args[6])
    try:
        result = cell_fn(track_name, method_name, params, cell, ctx)
        node = _node_id()
        if node and isinstance(getattr(result, "info", None), dict):
            result.info["ray_node"] = node
        return True, result, None
    except BaseException as exc:  # noqa: BLE001 - returned to the driver, which stores it
        return False, format_error(exc, method_name), traceback.format_exc()


def _node_id() -> str | None:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())[:12]
    except Exception:  # noqa: BLE001 - not inside a Ray worker
        return None


def _retries() -> int:
    import os

    raw = os.environ.get("CORESET_BENCH_RAY_RETRIES", "")
    return int(raw) if raw.strip().isdigit() else RETRIES


#: how often Ray re-runs a cell whose worker process died (not a plugin's exception)
RETRIES = 2


class RayExecutor:
    """Runs cells as Ray tasks; ``cell_fn`` and ``format_error`` are the runner's (``run_one``,
    ``_format_error``), passed in so that this module does not import the runner."""

    def __init__(self, ctx: CellContext, jobs: int, timeout_s: float | None, address: str | None, *, cell_fn: CellFn, format_error: FormatFn) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError("--executor ray needs Ray: pip install 'coreset-bench[ray]'") from None
        self.ray = ray
        self.ctx = ctx
        self.cell_fn = cell_fn
        self.format_error = format_error
        self.timeout_s = timeout_s
        self.started_here = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, jobs), include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
                self.started_here = True
        gpus = 1 if ctx.device.startswith("cuda") else 0
        self.fn = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=_retries(), retry_exceptions=False)(_remote_cell)

    def run(self, items: Sequence[Any], on_progress: Callable[[str, str, float], None]) -> Iterator[tuple[Any, bool, Any, str | None, float]]:
        ray = self.ray
        # absolute paths: a Ray worker's working directory is its node's, not the driver's (on a
        # cluster, the results directory is a shared file system mounted at the same path)
        absolute = [None if d is None else Path(d).resolve() for d in (self.ctx.results_dir, self.ctx.cache_dir, self.ctx.data_dir)]
        ctx_args = (*absolute, self.ctx.device, self.ctx.prefetch_signals, self.ctx.hidden_salt, self.ctx.store_path)
        pending = list(items)
        refs: dict[Any, tuple[Any, float]] = {}
        # at most `window` tasks in flight, so a task's clock (for the time-out) starts when a
        # slot is free for it rather than while it queues behind others
        window = max(1, int(self.ray.cluster_resources().get("GPU" if self.ctx.device.startswith("cuda") else "CPU", 1)))
        while pending or refs:
            while pending and len(refs) < window:
                p = pending.pop(0)
                ref = self.fn.remote(self.cell_fn, self.format_error, p.cell.track, p.method.name, dict(p.method.params), p.cell, ctx_args)
                refs[ref] = (p, time.perf_counter())
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for ref in ready:
                p, t0 = refs.pop(ref)
                try:
                    ok, payload, tb = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - worker crash, cancellation
                    ok, payload, tb = False, f"plugin {p.method.name!r}: Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", None
                yield p, ok, payload, tb, time.perf_counter() - t0
            if self.timeout_s is not None:
                now = time.perf_counter()
                for ref, (p, t0) in list(refs.items()):
                    if now - t0 > self.timeout_s:
                        ray.cancel(ref, force=True)
                        refs.pop(ref)
                        yield p, False, f"plugin {p.method.name!r} timed out: the cell ran past its {self.timeout_s:g} s limit", None, now - t0

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()
