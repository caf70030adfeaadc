"""The track page: one profile's ranking tables (overall, then one per setting), what can be
ranked on them, the legend, the figures the track declares, and provenance."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import figures, side_effects
from .board import FLOOR_CHANCE, Board, Row, Table
from .common import LEGEND, _cell, _num, _scale, _unit, _unit_suffix, board_range, fmt_interval, fmt_seconds, fmt_value, interval_title
from .data import provenance_of


def _is_bound(flag: str) -> bool:
    """A flag that marks a privileged row (a bound that sees what a contestant may not)."""
    return str(flag).lower().startswith("bound")


def flag_text(r: Row) -> str:
    """Why a row is flagged, in words: its note, or each flag with its number of cells."""
    if r.status == "flagged" and r.note:
        return r.note
    return "flagged in " + ", ".join(f"{n} cell{'s' if n != 1 else ''} ({f})" for f, n in sorted(r.flags.items()))


def row_badges(board: Board, table: Table, r: Row) -> list[tuple[str, str, str]]:
    """(text, CSS class, hover reason) of a row's badges: the same on the track page and the
    front page's headline, each reason also written under the table (``footnotes``)."""
    overall = table.kind == "overall"
    scale = _scale(board, board.primary)
    badges = []
    if r.leader:
        badges.append(("leader", "b-leader", "best mean among the ranked rows" if not overall else "best mean rank over the settings among the ranked rows"))
    if r.tied:
        why = "tied with the leader in every setting (paired)" if overall else (
            "the paired 95 % interval of (leader − row) contains 0 or is undefined: "
            + (fmt_interval(r.vs_leader, scale, signed=True) + _unit_suffix(board, board.primary, gain=True) if r.vs_leader is not None else "no paired seed")
        )
        badges.append(("tied", "b-tied", why))
    bounds = sorted(f for f in r.flags if _is_bound(f))
    others = sorted(f for f in r.flags if not _is_bound(f))
    if bounds:
        badges.append(("bound", "b-bound", "a privileged row (" + ", ".join(bounds) + "): an upper bound, never ranked"))
    if others:
        badges.append(("flagged: " + ", ".join(others), "b-flagged", "flagged, never the leader: " + flag_text(r)))
    if r.baseline:
        badges.append(("baseline", "b-baseline", "gains are measured against this method"))
    if r.status in ("at floor", "incomplete", "reference"):
        badges.append((r.status, {"at floor": "b-atfloor", "incomplete": "b-incomplete", "reference": "b-reference"}[r.status], r.note))
    return badges


def rankable(board: Board, table: Table) -> dict[str, Any]:
    """What this table can rank, in one sentence (``text``), and whether nothing can be ranked
    (``none``) because every row is at the floor (then the first secondary metric is the
    informative one, ``instead``)."""
    rows = table.rows
    ranked = table.ranked_rows
    lead = next((r for r in rows if r.leader), None)
    at_floor = [r for r in rows if r.status == "at floor"]
    floor_name = "the chance level" if board.floor_what == FLOOR_CHANCE else "the constant-classifier floor"
    instead = board.secondary[0] if board.secondary else ""
    if lead is None:
        if at_floor and len(at_floor) == len([r for r in rows if r.status not in ("incomplete", "reference", "flagged")]):
            text = (
                f"Nothing can be ranked on {board.primary}: every row is at {floor_name} (not above it with 95 % confidence), so no row leads."
                + (f" The track's next metric, {instead}, is shown beside it." if instead else "")
            )
            return {"text": text, "none": True, "instead": instead}
        return {"text": f"Nothing can be ranked on {board.primary} yet: no row is complete and unflagged.", "none": True, "instead": instead}
    tied = [r for r in ranked if r.tied]
    text = f"{len(ranked)} of {len(rows)} rows ranked on {board.primary}; leader {lead.variant.label}"
    if tied:
        text += f", tied with {len(tied)} row{'s' if len(tied) != 1 else ''} (nothing separates {'them' if len(tied) != 1 else 'it'} from the leader)"
    if at_floor:
        text += f"; {len(at_floor)} at {floor_name}"
    return {"text": text + ".", "none": False, "instead": instead}


