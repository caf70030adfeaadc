"""The method page: the method's parameters, version, package and paper, its standing on each
profile (rank and score of its row in the profile's main table), and its per-cell results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from coreset_bench import registry as plugins

from .artifacts import _Artifacts
from .board import Board
from .common import _num, _scale, _unit, fmt_seconds, fmt_value, td_cells
from .data import point_key, variant_key, version_key
from .papers import paper_of
from .track_page import _verified_by, row_badges

TIMING_KEYS = ("selection_s", "training_s", "evaluation_s", "total_s")


def _standing(board: Board, key: tuple[str, str, str]) -> dict[str, Any] | None:
    """The row of ``key`` in the board's main table: rank, score, badges (None: not on it)."""
    table = board.main
    row = next((r for r in table.rows if r.variant.key == key), None)
    if row is None:
        return None
    if table.kind == "overall":
        score = f"mean rank {row.mean_rank:.2f} over {len(table.columns)} settings" if row.mean_rank is not None else "not ranked in every setting"
    else:
        score = fmt_value(board, board.primary, row.score)
    return {
        "rank": f"{row.rank} of {len(table.ranked_rows)}" if row.rank else "not ranked",
        "metric": board.primary,
        "score": score,
        "badges": row_badges(board, table, row),
    }


def _method_meta(name: str, entry_meta: Mapping[str, Mapping[str, Any]], records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    try:
        m = plugins.method(name)
        d = m.describe()
        d["installed"] = True
        # an optional paragraph a method gives its page (e.g. a choice the paper leaves open)
        notes = getattr(m, "notes", "")
        d["notes"] = notes if isinstance(notes, str) else ""
        return d
    except LookupError:
        pass
    e = entry_meta.get(name)
    if e is not None:
        return {**dict(e), "installed": False}
    rec = records[0]
    return {
        "name": name,
        "kind": "",
        "version": rec["method_version"],
        "summary": "",
        "citation": "",
        "params": dict(rec["params"]),
        "package": rec.get("package") or "",
        "installed": False,
    }


def _method_page(
    name: str,
    records: Sequence[dict[str, Any]],
    meta: Mapping[str, Any],
    boards: Mapping[str, Board],
    profile_href: Mapping[str, str],
    arts: _Artifacts,
    root: str,
) -> dict[str, Any]:
    """The method page's model; links are relative to the page (``root`` leads to the site root)."""
    by_variant: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        by_variant.setdefault(variant_key(r), []).append(r)
    variants = []
    for vk, recs in sorted(by_variant.items(), key=lambda kv: (kv[0][0], version_key(kv[0][1]), kv[0][2])):
        first = recs[0]
        per_profile: dict[str, list[dict[str, Any]]] = {}
        for r in recs:
            per_profile.setdefault(r["profile"], []).append(r)
        profiles = []
        for pid, prs in sorted(per_profile.items()):
            board = boards.get(pid)
            order: dict[str, int] = {}
            axis_names: list[str] = []
            metric_names: list[str] = []
            if board is not None:
                order = {point_key(ap): i for i, ap in enumerate(board.profile.axis_points())}
                axis_names = list(board.profile.axes)
                metric_names = [board.primary, *board.secondary]
            for r in prs:
                for a in r["axes"]:
                    if a not in axis_names:
                        axis_names.append(a)
                if board is None:  # no track to say which metrics matter: show them all
                    for m in r["metrics"]:
                        if m not in metric_names:
                            metric_names.append(m)
            prs = sorted(prs, key=lambda r: (order.get(r["point"], 1 << 30), r["point"], r["repeat"]))
            scale = {m: _scale(board, m) for m in metric_names}
            units = {m: _unit(board, m) for m in metric_names}
            # the timing and subset columns this profile's cells record (a pooling cell times fit
            # and plan, and selects no subset); the track's own summary of what a cell realized
            seen = {k for r in prs for k in (r.get("timings") or {})}
            timing_names = [k for k in TIMING_KEYS if k in seen] + sorted(k for k in seen if k not in TIMING_KEYS and k not in metric_names)
            has_size = any("realized_size" in (r.get("info") or {}) for r in prs)
            realized_text = getattr(board.track, "realized_text", None) if board is not None else None
            rows = []
            for r in prs:
                t = r["timings"]
                subsets = []
                for a in r.get("artifacts") or ():
                    rel = arts.href(a, row=f"{r['key']} ({name})")
                    subsets.append({"kind": a.get("kind", ""), "sha": a.get("sha256", ""), "href": root + rel if rel else ""})
                info = r["info"]
                realized = ""
                if "realized_size" in info:
                    realized = str(info["realized_size"])
                    if "budget" in info and info["budget"] != info["realized_size"]:
                        realized += f" of {info['budget']}"
                values = [str(r["axes"].get(a, "")) for a in axis_names]
                values += [str(r["repeat"]), str(r["seed"])]
                values += [_num(r["metrics"][m], scale[m]) if m in r["metrics"] else "" for m in metric_names]
                values += [fmt_seconds(t.get(k)) if k in t else "" for k in timing_names]
                if has_size:
                    values.append(realized)
                if realized_text is not None:
                    try:
                        values.append(str(realized_text(info)))
                    except Exception:  # an old or foreign record: show nothing rather than fail the page
                        values.append("")
                fl = info.get("flags")
                values.append(", ".join(str(f) for f in fl) if isinstance(fl, list) else "")
                label = " ".join(f"{a}={r['axes'][a]}" for a in axis_names if a in r["axes"]) + f" repeat={r['repeat']}"
                rows.append({"cells": td_cells(values), "status": r["status"], "error": r.get("error") or "", "subsets": subsets, "label": label})
            done = sum(1 for r in prs if r["status"] == "done")
            cov = ""
            if board is not None:
                v = next((v for v in board.variants if v.key == vk), None)
                if v is not None:
                    cov = f"{len(v.values(board.primary))}/{len(v.expected)} cells done"
            profiles.append({
                "id": pid,
                "href": root + profile_href[pid] if pid in profile_href else "",
                "coverage": cov or f"{done} done",
                "axis_names": axis_names,
                "metric_names": [m + (f" ({units[m]})" if units[m] else "") for m in metric_names],
                "standing": _standing(board, vk) if board is not None else None,
                "timing_names": [k.removesuffix("_s") for k in timing_names],
                "show_size": has_size,
                "realized": (getattr(board.track, "realized_title", "realized") if realized_text is not None else ""),
                "artifacts_label": "subset" if has_size or not prs or any(a.get("kind") == "subset" for r in prs for a in (r.get("artifacts") or ())) else "artifacts",
                "rows": rows,
            })
        variants.append({
            "version": first["method_version"],
            "params": sorted(first["params"].items()),
            "package": first.get("package") or "",
            "package_version": first.get("package_version") or "",
            "verified": _verified_by(recs),
            "profiles": profiles,
        })
    return {
        "name": name,
        "kind": meta.get("kind", ""),
        "summary": meta.get("summary", ""),
        "notes": meta.get("notes", ""),
        "citation": meta.get("citation", ""),
        "paper": paper_of(str(meta.get("citation", "") or "")),
        "version": meta.get("version", ""),
        "package": meta.get("package", ""),
        "params": sorted(dict(meta.get("params") or {}).items()),
        "installed": meta.get("installed", False),
        "variants": variants,
    }
