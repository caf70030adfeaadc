"""The side-effects panel of a coreset profile page (issue 40) and its figure.

For a profile whose cells carry side-effect metrics (``coreset_bench.tracks.coreset.side_effects``: membership
AUC, worst-class accuracy, ECE, the kept-noise share), one table per setting (e.g. standard and
TRADES training, never averaged together): per method, the paired difference to the board's
baseline (``random``) of

* the robust accuracy (the board's primary metric where it is an attack's accuracy),
* the membership AUC of each threshold attack the cells ran (LOSS, m-entropy, curvature),
* the worst-class clean and robust accuracy (robust: under PGD where the cells have it, the
  attack on every evaluated point),
* the expected calibration error,
* the kept-noise share (noisy-pool profiles),

each the mean over the table's matrix of (method − baseline), paired by axis point and seed,
with the board's 95 % interval (``Variant.paired``: paired hierarchical bootstrap over seeds and
test points where cells store per-point results, else a t-interval over seeds; clipped to the
range of a difference). Differences are in percentage points (AUC and ECE × 100). A difference
whose interval excludes 0 is marked better or worse by the metric's direction. Rows keep the
board's flags and floors: a row the ranking table flags or finds at the constant-classifier
floor carries the same badge here, and is drawn hollow in the figure.

The figure: per setting, the robust-accuracy gain over the baseline (y) against the change of
the membership AUC (x; the first of LOSS, m-entropy, curvature the cells have), both with their
intervals. Up-left is more robust and less exposed than the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .board import Board, Row, Table, _test_group
from .stats import Interval

#: the side-effect metrics in panel order: (metric, column label, what it says)
LEAKAGE = (
    ("mia_loss_auc", "AUC (LOSS)", "membership AUC of the LOSS threshold attack, subset vs held-out split"),
    ("mia_mentr_auc", "AUC (m-entropy)", "membership AUC of the modified-entropy threshold attack"),
    ("mia_curvature_auc", "AUC (curvature)", "membership AUC of the zero-order input-curvature threshold attack"),
    # a noisy pool's profile with ``mia_clean_labels``: members and held-out points with unflipped labels
    ("mia_clean_loss_auc", "AUC (LOSS, unflipped)", "membership AUC of the LOSS attack on unflipped members against unflipped held-out points"),
    ("mia_clean_mentr_auc", "AUC (m-entropy, unflipped)", "membership AUC of the m-entropy attack on unflipped members and held-out points"),
    ("mia_clean_curvature_auc", "AUC (curvature, unflipped)", "membership AUC of the curvature attack on unflipped members and held-out points"),
)
OTHERS = (
    ("worst_class_acc", "worst class", "lowest per-class clean test accuracy"),
    ("worst_class_{attack}_acc", "worst class ({label})", "lowest per-class robust accuracy"),
    ("ece", "ECE", "expected calibration error of the clean test predictions"),
    ("noise_kept_share", "kept noise", "share of the subset whose pool label was flipped"),
)
#: metrics whose presence makes a board show the panel
SIDE_METRICS = ("mia_loss_auc", "mia_mentr_auc", "mia_curvature_auc", "worst_class_acc", "ece", "noise_kept_share")
_ATTACK_LABEL = {"autoattack": "AutoAttack", "pgd": "PGD", "fgsm": "FGSM"}


def _robust_metric(board: Board) -> str | None:
    """The board's robust accuracy: its primary metric where that is an attack's, else PGD's."""
    if board.primary.endswith("_acc") and board.primary != "clean_acc":
        return board.primary
    for m in ("autoattack_acc", "pgd_acc", "fgsm_acc"):
        if any(v.values(m) for v in board.variants):
            return m
    return None


def _worst_attack(board: Board) -> str | None:
    """The attack of the worst-class robust column: PGD where the cells have it (it attacks every
    evaluated point; AutoAttack may run on a few points per class, e.g. 6 in quick@2, where the
    worst class sits at 0 for every method), else the board's robust metric's attack."""
    for a in ("pgd", "autoattack", "fgsm"):
        if any(v.values(f"worst_class_{a}_acc") for v in board.variants):
            return a
    return None


