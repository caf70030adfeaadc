"""SVG figures of a board (matplotlib, Agg backend): budget curves, the cost–quality Pareto chart
and the figures tracks declare by name (``Track.board_figures``, registered in ``FIGURES``); the
board knows no track names. A figure with nothing to show (one budget, one row, rows that all
cost the same) is omitted, never drawn empty.

Text is written as SVG ``<text>`` (``svg.fonttype = none``) which matplotlib XML-escapes; ``$`` in
labels is escaped so that method names are never parsed as mathtext. Output is deterministic
(no date metadata, fixed hash salt).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .board import Board, Table  # noqa: E402

_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "coreset-bench",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_META = {"Date": None, "Creator": "coreset-bench"}


def _label(text: str) -> str:
    return text.replace("$", r"\$")


def _limits(board: Board, metric: str) -> tuple[float, float]:
    """The range a metric can take, in plotted units: [0, 100] % for a fraction, else unbounded.
    Confidence bands are clipped to it (a t-interval over few seeds can run past 0 % or 100 %)."""
    if metric in board.fraction_metrics:
        return 0.0, 100.0
    return -math.inf, math.inf


def _title(text: str, width: int = 44) -> str:
    """A panel title wrapped to the panel's width, so neighbouring titles never overlap."""
    import textwrap

    return "\n".join(textwrap.wrap(_label(text), width)) or _label(text)


def _scale(board: Board, metric: str) -> float:
    return 100.0 if metric in board.fraction_metrics else 1.0


def curve_variants(board: Board, max_rows: int) -> list[Any]:
    """The variants the budget curves draw: the ``max_rows`` best of the main table, then the baseline.

    The same variants (and colours) appear in every panel, chosen by the board's main ranking.
    """
    chosen = [r.variant for r in board.main.ranked_rows[:max_rows]]
    if board.baseline is not None and board.baseline not in chosen:
        chosen.append(board.baseline)
    return chosen


