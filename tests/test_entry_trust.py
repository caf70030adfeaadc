"""Entry trust through the real command line (issue 37, items 6 and 7).

* Every built-in track's metrics are range-checked against the track's own declarations
  (``Track.metric_bounds``, ``Track.proportion_metrics``): a forged out-of-range value of any
  track's primary metric, per cell or in the aggregates, is rejected with one line naming the
  entry, the metric, the value and the allowed range.
* An entry that claims a built-in row (package ``coreset-bench``, a built-in name, a privileged
  bound) is accepted only when signed by a trusted key, pinned as a published entry, or
  reproduced by the same cells in the ``--db`` store — with or without trust options.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from coreset_bench import cli
from coreset_bench import registry as plugins
from coreset_bench.leaderboard.board import metric_ranges
from coreset_bench.leaderboard.data import normalize_records
from coreset_bench.leaderboard.entries import _cells_digest, aggregate_cells, build_entry
from coreset_bench.leaderboard.signing import PINS_FILE, entry_digest, generate_keypair, load_pins, load_private_key, sign_entry
from coreset_bench.store import Store
from coreset_bench.tracks.base import Cell

REPO = Path(__file__).resolve().parents[1]
ENTRIES = REPO / "results" / "entries"
POOLING = ENTRIES / "pooling" / "quick@1"
BUILT_IN_TRACKS = ("coreset", "robustness", "privacy", "memorization", "label-noise", "pooling", "decentralized", "video", "instruction")
IMPOSTOR_LINE = "claims the built-in row 'oracle' of package 'coreset-bench' (a privileged bound) but is not signed by a trusted key"


def _cli(*args: str):
    """``coreset-bench ARGS`` in-process, with the commands ``main()`` registers."""
    cli._add_plugin_commands()
    return CliRunner().invoke(cli.app, list(args), catch_exceptions=False)


def _rejections(stderr: str) -> dict[str, str]:
    """File name -> its one-line reason; fails if a rejection spans more than one line."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("rejected "):
            path, reason = line[len("rejected ") :].split(": ", 1)
            assert Path(path).name not in out, f"two lines for {path}"
            out[Path(path).name] = reason
        else:
            assert line.startswith(("warning: ", "error: ")), f"a rejection reason spans lines: {line!r}"
    return out


def _leader(page: str) -> list[str]:
    return re.findall(r'<tr class="[^"]*\bleader\b[^"]*" data-method="([^"]*)"', page)


# ---- forged values outside the declared ranges ---------------------------------------------------


def _forged(track_name: str, metric: str | None = None, value: float | None = None) -> tuple[dict, str, float, str]:
    """A self-consistent entry (keys, seeds, aggregates, digest) of a third-party method on the
    track's default profile whose ``metric`` (default: the primary one) is ``value`` in every
    cell (default: just outside the declared range); returns (entry, metric, value, range text)."""
    track = plugins.track(track_name)
    prof = track.profile(None)
    metric = metric or track.primary_for(prof)
    span = metric_ranges(track)[metric]
    if value is None:
        value = 0.5 if span.proportion else (span.high + 0.5 if span.high is not None else span.low - 0.5)
    stand = SimpleNamespace(name=f"forger-{track_name}", version="1", params={}, kind=track.contestant_kind, package="forger-lab",
                            tracks=(), summary="", citation="", modalities=(track.modality,), role=track.role)
    rows = [{"key": c.key, "track": track_name, "profile": prof.id, "method": stand.name, "package": "forger-lab", "method_version": "1",
             "params": {}, "axes": c.axes, "repeat": c.repeat, "seed": c.seed, "status": "done", "metrics": {metric: value},
             "timings": {"total_s": 1.0}} for c in track.cells(prof, stand)]
    entry = build_entry(track, prof, normalize_records(rows))
    lo = "(-inf" if span.low is None else f"[{span.low:g}"
    hi = "inf)" if span.high is None else f"{span.high:g}]"
    return entry, metric, value, f"{lo}, {hi}"


