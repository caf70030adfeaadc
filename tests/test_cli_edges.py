"""The command line's rough edges (issue 38 item 11), commands that answer without torch (issue 41
item 4) and ``reproduce`` (issue 38 item 1), each through the real entry point in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from coreset_bench.store import Store
from coreset_bench.tracks.base import Cell

PROBE = (
    "import sys, atexit\n"
    "atexit.register(lambda: sys.stderr.write('\\nTORCH=%s\\n' % ('torch' in sys.modules)))\n"
    "sys.argv = ['coreset-bench'] + sys.argv[1:]\n"
    "from coreset_bench.cli import main\n"
    "main()\n"
)
FAST_PLUGINS = "core,random,full,standard"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, CORESET_BENCH_LOAD_PLUGINS=FAST_PLUGINS, CORESET_BENCH_CACHE_DIR=str(tmp_path / "cache"), CORESET_BENCH_THREADS="1", COLUMNS="80")
    env.pop("CORESET_BENCH_DB", None)
    env.pop("CORESET_BENCH_METADATA_CACHE", None)
    env.update(extra)
    return env


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``coreset-bench ARGS`` through the real entry point, stdout piped (not a terminal)."""
    res = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env or _env(tmp_path), cwd=tmp_path, timeout=600)
    res.torch = "TORCH=True" in res.stderr  # type: ignore[attr-defined]
    res.err = res.stderr.replace("TORCH=True", "").replace("TORCH=False", "").strip()  # type: ignore[attr-defined]
    return res


def _store_with_runs(path: Path) -> Path:
    """Finished coreset/tiny@1 cells of random and kcenter (two repeats) and one failed cell with a
    long error, written straight into a store (no training)."""
    st = Store(path)
    axes = {"dataset": "digits", "arch": "mlp", "budget": 0.2, "training": "standard"}
    method = type("M", (), {"package": "coreset-bench"})()
    for name, base in (("m-base", 0.90), ("m-new", 0.93)):  # not installed: compared with the parameters stored
        for repeat in (0, 1):
            cell = Cell("coreset", "coreset/tiny@1", name, "1", {}, axes, repeat)
            st.claim(cell, method, {})
            metrics = {"clean_acc": base + 0.01 * repeat, "subset_size": 72.0, "pgd_acc": 0.5, "autoattack_acc": 0.45, "train_loss": 1.5, "val_acc": 0.9, "selection_s": 1.0}
            metrics.update({f"class_acc_{i}": 0.9 for i in range(10)})
            st.finish(cell.key, metrics=metrics, timings={"total_s": 1.0}, info={})
    bad = Cell("coreset", "coreset/tiny@1", "m-new", "1", {}, {**axes, "budget": 0.5}, 0)
    st.claim(bad, method, {})
    st.fail(bad.key, "ValueError: " + "x" * 1500, "Traceback ...", {"total_s": 1.0})
    st.close()
    return path


def test_profile_typo_suggests_each_name_once(tmp_path):
    res = cli(tmp_path, "run", "--plugin", "random", "--profile", "quik", "--dry-run", "--db", str(tmp_path / "r.db"))
    assert res.returncode == 2, res.stderr
    (line,) = res.err.splitlines()
    suggested = line.split("did you mean ", 1)[1].split("?", 1)[0].split(", ")
    assert suggested[0] == "quick" and len(suggested) == len(set(suggested))
    known = line.split("known: ", 1)[1].split(", ")
    assert len(known) == len(set(known)) and "quick" in known and "tiny" in known


def test_dry_run_creates_no_database(tmp_path):
    db = tmp_path / "sub" / "r.db"
    res = cli(tmp_path, "run", "--plugin", "random", "--profile", "tiny", "--no-references", "--dry-run", "--db", str(db))
    assert res.returncode == 0, res.stderr
    assert "coreset/tiny@1: 2 cell(s) to run, 0 already done" in res.stdout
    assert len(re.findall(r"^  todo  [0-9a-f]{24}  random ", res.stdout, re.M)) == 2
    assert not db.exists() and not db.parent.exists()


