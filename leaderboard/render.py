"""Render the static leaderboard site (Jinja2, autoescape on everywhere; no external assets).

Pages::

    index.html                               tracks, their profiles, methods, rejected entries
    <track>-<profile>-v<version>.html        the ranking tables of one profile, figures
    methods/<method>.html                    one page per method: params, version, package,
                                             citation, per-cell results, subset artifacts
    figures/*.svg                            budget curves and the cost-quality Pareto chart
    artifacts/<sha256[:2]>/<sha256>.<ext>    selected-indices files, content-addressed: plain copies
                                             of files under the store's artifacts directory
                                             whose sha256 matches their row (never links)
    static/leaderboard.css, leaderboard.js   styles and the sortable-table script

``render_site(source, out_dir, entries_dirs=...)`` takes a ``Store``, a database path/URL, a list
of run records (``Store.results()`` dicts), or None, plus directories of entries to merge. Bad
entries are rejected with a one-line reason (``SiteReport.rejected``); the rest is rendered.
Signed entries are checked (``signing``); with trusted keys, verified rows get a badge.
The site works from ``file://``.
"""

from __future__ import annotations

import hashlib
import html
import math
import os
import re
import shutil
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

import coreset_bench
from coreset_bench import registry as plugins
from coreset_bench.claims import verdict_class
from coreset_bench.store import Store
from coreset_bench.tracks.base import Profile, Track

from . import figures
from . import claims as claim_cards_mod
from .board import Board, Table, build_board, primary_metric
from .data import load_store_records, normalize_records, point_key, provenance_of, variant_key, version_key
from .entries import entry_records, load_entries, one_line_error
from .signing import Trust
from .stats import UNBOUNDED, Interval, MetricRange

HERE = Path(__file__).resolve().parent
MARKER = ".coreset-bench-site"
COPIED_ARTIFACT_KINDS = {"indices", "weights"}
TIMING_KEYS = ("selection_s", "training_s", "evaluation_s", "total_s")


def td_cells(values: Iterable[str]) -> Markup:
    """``<td>`` cells of plain-text values, each HTML-escaped (quotes included).

    The per-cell tables of the method pages hold one row per run (tens of thousands on a large
    store); joining escaped values here costs a fraction of a template loop over each value.
    """
    return Markup("<td>" + "</td><td>".join(html.escape(v, quote=True) for v in values) + "</td>")


class SiteError(Exception):
    """The site cannot be written where asked (e.g. a non-empty directory that is not a site)."""


@dataclass
class SiteReport:
    out_dir: Path
    index: Path
    pages: list[Path] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    records: int = 0
    artifacts: int = 0


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
    """``mean ± h`` (t-interval), ``mean [lo, hi]`` (percentile bootstrap, Clopper-Pearson, or a
    t-interval clipped to the metric's range), or the mean with "no interval" when it is
    undefined (too few seeds or zero width): never "± 0"."""
    if iv is None:
        return "—"
    m = _num(iv.mean, scale)
    if m.startswith("-") and not m.strip("-0."):  # a tiny negative that rounds to zero
        m = m[1:]
    if signed and not m.startswith("-"):
        m = "+" + m
    if not iv.defined:
        return f"{m} (no interval, n={iv.n})"
    if iv.method != "t" or iv.clipped:
        return f"{m} [{_num(iv.bounds()[0], scale)}, {_num(iv.bounds()[1], scale)}]"
    hw = _num(iv.half_width or 0.0, scale)
    if not hw.strip("0."):  # a nonzero width that rounds to zero is not shown as "± 0"
        hw = "< 0.01" if scale == 100.0 else f"{(iv.half_width or 0.0) * scale:.1e}"
    return f"{m} ± {hw}"


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


