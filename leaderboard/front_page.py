"""The front page: the claim cards, then per track its headline table (the leader the profile
table names, with ranks and badges, and which setting is shown), the profiles table, and the
methods; every table says what it can rank."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .board import Board, primary_metric
from .common import LEGEND, _scale, _unit, _unit_suffix, fmt_interval, fmt_value
from .papers import PaperRef
from .track_page import rankable, row_badges


def headline(board: Board, method_href: Mapping[str, str], papers: Mapping[str, PaperRef | None]) -> dict[str, Any] | None:
    """The front page's table of a track: the profile's main table (the one its profile row's
    leader comes from: the overall table when the profile has several settings, whose columns
    are then the settings, else its one setting by budget), each row with its rank, its badges
    and its paper. When nothing can be ranked on the primary metric, the first secondary metric
    (the informative one) is shown beside it."""
    t = board.main
    scale, unit = _scale(board, board.primary), _unit_suffix(board, board.primary)
    can = rankable(board, t)
    extra = can["instead"] if can["none"] and can["instead"] else ""
    rows = []
    for r in t.rows:
        if not any(iv is not None for iv in r.cols):
            continue
        name = r.variant.method
        paper = papers.get(name)
        cells = [(fmt_interval(iv, scale) + unit) if iv is not None else "—" for iv in r.cols]
        if t.kind == "overall":
            cells.append(f"{r.mean_rank:.2f}" if r.mean_rank is not None else "—")
        else:
            cells.append(fmt_value(board, board.primary, r.score))
        if extra:
            cells.append(fmt_value(board, extra, r.secondary.get(extra)))
        rows.append({
            "rank": str(r.rank) if r.rank else "–",
            "label": r.variant.label,
            "href": method_href.get(name, ""),
            "paper": paper.url if paper is not None else "",
            "paper_label": paper.label() if paper is not None else "",
            "status": r.status.replace(" ", "-"),
            "leader": r.leader,
            "badges": row_badges(board, t, r),
            "cells": cells,
        })
    if not rows:
        return None
    overall = t.kind == "overall"
    columns = [(c.title or c.label) if overall or not board.column_axis else f"{board.column_axis} {c.label}" for c in t.columns]
    columns.append("mean rank" if overall else "mean")
    if extra:
        columns.append(f"{extra} (mean{', ' + _unit(board, extra) if _unit(board, extra) else ''})")
    settings = [x for x in board.tables if x.kind == "setting"]
    if overall:
        shown = f"all {len(settings)} settings side by side (each column: the setting's mean over its budgets); rows ordered by mean rank"
    else:
        shown = f"setting {t.title}" if t.setting else "the profile's one setting"
    unit_txt = _unit(board, board.primary)
    return {
        "profile": board.profile.id,
        "shown": shown,
        "axis": board.column_axis or "",
        "columns": columns,
        "metric": board.primary,
        "unit": unit_txt,
        "direction": "higher is better" if board.direction == "max" else "lower is better",
        "rankable": can["text"],
        "rows": rows,
        "long": len(rows) > 12,
    }


def profile_row(board: Board, href: str) -> dict[str, Any]:
    """A profile's row in its track's profiles table: its main table's leader (the headline's)."""
    main = board.main
    lead = next((r for r in main.rows if r.leader), None)
    return {
        "id": board.profile.id,
        "href": href,
        "methods": len(board.variants),
        "leader": lead.variant.label if lead else "",
        "leader_score": (f"mean rank {lead.mean_rank:.2f}" if main.kind == "overall" else fmt_value(board, board.primary, lead.score)) if lead else "",
        "no_leader": "" if lead else rankable(board, main)["text"],
        "derived": ":" in board.profile.name,
        "n_methods": len(board.variants),
        "complete": sum(1 for r in main.rows if r.status != "incomplete"),
        "incomplete": sum(1 for r in main.rows if r.status == "incomplete"),
    }


def current_version(track: Any, name: str, with_results: set[str]) -> int | None:
    """The version of profile ``name`` that older versions are superseded by: the track's default
    profile where it has this name and results (a newer version beside it, e.g. a costlier variant
    that is not the main job, supersedes nothing), else the newest version with results; None
    when no version has results."""
    try:
        default = track.profile(None)
    except Exception:  # noqa: BLE001 - a track without a usable default
        default = None
    if default is not None and default.name == name and default.id in with_results:
        return default.version
    versions = [p.version for p in track.profiles() if p.name == name and p.id in with_results]
    return max(versions, default=None)


def track_list(
    tracks: Mapping[str, Any],
    boards: Mapping[str, Board],
    index_profiles: Mapping[str, Sequence[dict[str, Any]]],
    profile_href: Mapping[str, str],
    method_href: Mapping[str, str],
    papers: Mapping[str, PaperRef | None],
) -> list[dict[str, Any]]:
    """Per track: its headline (the current profile with the most methods), its current profiles,
    derived ones, earlier (superseded) versions and the profiles without results."""
    out = []
    for tname in sorted(set(tracks) | {b.track.name for b in boards.values()}):
        t = tracks[tname]
        rendered = {p["id"]: p for p in index_profiles.get(tname, [])}
        profs, earlier = [], []
        # a newer version without results does not push its elder off yet, nor does a version
        # above the track's default (``current_version``)
        with_results = set(rendered)
        versions = {name: current_version(t, name, with_results) for name in {p.name for p in t.profiles()}}
        newest = {name: v for name, v in versions.items() if v is not None}
        empty = []
        for p in t.profiles():
            row = rendered.get(p.id) or {"id": p.id, "href": "", "methods": 0, "leader": "", "leader_score": "", "no_leader": "", "complete": 0, "incomplete": 0}
            row = {**row, "primary": primary_metric(t, p)}
            # a profile superseded by a newer version of the same name leaves the front table
            # (its page stays, linked from a compact list): its protocol is known to mislead
            if p.version < newest.get(p.name, p.version):
                if row["href"]:
                    earlier.append({**row, "superseded_by": f"{t.name}/{p.name}@{newest[p.name]}"})
            elif row["href"]:
                profs.append(row)
            else:  # no results: listed compactly below the table, not as an empty row
                empty.append(p.id)
        known = {p.id for p in t.profiles()}
        derived = [{**row, "primary": boards[row["id"]].primary} for pid, row in sorted(rendered.items()) if pid not in known]
        # the headline: the current (not superseded, not derived) profile with the most methods
        current = [row["id"] for row in profs if row["id"] in boards]
        best = max(current, key=lambda pid: (len(boards[pid].variants), pid), default=None)
        out.append({
            "name": t.name,
            "summary": t.summary,
            "contestants": t.contestant_kind,
            "profiles": profs,
            "derived": derived,
            "empty": empty,
            "earlier": earlier,
            "headline": headline(boards[best], method_href, papers) if best else None,
            "headline_href": profile_href.get(best, "") if best else "",
        })
    return out


def legend() -> list[dict[str, str]]:
    return [dict(zip(("text", "cls", "why"), item)) for item in LEGEND]
