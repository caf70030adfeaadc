"""Leaderboard: statistics, entries (export, validation, rejection), rendering, escaping, browser."""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from coreset_bench import hookimpl, plugins, registry
from coreset_bench.kinds import SelectionMethod
from coreset_bench.leaderboard import cli as lb_cli
from coreset_bench.leaderboard import stats
from coreset_bench.leaderboard.board import build_board
from coreset_bench.leaderboard.data import load_store_records, normalize_records
from coreset_bench.leaderboard import entries as entries_mod
from coreset_bench.leaderboard import render as render_mod
from coreset_bench.leaderboard.data import version_key
from coreset_bench.leaderboard.entries import (
    CORESET_INFO_KEYS,
    EntryError,
    build_entry,
    check_entry,
    export_entries,
    load_entry,
    validate_entry,
)
from coreset_bench.leaderboard.figures import pareto_front
from coreset_bench.leaderboard.render import SiteError, render_site
from coreset_bench.store import Store
from coreset_bench.tracks.base import ArtifactOut, Cell, Profile, Track

T975_DF2 = 4.302652729911275  # Student t, two-sided 95 %, 2 degrees of freedom (tables)
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


# ---- a tiny track and methods, registered for this module --------------------------------------


class TinyTrack(Track):
    name = "lbtiny"
    summary = "A tiny track for the leaderboard tests."
    contestant_kind = "selection"
    primary_metric = "acc"
    metric_units = {"acc": "%"}
    metric_directions = {"acc": "max", "robust_acc": "max"}
    secondary_metrics = ("robust_acc",)
    baseline_method = "lbt-random"

    def profiles(self) -> list[Profile]:
        return [Profile("lbtiny", "small", 2, axes={"dataset": ["d1"], "budget": [0.1, 0.5]}, seeds=(0, 1, 2), description="two budgets")]

    def cells(self, profile, method):
        # like the coreset track: a method with ``fixed_fraction`` runs at that budget only,
        # which may lie outside the profile's budgets (full data at 1.0)
        fixed = getattr(method, "fixed_fraction", None)
        if fixed is None:
            return super().cells(profile, method)
        return [Cell(c.track, c.profile, c.method, c.method_version, c.params, {**c.axes, "budget": float(fixed)}, c.repeat)
                for c in super().cells(profile, method) if c.axes["budget"] == profile.axes["budget"][0]]

    def run_cell(self, cell, method, ctx):  # the leaderboard tests write results directly
        raise AssertionError("not run in these tests")


def _method(name: str, summary: str = "", params: dict | None = None, citation: str = "", **attrs) -> SelectionMethod:
    cls = type(
        "M_" + re.sub(r"\W", "_", name),
        (SelectionMethod,),
        {"name": name, "summary": summary, "citation": citation, "params": dict(params or {}), "version": "1.0",
         "select": lambda self, view: np.arange(view.budget), **attrs},
    )
    return cls()


METHODS = [
    _method("lbt-random", "Uniform random subset."),
    _method("lbt-alpha", "The best one.", {"k": 3}, citation="Alpha et al., 2024"),
    _method("lbt-gamma", "Close second."),
    _method("lbt-beta", "Has a failed cell."),
    _method("lbt-full", "All the data, at budget 1.0 only.", fixed_fraction=1.0),
    _method(XSS, f"summary {XSS}", {"note": XSS}, citation=XSS),
]

# acc per (method, budget) over repeats 0, 1, 2
ACC = {
    "lbt-random": {0.1: [0.50, 0.52, 0.54], 0.5: [0.60, 0.62, 0.64]},
    "lbt-alpha": {0.1: [0.60, 0.61, 0.65], 0.5: [0.80, 0.80, 0.83]},
    "lbt-gamma": {0.1: [0.595, 0.605, 0.645], 0.5: [0.795, 0.795, 0.825]},
    "lbt-beta": {0.1: [0.55, 0.58, 0.58], 0.5: [0.74, 0.79, None]},  # repeat 2 at 0.5 fails
    "lbt-full": {1.0: [0.90, 0.91, 0.92]},
    XSS: {0.1: [0.45, 0.47, 0.49], 0.5: [0.55, 0.57, 0.59]},
}


def _plugin_module() -> types.ModuleType:
    mod = types.ModuleType("lbt_plugin")

    @hookimpl
    def register_tracks(register):
        register(TinyTrack())

    @hookimpl
    def register_methods(register):
        for m in METHODS:
            register(m)

    mod.register_tracks = register_tracks
    mod.register_methods = register_methods
    return mod


@pytest.fixture(scope="module")
def tiny():
    """A plugin manager holding only the tiny track and methods (hermetic, and no torch imports)."""
    old = registry._manager
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CORESET_BENCH_LOAD_PLUGINS", "")  # an empty allow-list: no installed plugin
        mp.delenv("CORESET_BENCH_DISABLE_PLUGINS", raising=False)
        registry.reset()
        registry.load_plugins()
    plugins.register(_plugin_module(), name="lbt_plugin", package="lbt-package")
    try:
        track = plugins.track("lbtiny")
        yield track, track.profiles()[0]
    finally:
        plugins.unregister("lbt_plugin")
        registry._manager = old


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.fixture(scope="module")
def store(tiny, tmp_path_factory):
    track, profile = tiny
    d = tmp_path_factory.mktemp("lbstore")
    st = Store(d / "db.sqlite")
    env = {"coreset_bench": "0.1.0", "git_commit": "abc123", "device": "cpu", "device_name": "cpu (x86_64, 2 cores)", "torch": "2.5"}
    for m in METHODS:
        for cell in track.cells(profile, m):
            b = cell.axes["budget"]
            acc = ACC[m.name][b][cell.repeat]
            st.start(cell, m, env)
            if acc is None:
                st.fail(cell.key, "ValueError: lbt-beta returned a duplicate index", "Traceback ...", {"selection_s": 0.2})
                continue
            budget = int(b * 100)
            realized = int(budget * 0.9) if m.name == "lbt-gamma" else budget
            st.finish(
                cell.key,
                metrics={"acc": acc, "robust_acc": acc - 0.3},
                timings={"selection_s": 0.5 if m.name != "lbt-alpha" else 2.0, "training_s": 1.0, "evaluation_s": 0.1, "total_s": 1.6 if m.name != "lbt-alpha" else 3.1},
                info={"budget": budget, "realized_size": realized},
                artifacts=[ArtifactOut("indices", "indices.npy", _npy(np.arange(realized) + cell.repeat))],
            )
    yield st
    st.close()