def _columns(board: Board) -> list[tuple[str, str, str]]:
    robust = _robust_metric(board)
    attack = robust[: -len("_acc")] if robust else None
    label = _ATTACK_LABEL.get(attack or "", attack or "")
    cols: list[tuple[str, str, str]] = []
    if robust:
        cols.append((robust, f"robust acc. ({label})", "the board's robust accuracy"))
    cols.extend(LEAKAGE)
    worst = _worst_attack(board)
    for m, lab, what in OTHERS:
        if "{attack}" in m:
            if not worst:
                continue
            m, lab = m.format(attack=worst), lab.format(label=_ATTACK_LABEL.get(worst, worst))
            what += f" under {_ATTACK_LABEL.get(worst, worst)} (the attack run on the most test points)"
        cols.append((m, lab, what))
    return [c for c in cols if any(v.values(c[0]) for v in board.variants)]


def _fmt(iv: Interval | None) -> str:
    if iv is None:
        return "—"
    m = f"{iv.mean * 100:+.1f}"
    if m in ("-0.0", "+0.0"):
        m = "0.0"
    if not iv.defined:
        return f"{m} (no interval, n={iv.n})"
    lo, hi = iv.bounds()
    return f"{m} [{lo * 100:+.1f}, {hi * 100:+.1f}]"


def _verdict(iv: Interval | None, direction: str) -> str:
    """``better`` / ``worse`` when the interval excludes 0, else ``""``."""
    if iv is None or not iv.defined:
        return ""
    lo, hi = iv.bounds()
    if lo > 0 or hi < 0:
        up = lo > 0
        return "better" if up == (direction == "max") else "worse"
    return ""


def _points(table: Table) -> list[str]:
    return list(table.rank_points) or [p for c in table.columns if not c.extra for p in c.points]


def _differences(board: Board, table: Table, metrics: Sequence[str]) -> list[tuple[Row, dict[str, Interval | None]]]:
    """Per non-baseline row of ``table``: metric -> paired (row − baseline) interval, raw sign."""
    base = board.baseline
    if base is None:
        return []
    points = _points(table)
    groups = {p: _test_group(p) for p in points}
    repeats = [int(r) for r in board.profile.seeds]
    out = []
    for row in table.rows:
        if row.variant is base:
            continue
        out.append((row, {m: row.variant.paired(base, m, points, repeats, "max", groups) for m in metrics}))
    return out


def _badges(row: Row) -> list[tuple[str, str, str]]:
    b = []
    if row.flags:
        b.append(("flagged: " + ", ".join(sorted(row.flags)), "b-flagged", "flagged in some cells (the ranking's flags apply): " + ", ".join(f"{f} ({n} cells)" for f, n in sorted(row.flags.items()))))
    if row.status == "at floor":
        b.append(("at floor", "b-atfloor", row.note))
    if row.status == "incomplete":
        b.append(("incomplete", "b-incomplete", row.note))
    if row.status == "reference":
        b.append(("reference", "b-reference", row.note))
    return b


