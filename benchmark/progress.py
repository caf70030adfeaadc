"""What ``coreset-bench run`` shows while cells run, and how it formats numbers.

On a terminal: a live progress bar (cells done / total, failures so far, elapsed time, an
estimate of the time left) and, below it, a spinner naming the step the running cell is in
(proxy training, decoding a dataset, AutoAttack ...) with that step's own elapsed time. Each
finished cell also prints one line above the bar.

Elsewhere (a pipe, a log file, CI): no bar and no table; one plain, unwrapped line per finished
cell with its key metrics and the same counters, so a log reads like the bar would have.

The estimate of the time left weighs cells by the track's ``cost_hint`` (a CIFAR cell with
AutoAttack is not a digits cell): ``elapsed × (cost left / cost done)``, from the cells already
finished in this run (none finished: no estimate yet).

Numbers: a metric whose values all lie in [0, 1] (accuracies, AUCs, rates) is shown in percent,
as on the leaderboard (``fraction_metric``, ``fmt_metric``); others as plain numbers.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any


#: names of amounts, never fractions however small (``idle_hours_per_day``, ``fit_s``, ``subset_size``)
_AMOUNT = re.compile(r"_per_|(^|_)(s|sec|seconds|minutes|hours|days|count|size|steps|epochs|bytes|flops)($|_)")


def amount_metric(name: str) -> bool:
    """Whether the metric's name says it is an amount (time, count, size, a rate per day), not a fraction."""
    return bool(_AMOUNT.search(name))


def fraction_metric(values: Iterable[float], name: str | None = None) -> bool:
    """Whether a metric with these values is a fraction (shown in %), the leaderboard's rule: all
    values in [0, 1], and (given its ``name``) not an amount like ``idle_hours_per_day``."""
    if name is not None and amount_metric(name):
        return False
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return bool(vals) and all(0.0 <= v <= 1.0 for v in vals)


def fmt_value(v: float, percent: bool) -> str:
    if percent:
        return f"{100.0 * v:.2f} %"
    a = abs(v)
    if a == 0 or 0.001 <= a < 1e5:
        return f"{v:.4g}" if a < 1 else f"{v:.{max(0, 4 - int(math.log10(a)) - 1)}f}"
    return f"{v:.3g}"


def fmt_metric(v: float, percent: bool, std: float | None = None) -> str:
    """``81.23 %`` / ``81.23 ± 0.40 %`` in percent, ``0.5321 ± 0.01`` otherwise."""
    if std is None:
        return fmt_value(v, percent)
    if percent:
        return f"{100.0 * v:.2f} ± {100.0 * std:.2f} %"
    return f"{fmt_value(v, False)} ± {fmt_value(std, False)}"


def fmt_duration(s: float | None) -> str:
    """``0:04:05`` (or ``?`` when unknown)."""
    if s is None or not math.isfinite(s):
        return "?"
    s = max(0, int(round(s)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def eta_seconds(elapsed: float, cost_done: float, cost_total: float) -> float | None:
    """Seconds left: ``elapsed × (cost_total − cost_done) / cost_done``; None before any cost is done."""
    if cost_done <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed * (cost_total - cost_done) / cost_done)


def _percent(frac: float) -> str:
    """A step's progress (``42 %``); none shown before the step reports any."""
    return f"{100.0 * min(max(float(frac), 0.0), 1.0):.0f} %" if frac > 0 else ""


class RunDisplay:
    """Progress of one ``run``: ``on_progress``/``on_done`` are the runner's callbacks.

    ``costs`` maps each cell key of the plan to its cost hint; ``metrics`` are the metric names
    shown per finished cell (primary first); ``emit`` prints one line (the live bar keeps it
    above itself on a terminal)."""

    def __init__(self, console: Any, costs: Mapping[str, float], metrics: Sequence[str], *, terminal: bool, clock: Callable[[], float] = time.perf_counter, label: Callable[[Any], str] | None = None) -> None:
        self.console = console
        self.label = label or (lambda cell: cell.label())
        self.costs = {k: max(float(c), 1e-9) for k, c in costs.items()}
        self.total = len(self.costs)
        self.cost_total = sum(self.costs.values())
        self.metrics = list(metrics)
        self.terminal = terminal
        self.clock = clock
        self.t0 = clock()
        self.done = 0
        self.failed = 0
        self.cost_done = 0.0
        self.failures: list[Any] = []
        self._progress: Any = None
        self._overall: Any = None
        self._step: Any = None
        self._step_what = ""

    # ---- counters ----------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.clock() - self.t0

    def eta(self) -> float | None:
        return eta_seconds(self.elapsed(), self.cost_done, self.cost_total)

    def counters(self) -> str:
        return f"[{self.done}/{self.total} cells, {self.failed} failed, {fmt_duration(self.elapsed())} elapsed, ~{fmt_duration(self.eta())} left]"

    # ---- live display ------------------------------------------------------------------
    def __enter__(self) -> RunDisplay:
        self.t0 = self.clock()
        if self.terminal:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=30),
                TextColumn("{task.fields[count]}", justify="right"),  # cells: done/total; a step: its %
                TextColumn("{task.fields[extra]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._overall = self._progress.add_task("cells", total=self.total, extra=self._extra(), count=f"0/{self.total}")
            self._step = self._progress.add_task("  starting", total=1.0, extra="", count="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _extra(self) -> str:
        return f"{self.failed} failed · ~{fmt_duration(self.eta())} left"

    def on_progress(self, key: str, what: str, frac: float) -> None:
        if self._progress is None:
            return
        from rich.markup import escape

        if what != self._step_what:  # a new step: its own elapsed time starts at zero
            self._step_what = what
            self._progress.reset(self._step, total=1.0, description=escape(f"  {what}"), completed=frac, extra="", count=_percent(frac))
        else:
            self._progress.update(self._step, completed=frac, count=_percent(frac))
        self._progress.update(self._overall, extra=self._extra())

    def on_done(self, out: Any) -> None:
        from rich.text import Text

        self.done += 1
        self.cost_done += self.costs.get(out.cell.key, 1.0)
        label = self.label(out.cell)
        if out.status == "done":
            shown = " ".join(f"{m}={fmt_value(out.metrics[m], fraction_metric([out.metrics[m]], m))}" for m in self.metrics if m in out.metrics)
            where = "by another run on this database" if getattr(out, "elsewhere", False) else f"{out.seconds:.1f}s"
            line = Text.assemble(("done", "green"), f"   {label} {shown} ({where})")
        else:
            self.failed += 1
            self.failures.append(out)
            line = Text.assemble(("failed", "red"), f" {label}: {out.error}")
        if not self.terminal:
            line.append(" " + self.counters())
        self.console.print(line, highlight=False, soft_wrap=True)
        if self._progress is not None:
            self._progress.update(self._overall, advance=1, extra=self._extra(), count=f"{self.done}/{self.total}")
