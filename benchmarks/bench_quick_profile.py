"""Target 4 of the performance issue: ``coreset-bench run --plugin easycore`` on the quick profile
from an empty database and cache, in at most 2 minutes on 2 cores.

Runs the CLI twice in one command, each time in a fresh directory: first one cell at a time in
process (``--jobs 1``, the serial baseline), then with the defaults a user gets (one cell per
core, one torch thread per cell). Prints both wall times, their ratio, and whether the two runs
stored the same numbers (they must: every CPU cell computes with one thread either way).

With ``--baseline PROFILE`` (issue 41) it instead runs the default-parallelism main job of the
baseline profile and then of ``--profile``, each from an empty directory, in one command, and
prints both wall times and their ratio (on a shared machine the ratio is the comparable number).

Usage::

    python benchmarks/bench_quick_profile.py [--plugin easycore] [--profile quick]
    python benchmarks/bench_quick_profile.py --profile quick@3 --baseline quick@2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-c", "from coreset_bench.cli import main; main()"]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    res = subprocess.run(CLI + args, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"run failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    return wall


def _numbers(db: Path, cwd: Path, env: dict[str, str]) -> dict[str, dict[str, float]]:
    out = subprocess.run(CLI + ["results", "--json", "--db", str(db)], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return {r["key"]: {k: v for k, v in r["metrics"].items() if not k.endswith("_s")} for r in json.loads(out.stdout)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plugin", default="easycore")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--baseline", default="", help="compare the default run of this profile with --profile's (no serial run)")
    a = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORESET_BENCH_")}
    env["COLUMNS"] = "200"
    if a.baseline:
        walls = {}
        for prof in (a.baseline, a.profile):
            with tempfile.TemporaryDirectory() as tmp:
                cwd = Path(tmp)
                db = cwd / "results" / "r.db"
                t_cpu = os.times()
                walls[prof] = _run(["run", "--plugin", a.plugin, "--profile", prof, "--db", str(db)], cwd, env)
                cpu = sum(getattr(os.times(), f) - getattr(t_cpu, f) for f in ("children_user", "children_system"))
                cells = len(_numbers(db, cwd, env))
                print(f"{prof:18s} {walls[prof]:7.1f} s wall, {cpu:7.1f} CPU-s, {cells} cells", flush=True)
        print(f"{a.profile} / {a.baseline}: {walls[a.profile] / walls[a.baseline]:.2f}x wall; {a.profile} {walls[a.profile]:.1f} s (target <= 120 s on 2 idle cores)")
        return
    walls, numbers = {}, {}
    for label, extra in (("serial (--jobs 1)", ["--jobs", "1"]), ("default", [])):
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            db = cwd / "results" / "r.db"
            walls[label] = _run(["run", "--plugin", a.plugin, "--profile", a.profile, "--db", str(db), *extra], cwd, env)
            numbers[label] = _numbers(db, cwd, env)
            print(f"{label:18s} {walls[label]:7.1f} s wall, {len(numbers[label])} cells", flush=True)
    base, new = walls["serial (--jobs 1)"], walls["default"]
    print(f"speed-up of the default over the serial run: {base / new:.2f}x; default run {new:.1f} s (target <= 120 s on 2 cores)")
    same = numbers["serial (--jobs 1)"] == numbers["default"]
    print(f"same numbers in both runs: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
