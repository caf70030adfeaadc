"""The board's common helpers: number, interval and unit formatting, table cells, names, the
Jinja2 environment and the legend every page shows. Units come only from the track's
declarations (``Track.metric_units``, read by the board), and every interval is written one way:
``mean [lo, hi]``.
"""

from __future__ import annotations

import hashlib
import html
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from .board import PERCENT_UNITS, Board
from .stats import UNBOUNDED, Interval, MetricRange

HERE = Path(__file__).resolve().parent

def td_cells(values: Iterable[str]) -> Markup:
    """``<td>`` cells of plain-text values, each HTML-escaped (quotes included).

    The per-cell tables of the method pages hold one row per run (tens of thousands on a large
    store); joining escaped values here costs a fraction of a template loop over each value.
    """
    return Markup("<td>" + "</td><td>".join(html.escape(v, quote=True) for v in values) + "</td>")


# ---- formatting -------------------------------------------------------------------------------


def _num(x: float, scale: float) -> str:
    v = x * scale
    if scale == 100.0:
        return f"{v:.2f}"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000 or a < 0.001:
        return f"{v:.3g}"
    return f"{v:.4g}" if a < 1 else f"{v:.{max(0, 4 - int(math.log10(a)) - 1)}f}"


def fmt_interval(iv: Interval | None, scale: float = 1.0, signed: bool = False) -> str:
    """``mean [lo, hi]``, the one interval notation of the site (percentile bootstrap,
    Clopper-Pearson, or a t-interval, clipped to the metric's range where declared), or the
    mean with "no interval" when it is undefined (too few seeds or zero width)."""
    if iv is None:
        return "—"
    m = _num(iv.mean, scale)
    if m.startswith("-") and not m.strip("-0."):  # a tiny negative that rounds to zero
        m = m[1:]
    if signed and not m.startswith("-"):
        m = "+" + m
    if not iv.defined:
        return f"{m} (no interval, n={iv.n})"
    lo, hi = iv.bounds()
    return f"{m} [{_num(lo, scale)}, {_num(hi, scale)}]"


def board_range(board: Board, metric: str) -> MetricRange:
    """The declared range of ``metric`` on ``board`` (unbounded when the track declares none)."""
    return board.ranges.get(metric, UNBOUNDED)


def interval_title(iv: Interval | None, what: str = "seeds") -> str:
    """A tooltip saying which interval this is, or why there is none."""
    if iv is None:
        return "no complete seed"
    if not iv.defined:
        return f"n={iv.n} {what}; interval undefined: {iv.reason or 'too little data'}"
    cut = "; clipped to the metric's range" if iv.clipped else ""
    if iv.method == "proportion":
        return f"{round(iv.mean * iv.n)} of {iv.n} cells; 95 % Clopper-Pearson interval for a proportion (a 0/1 metric)"
    if iv.method == "bootstrap":
        return f"n={iv.n} {what} × {iv.points} test points; 95 % paired hierarchical bootstrap, percentile method{cut}"
    return f"n={iv.n} {what}; 95 % t-interval over seeds (no per-point data){cut}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _cell(text: str = "", sort: Any = None, title: str = "", cls: str = "", href: str = "", sub: str = "", badges: Sequence[tuple[str, str, str]] = ()) -> dict[str, Any]:
    return {
        "text": text,
        "sort": "" if sort is None else (f"{sort:.12g}" if isinstance(sort, float) else str(sort)),
        "title": title,
        "cls": cls,
        "href": href,
        "sub": sub,
        "badges": list(badges),
    }


def _slug(text: str) -> str:
    out = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "-" for ch in text.lower())
    return "-".join(p for p in out.split("-") if p).strip(".") or "x"


class _Names:
    """Stable, collision-free file names for free-form method names."""

    def __init__(self) -> None:
        self.used: dict[str, str] = {}
        self.by_name: dict[str, str] = {}

    def get(self, name: str) -> str:
        hit = self.by_name.get(name)
        if hit is not None:
            return hit
        slug = _slug(name)[:60]
        if slug != name or slug in self.used:
            slug = f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
        self.used[slug] = name
        self.by_name[name] = slug
        return slug


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_public,  # every {{ value }}: no issue numbers, -dirty commits or local paths
    )
    return env


def _public(value: Any) -> Any:
    """Jinja's ``finalize``: text as a public page may show it (``data.public_text``)."""
    from .data import public_text

    if isinstance(value, Markup):
        return Markup(public_text(str(value)))
    return public_text(value) if isinstance(value, str) else value


def _declared_unit(board: Board | None, metric: str) -> str:
    if board is None:
        return ""
    unit = getattr(board, "unit", None)
    return unit(metric) if callable(unit) else ""


def _scale(board: Board | None, metric: str) -> float:
    """100 for a metric declared in percent ("%", or "pp" for a difference of fractions), else 1."""
    return 100.0 if _declared_unit(board, metric) in PERCENT_UNITS else 1.0


def _unit(board: Board | None, metric: str, gain: bool = False) -> str:
    """The declared unit of ``metric`` ("pp" for a difference of a "%" metric; "" for none)."""
    u = _declared_unit(board, metric)
    if u == "%" and gain:
        return "pp"
    return u


def _unit_suffix(board: Board | None, metric: str, gain: bool = False) -> str:
    """The unit after a number of ``metric`` (`` %``, `` s``, `` MB``; "" for a plain number)."""
    u = _unit(board, metric, gain)
    return f" {u}" if u else ""


def fmt_value(board: Board | None, metric: str, iv: Interval | None, signed: bool = False, gain: bool = False) -> str:
    """``mean [lo, hi] unit`` of ``metric`` in its declared unit; "—" without a value."""
    if iv is None:
        return "—"
    return fmt_interval(iv, _scale(board, metric), signed) + _unit_suffix(board, metric, gain)


#: the legend every ranking shows: badge text, CSS class, what it means (the same words as the
#: badges' hover titles and the notes under the tables)
LEGEND: tuple[tuple[str, str, str], ...] = (
    ("leader", "b-leader", "the best mean (or mean rank) among the ranked rows"),
    ("tied", "b-tied", "the paired 95 % interval of (leader − row) contains 0 or is undefined: nothing separates it from the leader"),
    ("flagged", "b-flagged", "a cell is flagged by the track (a degenerate model, a missed target, a bound): shown with its reasons, never ranked"),
    ("at floor", "b-atfloor", "not above the floor (the constant classifier, or the chance level the track declares) with 95 % confidence: shown, never ranked"),
    ("incomplete", "b-incomplete", "some cells the profile asks of the method are missing: shown with its coverage, never ranked"),
    ("reference", "b-reference", "runs on part of the matrix by design (e.g. full data at budget 1.0): shown, never ranked"),
    ("bound", "b-bound", "a privileged row that sees what a contestant may not (e.g. the future demand): an upper bound, never ranked"),
    ("baseline", "b-baseline", "the method gains are measured against"),
)