@pytest.fixture(scope="module")
def forged_dir(tmp_path_factory):
    """One forged entry per built-in track (primary metric out of range), plus the issue's cases."""
    d = tmp_path_factory.mktemp("forged")
    expect: dict[str, str] = {}
    for name in BUILT_IN_TRACKS:
        entry, metric, value, span = _forged(name)
        (d / f"{name}.json").write_text(json.dumps(entry))
        expect[f"{name}.json"] = f"metric {metric} = {value:.6g} is outside {span}, the range track {name!r} declares for it (metric_bounds)"
    cases = {
        "instruction-em.json": ("instruction", "target_em", 1.5, "metric target_em = 1.5 is outside [0, 1]"),
        "pooling-saving.json": ("pooling", "idle_saving", 1.5, "metric idle_saving = 1.5 is outside (-inf, 1]"),
        "pooling-seconds.json": ("pooling", "fit_s", -3.0, "metric fit_s = -3 is outside [0, inf)"),
        "pooling-slo.json": ("pooling", "slo_met", 0.5, "metric slo_met = 0.5 is not 0 or 1: track 'pooling' declares it one yes/no outcome per cell"),
        "coreset-acc.json": ("coreset", "clean_acc", 1.2, "metric clean_acc = 1.2 is outside [0, 1]"),
        "coreset-class.json": ("coreset", "class_pgd_acc_7", -0.2, "metric class_pgd_acc_7 = -0.2 is outside [0, 1]"),
        "video-seconds.json": ("video", "distill_s", -1.0, "metric distill_s = -1 is outside [0, inf)"),
        "memorization-corr.json": ("memorization", "spearman", -1.5, "metric spearman = -1.5 is outside [-1, 1]"),
    }
    for fname, (name, metric, value, message) in cases.items():
        entry, *_ = _forged(name, metric, value)
        (d / fname).write_text(json.dumps(entry))
        expect[fname] = message
    # an aggregate edited out of range while every cell is in range (the digest covers cells only)
    entry, *_ = _forged("pooling", "idle_saving", 0.25)
    entry["aggregates"]["points"][0]["metrics"]["idle_saving"]["mean"] = 1.5
    (d / "pooling-aggregate.json").write_text(json.dumps(entry))
    expect["pooling-aggregate.json"] = "mean idle_saving = 1.5 is outside (-inf, 1], the range track 'pooling' declares for it"
    # the control: the same forger, in range, is accepted
    entry, *_ = _forged("pooling", "idle_saving", 0.25)
    (d / "pooling-fine.json").write_text(json.dumps(entry))
    return d, expect


def test_out_of_range_values_of_every_tracks_metrics_are_rejected_with_one_line(forged_dir, workdir):
    d, expect = forged_dir
    res = _cli("entries", "check", str(d))
    assert res.exit_code == 1, res.output
    reasons = _rejections(res.stderr)
    assert set(reasons) == set(expect), sorted(set(reasons) ^ set(expect))
    for fname, message in expect.items():
        assert message in reasons[fname], (fname, reasons[fname])
        where = "aggregates at " if fname == "pooling-aggregate.json" else "cells[0] ("
        assert reasons[fname].startswith(where), reasons[fname]
    assert f"ok {d / 'pooling-fine.json'}" in res.stdout
    assert f"1 entries valid, {len(expect)} rejected" in res.stdout
    # the board rejects the same files, one line each, and renders the rest
    res = _cli("leaderboard", "--entries", str(d), "--out", str(workdir / "site"))
    assert res.exit_code == 0, res.output
    assert _rejections(res.stderr) == reasons
    assert f"({len(expect)} entries rejected" in res.stdout


# ---- built-in rows: signed, pinned or reproduced ---------------------------------------------------