def budget_curves(board: Board, path: Path, max_rows: int = 10) -> bool:
    """Primary metric vs budget per method with 95 % CI bands, one panel per setting.

    Returns False (and writes nothing) when the profile has no numeric budget axis.
    """
    settings = [t for t in board.tables if t.kind == "setting"]
    if board.column_axis is None or not settings:
        return False
    if not all(isinstance(c.value, (int, float)) and not isinstance(c.value, bool) for c in settings[0].columns):
        return False
    if len(settings[0].columns) < 2:  # one budget: a curve of one point shows nothing
        return False
    scale = _scale(board, board.primary)
    unit = " (%)" if scale == 100.0 else ""
    floor_y, ceil_y = _limits(board, board.primary)
    n = len(settings)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    drawn = curve_variants(board, max_rows)
    title_lines = max(_title(t.title).count("\n") + 1 for t in settings)
    # fixed margins instead of tight layouts: computing text extents dominates the cost of a
    # figure with many panels, and a large board must render in seconds; room for wrapped titles
    panel_w, panel_h, legend_w, top, bottom, left = 4.2, 3.0 + 0.16 * (title_lines - 1), 2.4, 0.3 + 0.16 * title_lines, 0.55, 0.75
    width = ncols * panel_w + legend_w
    height = nrows * panel_h + top + bottom
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
        fig.subplots_adjust(
            left=left / width, right=(width - legend_w) / width, bottom=bottom / height, top=1 - top / height,
            wspace=0.3, hspace=0.55 + 0.08 * (title_lines - 1),
        )
        cmap = plt.get_cmap("tab10")
        colors = {id(v): ("0.35" if v is board.baseline else cmap(i % 10)) for i, v in enumerate(drawn)}
        legend: dict[str, Any] = {}
        for i, table in enumerate(settings):
            ax = axes[i // ncols][i % ncols]
            by_variant = {id(r.variant): r for r in table.rows}
            for v in drawn:
                row = by_variant.get(id(v))
                if row is None:
                    continue
                xs, ys, lo, hi = [], [], [], []
                for col, iv, ok in zip(table.columns, row.cols, row.col_applicable):
                    if not ok or iv is None:
                        continue
                    xs.append(float(col.value))
                    ys.append(iv.mean * scale)
                    a, b = iv.bounds()
                    lo.append(min(max(a * scale, floor_y), ceil_y))
                    hi.append(min(max(b * scale, floor_y), ceil_y))
                if not xs:
                    continue
                color = colors[id(v)]
                (line,) = ax.plot(xs, ys, "--" if row.baseline else "-", marker="o", ms=3, lw=1.4, color=color)
                ax.fill_between(xs, lo, hi, color=color, alpha=0.15, lw=0)
                legend.setdefault(v.label, line)
            floors = {f for f, c in zip(table.floor, table.columns) if f is not None and not c.extra}
            if len(floors) == 1:  # the constant-classifier accuracy (1/C): a reference line
                floor_line = ax.axhline(floors.pop() * scale, color="0.45", lw=1.0, ls=":")
                legend.setdefault("constant classifier (1/C)", floor_line)
            ax.set_title(_title(table.title), fontsize=9)
            ax.set_xlabel(board.column_axis)
            ax.set_ylabel(_label(board.primary) + unit)
            ax.grid(alpha=0.3, lw=0.5)
        for j in range(n, nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        if legend:
            labels = [v.label for v in drawn if v.label in legend] + [k for k in legend if k == "constant classifier (1/C)"]
            fig.legend([legend[k] for k in labels], [_label(k) for k in labels], loc="center left", bbox_to_anchor=((width - legend_w + 0.1) / width, 0.5), frameon=False, fontsize=8)
        fig.savefig(path, format="svg", metadata=_META)
        plt.close(fig)
    return True


def _place_labels(fig: Any, ax: Any, labels: list[tuple[str, tuple[float, float]]], size: float = 7.0) -> None:
    """Annotate points with text that never overlaps other labels or leaves the axes: each label
    goes right of its point, else left, nudged down (then up) in steps of a line until its box is
    free; a label with no free place within 8 lines is drawn smaller at its point's place.

    The layout is computed in points (1/72 in) from the axes' final data limits, without drawing
    the figure (a full draw per chart only to read a transform doubled the chart's cost), and
    the offsets are given in points, so the SVG (72 dpi) shows the layout as computed."""
    ax.get_xlim(), ax.get_ylim()  # resolve pending autoscaling: transData then maps to the final limits
    to_pt = 72.0 / fig.dpi
    trans = ax.transData
    x0, y0, x1, y1 = (v * to_pt for v in ax.get_window_extent().extents)
    line = size * 1.25
    taken: list[tuple[float, float, float, float]] = []

    def free(b: tuple[float, float, float, float]) -> bool:
        a0, b0, a1, b1 = b
        if a0 < x0 or a1 > x1 + 30 or b0 < y0 or b1 > y1:
            return False
        return all(a1 <= c0 or a0 >= c1 or b1 <= d0 or b0 >= d1 for c0, d0, c1, d1 in taken)

    for text, (x, y) in sorted(labels, key=lambda t: -t[1][1]):
        px, py = (v * to_pt for v in trans.transform((x, y)))
        w = len(text) * size * 0.6
        spot = None
        for k in (0, -1, 1, -2, 2, -3, 3, -4, 4, -5, -6, -7, -8):
            for dx in (3.0, -3.0 - w):
                b = (px + dx, py + 1.5 + k * line, px + dx + w, py + 1.5 + k * line + line)
                if free(b):
                    spot = (dx, 1.5 + k * line, b)
                    break
            if spot is not None:
                break
        if spot is None:
            ax.annotate(_label(text), (x, y), xytext=(3, 2), textcoords="offset points", fontsize=size - 1.5, alpha=0.8)
            continue
        dx, dy, b = spot
        taken.append(b)
        ax.annotate(_label(text), (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=size, va="bottom",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.6"} if abs(dy) > line else None)


def pareto_front(points: list[tuple[float, float]], direction: str) -> list[int]:
    """Indices of the non-dominated points of (cost, quality), cheapest first.

    A point is on the front when no other point is at most as costly and strictly better, or
    strictly cheaper and at least as good.
    """
    better = (lambda a, b: a > b) if direction == "max" else (lambda a, b: a < b)
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1] if direction == "max" else points[i][1]))
    front: list[int] = []
    best: float | None = None
    for i in order:
        q = points[i][1]
        if best is None or better(q, best):
            front.append(i)
            best = q
    return front


def pareto_chart(board: Board, table: Table, path: Path) -> bool:
    """Mean end-to-end time per cell against the table's score; the Pareto front is drawn.

    With more than 15 rows only the front, the leader and the baseline are labelled.
    """
    rows = [r for r in table.ranked_rows if r.total_s is not None and r.score is not None]
    if len(rows) < 2:
        return False
    scale = _scale(board, board.primary)
    unit = " (%)" if scale == 100.0 else ""
    floor_y, ceil_y = _limits(board, board.primary)
    # like with like: each cell's time over the baseline's at the same cell on the same machine
    # (a loaded machine slows both); absolute seconds only when some row has no such pair
    relative = board.baseline is not None and all(r.cost_ratio is not None for r in rows)
    pts = [(float(r.cost_ratio if relative else r.total_s), r.score.mean * scale) for r in rows]  # type: ignore[arg-type, union-attr]
    xs = [p[0] for p in pts]
    if max(xs) - min(xs) < (0.05 * max(xs) if relative else max(1.0, 0.05 * max(xs))):
        return False  # every row costs the same (a fraction of a second apart): nothing to trade off
    front = pareto_front(pts, board.direction)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(7.4, 4.6))
        fig.subplots_adjust(left=0.1, right=0.84, bottom=0.13, top=0.96)
        on_front = set(front)
        # one errorbar call per group (not per point): a board may have many methods
        groups = (
            ("Pareto front", "C3", 5, 1.0, [i for i in range(len(rows)) if i in on_front]),
            ("baseline", "0.35", 4, 0.8, [i for i, r in enumerate(rows) if r.baseline and i not in on_front]),
            (None, "C0", 4, 0.7, [i for i, r in enumerate(rows) if not r.baseline and i not in on_front]),
        )
        for _name, color, ms, alpha, idx in groups:
            if not idx:
                continue
            lo_hi = [rows[i].score.bounds() for i in idx]  # type: ignore[union-attr]
            yerr = [[max(0.0, pts[i][1] - max(lo * scale, floor_y)) for i, (lo, _) in zip(idx, lo_hi)], [max(0.0, min(hi * scale, ceil_y) - pts[i][1]) for i, (_, hi) in zip(idx, lo_hi)]]  # type: ignore[union-attr]
            ax.errorbar([pts[i][0] for i in idx], [pts[i][1] for i in idx], yerr=yerr, fmt="o", ms=ms, capsize=2, color=color, alpha=alpha, lw=1)
        fx = [pts[i][0] for i in front]
        fy = [pts[i][1] for i in front]
        ax.step(fx, fy, where="post", color="C3", lw=1, alpha=0.7, label="Pareto front")
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        labelled = [i for i, r in enumerate(rows) if i in on_front or r.baseline or r.leader or len(rows) <= 15]
        _place_labels(fig, ax, [(rows[i].variant.label, pts[i]) for i in labelled])
        with_selection = any(r.selection_s is not None for r in rows)
        if relative:
            ax.set_xlabel(f"end-to-end time per cell ÷ {_label(board.baseline.label)}'s at the same cell, same machine")  # type: ignore[union-attr]
        else:
            ax.set_xlabel("mean end-to-end time per cell (s)" + (": selection incl. proxy + training + evaluation" if with_selection else ""))
        ax.set_ylabel(_label(f"{board.primary} ({table.title.lower()})") + unit)
        ax.grid(alpha=0.3, lw=0.5)
        ax.legend(loc="lower right", frameon=False, fontsize=8)
        fig.savefig(path, format="svg", metadata=_META)
        plt.close(fig)
    return True


