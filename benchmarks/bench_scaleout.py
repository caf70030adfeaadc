"""Scale-out benchmark: the process pool on SQLite against Ray on PostgreSQL (issue 39).

Runs the same small profile twice from empty stores, in this one command:

* A: ``coreset-bench run --jobs 2`` (process pool) with an SQLite file;
* B: ``coreset-bench run --executor ray --address ...`` on a two-node Ray cluster started here
  (head and second node on 127.0.0.1, 1 CPU each) with a new PostgreSQL database;

and prints each wall time and the ratio B / A, then the store's write latency per cell on each
back end (the median of ``Store.claim`` + ``Store.finish`` of a cell with 12 metrics and one
artifact, over ``--writes`` cells, in this process). PostgreSQL comes from ``--pg URL`` (an admin
URL; a database is created and dropped) or a throwaway server started with ``.ci/postgres.sh``.

    python benchmarks/bench_scaleout.py [--plugin random] [--profile tiny] [--seeds 0,1,2,3] [--pg URL]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from coreset_bench.cli import main; sys.argv[0] = 'coreset-bench'; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    e = dict(os.environ, CORESET_BENCH_THREADS="1", OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0", COLUMNS="200")
    e.pop("CORESET_BENCH_DB", None)
    return e


def timed_run(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(CLI + args, cwd=cwd, env=env(), capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"run failed: {res.stderr[-2000:]}")
    return time.perf_counter() - t0


def write_latency(url: str, n: int) -> float:
    from coreset_bench.store import Store
    from coreset_bench.tracks.base import ArtifactOut, Cell

    s = Store(url, artifacts_dir=Path(tempfile.mkdtemp()) / "artifacts")
    m = types.SimpleNamespace(package="bench")
    times = []
    for i in range(n):
        c = Cell("coreset", "coreset/bench@1", "m", "1", {}, {"dataset": "digits", "budget": 0.5}, i)
        t0 = time.perf_counter()
        s.claim(c, m, {"bench": True})
        s.finish(c.key, metrics={f"m{j}": float(j) for j in range(12)}, timings={"total_s": 1.0}, info={"i": i}, artifacts=[ArtifactOut("subset", "indices.npy", os.urandom(2048))])
        times.append(time.perf_counter() - t0)
    s.close()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plugin", default="random")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--pg", default=os.environ.get("CORESET_BENCH_TEST_PG"))
    ap.add_argument("--writes", type=int, default=50)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cb-scaleout-"))
    pg_dir = None
    admin = a.pg
    if not admin:
        pg_dir = f"/tmp/cb-bench-pg-{os.getpid()}"
        admin = subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh"), "start", pg_dir, str(free_port())], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    import psycopg

    dbname = f"cb_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {dbname}")
    pg_url = admin.rsplit("/", 1)[0] + "/" + dbname
    ray_cli = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())"]
    procs: list[subprocess.Popen] = []
    try:
        common = ["run", "--plugin", a.plugin, "--profile", a.profile, "--seeds", a.seeds, "--no-references"]
        (work / "a").mkdir()
        wall_a = timed_run([*common, "--jobs", "2", "--db", str(work / "a" / "r.db")], work / "a")
        port = free_port()
        flags = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
        procs.append(subprocess.Popen([*ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", *flags], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        time.sleep(20)
        procs.append(subprocess.Popen([*ray_cli, "start", f"--address=127.0.0.1:{port}", *flags], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        time.sleep(20)
        (work / "b").mkdir()
        wall_b = timed_run([*common, "--executor", "ray", "--address", f"127.0.0.1:{port}", "--jobs", "2", "--db", pg_url], work / "b")
        lat_sqlite = write_latency(str(work / "lat.db"), a.writes)
        lat_pg = write_latency(pg_url, a.writes)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        if pg_dir:
            subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh"), "stop", pg_dir], capture_output=True)
            shutil.rmtree(pg_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"profile {a.profile}, plugin {a.plugin}, seeds {a.seeds}, {os.cpu_count()} cores")
    print(f"A  process pool (--jobs 2) on SQLite      : {wall_a:7.1f} s")
    print(f"B  Ray, two nodes x 1 CPU, on PostgreSQL  : {wall_b:7.1f} s   (B/A = {wall_b / wall_a:.2f}; Ray start-up not included)")
    print(f"store write latency per cell (claim + finish, median of {a.writes}): SQLite {lat_sqlite * 1e3:.1f} ms, PostgreSQL {lat_pg * 1e3:.1f} ms (ratio {lat_pg / lat_sqlite:.2f})")


if __name__ == "__main__":
    main()