@pytest.fixture(scope="module")
def site(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("lbsite") / "site"
    report = render_site(store, out)
    return out, report


# ---- statistics against hand-computed values ------------------------------------------------


def test_t_interval_hand_values():
    iv = stats.t_interval([0.60, 0.61, 0.65])
    # mean 0.62; s = sqrt((0.02² + 0.01² + 0.03²) / 2) = sqrt(0.0007); half = t · s / sqrt(3)
    assert iv.mean == pytest.approx(0.62, abs=1e-12)
    assert iv.n == 3
    assert iv.half_width == pytest.approx(T975_DF2 * math.sqrt(0.0007) / math.sqrt(3), rel=1e-9)
    assert iv.half_width == pytest.approx(0.0657241, abs=1e-6)
    one = stats.t_interval([0.7])
    assert one.mean == 0.7 and one.half_width is None and one.bounds() == (0.7, 0.7)
    assert stats.t_interval([]) is None
    assert stats.t_critical(9) == pytest.approx(2.262157, abs=1e-6)


def test_paired_gain_hand_values():
    pts = ["b0.1", "b0.5"]
    method = {("b0.1", 0): 0.60, ("b0.1", 1): 0.61, ("b0.1", 2): 0.65, ("b0.5", 0): 0.80, ("b0.5", 1): 0.80, ("b0.5", 2): 0.83}
    base = {("b0.1", 0): 0.50, ("b0.1", 1): 0.52, ("b0.1", 2): 0.54, ("b0.5", 0): 0.60, ("b0.5", 1): 0.62, ("b0.5", 2): 0.64}
    # at budget 0.1 the differences are 0.10, 0.09, 0.11: mean 0.10, s = 0.01
    g = stats.paired_gain(method, base, ["b0.1"], [0, 1, 2])
    assert g.mean == pytest.approx(0.10, abs=1e-12)
    assert g.half_width == pytest.approx(T975_DF2 * 0.01 / math.sqrt(3), rel=1e-9)
    # over both budgets, per repeat: 0.15, 0.135, 0.15 -> mean 0.145, s = sqrt(0.00015 / 2)
    g2 = stats.paired_gain(method, base, pts, [0, 1, 2])
    assert g2.mean == pytest.approx(0.145, abs=1e-12)
    assert g2.half_width == pytest.approx(T975_DF2 * math.sqrt(0.000075) / math.sqrt(3), rel=1e-9)
    # lower-is-better metrics: a positive gain still means better
    assert stats.paired_gain(base, method, ["b0.1"], [0, 1, 2], direction="min").mean == pytest.approx(0.10)
    # a repeat missing on either side is left out, never averaged over part of the points
    partial = dict(method)
    del partial[("b0.5", 2)]
    assert stats.paired_differences(partial, base, pts, [0, 1, 2]) == pytest.approx({0: 0.15, 1: 0.135})


def test_ties_are_a_paired_comparison_with_the_leader_not_interval_overlap():
    pts = ["p"]
    lead = {("p", 0): 0.50, ("p", 1): 0.70, ("p", 2): 0.90}
    # the seeds disagree wildly, so the two rows' own intervals overlap almost entirely ...
    close = {("p", 0): 0.48, ("p", 1): 0.679, ("p", 2): 0.881}
    assert stats.mean_over_points(lead, pts, [0, 1, 2]).contains(stats.mean_over_points(close, pts, [0, 1, 2]).mean)
    # ... but the paired differences (0.02, 0.021, 0.019) exclude 0: not tied
    d = stats.paired_gain(lead, close, pts, [0, 1, 2])
    assert d.defined and d.low > 0 and not stats.is_tied(d)
    # a row that is better in one seed and worse in another is tied
    mixed = {("p", 0): 0.55, ("p", 1): 0.65, ("p", 2): 0.90}
    assert stats.is_tied(stats.paired_gain(lead, mixed, pts, [0, 1, 2]))
    # equal differences in every seed: no interval, so no difference is established (tied)
    equal = {k: v - 0.02 for k, v in lead.items()}
    flat = stats.paired_gain(lead, equal, pts, [0, 1, 2])
    assert not flat.defined and "zero width" in flat.reason and stats.is_tied(flat)
    assert stats.is_tied(None)
    # two seeds are too few for a t-interval, whatever the values
    two = stats.paired_gain(lead, close, pts, [0, 1])
    assert two.half_width is None and "too few" in two.reason


def test_mean_ranks():
    scores = {"a": [0.9, 0.1], "b": [0.8, 0.3], "c": [0.8, 0.2]}
    assert stats.mean_ranks(scores, "max") == {"a": 2.0, "b": 1.75, "c": 2.25}  # (1+3)/2, (2.5+1)/2, (2.5+2)/2


def test_pareto_front():
    pts = [(1.0, 0.6), (2.0, 0.7), (3.0, 0.65), (0.5, 0.5), (2.0, 0.55)]
    assert pareto_front(pts, "max") == [3, 0, 1]
    assert pareto_front([(1.0, 0.3), (2.0, 0.2), (3.0, 0.25)], "min") == [0, 1]


# ---- the ranking model --------------------------------------------------------------------------


def test_board_ranking_coverage_and_ties(tiny, store):
    track, profile = tiny
    board = build_board(track, profile, load_store_records(store))
    assert len(board.tables) == 1  # one setting: no overall table
    rows = {r.variant.method: r for r in board.main.rows}
    order = [r.variant.method for r in board.main.rows]
    assert order == ["lbt-alpha", "lbt-gamma", "lbt-random", XSS, "lbt-full", "lbt-beta"]
    alpha = rows["lbt-alpha"]
    assert alpha.leader and alpha.rank == 1
    # score per repeat: (0.70, 0.705, 0.74) -> 0.715 ± t · sqrt(0.000475) / sqrt(3)
    assert alpha.score.mean == pytest.approx(0.715)
    assert alpha.score.half_width == pytest.approx(T975_DF2 * math.sqrt(0.000475) / math.sqrt(3), rel=1e-9)
    assert alpha.gain.mean == pytest.approx(0.145)
    assert alpha.col_gain[0].mean == pytest.approx(0.10)
    assert alpha.cols[0].mean == pytest.approx(0.62)
    assert alpha.secondary["robust_acc"].mean == pytest.approx(0.415)
    assert alpha.selection_s == pytest.approx(2.0) and alpha.total_s == pytest.approx(3.1)
    assert rows["lbt-gamma"].tied and not rows["lbt-random"].tied and not rows[XSS].tied
    assert rows["lbt-random"].baseline and rows["lbt-random"].gain is None
    assert rows["lbt-gamma"].realized_ratio == pytest.approx(0.9, abs=0.02)
    beta = rows["lbt-beta"]
    assert beta.status == "incomplete" and not beta.ranked and beta.rank is None
    assert (beta.done, beta.expected) == (5, 6)
    assert beta.col_complete == [True, False, True]
    assert beta.cols[1].n == 2  # the budget column shows the two seeds it has, flagged
    # the mean over the matrix uses only repeats complete at every budget: repeats 0 and 1
    assert beta.score.n == 2 and beta.score.mean == pytest.approx((0.645 + 0.685) / 2)
    # full data runs at budget 1.0, outside the profile's budgets: an extra column, a reference row
    assert [c.label for c in board.main.columns] == ["0.1", "0.5", "1"] and board.main.columns[2].extra
    full = rows["lbt-full"]
    assert full.status == "reference" and not full.ranked and full.col_applicable == [False, False, True]
    assert (full.done, full.expected) == (3, 3) and full.score.mean == pytest.approx(0.91)
    assert all(not ok for r in board.main.rows if r is not full for ok in r.col_applicable[2:])


def test_board_from_rows_uses_primary_for_and_flags_runs_outside_the_matrix(tiny, store):
    track, profile = tiny

    class PerProfile(TinyTrack):
        def primary_for(self, profile):  # like the coreset track: the primary metric depends on the profile
            return "robust_acc"

    rows = store.results()
    stray = dict(rows[0], key="x" * 24, repeat=7)  # a repeat the profile does not have (--seeds 7)
    records = normalize_records([*rows, stray])
    board = build_board(PerProfile(), profile, records)
    assert board.primary == "robust_acc" and "robust_acc" not in board.secondary and "acc" in board.secondary
    alpha = next(r for r in board.main.rows if r.variant.method == "lbt-alpha")
    assert alpha.leader and alpha.score.mean == pytest.approx(0.415)
    assert board.warnings == ["1 runs lie outside the profile's matrix (axes or repeat) and are not shown"]


def test_board_with_several_settings_has_an_overall_table(tiny):
    track, _ = tiny
    wide = Profile("lbtiny", "wide", 1, axes={"dataset": ["d1", "d2"], "budget": [0.1, 0.5]}, seeds=(0, 1))
    # acc = base + 0.1 * budget index + 0.2 * dataset index + 0.01 * repeat; alpha beats random by 0.05 (d1), 0.15 (d2)
    rows = []
    for m, lift in (("lbt-random", (0.0, 0.0)), ("lbt-alpha", (0.05, 0.15))):
        for di, d in enumerate(["d1", "d2"]):
            for bi, b in enumerate([0.1, 0.5]):
                for r in (0, 1):
                    acc = 0.5 + 0.1 * bi + 0.2 * di + 0.01 * r + lift[di]
                    rows.append({"key": f"{m}{d}{b}{r}", "track": "lbtiny", "profile": wide.id, "method": m, "package": "lbt-package",
                                 "method_version": "1.0", "params": {"k": 3} if m == "lbt-alpha" else {},
                                 "axes": {"dataset": d, "budget": b}, "repeat": r, "status": "done", "metrics": {"acc": acc}})
    board = build_board(track, wide, normalize_records(rows))
    assert [t.title for t in board.tables] == ["Overall", "dataset=d1", "dataset=d2"]
    overall = board.main
    assert [c.label for c in overall.columns] == ["d1", "d2"]
    alpha = next(r for r in overall.rows if r.variant.method == "lbt-alpha")
    # per repeat the mean over 4 points is 0.5 + 0.05 + 0.1 + 0.01 r + 0.1 -> 0.75, 0.76
    assert alpha.score.mean == pytest.approx(0.755) and alpha.score.n == 2
    # two seeds: no interval (a t-interval from 2 values is not shown), and the equal paired
    # differences (0.10 in both seeds) do not make a zero-width "exact" gain either
    assert alpha.score.half_width is None and not alpha.score.defined and "too few" in alpha.score.reason
    assert alpha.gain is None  # no gain averaged across settings; per setting below
    d1_alpha = next(r for r in board.tables[1].rows if r.variant.method == "lbt-alpha")
    assert d1_alpha.gain.mean == pytest.approx(0.05) and not d1_alpha.gain.defined
    # the overall table ranks by mean rank over the settings, never by a mean across them
    assert alpha.leader and alpha.mean_rank == 1.0 and alpha.setting_ranks == [1, 1]
    assert [iv.mean for iv in alpha.col_gain] == pytest.approx([0.05, 0.15])
    d2 = board.tables[2]
    assert [c.label for c in d2.columns] == ["0.1", "0.5"] and d2.rows[0].variant.method == "lbt-alpha"


def test_every_ranking_row_has_one_cell_per_header(tiny, tmp_path, monkeypatch):
    """The selection-time cell was appended inside the loop over secondary metrics: none in the
    overall table (every later column shifted left under the wrong header: 'total' showed
    '= budget'), and one per secondary metric elsewhere. Each row has one cell per header."""
    track, profile = tiny
    wide = Profile("lbtiny", "wide", 1, axes={"dataset": ["d1", "d2"], "budget": [0.1, 0.5]}, seeds=(0, 1))
    original = TinyTrack.profiles
    monkeypatch.setattr(TinyTrack, "profiles", lambda self: [*original(self), wide])
    monkeypatch.setattr(TinyTrack, "secondary_metrics", ("robust_acc", "clean_rate"))
    recs = []
    for m, lift in (("lbt-random", 0.0), ("lbt-alpha", 0.05)):
        for d in ("d1", "d2"):
            for b in (0.1, 0.5):
                for r in (0, 1):
                    acc = 0.5 + b / 2 + 0.01 * r + lift
                    recs.append({"key": f"{m}{d}{b}{r}", "track": "lbtiny", "profile": wide.id, "method": m, "package": "lbt-package", "method_version": "1.0",
                                 "params": {"k": 3} if m == "lbt-alpha" else {}, "axes": {"dataset": d, "budget": b}, "repeat": r, "status": "done",
                                 "metrics": {"acc": acc, "robust_acc": acc / 2, "clean_rate": acc}, "info": {"budget": 10},
                                 "timings": {"selection_s": 2.0, "total_s": 5.0}})
    render_site(normalize_records(recs), tmp_path / "site")
    page = (tmp_path / "site" / "lbtiny-wide-v1.html").read_text()
    tables = re.findall(r'<table class="[^"]*ranking[^"]*"[^>]*data-table="([^"]+)"(.*?)</table>', page, re.S)
    assert len(tables) == 3  # overall and one per dataset
    for name, body in tables:
        headers = re.findall(r"<th[ >]", body.split("</thead>", 1)[0])
        assert any(">selection<" in h or "selection" in h for h in re.findall(r"<th[^>]*>[^<]*", body.split("</thead>", 1)[0]))
        for row in re.findall(r'<tr class="st-[^"]*"[^>]*>(.*?)</tr>', body.split("<tbody>", 1)[1], re.S):
            assert len(re.findall(r"<t[dh][ >]", row)) == len(headers), (name, row[:300])
    overall = tables[0][1]
    first = re.findall(r'<tr class="st-[^"]*"[^>]*>(.*?)</tr>', overall.split("<tbody>", 1)[1], re.S)[0]
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", first, re.S)]
    assert cells[-4:] == ["2.0 s", "5.0 s", "= budget", "8/8"], cells  # selection, total, subset size, coverage


# ---- rendering ------------------------------------------------------------------------------------


def _rows_of(html: str, table: str) -> list[str]:
    body = html.split(f'data-table="{table}"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr class="[^"]*" data-method="([^"]*)"', body)


def test_render_site_pages(site, store):
    out, report = site
    assert report.rejected == [] and report.records == 33
    index = (out / "index.html").read_text()
    assert 'href="lbtiny-small-v2.html"' in index
    page = (out / "lbtiny-small-v2.html").read_text()
    assert _rows_of(page, "d1") == ["lbt-alpha", "lbt-gamma", "lbt-random", ESCAPED, "lbt-full", "lbt-beta"]
    assert "b-incomplete" in page and "5/6" in page and "b-reference" in page and "b-tied" in page
    assert "62.00 [55.43, 68.57]" in page  # alpha at budget 0.1, in percent
    assert "+14.50 [12.35, 16.65]" in page  # alpha's mean gain over random, pp
    assert "90.0 % of budget" in page  # gamma's realized subset size
    for svg in ("lbtiny-small-v2-budget.svg", "lbtiny-small-v2-pareto.svg"):
        text = (out / "figures" / svg).read_text()
        assert text.lstrip().startswith("<?xml") and "<svg" in text
        assert f'src="figures/{svg}"' in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    # method page: params, version, package, citation, per-cell results, downloadable subsets
    alpha = (out / "methods" / "lbt-alpha.html").read_text()
    for text in ("Alpha et al., 2024", "lbt-package", "1.0", "<th scope=\"row\">k</th>", "60.00"):
        assert text in alpha
    links = re.findall(r'href="\.\./(artifacts/[^"]+)" download title="([0-9a-f]{64})"', alpha)
    assert len(links) == 6
    for rel, sha in links:
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == sha
    beta = (out / "methods" / "lbt-beta.html").read_text()
    assert "duplicate index" in beta and "st-failed" in beta


def test_html_is_escaped(site):
    out, _ = site
    pages = list(out.rglob("*.html"))
    assert len(pages) >= 8
    seen_escaped = set()
    for p in pages:
        text = p.read_text()
        assert XSS not in text, p
        if ESCAPED in text:
            seen_escaped.add(p.name)
    xss_page = [p for p in pages if p.parent.name == "methods" and ESCAPED in p.read_text() and "summary" in p.read_text()]
    assert xss_page, "the method page of the XSS method"
    text = xss_page[0].read_text()
    assert f"summary {ESCAPED}" in text  # summary
    assert f"note={ESCAPED}" in text  # param
    assert {"index.html", "lbtiny-small-v2.html"} <= seen_escaped
    for svg in (out / "figures").glob("*.svg"):
        assert "<script" not in svg.read_text()


def test_site_refuses_a_foreign_directory(store, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(SiteError, match="not empty"):
        render_site(store, foreign)
    assert (foreign / "thesis.tex").read_text() == "keep me"


# ---- entries ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("entries")
    written, warnings = export_entries(load_store_records(store), out)
    assert warnings == []
    return out, {e.method: e for e in written}


def test_export_validate_roundtrip(tiny, exported, tmp_path):
    track, profile = tiny
    out, written = exported
    assert set(written) == {m.name for m in METHODS}
    alpha = load_entry(written["lbt-alpha"].path)
    assert written["lbt-alpha"].path.relative_to(out).as_posix() == "lbtiny/small@2/lbt-alpha@1.0.json"
    assert validate_entry(alpha, [profile]) == []
    assert alpha["profile"] == {"id": "lbtiny/small@2", "name": "small", "version": 2}
    prov = alpha["provenance"]
    assert (prov["git_commit"], prov["device"], prov["plugin_package"], prov["coreset_bench_version"]) == ("abc123", "cpu (x86_64, 2 cores)", "lbt-package", "0.1.0")
    assert prov["torch_version"] == "2.5" and prov["first_run"] and prov["exported_with"]
    assert alpha["method"]["citation"] == "Alpha et al., 2024" and alpha["method"]["params"] == {"k": 3}
    assert len(alpha["cells"]) == 6 and all(len(c["subsets"][0]["sha256"]) == 64 for c in alpha["cells"])
    assert alpha["coverage"] == {"done": 6, "expected": 6, "complete": True}
    # an incomplete entry is valid and says so
    beta = load_entry(written["lbt-beta"].path)
    assert validate_entry(beta, [profile]) == []
    assert beta["coverage"] == {"done": 5, "expected": 6, "complete": False}
    # rendering from the entries alone gives the ranking rendered from the store
    report = render_site(None, tmp_path / "site", entries_dirs=[out])
    assert report.rejected == []
    page = (tmp_path / "site" / "lbtiny-small-v2.html").read_text()
    assert _rows_of(page, "d1") == ["lbt-alpha", "lbt-gamma", "lbt-random", ESCAPED, "lbt-full", "lbt-beta"]
    assert "62.00 [55.43, 68.57]" in page and "b-incomplete" in page


def _tamper(obj: dict) -> dict:
    return json.loads(json.dumps(obj))


def test_rejects_tampered_metric(tiny, exported):
    _, profile = tiny
    alpha = load_entry(exported[1]["lbt-alpha"].path)
    bad = _tamper(alpha)
    bad["cells"][0]["metrics"]["acc"] += 0.05
    problems = validate_entry(bad, [profile])
    assert problems and "aggregate acc" in problems[0] and "tampered" in problems[0]
    assert any("cells_sha256" in p for p in problems)
    with pytest.raises(EntryError, match=r"aggregate acc at .* \(tampered\?\)"):
        check_entry(bad, [profile])
    # a flattering aggregate over honest cells
    bad2 = _tamper(alpha)
    bad2["aggregates"]["points"][0]["metrics"]["acc"]["mean"] = 0.99
    problems2 = validate_entry(bad2, [profile])
    assert len(problems2) == 1 and problems2[0].startswith("aggregate acc") and "is 0.99 but its cells give" in problems2[0]
    # an edited seed or axis is caught by recomputing the cell key
    bad3 = _tamper(alpha)
    bad3["cells"][0]["seed"] += 1
    assert any("seed" in p for p in validate_entry(bad3, [profile]))


def test_rejects_wrong_profile_version(tiny, exported):
    _, profile = tiny
    alpha = load_entry(exported[1]["lbt-alpha"].path)
    old = _tamper(alpha)
    old["profile"] = {"id": "lbtiny/small@1", "name": "small", "version": 1}
    problems = validate_entry(old, [profile])
    assert len(problems) == 1 and "not a current profile version" in problems[0] and "lbtiny/small@2" in problems[0]
    newer = _tamper(alpha)
    newer["schema_version"] = 7
    assert "unsupported schema_version 7" in validate_entry(newer, [profile])[0]
    unknown = _tamper(alpha)
    unknown["profile"]["id"] = "nosuch/x@1"
    assert validate_entry(unknown, [profile]) == ["unknown profile nosuch/x@1"]


def test_incomplete_entry_flagged_and_false_claim_rejected(tiny, exported):
    _, profile = tiny
    beta = load_entry(exported[1]["lbt-beta"].path)
    assert check_entry(beta, [profile])["coverage"]["complete"] is False
    liar = _tamper(beta)
    liar["coverage"] = {"done": 6, "expected": 6, "complete": True}
    problems = validate_entry(liar, [profile])
    assert problems == ["coverage claims 6/6 cells (complete=true) but the entry holds 5 of the 6 cells lbtiny/small@2 asks of lbt-beta"]
    # dropping cells from a complete entry (and fixing digest and aggregates is not enough)
    alpha = load_entry(exported[1]["lbt-alpha"].path)
    cut = _tamper(alpha)
    cut["cells"] = cut["cells"][:-1]
    assert any("coverage claims 6/6" in p for p in validate_entry(cut, [profile]))


def test_rejects_malformed_json_and_schema(tiny, tmp_path):
    _, profile = tiny
    f = tmp_path / "broken.json"
    f.write_text('{"schema": "coreset-bench/entry", "cells": [1, 2,,]}')
    with pytest.raises(EntryError, match=r"malformed JSON: .* line 1 column"):
        load_entry(f)
    f.write_text("[1, 2]")
    with pytest.raises(EntryError, match="not an object"):
        load_entry(f)
    assert "not a coreset-bench entry" in validate_entry({"schema": "other"}, [profile])[0]
    missing = {"schema": "coreset-bench/entry", "schema_version": 1, "track": "lbtiny"}
    assert any("missing field 'cells'" in p for p in validate_entry(missing, [profile]))


def test_render_rejects_bad_entries_and_renders_the_rest(tiny, exported, tmp_path):
    src, written = exported
    d = tmp_path / "entries"
    shutil.copytree(src, d)
    alpha_path = d / written["lbt-alpha"].path.relative_to(src)
    obj = json.loads(alpha_path.read_text())
    obj["cells"][1]["metrics"]["acc"] = 0.99
    alpha_path.write_text(json.dumps(obj))
    (d / "garbage.json").write_text("{not json")
    report = render_site(None, tmp_path / "site", entries_dirs=[d])
    reasons = {p.name: r for p, r in report.rejected}
    assert set(reasons) == {"lbt-alpha@1.0.json", "garbage.json"}
    assert all("\n" not in r for r in reasons.values())
    assert reasons["garbage.json"].startswith("malformed JSON")
    assert "tampered" in reasons["lbt-alpha@1.0.json"]
    page = (tmp_path / "site" / "lbtiny-small-v2.html").read_text()
    assert _rows_of(page, "d1") == ["lbt-gamma", "lbt-random", ESCAPED, "lbt-full", "lbt-beta"]
    index = (tmp_path / "site" / "index.html").read_text()
    assert "garbage.json" in index and "malformed JSON" in index


# ---- fabricated coreset-like cells: per-point bits, flags, floors ---------------------------------


N_TEST = 200
LABELS = np.arange(N_TEST) % 10  # 10 classes, 20 test points each


def per_point_bits(correct: np.ndarray) -> dict:
    """``info["per_point"][metric]`` as the coreset track stores it (little-endian packbits, hex)."""
    return {"n": int(correct.size), "bits": np.packbits(correct.astype(bool), bitorder="little").tobytes().hex()}


def fabricate(profile: Profile, methods: dict, package: str = "lbt-package", per_point: bool = True, version: str = "1.0") -> list[dict]:
    """Records of coreset-like cells: ``methods[name](budget, repeat) -> (correct, flags)``.

    Every cell stores ``acc`` = mean(correct), the per-point bits, its flags, the chance floor and
    class / prediction histograms, as ``info`` of a ``coreset/quick@2`` cell does.
    """
    rows = []
    for name, fn in methods.items():
        for b in profile.axes["budget"]:
            for r in profile.seeds:
                correct, flags = fn(b, r)
                info = {"flags": list(flags), "chance_floor": 0.1, "class_histogram": [12] * 10, "pred_histogram": [20] * 10}
                if per_point:
                    info["per_point"] = {"acc": per_point_bits(correct)}
                rows.append({"key": f"{name}|{b}|{r}", "track": "lbtiny", "profile": profile.id, "method": name, "package": package,
                             "method_version": version, "params": {"k": 3} if name == "lbt-alpha" else {}, "axes": {"dataset": "d1", "budget": b},
                             "repeat": r, "status": "done", "metrics": {"acc": float(correct.mean())}, "info": info,
                             "timings": {"total_s": 1.0}})
    return normalize_records(rows)


def _base_correct(b: float, r: int) -> np.ndarray:
    return np.random.default_rng(1000 * r + int(b * 100)).random(N_TEST) < 0.5


def _plus_two_pp(b: float, r: int) -> np.ndarray:
    """The base correctness plus 4 of 200 more points right: +2 pp in every seed and budget."""
    c = _base_correct(b, r).copy()
    c[np.flatnonzero(~c)[:4]] = True
    return c


def test_decode_bits_roundtrip_and_refusals():
    c = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1], dtype=bool)
    spec = per_point_bits(c)
    assert np.array_equal(stats.decode_bits(spec["n"], spec["bits"]), c.astype(float))
    with pytest.raises(ValueError, match="hex digits"):
        stats.decode_bits(11, spec["bits"] + "00")
    with pytest.raises(ValueError, match="padding"):
        stats.decode_bits(9, spec["bits"][:2] + "fe")  # bits 9-15 set past n=9