def pool_frontier(board: Board, path: Path) -> bool:
    """Pooling track: idle cluster-hours per day against hit rate, one panel per trace, for every
    row (one small dot per cell, a large one at the row's mean) over the hindsight static
    frontiers of the cells (constant pools 0..P*, one thin line per repeat, from each cell's
    ``info["frontier_hit"]``/``["frontier_idle_hours"]``). Returns False without such cells."""
    import json

    by_trace: dict[str, dict[str, list[tuple[float, float]]]] = {}
    frontiers: dict[str, dict[int, tuple[list[float], list[float]]]] = {}
    for v in board.variants:
        for (point, rep), rec in v.done.items():
            try:
                axes = json.loads(point)
            except ValueError:
                continue
            info, m = rec.get("info") or {}, rec.get("metrics") or {}
            if "hit_rate" not in m or "idle_hours_per_day" not in m:
                continue
            key = " · ".join(f"{k}={axes[k]}" for k in axes if k != "trace" and len(board.profile.axes.get(k, [])) > 1)
            trace = str(axes.get("trace", "")) + (f" ({key})" if key else "")
            by_trace.setdefault(trace, {}).setdefault(v.label or v.method, []).append((float(m["hit_rate"]), float(m["idle_hours_per_day"])))
            fh, fi, days = info.get("frontier_hit"), info.get("frontier_idle_hours"), info.get("eval_days")
            if isinstance(fh, list) and isinstance(fi, list) and days:
                frontiers.setdefault(trace, {})[int(rep)] = (fh, [x / float(days) for x in fi])
    if not by_trace:
        return False
    traces = sorted(by_trace)
    with plt.rc_context(_RC):
        fig, axs = plt.subplots(1, len(traces), figsize=(4.2 * len(traces) + 1.6, 4.2), squeeze=False)
        fig.subplots_adjust(left=0.07, right=0.8, bottom=0.14, top=0.9, wspace=0.3)
        names = sorted({n for t in traces for n in by_trace[t]})
        colours = {n: f"C{i % 10}" for i, n in enumerate(names)}
        for ax, trace in zip(axs[0], traces):
            for i, (rep, (fh, fi)) in enumerate(sorted(frontiers.get(trace, {}).items())):
                ax.plot([100 * h for h in fh], fi, color="0.4", lw=0.8, alpha=0.6, label="static frontier (hindsight)" if i == 0 else None)
            lo = 100.0
            for n, pts in sorted(by_trace[trace].items()):
                hs = [100 * h for h, _ in pts]
                ids = [i for _, i in pts]
                lo = min(lo, min(hs))
                ax.scatter(hs, ids, s=8, color=colours[n], alpha=0.4)
                ax.scatter([sum(hs) / len(hs)], [sum(ids) / len(ids)], s=40, color=colours[n], edgecolor="k", lw=0.5, label=_label(n), zorder=3)
            ax.set_xlim(max(lo - 1.0, 80.0), 100.05)
            ax.set_title(_label(trace), fontsize=8)
            ax.set_xlabel("hit rate (%)")
            ax.set_ylabel("idle cluster-hours per day")
            ax.grid(alpha=0.3, lw=0.5)
        handles, labels = axs[0][0].get_legend_handles_labels()
        seen = dict(zip(labels, handles))
        for ax in axs[0][1:]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(lab, h)
        fig.legend(list(seen.values()), list(seen.keys()), loc="center right", frameon=False, fontsize=7)
        fig.savefig(path, format="svg", metadata=_META)
        plt.close(fig)
    return True