def _verified_by(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The trusted keys that signed the row's results; empty unless every record is verified."""
    labels = [r.get("verified_by") for r in records]
    if not labels or not all(labels):
        return []
    return sorted({str(x) for x in labels})


def _table_model(board: Board, table: Table, method_href: Mapping[str, str]) -> dict[str, Any]:
    primary, direction = board.primary, board.direction
    scale = _scale(board, primary)
    first = "desc" if direction == "max" else "asc"
    base = board.baseline.label if board.baseline is not None else None
    headers = [
        {"label": "#", "title": "rank among complete rows over the full matrix", "type": "num", "first": "asc"},
        {"label": "method", "title": "method variant", "type": "text", "first": "asc"},
    ]
    unit_txt = _unit(board, primary)
    for c in table.columns:
        note = " (outside the profile's matrix: run by design by reference methods such as full data)" if c.extra else ""
        # a header names its axes: "budget 0.1", "dataset=digits, noise=ring" (never bare values)
        label = (f"{board.column_axis} {c.label}" if board.column_axis else (c.title or c.label)) if table.kind == "setting" else (c.title or c.label)
        headers.append({"label": label, "title": f"{primary}{f' ({unit_txt})' if unit_txt else ''} at {c.title or label}{note}", "type": "num", "first": first})
    overall = table.kind == "overall"
    if overall:
        headers.append({"label": "mean rank", "title": "mean over the settings of the row's rank in each (settings are never averaged)", "type": "num", "first": "asc"})
    else:
        headers.append({"label": "mean", "title": f"{primary} averaged over the table's matrix per seed", "type": "num", "first": first})
    if base is not None and not overall:
        headers.append({"label": f"gain vs {base}", "title": f"mean gain over {base}, paired by seed ({_unit(board, primary, True) or 'raw'})", "type": "num", "first": "desc"})
    secondary = [] if overall else board.secondary  # never averaged across settings
    for m in secondary:
        sdir = "desc" if board.track.metric_directions.get(m, "max") == "max" else "asc"
        headers.append({"label": m, "title": f"{m}, mean over the table's matrix", "type": "num", "first": sdir, "cls": "secondary"})
    # columns only where the track's cells record them: no "selection" or "subset size" on a
    # track that selects no subset (the pooling track's cells have neither)
    recs = [rec for v in board.variants for rec in v.records]
    has_selection = any("selection_s" in (rec.get("timings") or {}) for rec in recs)
    has_subset = any("budget" in (rec.get("info") or {}) or "realized_size" in (rec.get("info") or {}) for rec in recs)
    if has_selection:
        headers.append({"label": "selection", "title": "mean selection time per cell, including the proxy run it needed", "type": "num", "first": "asc"})
    headers.append({"label": "total", "title": "mean end-to-end time per cell", "type": "num", "first": "asc"})
    if has_subset:
        headers.append({"label": "subset size", "title": "realized subset size relative to the budget", "type": "num", "first": "desc"})
    headers.append({"label": "coverage", "title": "cells done / cells the profile asks of the method", "type": "num", "first": "desc"})
    rows = []
    for r in table.rows:
        v = r.variant
        badges = row_badges(board, table, r)
        signers = _verified_by(v.records)
        if signers:
            badges.append(
                ("verified: " + ", ".join(signers), "b-verified", "every result of this row comes from an entry whose Ed25519 signature verifies under a trusted key")
            )
        cells = [
            _cell(str(r.rank) if r.rank else "–", r.rank),
            _cell(v.label, v.label.lower(), title=f"{v.method}@{v.version} {v.params}", href=method_href.get(v.method, ""), badges=badges),
        ]
        for iv, ok, complete, g in zip(r.cols, r.col_applicable, r.col_complete, r.col_gain):
            if not ok:
                cells.append(_cell("n/a", None, title="not run at this point by design", cls="na"))
                continue
            text = fmt_interval(iv, scale)
            title = interval_title(iv)
            cls = "" if complete else "partial"
            if not complete:
                title += "; some cells missing"
                text += " †"
            sub = fmt_interval(g, scale, signed=True) if g is not None else ""
            cells.append(_cell(text, iv.mean if iv is not None else None, title=title, cls=cls, sub=sub))
        if overall:
            ranks = ", ".join(f"{c.label}: {k}" for c, k in zip(table.columns, r.setting_ranks))
            cells.append(
                _cell(
                    f"{r.mean_rank:.2f}" if r.mean_rank is not None else "—",
                    r.mean_rank,
                    title=(f"rank per setting: {ranks}" if r.mean_rank is not None else "not ranked in every setting") + (f"; {r.note}" if r.note else ""),
                    cls="score",
                )
            )
        else:
            cells.append(
                _cell(
                    fmt_interval(r.score, scale) + (" †" if r.status == "incomplete" and r.score is not None else ""),
                    r.score.mean if r.score is not None else None,
                    title=interval_title(r.score) + (f"; {r.note}" if r.note else ""),
                    cls="score" + (" partial" if r.status == "incomplete" else ""),
                )
            )
        dagger = " †" if r.status == "incomplete" else ""
        if base is not None and not overall:
            if r.baseline:
                cells.append(_cell("baseline", None, cls="na"))
            else:
                cells.append(
                    _cell(
                        fmt_interval(r.gain, scale, signed=True) + (dagger if r.gain is not None else ""),
                        r.gain.mean if r.gain is not None else None,
                        title=interval_title(r.gain, "paired seeds") if r.gain else "no paired seed",
                        cls="partial" if dagger else "",
                    )
                )
        for m in secondary:
            iv = r.secondary.get(m)
            cells.append(_cell(fmt_value(board, m, iv) + (dagger if iv is not None else ""), iv.mean if iv is not None else None, title=interval_title(iv), cls="secondary partial" if dagger else "secondary"))
        if has_selection:  # one cell, as its one header (not one per secondary metric)
            cells.append(_cell(fmt_seconds(r.selection_s), r.selection_s))
        cells.append(_cell(fmt_seconds(r.total_s), r.total_s))
        if not has_subset:
            pass
        elif r.realized_ratio is None:
            cells.append(_cell("= budget", 1.0, cls="na"))
        else:
            cells.append(_cell(f"{r.realized_ratio * 100:.1f} % of budget", r.realized_ratio, title=f"{r.realized_short} cells below the budget"))
        cov = r.done / r.expected if r.expected else 0.0
        cells.append(_cell(f"{r.done}/{r.expected}", cov, title=r.note or "complete", cls="" if r.done == r.expected else "partial"))
        classes = [f"st-{r.status.replace(' ', '-')}"] + (["leader"] if r.leader else []) + (["tied"] if r.tied else []) + (["baseline"] if r.baseline else []) + (["flagged"] if r.flags else [])
        rows.append({"cls": " ".join(classes), "cells": cells, "method": v.label})
    floor_row = None
    if any(f is not None for f in table.floor):
        n_before = 2
        if board.floor_what == FLOOR_CHANCE:
            fcells = [_cell("–"), _cell("chance (no skill)", title=f"the {primary} of a method with no skill, as the track declares it: a row not above it with 95 % confidence is at floor")]
        else:
            fcells = [_cell("–"), _cell("constant classifier (floor)", title="accuracy of always predicting one class: 1 / number of classes")]
        for f in table.floor:
            fcells.append(_cell(_num(f, scale) + _unit_suffix(board, primary) if f is not None else "—", f, cls="floor"))
        n_after = len(headers) - n_before - len(table.floor)
        fcells += [_cell("", cls="na") for _ in range(n_after)]
        floor_row = {"cls": "floor", "cells": fcells}
    # every badge's reason in text under the table, not only on hover
    footnotes = [
        {"badge": text.split(":", 1)[0], "cls": cls, "text": f"{r.variant.label}: {why}"}
        for r in table.rows
        for text, cls, why in row_badges(board, table, r)
        if cls in ("b-flagged", "b-bound", "b-atfloor", "b-incomplete", "b-reference") and why
    ]
    n_seeds = len(board.profile.seeds)
    unit = _unit(board, primary)
    methods = {iv.method for r in table.rows for iv in (r.score, *r.cols) if iv is not None and iv.defined}
    how = (
        "95 % paired hierarchical bootstrap over seeds and test points (percentile method)"
        if methods == {"bootstrap"}
        else "95 % interval: bootstrap over seeds and test points (or target models) where cells store them, else t over seeds"
        if "bootstrap" in methods
        else "95 % t-interval over seeds (no per-point results; undefined below 3 seeds or at zero width)"
    )
    shown = [iv for r in table.rows for iv in (r.score, r.gain, r.vs_leader, *r.cols, *r.col_gain, *r.secondary.values()) if iv is not None and iv.defined]
    if any(iv.clipped for iv in shown):
        how += "; an interval of a bounded metric is clipped to its declared range (e.g. [0, 100] % for an accuracy)"
    props = [m for m in (primary, *secondary) if board_range(board, m).proportion]
    if any(iv.method == "proportion" for iv in shown) and props:
        how += f"; {', '.join(props)}: a 0/1 value per cell, 95 % Clopper-Pearson interval over the cells"
    if table.kind == "overall":
        explain = (
            f"Each value is mean [95 % interval]. Columns {table.columns[0].label} … {table.columns[-1].label}: {primary}"
            + (f" ({unit})" if unit else "")
            + f" per setting (mean over its budgets, {how}; {n_seeds} seed{'s' if n_seeds != 1 else ''})"
            + (f"; second line: gain over {base}, paired" if base else "")
            + ". Settings are not averaged: rows are ordered by their mean rank over the settings; tied: tied with the leader (paired) in every setting."
            + " † marks values over an incomplete set of cells."
        )
    else:
        explain = (
            f"Each value is mean [95 % interval]. Columns {table.columns[0].label} … {table.columns[-1].label}: {primary}"
            + (f" ({unit})" if unit else "")
            + (f" at each {board.column_axis}" if board.column_axis else "")
            + f", mean with {how}, {n_seeds} seed{'s' if n_seeds != 1 else ''}"
            + (f"; second line: gain over {base} ({_unit(board, primary, True) or 'raw'}), paired by seed and test point" if base else "")
            + ". † marks values over an incomplete set of cells."
        )
    can = rankable(board, table)
    return {
        "title": table.title, "slug": table.slug, "kind": table.kind, "headers": headers, "rows": rows, "explain": explain, "floor": floor_row,
        "footnotes": footnotes, "has_secondary": bool(secondary), "rankable": can["text"], "show_secondary": can["none"], "long": len(rows) > 12,
    }


@dataclass(frozen=True)
class FigureJob:
    """One figure a profile page shows if it is drawn: the figure, the setting table it is drawn
    for (None: the whole board), the SVG's path, and the ``where`` suffix of its alt text."""

    board: Board
    spec: figures.Figure
    table: Table | None
    path: Path
    where: str


def figure_jobs(board: Board, stem: str, out: Path) -> tuple[list[FigureJob], list[str]]:
    """The figures the track declares for this board (``Track.board_figures``), in order, and the
    declared names the board does not know (each said once as a warning, never a crash)."""
    jobs: list[FigureJob] = []
    unknown: list[str] = []
    settings = [t for t in board.tables if t.kind == "setting"]
    declared = getattr(board.track, "board_figures", None) or ()
    for name in declared:
        spec = figures.FIGURES.get(name)
        if spec is None:
            unknown.append(name)
            continue
        # one chart per setting where the figure is per setting: quality is never averaged across
        # settings (standard vs TRADES)
        for t in settings if spec.per_setting else [None]:
            suffix = "" if t is None or len(settings) == 1 else f"-{t.slug}"
            path = out / "figures" / f"{stem}-{spec.file or name}{suffix}.svg"
            where = f" ({t.title.lower()})" if t is not None and len(settings) > 1 else ""
            jobs.append(FigureJob(board, spec, t, path, where))
    return jobs, unknown


def draw_figure(job: FigureJob, max_curves: int = 10) -> bool:
    """Draw one figure; False (nothing written) when its cells hold nothing to show."""
    spec, board = job.spec, job.board
    if job.table is not None:
        return bool(spec.draw(board, job.table, job.path))
    if spec.name == "budget-curves":
        return figures.budget_curves(board, job.path, max_rows=max_curves)
    return bool(spec.draw(board, job.path))


#: the jobs a forked worker draws by index (set before the workers are forked; read only there)
_FORKED_JOBS: list[FigureJob] = []
_FORKED_MAX_CURVES = 10


def _draw_forked(i: int) -> bool:
    return draw_figure(_FORKED_JOBS[i], _FORKED_MAX_CURVES)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def figure_workers(n_jobs: int) -> int:
    """How many processes draw ``n_jobs`` figures: ``CORESET_BENCH_FIGURE_JOBS`` when set (1:
    in this process), else one per usable core (at most 4, never more than the figures); 1
    where processes cannot be forked (the workers inherit the boards instead of pickling them)."""
    env = os.environ.get("CORESET_BENCH_FIGURE_JOBS", "").strip()
    if env:
        try:
            want = int(env)
        except ValueError:
            raise ValueError(f"CORESET_BENCH_FIGURE_JOBS={env!r} is not a whole number (1: draw the figures in this process)") from None
    else:
        want = min(4, _usable_cpus())
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(want, n_jobs))


