"""Start-up cost of the command line (issue 23, item 7).

Runs each command N times in a fresh interpreter through the real entry point
(``coreset_bench.cli:main``) and reports the median wall time and the median CPU time
(user + system of the child: what the command costs, independent of how loaded the machine is),
beside a bare ``import torch``, and whether the command imported torch or loaded plugins.

    python benchmarks/bench_startup.py [--repeats 5] [--db results/coreset-bench.db]
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

PROBE = (
    "import sys, json, atexit\n"
    "def _report():\n"
    "    sys.stderr.write('\\nPROBE ' + json.dumps({'torch': 'torch' in sys.modules, 'plugins': 'coreset_bench.registry' in sys.modules}) + '\\n')\n"
    "atexit.register(_report)\n"
    "sys.argv = ['coreset-bench'] + sys.argv[1:]\n"
    "from coreset_bench.cli import main\n"
    "main()\n"
)


def measure(argv: list[str], repeats: int) -> dict[str, object]:
    walls, cpus, probe = [], [], {}
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        res = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "CORESET_BENCH_THREADS": "1"})
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        for line in res.stderr.splitlines():
            if line.startswith("PROBE "):
                probe = json.loads(line[6:])
    return {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3), **probe}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--db", default=None, help="database for `results` (default: an empty temporary one)")
    args = ap.parse_args()
    db = args.db or os.path.join(tempfile.mkdtemp(), "r.db")
    if args.db is None:
        from coreset_bench.store import Store

        Store(db).close()
    py = sys.executable
    rows = {
        "import torch": [py, "-c", "import torch"],
        "--version": [py, "-c", PROBE, "--version"],
        "--help": [py, "-c", PROBE, "--help"],
        "run --help": [py, "-c", PROBE, "run", "--help"],
        "results": [py, "-c", PROBE, "results", "--db", db],
        "tracks": [py, "-c", PROBE, "tracks"],
    }
    print(f"{'command':14} {'wall s':>8} {'cpu s':>8}  torch  plugins")
    for name, argv in rows.items():
        r = measure(argv, args.repeats)
        print(f"{name:14} {r['wall_s']:8.3f} {r['cpu_s']:8.3f}  {str(r.get('torch', '-')):5}  {r.get('plugins', '-')}")
    print(f"(median of {args.repeats}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
