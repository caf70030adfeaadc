"""The example third-party plugin (examples/coreset-bench-example), end to end.

Nothing is installed: the test writes the distribution's metadata (``dist-info`` with the entry
points its ``pyproject.toml`` declares) to a temporary directory and puts that and the example's
source on ``sys.path``, so that entry-point discovery finds it exactly as it would find an
installed package.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from coreset_bench import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "coreset-bench-example"


def _project():
    return tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]


@pytest.fixture
def example_installed(tmp_path, monkeypatch, fresh_plugins):
    proj = _project()
    eps = proj["entry-points"]["coreset_bench"]
    info = tmp_path / "site" / f"{proj['name'].replace('-', '_')}-{proj['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {proj['name']}\nVersion: {proj['version']}\n")
    (info / "entry_points.txt").write_text("[coreset_bench]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard," + ",".join(eps))
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # `run` sets torch threads from it
    fresh_plugins.reset()
    yield fresh_plugins
    sys.modules.pop("coreset_bench_example", None)


def test_pyproject_declares_the_entry_point_and_dependency():
    proj = _project()
    assert proj["name"] == "coreset-bench-example"
    assert proj["entry-points"]["coreset_bench"] == {"lowloss": "coreset_bench_example"}
    assert any(d.split(">")[0].split("=")[0].strip() == "coreset-bench" for d in proj["dependencies"])


def test_example_runs_end_to_end_through_the_cli(example_installed, tmp_path):
    runner = CliRunner()
    rec = {r.name: r for r in example_installed.records()}["lowloss"]
    assert rec.error is None and rec.package == "coreset-bench-example" and rec.package_version == "0.1.0"

    rows = json.loads(runner.invoke(cli.app, ["plugins", "--json"]).stdout)
    (row,) = [r for r in rows if r["name"] == "lowloss"]
    assert (row["kind"], row["version"], row["package"], row["tracks"], row["error"]) == ("selection", "1", "coreset-bench-example", ["coreset"], None)

    db = tmp_path / "r.db"
    res = runner.invoke(cli.app, ["run", "--plugin", "lowloss", "--profile", "coreset/tiny@1", "--no-references", "--db", str(db), "--device", "cpu"])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert "2 cell(s) to run, 0 already done" in res.stdout and res.stdout.count("done   lowloss") == 2
    # its own claim (register_claims) is decided on another profile, and the summary says which
    assert "claim lowloss-clean-vs-random (lowloss, coreset-bench example plugin: lowloss)" in res.stdout
    assert "decided on coreset/quick@2, not on this run's profile coreset/tiny@1" in res.stdout
    cli._add_builtin_commands()  # what main() adds: leaderboard, claims, export, keys
    out = runner.invoke(cli.app, ["claims", "--json", "--db", str(db), "--track", "coreset"])
    assert out.exit_code == 0, out.stdout + out.stderr
    (claim,) = [c for c in json.loads(out.stdout) if c["id"] == "lowloss-clean-vs-random"]
    assert claim["declared_by"] == "coreset-bench-example" and claim["verdict"] == "not testable" and claim["margin"] == 2.0

    out = runner.invoke(cli.app, ["results", "--json", "--db", str(db)])
    runs = json.loads(out.stdout)
    assert len(runs) == 2 and {r["method"] for r in runs} == {"lowloss"}
    for r in runs:
        assert r["status"] == "done" and r["package"] == "coreset-bench-example"
        assert r["environment"]["plugin_package_version"] == "0.1.0"
        assert r["params"] == {"class_balanced": True, "epoch": -1}
        assert r["info"]["signals"] == ["loss"] and r["timings"]["proxy_s"] > 0
        assert r["info"]["realized_size"] == r["info"]["budget"]
        # class-balanced: the histogram follows the pool's class sizes
        hist = r["info"]["class_histogram"]
        assert max(hist) - min(hist) <= 1
        assert 0 <= r["metrics"]["clean_acc"] <= 1
    again = runner.invoke(cli.app, ["run", "--plugin", "lowloss", "--profile", "tiny", "--no-references", "--db", str(db)])
    assert again.exit_code == 0 and "0 cell(s) to run, 2 already done" in again.stdout


def _pytest(tests_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORESET_BENCH_") and k != "PYTEST_ADDOPTS"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(tests_dir), "-q", "-p", "no:cacheprovider"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_examples_own_tests_pass():
    proc = _pytest(Path("examples/coreset-bench-example/tests"), REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout


@pytest.mark.slow
def test_the_examples_tests_catch_a_broken_method(tmp_path):
    """The testing kit must fail the example's suite when the method breaks the contract."""
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    src = copy / "coreset_bench_example.py"
    text = src.read_text()
    broken = text.replace("keep = np.sort(keep.astype(np.int64))", "keep = np.sort(np.append(keep, keep[0]).astype(np.int64))")
    assert broken != text
    src.write_text(broken)
    proc = _pytest(copy / "tests", copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "duplicate indices" in proc.stdout