def _impostor() -> dict:
    """The published ``oracle`` (a bound, flagged, never ranked) with its bound flag removed and
    its digest recomputed: unsigned, from package ``coreset-bench``."""
    obj = json.loads((POOLING / "oracle@1.json").read_text())
    for c in obj["cells"]:
        c["info"]["flags"] = []
    obj["cells_sha256"] = _cells_digest(obj["cells"])
    return obj


@pytest.fixture
def board_dir(tmp_path):
    """The published pooling/quick@1 entries without the oracle's."""
    d = tmp_path / "entries"
    d.mkdir()
    for f in POOLING.glob("*.json"):
        if f.name != "oracle@1.json":
            shutil.copy(f, d / f.name)
    return d


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return generate_keypair(d / "alice", "alice"), generate_keypair(d / "mallory", "mallory")


def test_an_unsigned_built_in_impostor_is_rejected_without_trust_options(board_dir, workdir):
    (board_dir / "oracle@1.json").write_text(json.dumps(_impostor()))
    res = _cli("leaderboard", "--entries", str(board_dir), "--out", str(workdir / "site"))
    assert res.exit_code == 0, res.output
    reasons = _rejections(res.stderr)
    assert list(reasons) == ["oracle@1.json"], reasons
    assert IMPOSTOR_LINE in reasons["oracle@1.json"] and "sign it (export --sign-key" in reasons["oracle@1.json"]
    page = (workdir / "site" / "pooling-quick-v1.html").read_text()
    assert _leader(page) == ["reactive"] and 'data-method="oracle"' not in page  # the published leader; no oracle row
    res = _cli("entries", "check", str(board_dir))
    assert res.exit_code == 1 and list(_rejections(res.stderr)) == ["oracle@1.json"]


def test_an_unsigned_or_untrusted_impostor_is_rejected_with_trust_options(board_dir, keys, workdir):
    alice, mallory = keys
    (board_dir / "oracle@1.json").write_text(json.dumps(_impostor()))
    (board_dir / "oracle-mallory.json").write_text(json.dumps(sign_entry(_impostor(), load_private_key(mallory.private_path))))
    res = _cli("leaderboard", "--entries", str(board_dir), "--out", str(workdir / "site"), "--trusted-keys", str(alice.public_path))
    assert res.exit_code == 0, res.output
    reasons = _rejections(res.stderr)
    assert sorted(reasons) == ["oracle-mallory.json", "oracle@1.json"]
    assert all(IMPOSTOR_LINE in r for r in reasons.values()), reasons
    assert _leader((workdir / "site" / "pooling-quick-v1.html").read_text()) == ["reactive"]


def test_a_built_in_entry_signed_by_a_trusted_key_is_accepted(board_dir, keys, workdir):
    alice, _ = keys
    (board_dir / "oracle@1.json").write_text(json.dumps(sign_entry(_impostor(), load_private_key(alice.private_path))))
    res = _cli("entries", "check", str(board_dir), "--trusted-keys", str(alice.public_path))
    assert res.exit_code == 0, res.output
    assert re.search(r"ok \S*oracle@1\.json  \(built-in row; signed by alice · [0-9a-f]{16}\)", res.stdout), res.stdout
    res = _cli("leaderboard", "--entries", str(board_dir), "--out", str(workdir / "site"), "--trusted-keys", str(alice.public_path))
    assert res.exit_code == 0 and "(0 entries rejected" in res.stdout, res.output
    # what the signature vouches for is shown: the unflagged oracle now leads (the key holder's word)
    assert _leader((workdir / "site" / "pooling-quick-v1.html").read_text()) == ["oracle"]


def _store_of(entry: dict, path: Path) -> str:
    """A store holding the entry's cells as finished runs of the installed method."""
    method = plugins.method(entry["method"]["name"]).with_params(**entry["method"]["params"])
    st = Store(path)
    for c in entry["cells"]:
        cell = Cell(entry["track"], entry["profile"]["id"], method.name, method.version, dict(method.params), c["axes"], c["repeat"])
        assert cell.key == c["key"]
        st.start(cell, method, {})
        st.finish(cell.key, metrics=c["metrics"], timings=c["timings"], info=c["info"])
    st.close()
    return str(path)


