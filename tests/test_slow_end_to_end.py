"""Slow end-to-end checks on real data (run with ``pytest -m slow``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from coreset_bench.cli import main; main()"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def _cli(args, cwd):
    # the defaults a user gets: one cell per core, one thread per cell
    env = {k: v for k, v in os.environ.items() if k not in ("CORESET_BENCH_JOBS", "CORESET_BENCH_THREADS")}
    env["COLUMNS"] = "200"
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, env=env, timeout=3600)


def test_quick_profile_end_to_end_through_the_cli(tmp_path):
    """The README's main job: every cell of coreset/quick@2 for random (and the full reference)."""
    db = tmp_path / "q.db"
    res = _cli(["run", "--plugin", "random", "--profile", "quick", "--db", str(db)], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(_cli(["results", "--json", "--db", str(db)], tmp_path).stdout)
    assert len(rows) == 12 + 6 and all(r["status"] == "done" for r in rows)
    for r in rows:
        m = r["metrics"]
        # AutoAttack runs on 100 of PGD's 539 points: the order is checked on those (check_order_ok)
        assert 0 <= m["pgd_acc"] <= m["clean_acc"] + 0.01 and m["check_order_ok"] == 1.0
        assert m["check_ball_ok"] == 1.0
        assert r["info"]["flags"] == [] and len(r["info"]["per_point"]["pgd_acc"]["bits"]) == 2 * 68
    full = [r["metrics"]["clean_acc"] for r in rows if r["method"] == "full" and r["axes"]["training"] == "standard"]
    assert min(full) > 0.9  # digits with cnn-small on the whole pool
    # rerun: nothing left to do
    again = _cli(["run", "--plugin", "random", "--profile", "quick", "--db", str(db)], tmp_path)
    assert again.returncode == 0 and "0 cell(s) to run" in again.stdout


@pytest.mark.skipif(not SHARED.exists(), reason="the CIFAR-10 JPEG copy lives in ../shared/datasets (development machines and CI)")
def test_cifar10_jpeg_through_imagefolder(tmp_path):
    with tarfile.open(SHARED) as tf:
        tf.extractall(tmp_path, filter="data")
    root = tmp_path / "cifar10-jpeg"
    from coreset_bench import data as D
    from coreset_bench import plugins

    plugins.load_plugins()
    ds = D.load_imagefolder(str(root), None, tmp_path / "cache")
    assert ds.x_train.shape == (50000, 3, 32, 32) and ds.x_test.shape == (10000, 3, 32, 32)
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    assert float(ds.x_train.min()) >= 0 and float(ds.x_train.max()) <= 1
    # the decode cache serves the second load
    again = D.load_imagefolder(str(root), None, tmp_path / "cache")
    assert again.x_train.shape == ds.x_train.shape and list((tmp_path / "cache" / "datasets").glob("*.pt"))