# ---- site preparation -------------------------------------------------------------------------


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SiteError(f"{out} is a file; pass --out with a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise SiteError(f"{out} is not empty and holds no coreset-bench site; pass --out with an empty or new directory")
        for child in out.iterdir():
            if child.name == MARKER:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("rendered by coreset-bench leaderboard; this directory is replaced on each render\n")
    shutil.copytree(HERE / "static", out / "static")
    for sub in ("methods", "figures", "artifacts"):
        (out / sub).mkdir()


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


# ---- inputs -----------------------------------------------------------------------------------


def _records_from(source: Any) -> tuple[list[dict[str, Any]], Store | None]:
    """Records of a store, a path or a list; cells cut by Ctrl-C (``interrupted``) are no result
    and no failure, so the board never sees them."""
    recs, store = _all_records_from(source)
    return [r for r in recs if r.get("status") != "interrupted"], store


def _all_records_from(source: Any) -> tuple[list[dict[str, Any]], Store | None]:
    if source is None:
        return [], None
    if isinstance(source, Store):
        return load_store_records(source), source
    if isinstance(source, (str, os.PathLike)):
        store = Store(source, create=False, read_only=True)
        try:
            return load_store_records(store), store
        finally:
            store.close()  # only its artifacts directory is used from here on
    return normalize_records(source), None


class _Artifacts:
    """Publishes artifact files into the site as plain copies, content-addressed.

    Only a file that (after resolving symlinks) lies under one of ``roots`` (the results directory
    of the store and its artifacts directory), is named ``<sha256><ext>`` after the row's hash,
    is a regular file and whose bytes hash to the row's ``sha256`` is published; the copy is
    hashed while it is written, so what lands in the site is what was checked. Anything else is
    skipped with a one-line warning naming the row. Files are never hard-linked or symlinked.
    """

    def __init__(self, out: Path, roots: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.out = out
        self.roots = [os.path.realpath(r) for r in roots]
        self.done: dict[str, str] = {}
        self.failed: set[tuple[str, str]] = set()
        self.dirs: set[str] = set()
        self.count = 0
        self.warnings: list[str] = []

    def href(self, art: Mapping[str, Any], row: str = "") -> str | None:
        """The site-relative path of the artifact's file, copied on first use; None if unavailable."""
        sha = art.get("sha256") or ""
        if not isinstance(sha, str):
            sha = ""
        path = art.get("path")
        if self.done.get(sha) is not None:  # published already (by a row that passed the checks)
            return self.done[sha]
        if (sha, str(path)) in self.failed:
            return None
        href = None
        if art.get("kind") in COPIED_ARTIFACT_KINDS and path:
            what = f"artifact {art.get('kind')} {str(art.get('name') or '')!r} of run {row or '?'}"
            problem = self._refuse(str(path), sha)
            if problem is None:
                suffix = "".join(ch for ch in os.path.splitext(str(art.get("name") or ""))[1] if ch.isalnum() or ch == ".")[:10] or ".bin"
                sub = f"artifacts/{sha[:2]}"
                if sub not in self.dirs:
                    os.makedirs(self.out / sub, exist_ok=True)
                    self.dirs.add(sub)
                rel = f"{sub}/{sha}{suffix}"
                problem = "not found"  # no candidate exists
                # the file's place in the artifacts directory (a moved results directory, or a
                # relative path recorded from another working directory), else the recorded path
                candidates = [os.path.join(r, sha[:2], os.path.basename(str(path))) for r in self.roots] + [str(path)]
                for src in candidates:
                    problem = self._publish(src, sha, os.path.join(self.out, rel))
                    if problem is None or problem != "not found":
                        break
                if problem is None:
                    href = rel
                    self.count += 1
            if problem == "not found":
                problem = f"its file is missing (neither {path!r} nor a file of that name in the artifacts directory)"
            if problem is not None:
                self.warnings.append(" ".join(f"{what} not published: {problem}".split()))
        if href is not None:
            self.done[sha] = href
        else:  # a refused row never stops another row with the same hash from being published
            self.failed.add((sha, str(path)))
        return href

    @staticmethod
    def _refuse(path: str, sha: str) -> str | None:
        """Why a row's recorded path is refused before touching the file system (None: fine)."""
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            return "its sha256 is not 64 lowercase hex digits"
        if ".." in path.replace("\\", "/").split("/"):
            return f"its path {path!r} contains '..'"
        if not os.path.basename(path).startswith(sha):
            return f"its path {path!r} is not a content-addressed file named after its sha256"
        return None

    def _inside(self, real: str) -> bool:
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)

    def _publish(self, src: str, sha: str, dest: str) -> str | None:
        """Copy ``src`` to ``dest`` if it is a regular file under the roots with hash ``sha``."""
        if not os.path.lexists(src):
            return "not found"
        real = os.path.realpath(src)
        if not self.roots or not self._inside(real):
            where = "no results directory is known" if not self.roots else f"it resolves to {real}, outside the results directory"
            return f"{where}; only files under the results directory are published"
        if not os.path.basename(real).startswith(sha):
            return f"it resolves to {real}, which is not named after its sha256"
        try:
            # no symlink at the last step (checked above, raced here), no blocking on a FIFO
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            return f"cannot open {real} ({exc.strerror})"
        tmp = f"{dest}.part{os.getpid()}"
        try:
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    return f"{real} is not a regular file"
                h = hashlib.sha256()
                with open(tmp, "xb") as out:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
            if h.hexdigest() != sha:
                os.unlink(tmp)
                return f"the file's sha256 is {h.hexdigest()[:16]}…, not the row's {sha[:16]}…"
            os.replace(tmp, dest)
            return None
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            return f"cannot copy {real} ({exc.strerror})"


# ---- page models ------------------------------------------------------------------------------


def _scale(board: Board, metric: str) -> float:
    return 100.0 if metric in board.fraction_metrics else 1.0


def _unit(board: Board, metric: str, gain: bool = False) -> str:
    if metric in board.fraction_metrics:
        return "pp" if gain else "%"
    return ""


def _unit_suffix(board: Board, metric: str) -> str:
    """`` %`` after a number of a fraction metric (shown in percent, as the CLI prints it)."""
    return " %" if metric in board.fraction_metrics else ""


def paper_link(citation: str) -> str:
    """A link to the paper a citation names: its arXiv page, DOI or URL when the citation gives
    one, else a Google Scholar search for the citation text; "" without a citation."""
    import urllib.parse

    text = " ".join(str(citation or "").split())
    if not text:
        return ""
    m = re.search(r"https?://\S+[^\s.,;)]", text)
    if m:
        return m.group(0)
    m = re.search(r"arXiv[:\s]*(\d{4}\.\d{4,5})", text, re.I)
    if m:
        return f"https://arxiv.org/abs/{m.group(1)}"
    m = re.search(r"\b(10\.\d{4,9}/[^\s,;]+[^\s.,;)])", text)
    if m:
        return f"https://doi.org/{m.group(1)}"
    return "https://scholar.google.com/scholar?q=" + urllib.parse.quote(text[:300])


def _headline(board: Board, method_href: Mapping[str, str], papers: Mapping[str, str]) -> dict[str, Any] | None:
    """The front page's table of a track: method × column (budget) of the primary metric, from
    the first setting table of ``board``, ranked rows first, each method with its paper link."""
    tables = [t for t in board.tables if t.kind == "setting"]
    if not tables:
        return None
    t = tables[0]
    scale, unit = _scale(board, board.primary), _unit_suffix(board, board.primary)
    rows = []
    for r in t.rows:
        if not any(iv is not None for iv in r.cols):
            continue
        name = r.variant.method
        rows.append({
            "label": r.variant.label,
            "href": method_href.get(name, ""),
            "paper": papers.get(name, ""),
            "status": r.status,
            "leader": r.leader,
            "cells": [(fmt_interval(iv, scale) + unit) if iv is not None else "—" for iv in r.cols],
        })
    if not rows:
        return None
    return {
        "profile": board.profile.id,
        "setting": t.title,
        "axis": board.column_axis or "",
        "columns": [c.label for c in t.columns],
        "metric": board.primary,
        "direction": "higher is better" if board.direction == "max" else "lower is better",
        "rows": rows,
    }


def claim_systems(cards: Sequence[Any], profile_href: Mapping[str, str], readings: str = "") -> list[dict[str, Any]]:
    """The claim cards' page model: one entry per system (in the cards' order), its paper, its
    distinct quotes and one row per claim and profile, as ``coreset_bench.claims`` computed them.
    ``readings``: the link to ``results/README.md`` (the system's anchor is appended)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for c in cards:
        cl = c.claim
        key = (cl.system, c.declared_by)
        s = out.get(key)
        if s is None:
            s = out[key] = {
                "system": cl.system,
                "anchor": cl.anchor,
                "declared_by": c.declared_by,
                "paper": cl.paper.as_dict(),
                "quotes": [],
                "rows": [],
                "readings": f"{readings}#{cl.anchor}" if readings else "",
            }
        if cl.quote not in s["quotes"]:
            s["quotes"].append(cl.quote)
        steps = [f"{st.label}: {c.num(st.mean, True)}" + (f" [{c.num(st.low)}, {c.num(st.high)}]" if st.defined else " (no interval)") for st in c.steps]
        s["rows"].append({
            "id": cl.id,
            "what": c.what(),
            "metric": cl.metric,
            "setting": ", ".join(f"{k}={v}" for k, v in cl.where.items()),
            "kind": cl.kind,
            "paper_number": cl.paper_number,
            "profile": c.profile,
            "profile_href": profile_href.get(c.profile, ""),
            "difference": c.difference_text(),
            "steps": steps,
            "claimed": c.amount_text(),
            "amount_word": "margin" if cl.kind == "non-inferiority" else "effect",
            "mde": c.mde_text(),
            "verdict": c.verdict,
            "verdict_cls": verdict_class(c.verdict),
            "reason": c.judgement.reason,
            "underpowered": bool(c.judgement.underpowered),
            "notes": list(c.notes),
        })
    return list(out.values())


def _readings_link(readings: str | os.PathLike[str] | None, out: Path) -> str:
    """The link from the site to the long readings (``results/README.md``): a URL as given, a
    file as a path relative to the site; "" when there is none."""
    if readings is None:
        return ""
    text = str(readings)
    if re.match(r"^https?://", text):
        return text
    path = Path(text)
    if not path.is_file():
        return ""
    return os.path.relpath(path.resolve(), out.resolve()).replace(os.sep, "/")


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
    for c in table.columns:
        note = " (outside the profile's matrix: run by design by reference methods such as full data)" if c.extra else ""
        headers.append({"label": c.label, "title": f"{primary} at {c.title}{note}", "type": "num", "first": first})
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
        badges = []
        if r.leader:
            badges.append(("leader", "b-leader", "best mean among complete rows"))
        if r.tied:
            why = "tied with the leader in every setting (paired)" if overall else (
                "the paired 95 % interval of (leader − row) contains 0 or is undefined: "
                + (fmt_interval(r.vs_leader, scale, signed=True) if r.vs_leader is not None else "no paired seed")
            )
            badges.append(("tied", "b-tied", why))
        if r.flags:
            badges.append(("flagged: " + ", ".join(sorted(r.flags)), "b-flagged", "flagged (a degenerate model, or the track's own flag), never the leader: " + r.note if r.status == "flagged" else "flagged in some cells: " + ", ".join(f"{f} ({n} cells)" for f, n in sorted(r.flags.items()))))
        if r.baseline:
            badges.append(("baseline", "b-baseline", "gains are measured against this method"))
        if r.status == "at floor":
            badges.append(("at floor", "b-atfloor", r.note))
        if r.status == "incomplete":
            badges.append(("incomplete", "b-incomplete", r.note))
        if r.status == "reference":
            badges.append(("reference", "b-reference", r.note))
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
            cells.append(_cell(fmt_interval(iv, _scale(board, m)) + (_unit_suffix(board, m) if iv is not None else "") + (dagger if iv is not None else ""), iv.mean if iv is not None else None, title=interval_title(iv), cls="secondary partial" if dagger else "secondary"))
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
        fcells = [_cell("–"), _cell("constant classifier (floor)", title="accuracy of always predicting one class: 1 / number of classes")]
        for f in table.floor:
            fcells.append(_cell(_num(f, scale) if f is not None else "—", f, cls="floor"))
        n_after = len(headers) - n_before - len(table.floor)
        fcells += [_cell("", cls="na") for _ in range(n_after)]
        floor_row = {"cls": "floor", "cells": fcells}
    footnotes = [
        f"{r.variant.label}: {r.note}" if r.status == "flagged" else f"{r.variant.label}: flagged in " + ", ".join(f"{n} cell{'s' if n != 1 else ''} ({f})" for f, n in sorted(r.flags.items()))
        for r in table.rows
        if r.flags
    ]
    n_seeds = len(board.profile.seeds)
    unit = _unit(board, primary)
    methods = {iv.method for r in table.rows for iv in (r.score, *r.cols) if iv is not None and iv.defined}
    how = (
        "95 % paired hierarchical bootstrap over seeds and test points (percentile method)"
        if methods == {"bootstrap"}
        else "95 % interval: bootstrap over seeds and test points (privacy tracks: target models) [lo, hi] where cells store them, else t over seeds (± h)"
        if "bootstrap" in methods
        else "95 % t-interval over seeds (no per-point results; undefined below 3 seeds or at zero width)"
    )
    shown = [iv for r in table.rows for iv in (r.score, r.gain, r.vs_leader, *r.cols, *r.col_gain, *r.secondary.values()) if iv is not None and iv.defined]
    if any(iv.clipped for iv in shown):
        how += "; an interval of a bounded metric is clipped to its declared range (e.g. [0, 100] % for an accuracy), shown as [lo, hi]"
    props = [m for m in (primary, *secondary) if board_range(board, m).proportion]
    if any(iv.method == "proportion" for iv in shown) and props:
        how += f"; {', '.join(props)}: a 0/1 value per cell, 95 % Clopper-Pearson interval over the cells"
    if table.kind == "overall":
        explain = (
            f"Columns {table.columns[0].label} … {table.columns[-1].label}: {primary}"
            + (f" ({unit})" if unit else "")
            + f" per setting (mean over its budgets, {how}; {n_seeds} seed{'s' if n_seeds != 1 else ''})"
            + (f"; second line: gain over {base}, paired" if base else "")
            + ". Settings are not averaged: rows are ordered by their mean rank over the settings; tied: tied with the leader (paired) in every setting."
            + " † marks values over an incomplete set of cells."
        )
    else:
        explain = (
            f"Columns {table.columns[0].label} … {table.columns[-1].label}: {primary}"
            + (f" ({unit})" if unit else "")
            + (f" at each {board.column_axis}" if board.column_axis else "")
            + f", mean with {how}, {n_seeds} seed{'s' if n_seeds != 1 else ''}"
            + (f"; second line: gain over {base} ({_unit(board, primary, True) or 'raw'}), paired by seed and test point" if base else "")
            + ". † marks values over an incomplete set of cells."
        )
    return {"title": table.title, "slug": table.slug, "kind": table.kind, "headers": headers, "rows": rows, "explain": explain, "floor": floor_row, "footnotes": footnotes, "has_secondary": bool(secondary)}


def _profile_page(board: Board, stem: str, out: Path, method_href: Mapping[str, str], max_curves: int) -> dict[str, Any]:
    figs = []
    curve = out / "figures" / f"{stem}-budget.svg"
    if figures.budget_curves(board, curve, max_rows=max_curves):
        figs.append({
            "src": f"figures/{curve.name}",
            "alt": f"{board.primary} against {board.column_axis} per method",
            "caption": f"{board.primary} against {board.column_axis}: the {max_curves} best rows of the {board.main.title.lower()} ranking and the baseline, with 95 % CI bands.",
        })
    # one chart per setting: quality is never averaged across settings (standard vs TRADES)
    settings = [t for t in board.tables if t.kind == "setting"]
    for t in settings:
        pareto = out / "figures" / (f"{stem}-pareto.svg" if len(settings) == 1 else f"{stem}-pareto-{t.slug}.svg")
        if figures.pareto_chart(board, t, pareto):
            figs.append({
                "src": f"figures/{pareto.name}",
                "alt": f"cost against quality per method ({t.title})",
                "caption": f"Cost–quality: end-to-end time per cell against {board.primary} ({t.title.lower()}); time relative to the baseline's at the same cell on the same machine (platform, device, threads) where every row has such pairs, else mean seconds; red: the Pareto front; bands clipped to the metric's range.",
            })
    if board.track.name == "pooling":
        pool = out / "figures" / f"{stem}-pool-frontier.svg"
        if figures.pool_frontier(board, pool):
            figs.append({
                "src": f"figures/{pool.name}",
                "alt": "idle cluster-hours per day against hit rate per method, over the static frontier",
                "caption": "Idle cluster-hours per day against hit rate, per trace: every row (small dots: cells; large: the row's mean) over the hindsight static frontier (constant pools, one line per repeat). Below and right of the line is better than any constant pool.",
            })
    if board.track.name in ("privacy", "memorization"):
        sweep = out / "figures" / f"{stem}-epsilon.svg"
        if figures.epsilon_sweep(board, sweep):
            what = "attack AUC" if board.track.name == "privacy" else "each row's mean score on the targets' members (input-curvature: mean input-loss curvature) relative to its non-private value, with the fitted bound shape α(1−e^−ε)+β dashed, and the Feldman-Zhang memorization (mean and 90th percentile, bars: its mean standard error)"
            figs.append({
                "src": f"figures/{sweep.name}",
                "alt": f"{board.primary} against epsilon",
                "caption": f"Against ε of the DP-SGD models (∞: the non-private reference): {what}.",
            })
    if board.track.name == "video":
        ef = out / "figures" / f"{stem}-exit-frontier.svg"
        if figures.exit_frontier(board, ef):
            figs.append({
                "src": f"figures/{ef.name}",
                "alt": "accuracy against relative compute of the early-exit cascade per method",
                "caption": "Accuracy against compute of the early-exit cascade (confidence-threshold sweep): per row, the best test accuracy reachable at a mean cost up to x % of the full cost (all three networks and the fused exit), averaged over the cells. exit_auc is the mean of this curve over 5 %, 10 %, ..., 100 %.",
            })
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
        "verified": any(_verified_by(v.records) for v in board.variants),
        "figures": figs,
        "warnings": list(board.warnings),
        "provenance": prov,
        "sources": sources,
        "runs": len(recs),
        "done": sum(1 for r in recs if r["status"] == "done"),
        "failed": sum(1 for r in recs if r["status"] == "failed"),
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
            scale = {m: (100.0 if board is not None and m in board.fraction_metrics else 1.0) for m in metric_names}
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
                values += [_num(r["metrics"][m], scale[m]) + (" %" if scale[m] == 100.0 else "") if m in r["metrics"] else "" for m in metric_names]
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
                "metric_names": [m + (" (%)" if scale[m] == 100.0 else "") for m in metric_names],
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
        "version": meta.get("version", ""),
        "package": meta.get("package", ""),
        "params": sorted(dict(meta.get("params") or {}).items()),
        "installed": meta.get("installed", False),
        "variants": variants,
    }


# ---- the site ---------------------------------------------------------------------------------


def _find_profile(track: Track, pid: str) -> Profile | None:
    for p in track.profiles():
        if p.id == pid:
            return p
    try:  # a derived profile (NAME:DATASET, from --dataset) of a known one
        derived = track.profile(pid)
    except (LookupError, ValueError):
        return None
    return derived if derived.id == pid else None


def _board_without_failing_entries(
    track: Track, profile: Profile, recs: list[dict[str, Any]], exc: Exception, report: SiteReport
) -> tuple[Board | None, list[dict[str, Any]]]:
    """After ``build_board`` failed: reject each entry whose records alone (beside the store's)
    make it fail, then build the board from the rest; (None, records) when it still fails."""
    pid = profile.id
    own = [r for r in recs if r.get("source") == "store" or not str(r.get("source") or "").endswith(".json")]
    own_ids = {id(r) for r in own}
    by_source: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        if id(r) not in own_ids:
            by_source.setdefault(str(r["source"]), []).append(r)
    kept = list(own)
    for source, srecs in sorted(by_source.items()):
        try:
            build_board(track, profile, own + srecs)
        except Exception as one:  # noqa: BLE001
            report.rejected.append((Path(source), one_line_error(f"the {pid} board fails with this entry", one)))
            continue
        kept.extend(srecs)
    try:
        return build_board(track, profile, kept), kept
    except Exception as still:  # noqa: BLE001 - the other profiles still render
        report.warnings.append(f"{pid}: not rendered: {one_line_error('the board failed', still if kept else exc)}")
        return None, kept


def render_site(
    source: Any = None,
    out_dir: str | os.PathLike[str] = "results/site",
    *,
    entries_dirs: Iterable[str | os.PathLike[str]] = (),
    tracks: Mapping[str, Track] | None = None,
    max_curves: int = 10,
    artifacts_dir: str | os.PathLike[str] | None = None,
    trust: Trust | None = None,
    readings: str | os.PathLike[str] | None = None,
) -> SiteReport:
    """Render the site from a store (or rows, or nothing) plus validated entries; see module doc.

    ``artifacts_dir``: the only directory subset files are published from (default: the store's
    ``artifacts/`` beside its database; with rows and no store, none are published).
    ``trust``: trusted keys for signed entries (``signing.Trust``); rows of entries verified by
    one get a "verified" badge, and ``trust.require_signed`` rejects the other entries.
    ``readings``: the long readings the claim cards link to (a URL, or a file such as
    ``results/README.md``); default: a ``README.md`` beside the first entries directory.

    The front page opens with the claim cards: each claim of the tracks' seed papers (and of
    installed method packages, ``register_claims``) read on each profile it names
    (``leaderboard.claims``); a profile page with a claim shows its cards at the top.
    """
    records, store = _records_from(source)
    tracks = dict(tracks) if tracks is not None else plugins.tracks()
    known = {p.id: p for t in tracks.values() for p in t.profiles()}
    report = SiteReport(Path(out_dir), Path(out_dir) / "index.html")
    entry_meta: dict[str, dict[str, Any]] = {}
    dirs = [Path(d) for d in entries_dirs]
    if dirs:
        loaded = load_entries(dirs, known, tracks=tracks, trust=trust, local=records)  # built-in rows: reproduced by the store?
        report.rejected = loaded.rejected
        keys = {r["key"] for r in records if r["key"]}
        duplicates = 0
        for path, obj in loaded.accepted:
            m = obj["method"]
            try:
                recs = entry_records(obj, str(path))
            except Exception as exc:  # noqa: BLE001 - one bad entry must not take down the board
                report.rejected.append((path, one_line_error("could not be read", exc)))
                continue
            entry_meta.setdefault(m["name"], dict(m))
            verdict = loaded.verdicts.get(path)
            if verdict is not None and verdict.note:
                report.warnings.append(f"{path}: {verdict.note}")
            fresh = [r for r in recs if r["key"] not in keys]
            if verdict is not None and verdict.verified_by is not None:
                for r in fresh:
                    r["verified_by"] = verdict.label
            duplicates += len(obj["cells"]) - len(fresh)
            keys.update(r["key"] for r in fresh)
            records.extend(fresh)
        if duplicates:
            report.warnings.append(f"{duplicates} cells of the entries were already in the store or an earlier entry; the first copy is shown")
    report.records = len(records)
    out = Path(out_dir)
    _prepare_out(out)
    env = _env()
    common = {"version": coreset_bench.__version__}

    # group by profile; boards for known profiles
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_profile.setdefault(r["profile"], []).append(r)
    boards: dict[str, Board] = {}
    profile_href: dict[str, str] = {}
    for pid, recs in sorted(by_profile.items()):
        tname = recs[0]["track"]
        track = tracks.get(tname)
        profile = _find_profile(track, pid) if track is not None else None
        if track is None:
            report.warnings.append(f"{len(recs)} runs of {pid}: track {tname!r} is not installed; not rendered")
            continue
        if profile is None:
            report.warnings.append(f"{len(recs)} runs of {pid}: the installed track {tname!r} does not define that profile version; not rendered")
            continue
        try:
            boards[pid] = build_board(track, profile, recs)
        except Exception as exc:  # noqa: BLE001 - one entry must not take down the board
            board, recs = _board_without_failing_entries(track, profile, recs, exc, report)
            by_profile[pid] = recs
            if board is None:
                continue
            boards[pid] = board
        page = f"{_slug(track.name)}-{_slug(profile.name)}-v{profile.version}"
        if f"{page}.html" in profile_href.values():  # two free-form names that slug alike
            page += "-" + hashlib.sha1(pid.encode()).hexdigest()[:8]
        profile_href[pid] = f"{page}.html"

    names = _Names()
    by_method: dict[str, list[dict[str, Any]]] = {}
    for pid in boards:
        for r in by_profile[pid]:
            by_method.setdefault(r["method"], []).append(r)
    method_href = {m: f"methods/{names.get(m)}.html" for m in sorted(by_method)}

    if artifacts_dir is None and store is not None:
        artifacts_dir = store.artifacts_dir
    arts = _Artifacts(out, [artifacts_dir] if artifacts_dir is not None else [])
    if readings is None and dirs:
        readings = next((d.parent / "README.md" for d in dirs if d.is_dir() and (d.parent / "README.md").is_file()), None)
    readings_href = _readings_link(readings, out)
    claim_list, claim_problems = plugins.claims_and_problems(tracks)
    report.warnings.extend(claim_problems)
    cards = claim_cards_mod.cards(claim_list, boards, tracks)

    tmpl_profile = env.get_template("profile.html")
    index_profiles: dict[str, list[dict[str, Any]]] = {}
    for pid, board in boards.items():
        stem = profile_href[pid][: -len(".html")]
        model = _profile_page(board, stem, out, method_href, max_curves)
        model["claims"] = claim_systems([c for c in cards if c.profile == pid], profile_href, readings_href)
        # superseded only by a newer version that has results (a new version waits for its run)
        newer = max((p.version for p in board.track.profiles() if p.name == board.profile.name.split(":", 1)[0] and p.id in boards), default=board.profile.version)
        model["superseded_by"] = f"{board.track.name}/{board.profile.name}@{newer}" if newer > board.profile.version else ""
        path = out / profile_href[pid]
        path.write_text(tmpl_profile.render(page=model, root="", **common), encoding="utf-8")
        report.pages.append(path)
        report.warnings.extend(f"{pid}: {w}" for w in board.warnings)
        main = board.main
        lead = next((r for r in main.rows if r.leader), None)
        index_profiles.setdefault(board.track.name, []).append({
            "id": pid,
            "href": profile_href[pid],
            "methods": len(board.variants),
            "leader": lead.variant.label if lead else "",
            "leader_score": (f"mean rank {lead.mean_rank:.2f}" if main.kind == "overall" else fmt_interval(lead.score, _scale(board, board.primary)) + _unit_suffix(board, board.primary)) if lead else "",
            "derived": ":" in board.profile.name,
            "n_methods": len(board.variants),
            "complete": sum(1 for r in main.rows if r.status != "incomplete"),
            "incomplete": sum(1 for r in main.rows if r.status == "incomplete"),
        })

    tmpl_method = env.get_template("method.html")
    for name, recs in sorted(by_method.items()):
        meta = _method_meta(name, entry_meta, recs)
        model = _method_page(name, recs, meta, boards, profile_href, arts, root="../")
        path = out / method_href[name]
        path.write_text(tmpl_method.render(page=model, root="../", **common), encoding="utf-8")
        report.pages.append(path)
    report.artifacts = arts.count
    report.warnings.extend(arts.warnings)

    papers = {name: paper_link(_method_meta(name, entry_meta, recs).get("citation", "")) for name, recs in by_method.items()}
    track_list = []
    for tname in sorted(set(tracks) | {b.track.name for b in boards.values()}):
        t = tracks[tname]
        rendered = {p["id"]: p for p in index_profiles.get(tname, [])}
        profs, earlier = [], []
        newest: dict[str, int] = {}
        for p in t.profiles():
            if p.id in rendered:  # a newer version without results does not push its elder off yet
                newest[p.name] = max(newest.get(p.name, p.version), p.version)
        empty = []
        for p in t.profiles():
            row = rendered.get(p.id) or {"id": p.id, "href": "", "methods": 0, "leader": "", "leader_score": "", "complete": 0, "incomplete": 0}
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
        track_list.append({
            "name": t.name,
            "summary": t.summary,
            "contestants": t.contestant_kind,
            "profiles": profs,
            "derived": derived,
            "empty": empty,
            "earlier": earlier,
            "headline": _headline(boards[best], method_href, papers) if best else None,
            "headline_href": profile_href.get(best, "") if best else "",
        })
    index_model = {
        "claims": claim_systems([c for c in cards if not c.declared_by], profile_href, readings_href),
        "other_claims": claim_systems([c for c in cards if c.declared_by], profile_href, readings_href),
        "tracks": track_list,
        "methods": [{"name": m, "href": method_href[m]} for m in sorted(by_method)],
        "rejected": [(str(p), reason) for p, reason in report.rejected],
        "warnings": report.warnings,
        "records": report.records,
    }
    report.index.write_text(env.get_template("index.html").render(page=index_model, root="", **common), encoding="utf-8")
    report.pages.insert(0, report.index)
    return report