def panel(board: Board, stem: str, out: Path) -> dict[str, Any] | None:
    """The page model of the side-effects panel (None when no cell of the board has side-effect
    metrics); writes the figure under ``out/figures``."""
    if not any(v.values(m) for v in board.variants for m in SIDE_METRICS):
        return None
    cols = _columns(board)
    try:
        from coreset_bench.tracks.coreset.side_effects import settings as side_settings

        bins = (side_settings(board.profile.settings) or {}).get("ece_bins")
    except ValueError:
        bins = None
    if bins:
        cols = [(m, f"ECE ({bins} bins)" if m == "ece" else lab, f"{what}, {bins} equal-width confidence bins" if m == "ece" else what) for m, lab, what in cols]
    units: Mapping[str, str] = getattr(board.track, "metric_units", {}) or {}
    directions: Mapping[str, str] = board.track.metric_directions
    base = board.baseline.label if board.baseline is not None else None
    tables = []
    per_setting = []
    for t in board.tables:
        if t.kind != "setting":
            continue
        diffs = _differences(board, t, [c[0] for c in cols])
        per_setting.append((t, diffs))
        rows = []
        for row, d in diffs:
            cells = []
            for m, _lab, _what in cols:
                iv = d[m]
                cells.append({"text": _fmt(iv), "sort": "" if iv is None else f"{iv.mean:.6g}", "cls": _verdict(iv, directions.get(m, "max")), "title": _title(iv)})
            rows.append({"label": row.variant.label, "method": row.variant.method, "badges": _badges(row), "cells": cells})
        tables.append({"title": t.title, "slug": t.slug, "rows": rows})
    figure = None
    path = out / "figures" / f"{stem}-side-effects.svg"
    # the leakage measure without the label confound where the profile has it, else LOSS
    leak = next((m for m in ("mia_clean_loss_auc", "mia_loss_auc") if any(v.values(m) for v in board.variants)), None)
    robust = _robust_metric(board)
    if leak and robust and gain_vs_leakage(per_setting, robust, leak, base or "baseline", path):
        figure = {
            "src": f"figures/{path.name}",
            "alt": f"{robust} gain over {base} against the change of {leak}, per method",
            "caption": (
                f"Robust-accuracy gain over {base} ({robust}) against the change of the membership AUC ({leak}), per method and setting, "
                "paired by seed, with 95 % intervals (percentage points). Up-left: more robust and less exposed than random; hollow: a flagged or at-floor row."
            ),
        }
    return {
        "baseline": base,
        "headers": [
            {
                "label": lab,
                "title": f"{m}: {what}" + (f" ({units[m]})" if m in units else "") + f"; mean of (method − {base}) over the table's matrix, percentage points ({'higher' if directions.get(m, 'max') == 'max' else 'lower'} is better)",
                "metric": m,
                "direction": directions.get(m, "max"),
            }
            for m, lab, what in cols
        ],
        "tables": tables,
        "figure": figure,
        "noisy": any(m == "noise_kept_share" for m, _l, _w in cols),
    }


def _title(iv: Interval | None) -> str:
    if iv is None:
        return "no paired cell"
    if not iv.defined:
        return f"n={iv.n} seeds; interval undefined: {iv.reason or 'too little data'}"
    how = "paired hierarchical bootstrap over seeds and test points" if iv.method == "bootstrap" else "t-interval over seeds"
    return f"n={iv.n} seeds; 95 % {how}" + ("; clipped to the range of a difference" if iv.clipped else "")


def gain_vs_leakage(per_setting: Sequence[tuple[Table, Sequence[tuple[Row, Mapping[str, Interval | None]]]]], robust: str, leak: str, base: str, path: Path) -> bool:
    """One panel per setting: y = paired robust-accuracy gain, x = paired change of ``leak``
    (both in percentage points, with their intervals). False (no file) when no row has both."""
    from .figures import _RC, _META, _label, _title as wrap, plt

    panels = []
    for t, diffs in per_setting:
        pts = [(row, d[leak], d[robust]) for row, d in diffs if d.get(leak) is not None and d.get(robust) is not None]
        if pts:
            panels.append((t, pts))
    if not panels:
        return False
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 0.4, 4.2), squeeze=False)
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.14, top=0.88, wspace=0.3)
        for ax, (t, pts) in zip(axes[0], panels):
            for row, dx, dy in pts:
                x, y = dx.mean * 100, dy.mean * 100  # type: ignore[union-attr]
                xerr = _err(dx, x)
                yerr = _err(dy, y)
                hollow = bool(row.flags) or row.status == "at floor"
                ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", ms=5, capsize=2, lw=0.8, color="C0", mfc="none" if hollow else "C0", alpha=0.85)
                ax.annotate(_label(row.variant.label), (x, y), xytext=(4, 3), textcoords="offset points", fontsize=7)
            ax.axhline(0, color="0.5", lw=0.6)
            ax.axvline(0, color="0.5", lw=0.6)
            ax.set_title(wrap(t.title), fontsize=9)
            ax.set_xlabel(_label(f"change of {leak} vs {base} (pp)"))
            ax.set_ylabel(_label(f"{robust} gain vs {base} (pp)"))
            ax.grid(alpha=0.3, lw=0.5)
        fig.savefig(path, format="svg", metadata=_META)
        plt.close(fig)
    return True


def _err(iv: Interval | None, centre: float) -> list[list[float]] | None:
    if iv is None or not iv.defined:
        return None
    lo, hi = iv.bounds()
    lo, hi = lo * 100, hi * 100
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    return [[max(0.0, centre - lo)], [max(0.0, hi - centre)]]
