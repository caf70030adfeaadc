"""The scripts that print the numbers quoted in results/README.md run on the committed entries
and print what the README quotes (a change to the board's statistics shows up here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_track_reading_prints_rows_intervals_and_pairs():
    out = _run("benchmarks/track_reading.py", "results/entries", "pooling/quick@1", "--percent",
               "--metrics", "idle_saving,hit_rate", "--pairs", "intelligent-pooling:ssa-pooling,nope:static")
    assert "# pooling/quick@1: 54 cells, 6 rows, seeds [0, 1, 2]" in out
    row = next(line for line in out.splitlines() if line.startswith("| intelligent-pooling |"))
    assert "9/9" in row and "[" in row  # an interval, not "no interval"
    assert "- intelligent-pooling − ssa-pooling: +" in out
    assert "- nope − static: missing row (nope)" in out


def test_study_reading_shares_the_loader():
    out = _run("benchmarks/study_reading.py", "results/entries", "coreset/cifar10-study@1")
    assert out.startswith("# coreset/cifar10-study@1: 126 cells")
    assert "| easycore |" in out