def test_identical_paired_differences_give_a_nonzero_width_gain_interval(tiny):
    track, profile = tiny
    methods = {"lbt-random": lambda b, r: (_base_correct(b, r), []), "lbt-gamma": lambda b, r: (_plus_two_pp(b, r), [])}
    board = build_board(track, profile, fabricate(profile, methods))
    gamma = next(r for r in board.main.rows if r.variant.method == "lbt-gamma")
    # +2 pp in every seed and budget: a t-interval over seeds would be 2.00 ± 0.00
    assert gamma.gain.mean == pytest.approx(0.02, abs=1e-12)
    assert gamma.gain.method == "bootstrap" and gamma.gain.defined
    assert gamma.gain.low < 0.02 < gamma.gain.high and gamma.gain.high - gamma.gain.low > 0.005
    assert all(g.defined and g.low < g.high for g in gamma.col_gain if g is not None)
    assert gamma.score.method == "bootstrap" and gamma.score.low < gamma.score.mean < gamma.score.high
    # deterministic: the same board gives the same interval
    again = build_board(track, profile, fabricate(profile, methods))
    assert next(r for r in again.main.rows if r.variant.method == "lbt-gamma").gain == gamma.gain
    # without per-point data: the fallback t-interval is undefined, never shown as exact
    flat = build_board(track, profile, fabricate(profile, methods, per_point=False))
    fg = next(r for r in flat.main.rows if r.variant.method == "lbt-gamma").gain
    assert fg.mean == pytest.approx(0.02) and not fg.defined and "zero width" in fg.reason