def _epsilon_value(v: Any) -> float | None:
    try:
        e = float(v)
    except (TypeError, ValueError):
        return None
    return e if e > 0 else None


def _bound_shape_fit(eps: list[float], vals: list[float]) -> tuple[float, float] | None:
    """Least-squares (alpha, beta) of vals ~ alpha (1 - exp(-eps)) + beta over the finite
    epsilons: the (1 - e^-eps) factor of the DP uniform-stability bound that arXiv 2402.18726's
    curvature and memorization bounds inherit (the non-private reference, eps = inf, has factor 1)."""
    xs = [1.0 - math.exp(-e) if math.isfinite(e) else 1.0 for e in eps]
    if len(xs) < 3 or max(xs) - min(xs) < 1e-9:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(vals) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    alpha = sum((x - mx) * (y - my) for x, y in zip(xs, vals)) / sxx
    return alpha, my - alpha * mx


def epsilon_sweep(board: Board, path: Path, metric: str | None = None, relative: bool = False) -> bool:
    """A metric against epsilon, for profiles with an ``epsilon`` axis of 2 values or more.

    ``metric`` (default: the board's primary) per row against epsilon (cells: small dots; mean:
    line), with the track's declared chance level (``Track.metric_chance``) dotted. ``relative``:
    each row's mean relative to its non-private value, with the fitted bound shape
    alpha (1 - e^-eps) + beta dashed (the proxy-score sweep). When the cells carry the
    Feldman-Zhang memorization (``mem_mean``, ``mem_q90``) a right panel shows it (mean and 90th
    percentile over the queries, error bars: the estimate's mean standard error) against epsilon.
    The non-private reference (``inf``) is drawn at the right end of the log axis. Returns False
    (and writes nothing) without such an axis or cells."""
    import json

    grid = [e for e in (_epsilon_value(v) for v in board.profile.axes.get("epsilon", [])) if e is not None]
    if len(grid) < 2:
        return False
    metric = metric or board.primary
    chance = (getattr(board.track, "metric_chance", None) or {}).get(metric)
    finite = sorted(e for e in grid if math.isfinite(e))
    inf_x = (finite[-1] * 4.0) if finite else 1.0

    def xpos(e: float) -> float:
        return e if math.isfinite(e) else inf_x

    rows: dict[str, dict[float, list[float]]] = {}
    mem: dict[float, dict[str, list[float]]] = {}
    for v in board.variants:
        for (point, _rep), rec in v.done.items():
            try:
                e = _epsilon_value(json.loads(point).get("epsilon"))
            except (ValueError, AttributeError):
                continue
            m = rec.get("metrics") or {}
            if e is None or metric not in m:
                continue
            rows.setdefault(v.label or v.method, {}).setdefault(e, []).append(float(m[metric]))
            for k in ("mem_mean", "mem_q90", "mem_se_mean"):
                if k in m:
                    mem.setdefault(e, {}).setdefault(k, []).append(float(m[k]))
    if not rows:
        return False
    names = sorted(rows)
    colours = {n: f"C{i % 10}" for i, n in enumerate(names)}
    panels = 2 if (relative and mem) else 1
    with plt.rc_context(_RC):
        fig, axs = plt.subplots(1, panels, figsize=(5.2 * panels + 1.8, 4.0), squeeze=False)
        fig.subplots_adjust(left=0.08, right=0.78 if panels == 1 else 0.8, bottom=0.14, top=0.88, wspace=0.3)
        ax = axs[0][0]
        for n in names:
            pts = rows[n]
            es = sorted(pts)
            means = [sum(pts[e]) / len(pts[e]) for e in es]
            ref = means[-1] if relative and not math.isfinite(es[-1]) and means[-1] else None
            scale = (1.0 / ref) if ref else 1.0
            for e in es:
                ax.scatter([xpos(e)] * len(pts[e]), [p * scale for p in pts[e]], s=8, color=colours[n], alpha=0.4)
            ax.plot([xpos(e) for e in es], [mu * scale for mu in means], "-o", ms=4, color=colours[n], label=_label(n))
            fit = _bound_shape_fit(es, [mu * scale for mu in means]) if relative else None
            if fit is not None:
                xs = [finite[0] * (finite[-1] / finite[0]) ** (i / 60) for i in range(61)] if finite else []
                ax.plot(xs + [inf_x], [fit[0] * (1 - math.exp(-x)) + fit[1] for x in xs] + [fit[0] + fit[1]], "--", lw=0.8, color=colours[n])
        ax.set_xscale("log")
        ticks = [xpos(e) for e in sorted(grid, key=xpos)]
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{e:g}" if math.isfinite(e) else "∞ (non-private)" for e in sorted(grid, key=xpos)], fontsize=7)
        ax.set_xlabel("ε (DP-SGD target, δ = 1e-5)")
        if not relative:
            if chance is not None:
                ax.axhline(chance, color="0.5", lw=0.6, ls=":", label=f"chance ({chance:g})")
            ax.set_ylabel(_label(metric))
            ax.set_title(_label(f"{metric} against ε"), fontsize=9)
        else:
            ax.set_ylabel("mean score on members / non-private mean")
            ax.set_title("proxy score (curvature) against ε; dashed: α(1−e^−ε)+β", fontsize=9)
        ax.grid(alpha=0.3, lw=0.5)
        if panels == 2:
            ax2 = axs[0][1]
            es = sorted(mem, key=xpos)
            for k, style, lab in (("mem_mean", "-o", "mean"), ("mem_q90", "-s", "90th percentile")):
                xs = [xpos(e) for e in es if k in mem[e]]
                ys = [sum(mem[e][k]) / len(mem[e][k]) for e in es if k in mem[e]]
                err = [sum(mem[e]["mem_se_mean"]) / len(mem[e]["mem_se_mean"]) if "mem_se_mean" in mem[e] else 0.0 for e in es if k in mem[e]]
                ax2.errorbar(xs, ys, yerr=err, fmt=style, ms=4, color="k", alpha=0.8 if k == "mem_mean" else 0.5, capsize=2, label=f"FZ memorization, {lab}")
            ax2.set_xscale("log")
            ax2.set_xticks(ticks)
            ax2.set_xticklabels(ax.get_xticklabels(), fontsize=7)
            ax2.set_xlabel("ε (DP-SGD models, δ = 1e-5)")
            ax2.set_ylabel("Feldman-Zhang memorization")
            ax2.set_title("memorization against ε (bars: mean standard error)", fontsize=9)
            ax2.grid(alpha=0.3, lw=0.5)
            ax2.legend(loc="upper left", frameon=False, fontsize=7)
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        if panels == 2:
            axs[0][1].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        fig.legend(*ax.get_legend_handles_labels(), loc="center right", frameon=False, fontsize=7)
        fig.savefig(path, format="svg", metadata=_META)
        plt.close(fig)
    return True