def test_results_prints_percent_like_run_and_short_lines(tmp_path):
    db = _store_with_runs(tmp_path / "r.db")
    res = cli(tmp_path, "results", "--db", str(db))
    assert res.returncode == 0, res.stderr
    assert not res.torch
    lines = res.stdout.splitlines()
    assert len(lines) == 5
    assert "clean_acc=90.00 %" in res.stdout and "clean_acc=0.9000" not in res.stdout  # as run's summary prints it
    assert "subset_size=72.00" in res.stdout and "(+2 more: --json)" in res.stdout and "class_acc_" not in res.stdout
    assert max(len(x) for x in lines) < 400  # the 1,500-character error is cut to one short line
    assert any(x.endswith("…") and "ValueError: xxx" in x for x in lines)
    # --profile as run takes it
    short = cli(tmp_path, "results", "--db", str(db), "--profile", "tiny")
    assert short.returncode == 0 and short.stdout == res.stdout
    typo = cli(tmp_path, "results", "--db", str(db), "--profile", "tiyn")
    assert typo.returncode == 2 and "no stored runs of profile 'tiyn'" in typo.err and "coreset/tiny@1" in typo.err


def test_compare_accepts_the_profile_names_run_accepts(tmp_path):
    db = _store_with_runs(tmp_path / "r.db")
    outs = []
    for ref in ("tiny", "tiny@1", "coreset/tiny", "coreset/tiny@1"):
        res = cli(tmp_path, "compare", "m-new", "m-base", "--profile", ref, "--db", str(db))
        assert res.returncode == 0, (ref, res.stderr)
        outs.append(res.stdout)
    assert outs[0].startswith("coreset/tiny@1: clean_acc, m-new − m-base")  # tiny@1's primary metric
    assert "n=2  +3.00 pp" in outs[0]
    assert len(set(outs)) == 1


