"""Published numbers never change silently (issue 38 item 1), public text (item 2) and the
judgement of a reproduction (``coreset_bench.reproduce``).

The board tests reuse the tiny track, store and exported entries of ``test_leaderboard``."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from test_leaderboard import METHODS, _rows_of, exported, store, tiny  # noqa: F401 - fixtures

from coreset_bench import reproduce as rp
from coreset_bench.leaderboard import cli as lb_cli
from coreset_bench.leaderboard.data import base_version, join_source, normalize_records, provenance_of, public_text
from coreset_bench.store import Store


def _rec(key: str, acc: float, profile: str = "t/p@1", method: str = "m", repeat: int = 0) -> dict:
    return normalize_records([{"key": key, "track": "t", "profile": profile, "method": method, "method_version": "1.0", "axes": {"b": 0.1}, "repeat": repeat, "metrics": {"acc": acc}}])[0]


def test_join_source_keeps_published_numbers_and_lists_conflicts():
    published = [_rec("k1", 0.60), _rec("k2", 0.70)]
    local = [_rec("k1", 0.99), _rec("k2", 0.70), _rec("k3", 0.50), _rec("k9", 0.10, profile="t/other@1")]
    out, conflicts, identical = join_source(published, local, "local")
    assert identical == 1  # k2: the same numbers, shown once
    assert len(conflicts) == 1 and "acc 0.6 published, 0.99 local" in conflicts[0] and "cell k1" in conflicts[0]
    pub = [r for r in out if r["method_version"] == "1.0" and r["profile"] == "t/p@1"]
    assert sorted((r["key"], r["metrics"]["acc"]) for r in pub) == [("k1", 0.60), ("k2", 0.70)]  # unchanged
    labelled = sorted((r["key"], r["method_version"], r["source"]) for r in out if r["method_version"].endswith("+local"))
    assert labelled == [("k1", "1.0+local", "local"), ("k3", "1.0+local", "local")]
    # a profile nobody published is not relabelled (nothing to confuse it with)
    assert [r["method_version"] for r in out if r["profile"] == "t/other@1"] == ["1.0"]
    assert base_version("1.0+local") == "1.0" and base_version("1.0+reproduction") == "1.0" and base_version("2+cu1") == "2+cu1"
    with pytest.raises(ValueError, match="unknown source label"):
        join_source(published, local, "mine")


def _local_store(tiny, path):  # noqa: F811 - the fixture's value
    """A store holding lbt-alpha's budget-0.1 cells at other numbers than the published ones."""
    track, profile = tiny
    st = Store(path)
    alpha = next(m for m in METHODS if m.name == "lbt-alpha")
    for cell in track.cells(profile, alpha):
        if cell.axes["budget"] != 0.1:
            continue
        st.start(cell, alpha, {"git_commit": "abc", "device": "cpu"})
        st.finish(cell.key, metrics={"acc": 0.99, "robust_acc": 0.69}, timings={"total_s": 1.0}, info={})
    st.close()
    return path


