"""Start-up cost of the command line (issue 23 item 7, issue 41 item 4).

Runs each command N times in a fresh interpreter through the real entry point
(``coreset_bench.cli:main``) and reports the median wall time, its ratio to a bare
``python -c pass`` (the floor no command can beat; the ratio is comparable across machines and
loads), the median CPU time (user + system of the child), and whether the command imported torch
or loaded plugins. The listing commands (plugins, plugins show, tracks, profiles, run --dry-run)
answer from the plugin metadata cache (``coreset_bench.metacache``): it is built once before
the timed runs, in a temporary cache directory, as the first such command after an install does.

    python benchmarks/bench_startup.py [--repeats 5] [--db results/coreset-bench.db] [--render]

``--render`` also times ``coreset-bench leaderboard --entries results/entries`` (the committed
board, once; target 10 s on an idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = (
    "import sys, json, atexit\n"
    "def _report():\n"
    "    sys.stderr.write('\\nPROBE ' + json.dumps({'torch': 'torch' in sys.modules, 'plugins': any(m.startswith('coreset_bench.plugins.') for m in sys.modules)}) + '\\n')\n"
    "atexit.register(_report)\n"
    "sys.argv = ['coreset-bench'] + sys.argv[1:]\n"
    "from coreset_bench.cli import main\n"
    "main()\n"
)
REPO = Path(__file__).resolve().parent.parent


def measure(argv: list[str], repeats: int, env: dict[str, str]) -> dict[str, object]:
    walls, cpus, probe = [], [], {}
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = subprocess.run(argv, capture_output=True, text=True, env=env)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(argv[3:])} failed (exit {res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
        for line in res.stderr.splitlines():
            if line.startswith("PROBE "):
                probe = json.loads(line[6:])
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), **probe}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--db", default=None, help="database for `results` and `run --dry-run` (default: an empty temporary one)")
    ap.add_argument("--render", action="store_true", help="also time rendering the committed board (results/entries)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    db = args.db or str(tmp / "r.db")
    if args.db is None:
        from coreset_bench.store import Store

        Store(db).close()
    env = {**os.environ, "CORESET_BENCH_THREADS": "1", "CORESET_BENCH_CACHE_DIR": str(tmp / "cache")}
    env.pop("CORESET_BENCH_METADATA_CACHE", None)
    py = sys.executable
    rows = {
        "--version": ["--version"],
        "--help": ["--help"],
        "run --help": ["run", "--help"],
        "results": ["results", "--db", db],
        "plugins": ["plugins"],
        "plugins show": ["plugins", "show", "easycore"],
        "tracks": ["tracks"],
        "profiles": ["profiles"],
        "run --dry-run": ["run", "--plugin", "easycore", "--dry-run", "--db", db],
    }
    t0 = time.perf_counter()
    for name in ("plugins", "run --dry-run"):  # build the caches, as the first command after an install does
        subprocess.run([py, "-c", PROBE, *rows[name]], capture_output=True, env=env, check=True)
    build = time.perf_counter() - t0
    floor = measure([py, "-c", "pass"], args.repeats, env)
    torch = measure([py, "-c", "import torch"], args.repeats, env)
    print(f"{'command':16} {'wall s':>7} {'× pass':>7} {'cpu s':>7}  torch  plugins")
    print(f"{'python -c pass':16} {floor['wall_s']:7.3f} {1.0:7.1f} {floor['cpu_s']:7.3f}")
    print(f"{'import torch':16} {torch['wall_s']:7.3f} {torch['wall_s'] / floor['wall_s']:7.1f} {torch['cpu_s']:7.3f}  True")
    for name, cmd in rows.items():
        r = measure([py, "-c", PROBE, *cmd], args.repeats, env)
        print(f"{name:16} {r['wall_s']:7.3f} {r['wall_s'] / floor['wall_s']:7.1f} {r['cpu_s']:7.3f}  {str(r.get('torch', '-')):5}  {r.get('plugins', '-')}")
    print(f"(median of {args.repeats}; the metadata caches were built first in {build:.1f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    if args.render:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([py, "-c", PROBE, "leaderboard", "--entries", str(REPO / "results" / "entries"), "--out", str(tmp / "site")], capture_output=True, env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"leaderboard --entries results/entries: {time.perf_counter() - t0:.1f} s wall, {cpu:.1f} s CPU (plugins loaded and the board rendered)")


if __name__ == "__main__":
    main()
