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

The pages are built by one module per page kind: ``front_page`` (the index), ``track_page`` (a
profile's tables and figures), ``method_page``, ``claims_page`` (the claim cards), over
``common`` (formatting, units, the legend) and ``artifacts``. None of them knows a track by
name: units, floors, figures and info keys are the tracks' declarations (``Track.metric_units``,
``metric_chance``, ``board_figures``, ``info_keys``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import coreset_bench
from coreset_bench import registry as plugins
from coreset_bench.store import Store
from coreset_bench.tracks.base import Profile, Track

from . import claims as claim_cards_mod
from .artifacts import COPIED_ARTIFACT_KINDS, _Artifacts  # noqa: F401 - public names of this module
from .board import Board, build_board
from .claims_page import _readings_link, claim_systems
from .common import (  # noqa: F401 - the helpers' old home: public import paths keep working
    HERE,
    LEGEND,
    _cell,
    _env,
    _Names,
    _num,
    _scale,
    _slug,
    _unit,
    _unit_suffix,
    board_range,
    fmt_interval,
    fmt_seconds,
    fmt_value,
    interval_title,
    td_cells,
)
from .data import join_source, load_store_records, normalize_records
from .entries import entry_records, load_entries, one_line_error
from .front_page import current_version, legend, profile_row, track_list
from .front_page import headline as _headline  # noqa: F401
from .method_page import TIMING_KEYS, _method_meta, _method_page  # noqa: F401
from .papers import paper_link, paper_of  # noqa: F401
from .signing import Trust
from .track_page import _profile_page, _table_model, _verified_by, draw_figures, figure_jobs, figure_workers  # noqa: F401

MARKER = ".coreset-bench-site"


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
    #: cells of the store whose key a published entry has, with other numbers (one line each)
    conflicts: list[str] = field(default_factory=list)


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
    source_label: str = "local",
) -> SiteReport:
    """Render the site from a store (or rows, or nothing) plus validated entries; see module doc.

    ``artifacts_dir``: the only directory subset files are published from (default: the store's
    ``artifacts/`` beside its database; with rows and no store, none are published).
    ``trust``: trusted keys for signed entries (``signing.Trust``); rows of entries verified by
    one get a "verified" badge, and ``trust.require_signed`` rejects the other entries.
    ``readings``: the long readings the claim cards link to (a URL, or a file such as
    ``results/README.md``); default: a ``README.md`` beside the first entries directory.
    ``source_label``: with entries, the store's rows are their own labelled source
    (``local``, or ``reproduction`` for a store of ``coreset-bench reproduce``): published numbers
    are never replaced; a cell with the same key and other numbers is listed in
    ``SiteReport.conflicts`` (``leaderboard.data.join_source``).

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
        published: list[dict[str, Any]] = []
        keys: set[str] = set()
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
            published.extend(fresh)
        if duplicates:
            report.warnings.append(f"{duplicates} cells of the entries were already in an earlier entry; the first copy is shown")
        # a store joins as its own labelled source: it never replaces a published number
        records, report.conflicts, identical = join_source(published, records, source_label)
        if identical:
            report.warnings.append(f"{identical} cells of the {source_label} store equal the published ones (shown once, as published)")
    report.records = len(records)
    out = Path(out_dir)
    _prepare_out(out)
    env = _env()
    # the navigation bar's tracks: the installed ones and any a board comes from
    common = {"version": coreset_bench.__version__, "nav_tracks": sorted(tracks)}

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

    # every figure of the site first, side by side in forked workers (they are independent files)
    jobs = [job for pid, board in boards.items() for job in figure_jobs(board, profile_href[pid][: -len(".html")], out)[0]]
    try:
        workers = figure_workers(len(jobs))
    except ValueError as exc:
        raise SiteError(str(exc)) from None
    drawn = draw_figures(jobs, max_curves, workers)

    tmpl_profile = env.get_template("profile.html")
    index_profiles: dict[str, list[dict[str, Any]]] = {}
    for pid, board in boards.items():
        stem = profile_href[pid][: -len(".html")]
        model = _profile_page(board, stem, out, method_href, max_curves, drawn)
        model["claims"] = claim_systems([c for c in cards if c.profile == pid], profile_href, readings_href)
        # superseded only by a newer version that has results (a new version waits for its run)
        newer = current_version(board.track, board.profile.name.split(":", 1)[0], set(boards)) or board.profile.version
        model["superseded_by"] = f"{board.track.name}/{board.profile.name}@{newer}" if newer > board.profile.version else ""
        path = out / profile_href[pid]
        path.write_text(tmpl_profile.render(page=model, root="", **common), encoding="utf-8")
        report.pages.append(path)
        report.warnings.extend(f"{pid}: {w}" for w in board.warnings)
        index_profiles.setdefault(board.track.name, []).append(profile_row(board, profile_href[pid]))

    tmpl_method = env.get_template("method.html")
    for name, recs in sorted(by_method.items()):
        meta = _method_meta(name, entry_meta, recs)
        model = _method_page(name, recs, meta, boards, profile_href, arts, root="../")
        path = out / method_href[name]
        path.write_text(tmpl_method.render(page=model, root="../", **common), encoding="utf-8")
        report.pages.append(path)
    report.artifacts = arts.count
    report.warnings.extend(arts.warnings)

    papers = {name: paper_of(_method_meta(name, entry_meta, recs).get("citation", "")) for name, recs in by_method.items()}
    tracks_model = track_list(tracks, boards, index_profiles, profile_href, method_href, papers)
    index_model = {
        "claims": claim_systems([c for c in cards if not c.declared_by], profile_href, readings_href),
        "other_claims": claim_systems([c for c in cards if c.declared_by], profile_href, readings_href),
        "tracks": tracks_model,
        "legend": legend(),
        "methods": [{"name": m, "href": method_href[m]} for m in sorted(by_method)],
        "rejected": [(str(p), reason) for p, reason in report.rejected],
        "warnings": report.warnings,
        "records": report.records,
    }
    report.index.write_text(env.get_template("index.html").render(page=index_model, root="", **common), encoding="utf-8")
    report.pages.insert(0, report.index)
    return report
