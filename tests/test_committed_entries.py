"""Every committed entry under results/entries validates and renders with the installed plugins."""

from __future__ import annotations

import re
from pathlib import Path

from coreset_bench.leaderboard.entries import load_entries
from coreset_bench.leaderboard.render import render_site

ENTRIES = Path(__file__).resolve().parent.parent / "results" / "entries"


def test_every_committed_entry_validates_and_renders(tmp_path):
    files = sorted(ENTRIES.rglob("*.json"))
    assert files, f"no committed entries under {ENTRIES}"
    loaded = load_entries([ENTRIES])
    assert loaded.rejected == []
    assert len(loaded.accepted) == len(files)
    report = render_site(None, tmp_path / "site", entries_dirs=[ENTRIES])
    assert report.rejected == []
    profiles = {obj["profile"]["id"] for _, obj in loaded.accepted}
    pages = {p.name for p in report.pages}
    for pid in profiles:
        track, rest = pid.split("/", 1)
        name, version = rest.split("@")
        page = f"{track}-{name}-v{version}.html"
        assert page in pages, (pid, sorted(pages))
        html = (tmp_path / "site" / page).read_text()
        assert not re.search(r"± 0\.00(?![0-9])", html)  # no zero-width interval shown as exact (± 0.0016 is a real one)
    assert not [w for w in report.warnings if "not rendered" in w]
    _assert_public(tmp_path / "site", tmp_path)


def _assert_public(site: Path, tmp: Path) -> None:
    """Issue 38 item 2: no machine-specific absolute path, ``-dirty`` commit or issue number on any
    page (the committed entries themselves still carry ``-dirty`` commits: the renderer scrubs)."""
    repo = str(ENTRIES.parent.parent)
    bad = re.compile(r"-dirty\b|\bissues? #?\d+|(?<![\w.])/(?:home|work|tmp|root|Users)/|\.\./\.\./", re.I)
    checked = 0
    for f in sorted(site.rglob("*")):
        if f.suffix not in (".html", ".svg", ".md", ".js", ".css", ".json"):
            continue
        text = f.read_text(encoding="utf-8", errors="replace")
        hit = bad.search(text)
        assert hit is None, (f.relative_to(site).as_posix(), text[max(0, hit.start() - 80) : hit.end() + 40])
        assert repo not in text and str(tmp) not in text, f
        checked += 1
    assert checked > 50


def test_no_committed_board_has_a_flagged_leader():
    """Issue 20: a row with a degenerate cell (stored flags, or flags derived for entries that
    predate them) is never the leader; quick@1's collapsed EasyCore no longer leads."""
    from coreset_bench import registry as plugins
    from coreset_bench.leaderboard.board import build_board, derived_flags
    from coreset_bench.leaderboard.entries import entry_records

    loaded = load_entries([ENTRIES])
    by_profile: dict[str, list] = {}
    for path, obj in loaded.accepted:
        by_profile.setdefault(obj["profile"]["id"], []).extend(entry_records(obj, str(path)))
    tracks = plugins.tracks()
    checked = 0
    for pid, recs in by_profile.items():
        track = tracks[pid.split("/", 1)[0]]
        prof = next((p for p in track.profiles() if p.id == pid), None)
        if prof is None:
            continue
        board = build_board(track, prof, recs)
        for table in board.tables:
            for row in table.rows:
                if row.leader:
                    checked += 1
                    assert not row.flags, (pid, table.title, row.variant.label, row.flags)
                    # independently of the board: none of the leader's cells is degenerate
                    mine = [r for r in recs if r["method"] == row.variant.label.split(" ")[0]]
                    for r in mine:
                        fl = r["info"].get("flags")
                        assert not (fl if fl is not None else derived_flags(r)), (pid, row.variant.label, r["axes"], r["repeat"])
    assert checked > 0
    easy = [r for r in by_profile.get("coreset/quick@1", []) if r["method"] == "easycore" and r["axes"]["training"] == "standard" and r["axes"]["budget"] == 0.1 and r["repeat"] == 0]
    if easy:  # the audit's collapsed subset [91, 0, 1, 0, 17, 5, 0, 1, 4, 2]
        assert "subset-class-coverage (derived)" in derived_flags(easy[0])


def test_a_superseded_profile_version_leaves_the_front_table(tmp_path):
    """Issue 20: quick@1 stays loadable and rendered, but only as an earlier version."""
    import re

    render_site(None, tmp_path / "site", entries_dirs=[ENTRIES])
    index = (tmp_path / "site" / "index.html").read_text()
    table = index.split('id="track-coreset"', 1)[1].split("</table>", 1)[0]
    assert "coreset/quick@1" not in table and "coreset/quick@2" in table
    assert re.search(r'Earlier profile versions.*coreset-quick-v1\.html">coreset/quick@1</a> \(superseded by coreset/quick@2', index, re.S)
    assert "Superseded by <code>coreset/quick@2</code>" in (tmp_path / "site" / "coreset-quick-v1.html").read_text()
    # quick@3 (a costlier variant with results) sits beside the default quick@2, superseding nothing
    section = index.split('id="track-coreset"', 1)[1].split('id="track-', 1)[0]
    assert 'href="coreset-quick-v3.html"' in section and "coreset/quick@2</a> (superseded" not in section
    assert "Superseded by" not in (tmp_path / "site" / "coreset-quick-v2.html").read_text()
    assert 'href="coreset-quick-v2.html"' in index.split('id="track-coreset"', 1)[1].split('class="headline-title"', 1)[1][:200]
    # EasyCore's method page explains global vs class-balanced (issue 20, item 4)
    assert "Global or class-balanced?" in (tmp_path / "site" / "methods" / "easycore.html").read_text()


def test_privacy_intervals_are_over_targets():
    """Issue 22: privacy/quick@2 runs one seed with 12 target models; the board's intervals
    resample the targets (``info.per_target``), so one seed still gets an interval, and attacks
    are paired over the same targets."""
    from coreset_bench import registry as plugins
    from coreset_bench.leaderboard.board import _per_target, _test_group, build_board
    from coreset_bench.leaderboard.entries import entry_records

    recs = []
    for path, obj in load_entries([ENTRIES / "privacy" / "quick@2"]).accepted:
        recs += entry_records(obj, str(path))
    assert {r["method"] for r in recs} >= {"loss", "lira", "sablayrolles"}
    track = plugins.track("privacy")
    prof = track.profile("quick@2")
    board = build_board(track, prof, recs)
    v = {x.method: x for x in board.variants}
    pts = sorted(v["lira"].points)
    groups = {p: _test_group(p) for p in pts}
    lira = v["lira"].interval("auc", pts, [0], groups)
    per = _per_target(v["lira"].done[(pts[0], 0)], "auc")
    assert per is not None and per.size == 12
    assert lira.method == "bootstrap" and lira.defined and lira.low < lira.mean < lira.high
    assert abs(lira.mean - per.mean()) < 1e-12
    diff = v["sablayrolles"].paired(v["loss"], "auc", pts, [0], "max", groups)
    assert diff.defined and diff.method == "bootstrap"
    # a forged per-target list whose mean disagrees with the cell's value is ignored
    rec = dict(v["loss"].done[(pts[0], 0)])
    rec["info"] = {**rec["info"], "per_target": [{"auc": 0.9}] * 12}
    from coreset_bench.leaderboard.board import Variant

    fake = Variant(method="loss", version="1", params={}, package="x", records=[rec], done={(pts[0], 0): rec}, expected={(pts[0], 0)}, points={pts[0]})
    assert fake.bits("auc") == {}
