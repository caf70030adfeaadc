"""benchmarks/pipeline_identity.py (issue 37): a run's per-cell metrics against the committed entries."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "pipeline_identity.py"


def _compare(tmp_path, cells: dict) -> subprocess.CompletedProcess:
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"profile": "privacy/quick@2", "cells": cells}))
    return subprocess.run([sys.executable, str(SCRIPT), "compare", str(run)], capture_output=True, text=True, timeout=120)


def _published_cell():
    entry = json.loads((REPO / "results" / "entries" / "privacy" / "quick@2" / "loss@1.json").read_text())
    (cell,) = entry["cells"]
    row = {"metrics": dict(cell["metrics"]), "error": None, "method": "loss", "axes": cell["axes"], "repeat": cell["repeat"]}
    return cell["key"], row


def test_the_committed_values_compare_identical_and_one_changed_bit_differs(tmp_path):
    key, row = _published_cell()
    same = _compare(tmp_path, {key: row})
    assert same.returncode == 0 and "1 cells bit-identical" in same.stdout, same.stdout + same.stderr
    row["metrics"]["attack_s"] = 123.0  # seconds are measured, not compared
    assert _compare(tmp_path, {key: row}).returncode == 0
    row["metrics"]["auc"] = math.nextafter(row["metrics"]["auc"], 1.0)  # one bit off
    diff = _compare(tmp_path, {key: row})
    assert diff.returncode == 1 and "DIFFERS" in diff.stdout and "auc" in diff.stdout, diff.stdout


def test_two_run_files_compare_their_info_with_info_and_skip_measured_seconds(tmp_path):
    row = {"metrics": {"exit_auc": 0.5, "distill_s": 1.0}, "info": {"backbone_hash": "ab", "data_s": 3.0, "teachers": {"mv": 1}}, "error": None,
           "method": "wise", "axes": {"dataset": "synth-motion"}, "repeat": 0}
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(json.dumps({"profile": "video/tiny@2", "cells": {"k": row}}))

    def compare(other: dict, *extra: str) -> subprocess.CompletedProcess:
        after.write_text(json.dumps({"profile": "video/tiny@2", "cells": {"k": other}}))
        return subprocess.run([sys.executable, str(SCRIPT), "compare", str(after), "--against", str(before), *extra], capture_output=True, text=True, timeout=120)

    same = compare({**row, "metrics": {**row["metrics"], "distill_s": 9.0}, "info": {**row["info"], "data_s": 7.0}}, "--info")
    assert same.returncode == 0 and "1 cells bit-identical" in same.stdout and "2 info keys" in same.stdout, same.stdout + same.stderr
    changed = {**row, "info": {**row["info"], "teachers": {"mv": 2}}}
    assert compare(changed).returncode == 0  # without --info only the metrics count
    diff = compare(changed, "--info")
    assert diff.returncode == 1 and "info.teachers" in diff.stdout, diff.stdout
    assert compare(changed, "--info", "--ignore-info", "teachers").returncode == 0