def test_identical_paired_differences_render_without_a_zero_width_interval(tiny, tmp_path):
    track, profile = tiny
    methods = {"lbt-random": lambda b, r: (_base_correct(b, r), []), "lbt-gamma": lambda b, r: (_plus_two_pp(b, r), [])}
    render_site(fabricate(profile, methods), tmp_path / "site")
    page = (tmp_path / "site" / "lbtiny-small-v2.html").read_text()
    assert "± 0.00" not in page and re.search(r"\+2\.00 \[\d+\.\d\d, \d+\.\d\d\]", page)
    assert "paired hierarchical bootstrap" in page and "percentile" in page
    render_site(fabricate(profile, methods, per_point=False), tmp_path / "flat")
    flat = (tmp_path / "flat" / "lbtiny-small-v2.html").read_text()
    assert "± 0.00" not in flat and "+2.00 (no interval, n=3)" in flat


def test_constant_classifier_is_flagged_never_ranked_first_and_its_flag_is_shown(tiny, tmp_path):
    track, profile = tiny
    const = LABELS == 0  # always predicts class 0: right on 10 % of the points

    def floor_level(seed: int):
        return lambda b, r: (np.random.default_rng(seed + 10 * r + int(b * 10)).random(N_TEST) < 0.05, [])

    methods = {
        "lbt-random": floor_level(1),
        "lbt-alpha": floor_level(2),
        "easycore": floor_level(3),
        "easycore-balanced": floor_level(4),
        "lbt-const": lambda b, r: (const, ["never-predicts-class", "subset-class-coverage"]),
    }
    board = build_board(track, profile, fabricate(profile, methods))
    rows = {r.variant.method: r for r in board.main.rows}
    c = rows["lbt-const"]
    assert c.score.mean == pytest.approx(0.10) and max(r.score.mean for r in board.main.rows if r is not c) < 0.10
    assert c.status == "flagged" and not c.ranked and c.rank is None and not c.leader
    assert c.flags == {"never-predicts-class": 6, "subset-class-coverage": 6}
    first = board.main.rows[0]
    # every other row sits at 5 %, below the 10 % floor: at floor, so no row leads
    assert first is not c and not first.flags and first.status == "at floor" and not first.ranked
    assert not any(r.leader for r in board.main.rows)
    assert board.main.floor == [0.1, 0.1]
    # EasyCore both ways: two labelled rows
    assert rows["easycore"].variant.label == "easycore" and rows["easycore-balanced"].variant.label == "easycore-balanced"
    render_site(fabricate(profile, methods), tmp_path / "site")
    page = (tmp_path / "site" / "lbtiny-small-v2.html").read_text()
    assert _rows_of(page, "d1")[0] != "lbt-const" and "lbt-const" in _rows_of(page, "d1")
    assert "b-flagged" in page and "never-predicts-class" in page and "subset-class-coverage" in page
    assert "constant classifier (floor)" in page and re.search(r'class="floor">10\.00 %<', page)
    for m in ("easycore", "easycore-balanced"):
        assert (tmp_path / "site" / "methods" / f"{m}.html").exists()
    assert "constant classifier (1/C)" in (tmp_path / "site" / "figures" / "lbtiny-small-v2-budget.svg").read_text()
    # the method page shows each cell's flags
    assert "<td>never-predicts-class, subset-class-coverage</td>" in (tmp_path / "site" / "methods" / "lbt-const.html").read_text()