def draw_figures(jobs: Sequence[FigureJob], max_curves: int = 10, workers: int | None = None) -> dict[Path, bool]:
    """Draw every figure of the site; path -> whether it was drawn (a figure with nothing to show
    writes nothing). Figures are independent files, so they are drawn in forked worker processes
    side by side (``workers``, default ``figure_workers``); each file is the same as drawn here (no date metadata,
    fixed hash salt). A figure that raises raises here; if a worker dies, the figures it did not
    deliver are drawn in this process."""
    global _FORKED_JOBS, _FORKED_MAX_CURVES
    done: dict[Path, bool] = {}
    workers = figure_workers(len(jobs)) if workers is None else max(1, min(workers, len(jobs)))
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        _FORKED_JOBS, _FORKED_MAX_CURVES = list(jobs), max_curves
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                futures = [pool.submit(_draw_forked, i) for i in range(len(jobs))]
                for job, fut in zip(jobs, futures):
                    try:
                        done[job.path] = fut.result()
                    except BrokenProcessPool:
                        break
        finally:
            _FORKED_JOBS = []
    for job in jobs:
        if job.path not in done:
            done[job.path] = draw_figure(job, max_curves)
    return done


def _profile_page(
    board: Board, stem: str, out: Path, method_href: Mapping[str, str], max_curves: int, drawn: Mapping[Path, bool] | None = None
) -> dict[str, Any]:
    """The page model of one profile's board. ``drawn``: the figures already drawn
    (``draw_figures``, path -> drawn); without it, this board's figures are drawn here."""
    jobs, unknown = figure_jobs(board, stem, out)
    for name in unknown:
        board.warnings.append(f"figure {name!r} declared by the track is not one of {', '.join(sorted(figures.FIGURES))}; not drawn")
    figs = []
    for job in jobs:
        if drawn is not None and job.path in drawn:
            ok = drawn[job.path]
        else:
            ok = draw_figure(job, max_curves)
        if ok:
            figs.append({"src": f"figures/{job.path.name}", "alt": job.spec.alt(board) + job.where, "caption": job.spec.caption(board) + job.where})
    recs = [r for v in board.variants for r in v.records]
    prov = provenance_of(recs)
    sources = sorted({str(r.get("source")) for r in recs})
    p = board.profile
    return {
        "title": f"{board.track.name} · {p.name}@{p.version}",
        "stem": stem,
        "track": {
            "name": board.track.name,
            "summary": board.track.summary,
            "primary": board.primary,
            "direction": "higher is better" if board.direction == "max" else "lower is better",
            "baseline": board.baseline.label if board.baseline else (board.track.baseline_method or ""),
            "secondary": board.secondary,
            "unit": _unit(board, board.primary),
        },
        "profile": {
            "id": p.id,
            "description": p.description,
            "axes": [(k, ", ".join(str(x) for x in vals)) for k, vals in p.axes.items()],
            "seeds": len(p.seeds),
            "n_cells": p.n_cells(),
            "device": p.device,
        },
        "tables": [_table_model(board, t, method_href) for t in board.tables],
        "side_effects": side_effects.panel(board, stem, out),  # issue 40; None without side-effect metrics
        "legend": [dict(zip(("text", "cls", "why"), item)) for item in LEGEND],
        "verified": any(_verified_by(v.records) for v in board.variants),
        "figures": figs,
        "warnings": list(board.warnings),
        "provenance": prov,
        "sources": sources,
        "runs": len(recs),
        "done": sum(1 for r in recs if r["status"] == "done"),
        "failed": sum(1 for r in recs if r["status"] == "failed"),
    }