def test_tracks_prints_whole_lines_when_piped(tmp_path):
    res = cli(tmp_path, "tracks", env=_env(tmp_path, CORESET_BENCH_LOAD_PLUGINS="core"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "…" not in res.stdout and not any(set(x) <= set("─━│┃┌┐└┘ ") for x in lines if x)  # no table
    coreset = next(x for x in lines if x.startswith("coreset "))
    assert "coreset/tiny@1,coreset/quick@1,coreset/quick@2" in coreset and "primary=autoattack_acc" in coreset
    assert any(x.startswith("label-noise ") for x in lines)


def test_run_help_states_the_real_default_profile(tmp_path):
    res = cli(tmp_path, "run", "--help", env=_env(tmp_path, COLUMNS="400"))
    assert res.returncode == 0 and not res.torch
    assert "the track's first" not in res.stdout
    m = re.search(r"default profile at its newest version \(coreset: (\w+)\)", res.stdout)
    assert m, res.stdout
    prof = cli(tmp_path, "profiles", "coreset")
    default = re.findall(r"^(coreset/\S+)  \(default\)", prof.stdout, re.M)
    from coreset_bench import registry

    assert default == [registry.track("coreset").profile(None).id] and default[0].startswith(f"coreset/{m.group(1)}@")


LISTING = [
    ("--version",),
    ("--help",),
    ("plugins",),
    ("plugins", "--json"),
    ("plugins", "show", "random"),
    ("tracks",),
    ("profiles", "coreset"),
    ("run", "--plugin", "random", "--profile", "tiny", "--dry-run"),
]


def test_listing_commands_answer_without_torch_once_cached(tmp_path):
    """The first listing command after an install builds the metadata cache (importing the
    plugins); from then on none of them imports torch, and each prints what it printed fresh."""
    env = _env(tmp_path)
    for args in LISTING:
        extra = ("--db", str(tmp_path / "r.db")) if args[0] == "run" else ()
        first = cli(tmp_path, *args, *extra, env=env)
        again = cli(tmp_path, *args, *extra, env=env)
        assert first.returncode == again.returncode == 0, (args, first.stderr, again.stderr)
        assert not again.torch, args
        assert again.stdout == first.stdout, args
        if args[0] in ("--version", "--help"):
            assert not first.torch
        if args in (("plugins", "--json"), ("profiles", "coreset"), LISTING[-1]):  # as printed with no cache at all
            off = cli(tmp_path, *args, *extra, env=_env(tmp_path, CORESET_BENCH_METADATA_CACHE="0"))
            assert off.returncode == 0 and off.stdout == again.stdout and off.torch, args
    assert not (tmp_path / "r.db").exists()


def _broken_plugin_dist(root: Path, source: str) -> None:
    """An installed distribution (on PYTHONPATH) whose ``coreset_bench`` entry point is module
    ``brokenplug``."""
    info = root / "brokenplug-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[coreset_bench]\nbrokenplug = brokenplug\n")
    (root / "brokenplug.py").write_text(textwrap.dedent(source))


def test_broken_plugin_reported_from_the_cache_and_a_fix_rebuilds_it(tmp_path):
    site = tmp_path / "site"
    _broken_plugin_dist(site, "raise ImportError('needs libfoo; pip install foo')\n")
    env = _env(tmp_path, CORESET_BENCH_LOAD_PLUGINS="core,brokenplug", PYTHONPATH=str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    first = cli(tmp_path, "plugins", env=env)
    again = cli(tmp_path, "plugins", env=env)
    for res in (first, again):
        assert res.returncode == 0, res.stderr
        assert re.search(r"^brokenplug  \?  \[\]  ERROR ImportError: needs libfoo; pip install foo$", res.stdout, re.M), res.stdout
    assert not again.torch
    # the plugin is fixed: its source changed, so the cache is rebuilt and the error is gone
    _broken_plugin_dist(site, "# fixed: registers nothing\nX = 1\n")
    fixed = cli(tmp_path, "plugins", env=env)
    assert fixed.returncode == 0 and "brokenplug" not in fixed.stdout and fixed.torch
    rows = json.loads(cli(tmp_path, "plugins", "--json", env=env).stdout)
    assert not any(r["error"] for r in rows)


@pytest.mark.slow
def test_reproduce_a_tiny_entry_through_the_entry_point(tmp_path):
    """A tiny profile's entry, made here (run, export), reproduced on the same machine: every
    number equal, the machine recorded; then shown on the board as its own labelled source."""
    env = _env(tmp_path, CORESET_BENCH_JOBS="1")
    db = tmp_path / "a.db"
    run = cli(tmp_path, "run", "--plugin", "random", "--profile", "tiny", "--no-references", "--db", str(db), "--device", "cpu", env=env)
    assert run.returncode == 0, run.stderr
    exp = cli(tmp_path, "export", "--db", str(db), "--out", str(tmp_path / "entries"), env=env)
    assert exp.returncode == 0, exp.stderr
    entry = tmp_path / "entries" / "coreset" / "tiny@1" / "random@1.json"
    prov = json.loads(entry.read_text())["provenance"]
    assert prov["cpu_model"] and prov["git_tree"] in ("clean", "modified") and "-dirty" not in prov["git_commit"]
    rdb = tmp_path / "repro.db"
    res = cli(tmp_path, "reproduce", str(entry), "--cells", "2", "--db", str(rdb), "--device", "cpu", "--json", env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout[res.stdout.index("{\n"):])
    assert out["reproduced"] == 2 and out["failed"] == 0 and out["machine"]["cpu_model"]
    (acc,) = [m for m in out["metrics"] if m["metric"] == "clean_acc"]
    assert acc["n"] == 2 and acc["mean"] == 0.0 and acc["verdict"] == "reproduced exactly" and not acc["flagged"]
    stored = json.loads(cli(tmp_path, "results", "--db", str(rdb), "--json", env=env).stdout)
    assert len(stored) == 2 and all(r["environment"]["cpu_model"] and "cpu_isa" in r["environment"] for r in stored)


def test_dry_run_reads_the_default_database_the_store_uses():
    """The dry run resolves --db without importing the store: the same default file."""
    from coreset_bench import cli as cli_mod
    from coreset_bench import store as store_mod

    assert cli_mod.DEFAULT_DB == store_mod.DEFAULT_DB


def test_profiles_prints_no_issue_numbers_of_our_tracker(tmp_path):
    """Profile descriptions mention the issue that made them ("version 2 (issue 20)"); the listing
    shows them as the site does, without (``coreset_bench.public.public_text``)."""
    for args in (("profiles",), ("profiles", "--json")):
        res = cli(tmp_path, *args, env=_env(tmp_path, CORESET_BENCH_LOAD_PLUGINS="core"))
        assert res.returncode == 0, res.stderr
        assert "digits" in res.stdout and not re.search(r"\bissues? #?\d+", res.stdout, re.I), args