def test_versions_compare_as_versions():
    assert version_key("10") > version_key("9") and version_key("1.10") > version_key("1.9")
    assert version_key("2.0rc1") < version_key("2.0") and version_key("x-1") > version_key("99")


def _valid_entry(track, profile, name: str, version: str, package: str, acc: float) -> dict:
    """A self-consistent entry (keys, seeds, digest, aggregates) of a method that is not installed."""
    stand_in = types.SimpleNamespace(name=name, version=version, params={}, kind="selection", package=package)
    rows = [{"key": c.key, "track": "lbtiny", "profile": profile.id, "method": name, "package": package, "method_version": version,
             "params": {}, "axes": c.axes, "repeat": c.repeat, "seed": c.seed, "status": "done", "metrics": {"acc": acc, "robust_acc": acc},
             "timings": {"total_s": 1.0}} for c in track.cells(profile, stand_in)]
    entry = build_entry(track, profile, normalize_records(rows))
    assert validate_entry(entry, [profile]) == [] or name in {m.name for m in METHODS}
    return entry


def test_a_published_entry_cannot_become_the_baseline(tiny, exported, tmp_path):
    track, profile = tiny
    src, _ = exported
    d = tmp_path / "entries"
    shutil.copytree(src, d)
    # 'random' version 9, all accuracies 0, from the baseline's own package: a row, never the baseline
    forged = _valid_entry(track, profile, "lbt-random", "9", "lbt-package", 0.0)
    assert validate_entry(forged, [profile]) == []
    (d / "forged.json").write_text(json.dumps(forged))
    # the same name from another package: rejected, the name is reserved
    impostor = _valid_entry(track, profile, "lbt-random", "9", "evil-package", 0.0)
    problems = validate_entry(impostor, [profile])
    assert problems and "reserved by the installed package 'lbt-package'" in problems[0] and "evil-package" in problems[0]
    (d / "impostor.json").write_text(json.dumps(impostor))
    report = render_site(None, tmp_path / "site", entries_dirs=[d])
    assert [p.name for p, _ in report.rejected] == ["impostor.json"] and "reserved" in report.rejected[0][1]
    board = build_board(track, profile, [r for p, o in entries_mod.load_entries([d], [profile]).accepted for r in entries_mod.entry_records(o, str(p))])
    assert board.baseline is not None and (board.baseline.method, board.baseline.version) == ("lbt-random", "1.0")
    alpha = next(r for r in board.main.rows if r.variant.method == "lbt-alpha")
    assert alpha.gain.mean == pytest.approx(0.145)  # against random 1.0, not against the all-zero forgery
    page = (tmp_path / "site" / "lbtiny-small-v2.html").read_text()
    assert "+14.50 [12.35, 16.65]" in page


def _redigest(obj: dict) -> dict:
    obj["cells_sha256"] = entries_mod._cells_digest(obj["cells"])
    return obj