def exit_frontier(board: Board, path: Path) -> bool:
    """Video track: accuracy against relative compute of the early-exit cascade, one line per row
    (the mean over its cells of the best accuracy F(c) reachable at relative cost <= c, from each
    cell's ``info["frontier_cost"]``/``["frontier_acc"]``), the full cost in GMACs in the axis
    label. Returns False without such cells."""
    import numpy as np

    grid = np.linspace(0.0, 1.0, 101)
    curves: dict[str, list[np.ndarray]] = {}
    gmacs: list[float] = []
    for v in board.variants:
        for (_point, _rep), rec in v.done.items():
            info = rec.get("info") or {}
            fc, fa = info.get("frontier_cost"), info.get("frontier_acc")
            if not (isinstance(fc, list) and isinstance(fa, list) and fc and len(fc) == len(fa)):
                continue
            c, a = np.asarray(fc, dtype=float), np.asarray(fa, dtype=float)
            chance = 1.0 / float(info.get("num_classes", 1) or 1)
            best = np.array([a[c <= g + 1e-12].max() if (c <= g + 1e-12).any() else chance for g in grid])
            curves.setdefault(v.label or v.method, []).append(best)
            if info.get("full_gmacs"):
                gmacs.append(float(info["full_gmacs"]))
    if not curves:
        return False
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(7.0, 4.4))
        fig.subplots_adjust(left=0.1, right=0.78, bottom=0.13, top=0.96)
        for i, (name, cs) in enumerate(sorted(curves.items())):
            ax.step(grid * 100, np.mean(cs, axis=0) * 100, where="post", color=f"C{i % 10}", lw=1.2, label=f"{_label(name)} (n={len(cs)})")
        full = f" of the full {np.mean(gmacs) * 1e3:.2f} MMACs" if gmacs else ""
        ax.set_xlabel(f"mean compute per clip (% {full.strip() or 'of full'})")
        ax.set_ylabel("best accuracy at this compute (%)")
        ax.grid(alpha=0.3, lw=0.5)
        fig.legend(loc="center right", frameon=False, fontsize=7)
        fig.savefig(path, format="svg", metadata=_META)
        plt.close(fig)
    return True