def test_a_built_in_entry_reproduced_by_the_local_store_is_accepted(board_dir, workdir):
    published = json.loads((POOLING / "oracle@1.json").read_text())
    db = _store_of(published, workdir / "mine.db")
    # re-exported elsewhere: the same cells, another export time, so no longer the pinned file
    honest = json.loads(json.dumps(published))
    honest["provenance"]["exported"] = "2031-01-01T00:00:00+00:00"
    assert entry_digest(honest) not in load_pins(PINS_FILE)
    (board_dir / "oracle@1.json").write_text(json.dumps(honest))
    res = _cli("entries", "check", str(board_dir))
    assert res.exit_code == 1 and IMPOSTOR_LINE in _rejections(res.stderr)["oracle@1.json"]
    res = _cli("entries", "check", str(board_dir), "--db", db)
    assert res.exit_code == 0, res.output
    assert "oracle@1.json  (built-in row; reproduced by the local store)" in res.stdout
    # the store holds the cells with their bound flag: the unflagged impostor is not reproduced ...
    (board_dir / "oracle@1.json").write_text(json.dumps(_impostor()))
    res = _cli("leaderboard", "--entries", str(board_dir), "--out", str(workdir / "site"), "--db", db)
    assert res.exit_code == 0 and IMPOSTOR_LINE in _rejections(res.stderr)["oracle@1.json"], res.output
    # ... nor are other numbers for the same cells
    edited = json.loads(json.dumps(honest))
    for c in edited["cells"]:
        c["metrics"]["idle_saving"] = 0.5
    edited["cells_sha256"] = _cells_digest(edited["cells"])
    edited["aggregates"] = aggregate_cells(edited["cells"], plugins.track("pooling").profile("quick@1"))
    (board_dir / "oracle@1.json").write_text(json.dumps(edited))
    res = _cli("entries", "check", str(board_dir), "--db", db)
    assert res.exit_code == 1 and IMPOSTOR_LINE in _rejections(res.stderr)["oracle@1.json"], res.output


def test_other_built_in_claims_need_the_same_proof(board_dir, workdir):
    """Not only the bound: any row of package coreset-bench (here a forged 'static', the baseline),
    and any package claiming a built-in name (rejected as reserved before trust is asked)."""
    static = json.loads((POOLING / "static@1.json").read_text())
    for c in static["cells"]:
        c["metrics"]["hit_rate"] = min(1.0, c["metrics"]["hit_rate"] + 1e-6)
    static["cells_sha256"] = _cells_digest(static["cells"])
    static["aggregates"] = aggregate_cells(static["cells"], plugins.track("pooling").profile("quick@1"))
    (board_dir / "static@1.json").write_text(json.dumps(static))
    evil = _impostor()
    evil["method"]["package"] = "evil-pools"
    (board_dir / "evil.json").write_text(json.dumps(evil))
    res = _cli("entries", "check", str(board_dir))
    reasons = _rejections(res.stderr)
    assert res.exit_code == 1 and sorted(reasons) == ["evil.json", "static@1.json"], res.output
    assert "claims the built-in row 'static' of package 'coreset-bench' but is not signed" in reasons["static@1.json"]
    assert "reserved by the installed package 'coreset-bench'" in reasons["evil.json"]


def test_the_pins_are_the_committed_entries(workdir):
    """The pins file lists exactly the committed entries (``coreset-bench entries pin`` writes it):
    every published built-in row renders, and nothing else is pinned."""
    out = workdir / "pins.txt"
    res = _cli("entries", "pin", str(ENTRIES), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert out.read_text() == PINS_FILE.read_text(), "the committed entries changed: run `coreset-bench entries pin results/entries` and commit leaderboard/pinned-entries.txt"
    assert len(load_pins(PINS_FILE)) == len(list(ENTRIES.rglob("*.json")))