def test_one_entry_cannot_crash_the_board(tiny, exported, tmp_path, monkeypatch):
    track, profile = tiny
    src, written = exported
    d = tmp_path / "entries"
    shutil.copytree(src, d)
    alpha_path = d / written["lbt-alpha"].path.relative_to(src)
    huge = json.loads(alpha_path.read_text())
    for c in huge["cells"]:
        c["metrics"]["n_points"] = 1e308  # overflowed the t-interval's sum of squares
    (d / "huge.json").write_text(json.dumps(_redigest(huge)))
    (d / "deep.json").write_text('{"schema": "coreset-bench/entry", "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    report = render_site(None, tmp_path / "site", entries_dirs=[d])
    reasons = {p.name: r for p, r in report.rejected}
    assert set(reasons) == {"huge.json", "deep.json"}
    assert "metric n_points = 1e+308 is outside" in reasons["huge.json"]
    assert "nested" in reasons["deep.json"] and "limit of 32" in reasons["deep.json"]
    assert all("\n" not in r for r in reasons.values())
    page = (tmp_path / "site" / "lbtiny-small-v2.html").read_text()
    assert _rows_of(page, "d1")[:2] == ["lbt-alpha", "lbt-gamma"]
    # any other failure inside one entry rejects that entry only, with a one-line reason
    real = entries_mod.entry_records

    def boom(obj, source):
        if obj["method"]["name"] == "lbt-gamma":
            raise ZeroDivisionError("float division\nby zero")
        return real(obj, source)

    monkeypatch.setattr("coreset_bench.leaderboard.render.entry_records", boom)
    report = render_site(None, tmp_path / "site2", entries_dirs=[src])
    assert [(p.name, r) for p, r in report.rejected] == [("lbt-gamma@1.0.json", "could not be read: ZeroDivisionError: float division by zero")]
    assert "lbt-gamma" not in _rows_of((tmp_path / "site2" / "lbtiny-small-v2.html").read_text(), "d1")
    monkeypatch.undo()
    # an entry that makes the board itself fail (aggregation) is rejected; the board renders
    real_build = render_mod.build_board

    def fragile(track, profile, records):
        if any(r["method"] == "lbt-beta" for r in records):
            raise OverflowError("(34, 'Numerical result out of range')")
        return real_build(track, profile, records)

    monkeypatch.setattr(render_mod, "build_board", fragile)
    report = render_site(None, tmp_path / "site3", entries_dirs=[src])
    assert [(p.name, r) for p, r in report.rejected] == [
        ("lbt-beta@1.0.json", "the lbtiny/small@2 board fails with this entry: OverflowError: (34, 'Numerical result out of range')")
    ]
    assert _rows_of((tmp_path / "site3" / "lbtiny-small-v2.html").read_text(), "d1") == ["lbt-alpha", "lbt-gamma", "lbt-random", ESCAPED, "lbt-full"]


def test_entries_above_the_size_limit_are_rejected_before_parsing(tiny, exported, tmp_path, monkeypatch):
    _, profile = tiny
    src, written = exported
    path = written["lbt-alpha"].path
    size = path.stat().st_size
    monkeypatch.setattr(entries_mod, "MAX_ENTRY_BYTES", size - 1)
    parsed = []
    monkeypatch.setattr(entries_mod.json, "loads", lambda *a, **k: parsed.append(1))
    with pytest.raises(EntryError, match=rf"file is {size} bytes, above the {size - 1} byte limit"):
        load_entry(path)
    assert parsed == []
    assert entries_mod.MAX_ENTRY_BYTES == size - 1 and "16 MiB" in entries_mod.__doc__


@pytest.mark.parametrize(
    "where",
    ["top", "profile", "method", "provenance", "coverage", "cell", "subset", "aggregates", "aggregate point", "aggregate metric", "signature", "per_point"],
)
def test_unknown_keys_at_any_level_are_rejected(tiny, exported, where):
    _, profile = tiny
    obj = load_entry(exported[1]["lbt-alpha"].path)
    target = {
        "top": lambda o: o,
        "profile": lambda o: o["profile"],
        "method": lambda o: o["method"],
        "provenance": lambda o: o["provenance"],
        "coverage": lambda o: o["coverage"],
        "cell": lambda o: o["cells"][0],
        "subset": lambda o: o["cells"][0]["subsets"][0],
        "aggregates": lambda o: o["aggregates"],
        "aggregate point": lambda o: o["aggregates"]["points"][0],
        "aggregate metric": lambda o: o["aggregates"]["points"][0]["metrics"]["acc"],
        "signature": lambda o: o.setdefault("signature", {"algorithm": "ed25519", "key_id": "k", "public_key": "p", "signature": "s"}),
        "per_point": lambda o: o["cells"][0]["info"].setdefault("per_point", {"acc": per_point_bits(np.ones(10, bool))})["acc"],
    }[where](obj)
    target["surprise"] = 1
    problems = validate_entry(_redigest(obj), [profile])
    assert problems and "unknown key 'surprise'" in problems[0], problems


def test_the_exporters_keys_are_accepted_signature_and_new_info_included(tiny, exported):
    _, profile = tiny
    obj = load_entry(exported[1]["lbt-alpha"].path)
    obj["signature"] = {"algorithm": "ed25519", "key_id": "ab12", "public_key": "AAAA", "signature": "BBBB"}
    assert validate_entry(obj, [profile]) == []
    info = {
        "budget": 121, "pool_size": 1211, "realized_size": 121, "weighted": False, "proxy_shared": False, "proxy_key": "x",
        "signals": ["input_grad_norm"], "class_histogram": [91, 0, 1, 0, 17, 5, 0, 1, 4, 2], "test_size": 450,
        "subset_sha256": "0" * 64, "primary_metric": "autoattack_acc", "method_class_balanced": False, "method_kept": "lowest AIGN",
        "flags": ["subset-class-coverage", "never-predicts-class"], "pred_histogram": [65, 0, 0, 0, 114, 112, 0, 0, 126, 33],
        "chance_floor": 0.1, "per_point": {m: per_point_bits(np.arange(500) % 3 == 0) for m in ("clean_acc", "pgd_acc", "autoattack_acc")},
    }
    metrics = {"clean_acc": 0.3, "pgd_acc": 0.2, "autoattack_acc": 0.2, "class_acc_0": 0.9, "class_robust_acc_0": 0.5}
    assert entries_mod._info_problem(info, CORESET_INFO_KEYS, metrics) == ""
    assert "unknown key 'eps_typo'" in entries_mod._info_problem({**info, "eps_typo": 1}, CORESET_INFO_KEYS, metrics)
    assert "padding" in entries_mod._info_problem({**info, "per_point": {"pgd_acc": {"n": 9, "bits": "fffe"}}}, CORESET_INFO_KEYS, metrics)
    assert "chance_floor" in entries_mod._info_problem({**info, "chance_floor": 7}, CORESET_INFO_KEYS, metrics)


#: what the tiny track declares in the range tests (it declares nothing elsewhere)
TINY_BOUNDS = {"acc": (0.0, 1.0), "class_*_acc_*": (0.0, 1.0), "spearman": (-1.0, 1.0), "secs": (0.0, None), "saving": (None, 1.0)}


@pytest.mark.parametrize(
    ("metric", "value", "message"),
    [
        ("acc", 1.5, "metric acc = 1.5 is outside [0, 1], the range track 'lbtiny' declares for it (metric_bounds)"),
        ("class_robust_acc_3", -0.1, "metric class_robust_acc_3 = -0.1 is outside [0, 1], the range track 'lbtiny'"),
        ("spearman", -1.5, "outside [-1, 1], the range track"),
        ("secs", -2.0, "metric secs = -2 is outside [0, inf)"),
        ("saving", 1.5, "metric saving = 1.5 is outside (-inf, 1]"),
        ("ok", 0.5, "metric ok = 0.5 is not 0 or 1: track 'lbtiny' declares it one yes/no outcome per cell (proportion_metrics)"),
        ("ok", 2.0, "metric ok = 2 is not 0 or 1"),
        ("n_points", -1e13, "metric n_points = -1e+13 is outside [-1e+12, 1e+12], the bound of every metric"),
    ],
)
def test_metrics_outside_their_tracks_declared_range_are_rejected(tiny, exported, monkeypatch, metric, value, message):
    track, profile = tiny
    monkeypatch.setattr(type(track), "metric_bounds", TINY_BOUNDS, raising=False)
    monkeypatch.setattr(type(track), "proportion_metrics", ("ok",), raising=False)
    obj = load_entry(exported[1]["lbt-alpha"].path)
    obj["cells"][0]["metrics"][metric] = value
    problems = validate_entry(_redigest(obj), [profile])
    assert problems and problems[0].startswith("cells[0] (") and message in problems[0], problems
    # the same entry with an in-range value, aggregates recomputed, is valid
    obj["cells"][0]["metrics"][metric] = 1.0 if metric in ("ok", "saving") else 0.5
    obj["aggregates"] = entries_mod.aggregate_cells(obj["cells"], profile)
    assert validate_entry(_redigest(obj), [profile]) == []


def test_ranges_come_from_the_track_not_from_the_metric_name(tiny, exported, monkeypatch):
    """No table keyed by metric name: an ``auc`` of 2 is a range error only where the track
    declares ``auc`` (here it does not: only the bound of every metric applies)."""
    track, profile = tiny
    obj = load_entry(exported[1]["lbt-alpha"].path)
    for c in obj["cells"]:
        c["metrics"]["mia_auc"] = 2.0
    obj["aggregates"] = entries_mod.aggregate_cells(obj["cells"], profile)
    assert validate_entry(_redigest(obj), [profile]) == []
    monkeypatch.setattr(type(track), "metric_bounds", {"mia_*": (0.0, 1.0)}, raising=False)
    problems = validate_entry(obj, [profile])
    assert problems == [
        "cells[0] (budget=0.1,dataset=d1, repeat 0): metric mia_auc = 2 is outside [0, 1], the range track 'lbtiny' declares for it (metric_bounds)",
        "aggregates at budget=0.1,dataset=d1: mean mia_auc = 2 is outside [0, 1], the range track 'lbtiny' declares for it (metric_bounds)",
    ]


def test_aggregate_means_outside_the_declared_range_are_rejected(tiny, exported, monkeypatch):
    track, profile = tiny
    monkeypatch.setattr(type(track), "metric_bounds", TINY_BOUNDS, raising=False)
    obj = load_entry(exported[1]["lbt-alpha"].path)
    obj["aggregates"]["points"][1]["metrics"]["acc"]["mean"] = 1.2
    problems = validate_entry(obj, [profile])
    assert problems and problems[0].startswith("aggregates at ") and "mean acc = 1.2 is outside [0, 1], the range track 'lbtiny' declares" in problems[0], problems


def test_timings_must_be_finite_and_non_negative(tiny, exported):
    _, profile = tiny
    for bad in (-1.0, 1e300):
        obj = load_entry(exported[1]["lbt-alpha"].path)
        obj["cells"][0]["timings"]["total_s"] = bad
        problems = validate_entry(_redigest(obj), [profile])
        assert problems and "timing total_s" in problems[0]


# ---- command line -------------------------------------------------------------------------------------


def test_cli_export_and_leaderboard(store, tmp_path):
    app = typer.Typer()
    lb_cli.register(app)
    runner = CliRunner()
    db = str(store.sqlite_path)
    entries = tmp_path / "entries"
    res = runner.invoke(app, ["export", "--db", db, "--out", str(entries), "--plugin", "lbt-beta"])
    assert res.exit_code == 0, res.output
    assert "lbt-beta@1.0.json  (incomplete: 5/6 cells)" in res.output
    assert [p.name for p in entries.rglob("*.json")] == ["lbt-beta@1.0.json"]
    (entries / "bad.json").write_text("{")
    site = tmp_path / "site"
    res = runner.invoke(app, ["leaderboard", "--db", db, "--out", str(site), "--entries", str(entries)])
    assert res.exit_code == 0, res.output
    assert re.search(r"rejected .*bad\.json: malformed JSON", res.output)
    assert "rendered" in res.output and (site / "index.html").exists()
    res = runner.invoke(app, ["leaderboard", "--db", str(tmp_path / "nope.db"), "--out", str(site)])
    assert res.exit_code == 1 and "no results database" in res.output
    res = runner.invoke(app, ["export", "--db", db, "--out", str(entries), "--plugin", "nosuch"])
    assert res.exit_code == 1 and "no finished runs of 'nosuch'" in res.output


# ---- a real browser -----------------------------------------------------------------------------------


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_browser_sorts_ranking_table(site, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    out, _ = site
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        driver.get((out / "index.html").as_uri())
        assert "Leaderboard" in driver.title
        driver.find_element(By.CSS_SELECTOR, "a.profile-link").click()
        assert driver.current_url.endswith("lbtiny-small-v2.html")
        table = driver.find_element(By.CSS_SELECTOR, 'table.ranking[data-table="d1"]')

        def order() -> list[str]:
            return [tr.get_attribute("data-method") for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

        assert order() == ["lbt-alpha", "lbt-gamma", "lbt-random", XSS, "lbt-full", "lbt-beta"]
        header = next(th for th in table.find_elements(By.CSS_SELECTOR, "thead th") if th.text.strip() == "budget 0.5")
        header.click()  # best first: alpha 0.81, gamma 0.805, beta 0.765 (2 seeds), random 0.62, xss 0.57
        assert order() == ["lbt-alpha", "lbt-gamma", "lbt-beta", "lbt-random", XSS, "lbt-full"]
        assert header.get_attribute("aria-sort") == "descending"
        header.click()  # lbt-full has no value at 0.5 ("n/a") and stays last either way
        assert order() == [XSS, "lbt-random", "lbt-beta", "lbt-gamma", "lbt-alpha", "lbt-full"]
        assert header.get_attribute("aria-sort") == "ascending"
        name = next(th for th in table.find_elements(By.CSS_SELECTOR, "thead th") if th.text.strip() == "method")
        name.click()
        assert order() == [XSS, "lbt-alpha", "lbt-beta", "lbt-full", "lbt-gamma", "lbt-random"]
        assert driver.find_element(By.CSS_SELECTOR, "figure img").get_attribute("naturalWidth") not in ("0", None)
        shot = tmp_path / "leaderboard.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()


def test_rows_not_above_the_floor_are_never_ranked_and_never_lead(tiny, tmp_path):
    """A row whose 95 % interval reaches the constant-classifier floor is 'at floor': shown, not
    ranked, never the leader, even when its mean is the best of a table where nothing beats the
    floor; rows clearly above it are ranked as before."""
    track, profile = tiny

    def level(p: float, seed: int):
        return lambda b, r: (np.random.default_rng(seed + 10 * r + int(b * 10)).random(N_TEST) < p, [])

    methods = {"lbt-random": level(0.4, 1), "lbt-alpha": level(0.45, 2), "lbt-gamma": level(0.11, 3)}
    board = build_board(track, profile, fabricate(profile, methods))
    rows = {r.variant.method: r for r in board.main.rows}
    g = rows["lbt-gamma"]
    assert g.score.low <= 0.10 < g.score.mean
    assert g.status == "at floor" and not g.ranked and g.rank is None and not g.leader and "floor (10.0 %)" in g.note
    assert rows["lbt-alpha"].leader and rows["lbt-random"].ranked
    # nothing above the floor: no leader at all, rows ordered by score
    low = {"lbt-random": level(0.06, 1), "lbt-alpha": level(0.09, 2), "lbt-gamma": level(0.03, 3)}
    board = build_board(track, profile, fabricate(profile, low))
    assert [r.variant.method for r in board.main.rows] == ["lbt-alpha", "lbt-random", "lbt-gamma"]
    assert all(r.status == "at floor" and not r.leader and r.rank is None for r in board.main.rows)
    render_site(fabricate(profile, low), tmp_path / "site")
    page = (tmp_path / "site" / "lbtiny-small-v2.html").read_text()
    assert "b-atfloor" in page and "b-leader" not in page.split("<table", 1)[1]
    # one CSS class, not "st-at" plus the floor row's own "floor" style
    assert 'class="st-at-floor' in page and 'class="st-at floor' not in page


# ---- issue 23: a board a researcher can read at a glance -----------------------------------------


@pytest.fixture(scope="module")
def derived_site(tiny, tmp_path_factory):
    """The tiny board with a derived profile (``small:d9``, another dataset), a failed and an
    interrupted cell, and one profile without results."""
    from coreset_bench.tracks.base import with_dataset

    track, profile = tiny
    derived = with_dataset(profile, "d9")
    d = tmp_path_factory.mktemp("lbderived")
    st = Store(d / "db.sqlite")
    env = {"coreset_bench": "0.1.0", "device_name": "cpu", "platform": "linux", "threads": 1}
    for prof in (profile, derived):
        for m in METHODS:
            for cell in track.cells(prof, m):
                acc = ACC[m.name][cell.axes["budget"]][cell.repeat]
                st.start(cell, m, env)
                if acc is None:
                    st.fail(cell.key, "ValueError: lbt-beta returned a duplicate index", None, {})
                    continue
                if m.name == "lbt-gamma" and cell.repeat == 2:
                    st.interrupt(cell.key, "interrupted (Ctrl-C)")
                    continue
                st.finish(cell.key, metrics={"acc": acc, "robust_acc": max(acc - 0.3, 0.0)}, timings={"total_s": 3.0 if m.name == "lbt-alpha" else 1.5}, info={})
    out = d / "site"
    report = render_site(st, out)
    st.close()
    return out, report, derived


def test_front_page_lists_profiles_with_results_headline_units_and_derived_links(derived_site):
    out, _report, derived = derived_site
    page = (out / "index.html").read_text()
    # the headline table: method × budget of the primary metric, in %, with paper links
    head = page.split('<table class="headline ranking"', 1)[1].split("</table>", 1)[0]
    assert "<th scope=\"col\">budget 0.1</th>" in head and "<th scope=\"col\">budget 0.5</th>" in head
    assert " %" in head and 'class="paper"' in head and "scholar.google" not in page
    assert "lbt-alpha" in head
    # the derived profile's page is linked from the front page
    assert derived.id in page and "(derived: another dataset)" in page
    # a profile without results is not an empty row of the table
    profiles_table = page.split('<table class="plain profiles">', 1)[1].split("</table>", 1)[0]
    assert "no results yet" not in profiles_table.lower()
    leader = re.search(r'<span class="muted">([^<]*)</span>', profiles_table.split("lbt-", 1)[1])
    assert leader and leader.group(1).strip().endswith("%")


def test_paper_link_from_citations():
    from coreset_bench.leaderboard.render import paper_link

    assert paper_link("Nagaraj et al. TMLR 2025. arXiv:2508.20230.") == "https://arxiv.org/abs/2508.20230"
    assert paper_link("See https://example.org/paper.pdf.") == "https://example.org/paper.pdf"
    assert paper_link("A. B. Some paper. doi:10.1145/3576915.3616615.") == "https://doi.org/10.1145/3576915.3616615"
    # no id in the text: a known title links to its arXiv page; an unknown one links nowhere
    # (never a search-engine query)
    assert paper_link("Toneva et al. An Empirical Study of Example Forgetting during Deep Neural Network Learning. ICLR 2019.") == "https://arxiv.org/abs/1812.05159"
    assert paper_link("Alpha et al., 2024") == ""
    assert paper_link("Reactive baseline of the pooling track (tracks-phase2.md §5.7).") == ""
    assert paper_link("") == ""


def test_interrupted_cells_never_reach_the_board_and_failed_cells_are_collapsed(derived_site):
    out, report, _derived = derived_site
    pages = {p.name: p.read_text() for p in out.rglob("*.html")}
    assert not any("interrupted" in text for text in pages.values())
    beta = next(text for name, text in pages.items() if name.startswith("lbt-beta"))
    done_at = beta.index('class="st-done"')
    details = beta.index('<details class="failed-cells">')
    assert done_at < details  # finished results first, failed cells collapsed at the bottom
    assert "duplicate index" in beta[details:] and "duplicate index" not in beta[:details]


def test_bands_are_clipped_to_the_metric_range_and_cost_is_relative_to_the_baseline(tiny):
    from coreset_bench.leaderboard import figures
    from coreset_bench.leaderboard.board import build_board

    track, profile = tiny
    recs = []
    for m, accs, secs in (("lbt-random", (0.02, 0.97, 0.03), 10.0), ("lbt-alpha", (0.98, 0.01, 0.99), 20.0)):
        for b in (0.1, 0.5):
            for rep, a in enumerate(accs):
                recs.append({"key": f"{m}{b}{rep}", "track": "lbtiny", "profile": profile.id, "method": m, "method_version": "1.0", "package": "lbt-package", "params": {}, "axes": {"dataset": "d1", "budget": b},
                             "repeat": rep, "seed": rep, "status": "done", "metrics": {"acc": a}, "timings": {"total_s": secs * (3 if rep == 0 else 1)},
                             "info": {}, "environment": {"platform": "linux", "device_name": "cpu", "threads": 1 if rep else 8}})
    board = build_board(track, profile, normalize_records(recs))
    assert board.baseline is not None and board.baseline.method == "lbt-random"
    assert board.primary in board.fraction_metrics and figures._limits(board, board.primary) == (0.0, 100.0)
    alpha = next(r for r in board.main.rows if r.variant.method == "lbt-alpha")
    assert alpha.cost_ratio == pytest.approx(2.0)  # 20 s / 10 s on each machine, whatever the machine's load
    seen = []
    real = figures.plt.Axes.fill_between

    def spy(self, x, lo, hi, *a, **k):
        seen.append((list(lo), list(hi)))
        return real(self, x, lo, hi, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures.plt.Axes, "fill_between", spy)
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            assert figures.budget_curves(board, Path(d) / "c.svg")
            assert figures.pareto_chart(board, board.main, Path(d) / "p.svg")
            svg = (Path(d) / "p.svg").read_text()
    assert seen and all(0.0 <= v <= 100.0 for lo, hi in seen for v in (*lo, *hi))
    assert "same machine" in svg  # the cost axis says what it compares


def test_cost_labels_never_overlap_and_stay_in_the_axes():
    """Issue 38.8: the cost-quality chart's labels are laid out without drawing the chart, in
    points, so the SVG (72 dpi) shows them where they were placed: no two labels overlap and
    none leaves the axes (a label with no free place is drawn smaller at its point)."""
    import random

    from matplotlib.text import Text

    from coreset_bench.leaderboard import figures

    fig, ax = figures.plt.subplots(figsize=(7.4, 4.6))
    fig.subplots_adjust(left=0.1, right=0.84, bottom=0.13, top=0.96)
    rnd = random.Random(0)
    pts = [(1 + 0.05 * i, 50 + rnd.uniform(-1, 1)) for i in range(12)] + [(5.0, 60.0), (5.1, 60.2)]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o")
    draws = []
    real_draw = fig.canvas.draw
    fig.canvas.draw = lambda *a, **k: draws.append(1) or real_draw(*a, **k)  # type: ignore[method-assign]
    figures._place_labels(fig, ax, [(f"method-{i:02d}{'-x' * (i % 4)}", p) for i, p in enumerate(pts)])
    assert not draws  # the layout reads the final limits without drawing the chart
    fig.set_dpi(72)  # as the SVG backend draws
    real_draw()
    renderer = fig.canvas.get_renderer()
    placed = [Text.get_window_extent(t, renderer) for t in ax.texts if t.get_fontsize() == 7.0]  # the text, not its leader line
    assert len(placed) >= 8 and len(ax.texts) == len(pts)
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            assert not a.overlaps(b), (a, b)
    box = ax.get_window_extent()
    assert all(b.x0 >= box.x0 and b.y0 >= box.y0 and b.y1 <= box.y1 and b.x1 <= box.x1 + 30 for b in placed)
    figures.plt.close(fig)


def test_figures_drawn_side_by_side_are_the_files_drawn_in_process(store, tmp_path, monkeypatch):
    """The figures are drawn in forked workers (CORESET_BENCH_FIGURE_JOBS, default one per core):
    the same files as drawn in the rendering process, and really drawn in other processes."""
    import os

    from coreset_bench.leaderboard import track_page

    pids = tmp_path / "pids"
    pids.mkdir()
    real = track_page.draw_figure

    def spy(job, max_curves=10):
        (pids / f"{os.getpid()}-{job.path.name}").touch()
        return real(job, max_curves)

    monkeypatch.setattr(track_page, "draw_figure", spy)
    monkeypatch.setenv("CORESET_BENCH_FIGURE_JOBS", "1")
    render_site(store, tmp_path / "serial")
    serial_pids = {p.name.split("-", 1)[0] for p in pids.iterdir()}
    assert serial_pids == {str(os.getpid())}
    for p in pids.iterdir():
        p.unlink()
    monkeypatch.setenv("CORESET_BENCH_FIGURE_JOBS", "2")
    assert track_page.figure_workers(5) == 2
    render_site(store, tmp_path / "parallel")
    worker_pids = {p.name.split("-", 1)[0] for p in pids.iterdir()}
    assert worker_pids and str(os.getpid()) not in worker_pids
    serial = sorted((tmp_path / "serial" / "figures").iterdir())
    assert len(serial) >= 2
    assert [p.name for p in serial] == sorted(p.name for p in (tmp_path / "parallel" / "figures").iterdir())
    for p in serial:
        assert p.read_bytes() == (tmp_path / "parallel" / "figures" / p.name).read_bytes(), p.name
    pages = sorted(p.name for p in (tmp_path / "serial").glob("*.html"))
    assert len(pages) >= 2 and 'src="figures/' in "".join((tmp_path / "serial" / p).read_text() for p in pages)
    for page in pages:
        assert (tmp_path / "serial" / page).read_text() == (tmp_path / "parallel" / page).read_text(), page
    monkeypatch.setenv("CORESET_BENCH_FIGURE_JOBS", "two")
    with pytest.raises(SiteError, match="CORESET_BENCH_FIGURE_JOBS='two' is not a whole number"):
        render_site(store, tmp_path / "bad")


def test_long_panel_titles_are_wrapped():
    from coreset_bench.leaderboard.figures import _title

    t = _title("training=trades, arch=cnn-small, dataset=imagefolder:/a/very/long/path/to/data")
    assert "\n" in t and all(len(line) <= 44 for line in t.splitlines())


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_browser_pages_fit_at_desktop_and_phone_width(derived_site, tmp_path):
    """The front page, a derived-profile page and a method page at 1400 px and at a phone width:
    no horizontal overflow of the page (wide tables scroll inside their box), no console error."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    out, _report, derived = derived_site
    index = (out / "index.html").read_text()
    derived_href = re.search(r'href="([^"]+)">' + re.escape(derived.id), index).group(1)
    method_href = next(p for p in (out / "methods").glob("lbt-beta*.html"))
    pages = [out / "index.html", out / derived_href, method_href]
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    try:
        for width in (1400, 390):
            driver.set_window_size(width, 900)
            for page in pages:
                driver.get(page.as_uri())
                inner = driver.execute_script("return window.innerWidth")
                scroll = driver.execute_script("return document.documentElement.scrollWidth")
                assert scroll <= inner, (page.name, width, scroll, inner)
                shot = tmp_path / f"{page.stem}-{width}.png"
                assert driver.save_screenshot(str(shot))
        # 9. the front page: a headline table per track in %, paper links, the derived profile linked
        driver.set_window_size(1400, 900)
        driver.get((out / "index.html").as_uri())
        head = driver.find_element(By.CSS_SELECTOR, "table.headline")
        assert head.is_displayed() and " %" in head.text and "lbt-alpha" in head.text
        assert not [a for a in head.find_elements(By.CSS_SELECTOR, "a.paper") if "scholar" in (a.get_attribute("href") or "")]
        driver.find_element(By.LINK_TEXT, derived.id).click()
        assert driver.current_url.endswith(derived_href)
        # 10. its figures load (clipped bands and the cost chart are checked on the SVGs themselves)
        imgs = driver.find_elements(By.CSS_SELECTOR, "figure img")
        assert imgs and all(int(i.get_attribute("naturalWidth") or 0) > 0 for i in imgs)
        # 11. at a phone width the ranking table scrolls inside its box, and the rank and the
        # method name stay in view while it does (sticky columns)
        driver.set_window_size(390, 900)
        driver.get((out / derived_href).as_uri())
        wide, box_w, before, after, position = driver.execute_script(
            "const t = document.querySelector('table.ranking'); const w = t.parentElement;"
            "const c = () => t.querySelector('tbody tr td:nth-child(2)');"
            "const b = c().getBoundingClientRect().left; w.scrollLeft = w.scrollWidth;"
            "return [w.scrollWidth, w.clientWidth, b, c().getBoundingClientRect().left, getComputedStyle(c()).position];"
        )
        assert wide > box_w and position == "sticky" and abs(after - before) < 1.5, (wide, box_w, before, after, position)
        # a method page: finished results first, failed cells collapsed at the bottom
        driver.get(method_href.as_uri())
        assert driver.execute_script("const d = document.querySelector('details.failed-cells'); return d !== null && !d.open")
        done_y, failed_y = driver.execute_script("return [document.querySelector('table.cells').getBoundingClientRect().top, document.querySelector('details.failed-cells').getBoundingClientRect().top]")
        assert done_y < failed_y
        driver.set_window_size(1400, 900)
        driver.get((out / derived_href).as_uri())
        box = driver.find_element(By.CSS_SELECTOR, "input.toggle-secondary")
        cell = driver.find_element(By.CSS_SELECTOR, "table.ranking th.secondary")
        assert not cell.is_displayed()
        box.click()
        assert cell.is_displayed()
        errors = [e for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()