def test_leaderboard_entries_show_published_numbers_and_db_joins_labelled(tiny, exported, tmp_path, monkeypatch):  # noqa: F811
    out, _written = exported
    db = _local_store(tiny, tmp_path / "local.db")
    app = typer.Typer()
    lb_cli.register(app)
    runner = CliRunner()
    # the local store is the default one (env): --entries alone must not read it
    monkeypatch.setenv("CORESET_BENCH_DB", str(db))
    res = runner.invoke(app, ["leaderboard", "--entries", str(out), "--out", str(tmp_path / "pub")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "pub" / "lbtiny-small-v2.html").read_text()
    assert re.search(r"62\.00 \[[0-9.]+, [0-9.]+\]", page) and "99.00" not in page and "+local" not in page
    assert "conflict" not in res.output
    # with --db: the local cells are their own labelled row; the conflict is listed
    res = runner.invoke(app, ["leaderboard", "--entries", str(out), "--db", str(db), "--out", str(tmp_path / "both")])
    assert res.exit_code == 0, res.output
    assert "3 conflict(s)" in res.output
    assert len(re.findall(r"^conflict: lbtiny/small@2 lbt-alpha .*acc 0\.6.* published, 0\.99 local", res.output, re.M)) >= 1
    page = (tmp_path / "both" / "lbtiny-small-v2.html").read_text()
    rows = _rows_of(page, "d1")
    assert "lbt-alpha@1.0" in rows and "lbt-alpha@1.0+local" in rows
    assert re.search(r"62\.00 \[[0-9.]+, [0-9.]+\]", page)  # the published mean of lbt-alpha at budget 0.1, unchanged
    assert "99.00" in page  # the local one, in its own row
    res = runner.invoke(app, ["leaderboard", "--entries", str(out), "--db", str(db), "--label", "mine", "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "--label 'mine' is not a source label" in res.output


def test_public_text_scrubs_issue_numbers_dirty_commits_and_paths():
    assert public_text("real images (issue 21): the") == "real images: the"
    assert public_text("the 11 methods of issue 21 (126 cells") == "the 11 methods (126 cells"
    assert public_text("633b288e2cad0b881e4a8c664d29e9003f5c4e82-dirty") == "633b288e2cad0b881e4a8c664d29e9003f5c4e82 (modified tree)"
    assert public_text("store /home/ann/runs/r.db here") == "store r.db here"
    # a clone under an unlisted root (a CI checkout at /check/work/main) is a machine path too
    assert public_text("<dd>/check/work/main/results/entries/a@1.json, /ci/x/y/b@1.json</dd>") == "<dd>a@1.json, b@1.json</dd>"
    for keep in ("tissue 3", "a/b/c and 1/2", "results/README.md", "https://arxiv.org/abs/2106.1"):
        assert public_text(keep) == keep
    prov = provenance_of([{"environment": {"git_commit": "abc1234-dirty"}}, {"environment": {"git_commit": "def5678", "git_dirty": False, "cpu_model": "EPYC 7B13", "cpu_isa": "avx2 fma"}}])
    assert prov["git_commit"] == "abc1234, def5678" and prov["git_tree"] == "clean, modified"
    assert prov["cpu_model"] == "EPYC 7B13" and prov["cpu_isa"] == "avx2 fma"


# ---- the judgement of a reproduction ------------------------------------------------------------


def _cells(values: dict[float, list[float]]) -> list[dict]:
    return [{"key": f"k{b}-{r}", "axes": {"budget": b}, "repeat": r, "metrics": {"acc": v}} for b, vs in values.items() for r, v in enumerate(vs)]


def test_seed_spread_is_pooled_over_points():
    cells = _cells({0.1: [0.60, 0.62, 0.64], 0.5: [0.80, 0.80, 0.83]})
    # per point: sum of squares 0.0008 and 0.0006, 2 degrees of freedom each
    assert rp.seed_spread(cells, "acc") == pytest.approx((0.0014 / 4) ** 0.5)
    assert rp.seed_spread(_cells({0.1: [0.6]}), "acc") is None


def test_judge_verdicts():
    s = 0.01
    assert rp.judge("acc", [0.6, 0.7], [0.6, 0.7], s).verdict == rp.EXACT
    within = rp.judge("acc", [0.60, 0.70, 0.80, 0.65], [0.605, 0.695, 0.81, 0.645], s, percent=True)
    assert within.verdict == rp.WITHIN and not within.flagged
    assert within.band == pytest.approx(1.959964 * 2**0.5 * s / 2, rel=1e-5)
    assert "reproduced within noise" in within.text() and " pp" in within.text()
    # every cell 2.2 points low: far beyond what seed-to-seed scatter explains
    dev = rp.judge("acc", [0.957, 0.95, 0.96, 0.94], [0.935, 0.928, 0.938, 0.918], s, percent=True)
    assert dev.verdict == rp.DEVIATION and dev.flagged and dev.high < 0
    assert rp.judge("acc", [0.6, 0.7, 0.8], [0.5, 0.6, 0.7], None).verdict == rp.NO_SPREAD_DEV
    assert rp.judge("acc", [0.6], [0.61], None).verdict == rp.NO_SPREAD_OK
    with pytest.raises(ValueError):
        rp.judge("acc", [], [], s)


def test_choose_cells_is_deterministic_and_compare_pairs_by_key():
    cells = _cells({0.1: [0.60, 0.62, 0.64], 0.5: [0.80, 0.80, 0.83]})
    chosen = rp.choose_cells(list(reversed(cells)), 2)
    assert [c["key"] for c in chosen] == ["k0.1-0", "k0.1-1"] == [c["key"] for c in rp.choose_cells(cells, 2)]
    runs = {"k0.1-0": {"acc": 0.60}, "k0.1-1": {"acc": 0.63}}
    (j,) = rp.compare(cells, chosen, runs, ["acc", "missing"])
    assert j.n == 2 and j.mean == pytest.approx(0.005) and j.verdict == rp.WITHIN


def test_a_claim_reads_the_published_row_beside_a_labelled_one(tiny, store):  # noqa: F811
    """With --db, a method has a published row and a ``+local`` one: a claim card names the
    published row (not "ambiguous"), and reads the labelled one only where nothing is published."""
    from coreset_bench.claims import Row
    from coreset_bench.leaderboard.board import build_board
    from coreset_bench.leaderboard.claims import find_row
    from coreset_bench.leaderboard.data import load_store_records

    track, profile = tiny
    recs = [r for r in load_store_records(store) if r["status"] != "interrupted"]
    local = [dict(r, key=r["key"] + "-other", metrics={**r["metrics"], "acc": 0.99}) for r in recs if r["method"] == "lbt-alpha"]
    merged, conflicts, _ = join_source(recs, local, "local")
    assert conflicts == []  # other keys: no conflict, a labelled row
    board = build_board(track, profile, merged)
    assert sorted(v.label for v in board.variants if v.method == "lbt-alpha") == ["lbt-alpha@1.0", "lbt-alpha@1.0+local"]
    v, why = find_row(board, Row("lbt-alpha"))
    assert v is not None and v.version == "1.0", why
    only_local = build_board(track, profile, [r for r in merged if r["method"] != "lbt-alpha" or r["method_version"] != "1.0"])
    v, why = find_row(only_local, Row("lbt-alpha"))
    assert v is not None and v.version == "1.0+local", why


def test_export_writes_no_dirty_commit_and_scrubs_text(tiny, tmp_path):  # noqa: F811
    """An exported entry keeps the bare commit and git_tree, and no local path in its info."""
    from coreset_bench.leaderboard.entries import export_entries, load_entry

    track, profile = tiny
    st = Store(tmp_path / "e.db")
    alpha = next(m for m in METHODS if m.name == "lbt-alpha")
    for cell in track.cells(profile, alpha):
        st.start(cell, alpha, {"git_commit": "633b288e2cad0b881e4a8c664d29e9003f5c4e82-dirty", "device": "cpu", "cpu_model": "EPYC", "cpu_isa": "avx2 fma"})
        st.finish(cell.key, metrics={"acc": 0.5, "robust_acc": 0.2}, timings={"total_s": 1.0}, info={"budget": 10, "realized_size": 10, "method_note": "cache at /home/ann/c/x.npy (issue 12)"})
    written, _ = export_entries(st, tmp_path / "out", plugin="lbt-alpha")
    text = written[0].path.read_text()
    obj = load_entry(written[0].path)
    assert obj["provenance"]["git_commit"] == "633b288e2cad0b881e4a8c664d29e9003f5c4e82" and obj["provenance"]["git_tree"] == "modified"
    assert obj["provenance"]["cpu_model"] == "EPYC" and obj["provenance"]["cpu_isa"] == "avx2 fma"
    assert "-dirty" not in text and "/home/" not in text and "issue 12" not in text
    assert obj["cells"][0]["info"]["method_note"] == "cache at x.npy"