@dataclass(frozen=True)
class Figure:
    """A figure a track may declare (``Track.board_figures``): ``draw(board, path)`` writes an
    SVG and returns False (writing nothing) when the board's cells hold nothing to show;
    ``per_setting`` figures take the setting table too (``draw(board, table, path)``)."""

    name: str
    draw: Callable[..., bool]
    alt: Callable[[Board], str]
    caption: Callable[[Board], str]
    per_setting: bool = False
    #: the file name's part after the page's stem (the names earlier sites used)
    file: str = ""


FIGURES: dict[str, Figure] = {
    f.name: f
    for f in (
        Figure(
            "budget-curves",
            lambda b, p: budget_curves(b, p),
            lambda b: f"{b.primary} against {b.column_axis} per method",
            lambda b: f"{b.primary} against {b.column_axis}: the best rows of the {b.main.title.lower()} ranking and the baseline, with 95 % interval bands.",
            file="budget",
        ),
        Figure(
            "pareto",
            pareto_chart,
            lambda b: "cost against quality per method",
            lambda b: f"Cost–quality: end-to-end time per cell against {b.primary}; time relative to the baseline's at the same cell on the same machine (platform, device, threads) where every row has such pairs, else mean seconds; red: the Pareto front; bands clipped to the metric's range.",
            per_setting=True,
        ),
        Figure(
            "pool-frontier",
            pool_frontier,
            lambda b: "idle cluster-hours per day against hit rate per method, over the static frontier",
            lambda b: "Idle cluster-hours per day against hit rate, per trace: every row (small dots: cells; large: the row's mean) over the hindsight static frontier (constant pools, one line per repeat). Below and right of the line is better than any constant pool.",
        ),
        Figure(
            "epsilon-sweep",
            lambda b, p: epsilon_sweep(b, p),
            lambda b: f"{b.primary} against epsilon",
            lambda b: f"Against ε of the DP-SGD models (∞: the non-private reference): {b.primary} per row (dots: cells; line: mean; dotted: chance).",
            file="epsilon",
        ),
        Figure(
            "proxy-score-sweep",
            lambda b, p: epsilon_sweep(b, p, metric="score_mean", relative=True),
            lambda b: "mean proxy score on members against epsilon",
            lambda b: "Against ε of the DP-SGD models (∞: the non-private reference): each row's mean score on the targets' members (input-curvature: mean input-loss curvature) relative to its non-private value, with the fitted bound shape α(1−e^−ε)+β dashed, and the Feldman-Zhang memorization (mean and 90th percentile, bars: its mean standard error).",
            file="epsilon",
        ),
        Figure(
            "exit-frontier",
            exit_frontier,
            lambda b: "accuracy against relative compute of the early-exit cascade per method",
            lambda b: "Accuracy against compute of the early-exit cascade (confidence-threshold sweep): per row, the best test accuracy reachable at a mean cost up to x % of the full cost (all three networks and the fused exit), averaged over the cells. exit_auc is the mean of this curve over 5 %, 10 %, ..., 100 %.",
        ),
    )
}
