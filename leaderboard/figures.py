"""SVG figures of a board (matplotlib, Agg backend): budget curves and the cost–quality Pareto chart.

Text is written as SVG ``<text>`` (``svg.fonttype = none``) which matplotlib XML-escapes; ``$`` in
labels is escaped so that method names are never parsed as mathtext. Output is deterministic
(no date metadata, fixed hash salt).
"""

from __future__ import annotations

import math
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
    scale = _scale(board, board.primary)
    unit = " (%)" if scale == 100.0 else ""
    n = len(settings)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    drawn = curve_variants(board, max_rows)
    # fixed margins instead of tight layouts: computing text extents dominates the cost of a
    # figure with many panels, and a large board must render in seconds
    panel_w, panel_h, legend_w, top, bottom, left = 4.2, 3.0, 2.4, 0.45, 0.55, 0.75
    width = ncols * panel_w + legend_w
    height = nrows * panel_h + top + bottom
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
        fig.subplots_adjust(
            left=left / width, right=(width - legend_w) / width, bottom=bottom / height, top=1 - top / height,
            wspace=0.3, hspace=0.55,
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
                    lo.append(a * scale)
                    hi.append(b * scale)
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
            ax.set_title(_label(table.title), fontsize=9)
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
    if not rows:
        return False
    scale = _scale(board, board.primary)
    unit = " (%)" if scale == 100.0 else ""
    pts = [(float(r.total_s), r.score.mean * scale) for r in rows]  # type: ignore[arg-type, union-attr]
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
            yerr = [[(rows[i].score.mean - lo) * scale for i, (lo, _) in zip(idx, lo_hi)], [(hi - rows[i].score.mean) * scale for i, (_, hi) in zip(idx, lo_hi)]]  # type: ignore[union-attr]
            ax.errorbar([pts[i][0] for i in idx], [pts[i][1] for i in idx], yerr=yerr, fmt="o", ms=ms, capsize=2, color=color, alpha=alpha, lw=1)
        for i, (r, (x, y)) in enumerate(zip(rows, pts)):
            if i in on_front or r.baseline or r.leader or len(rows) <= 15:
                ax.annotate(_label(r.variant.label), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
        fx = [pts[i][0] for i in front]
        fy = [pts[i][1] for i in front]
        ax.step(fx, fy, where="post", color="C3", lw=1, alpha=0.7, label="Pareto front")
        xs = [p[0] for p in pts]
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel("mean end-to-end time per cell (s): selection incl. proxy + training + evaluation")
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
