"""A real two-node Ray cluster over a real PostgreSQL store (issue 39, item 3).

Starts a Ray head and a second Ray node on this machine as separate processes (``ray start
--head``, ``ray start --address``; both listen on 127.0.0.1 only), runs ``coreset-bench run
--executor ray --address ... --db postgresql://...`` on the tiny profile with a proxy-based
method, SIGKILLs one Ray worker process while it runs a cell, and checks that

* the cells ran on both nodes (each cell records its Ray node),
* every cell was stored exactly once (no duplicate rows, one claim each) although one was retried,
* the proxy signals were computed once per seed, on the shared results directory, and read from
  there by the other cells whatever node ran them (``proxy_shared``).

Slow (Ray's start-up is half a minute on 2 cores): ``bash .ci/run`` runs it before the default
suite (``pytest -m slow tests/test_ray_cluster.py``). Every server it starts is stopped after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray", reason="the dev extra installs Ray")

CLI = [sys.executable, "-c", "import sys; from coreset_bench.cli import main; sys.argv[0] = 'coreset-bench'; main()"]


def _ray_cli() -> list[str]:
    """Ray's command line run by this interpreter (so the nodes' workers use this environment)."""
    return [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ, CORESET_BENCH_LOAD_PLUGINS="core,random,full,standard,easycore", CORESET_BENCH_THREADS="1", OMP_NUM_THREADS="1", COLUMNS="200", RAY_USAGE_STATS_ENABLED="0")
    env.pop("CORESET_BENCH_DB", None)
    env.pop("RAY_ADDRESS", None)
    return env


def _q(url: str, sql: str) -> list[tuple]:
    from coreset_bench.store import resolve_url

    eng = create_engine(resolve_url(url))
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        eng.dispose()


def _cell_workers() -> list[int]:
    """PIDs of Ray worker processes running a cell right now (Ray titles them ``ray::_remote_cell``)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(b"ray::_remote_cell"):
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _wait_nodes(address: str, n: int, seconds: float = 300) -> None:
    code = (
        "import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
        "print(sum(1 for x in ray.nodes() if x['Alive']))"
    )
    deadline = time.time() + seconds
    while time.time() < deadline:
        res = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, env=_env(), timeout=300)
        if res.returncode == 0 and res.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(2)
    raise AssertionError(f"the Ray cluster at {address} did not reach {n} nodes")


@pytest.fixture
def ray_cluster(tmp_path):
    """A Ray head and a second Ray node (1 CPU each), both on 127.0.0.1, as separate process
    groups that this fixture owns (``ray start --block``); their groups are ended after, so
    no other Ray instance on the machine is touched."""
    port = _free_port()
    ray_cli = _ray_cli()
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block"]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen([*ray_cli, "start", "--head", f"--port={port}", "--include-dashboard=false", *common], env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        address = f"127.0.0.1:{port}"
        _wait_nodes(address, 1)
        procs.append(subprocess.Popen([*ray_cli, "start", f"--address={address}", *common], env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        _wait_nodes(address, 2)
        yield address
    finally:
        for p in reversed(procs):
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue


def test_two_ray_nodes_share_one_postgresql_store_and_retry_a_killed_cell(ray_cluster, pg_db, tmp_path):
    seeds = "0,1,2"
    n_cells = 6  # tiny: 2 budgets x 3 seeds
    args = ["run", "--plugin", "easycore", "--profile", "tiny", "--seeds", seeds, "--no-references", "--executor", "ray", "--address", ray_cluster, "--db", pg_db, "--jobs", "2"]
    proc = subprocess.Popen(CLI + args, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    try:
        deadline = time.time() + 600
        while killed is None and time.time() < deadline and proc.poll() is None:
            pids = _cell_workers()
            if pids:
                time.sleep(0.5)  # let the cell get under way
                if pids[0] in _cell_workers():
                    os.kill(pids[0], signal.SIGKILL)
                    killed = pids[0]
            time.sleep(0.2)
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no Ray worker was seen running a cell"
    assert proc.returncode == 0, (out[-3000:], err[-3000:])

    rows = _q(pg_db, "SELECT key, status, attempts, info FROM run")
    keys = [r[0] for r in rows]
    assert len(keys) == len(set(keys)) == n_cells
    assert {r[1] for r in rows} == {"done"} and {r[2] for r in rows} == {1}
    assert _q(pg_db, "SELECT run_id, name FROM metric GROUP BY run_id, name HAVING COUNT(*) > 1") == []
    infos = [json.loads(r[3]) for r in rows]
    nodes = {i.get("ray_node") for i in infos}
    assert None not in nodes and len(nodes) == 2, nodes  # both nodes ran cells
    # one proxy per seed, computed once and read from the shared results directory by the rest
    assert sum(not i["proxy_shared"] for i in infos) == len(seeds.split(",")), [(i.get("ray_node"), i["proxy_shared"]) for i in infos]
    assert (tmp_path / "results" / "cache" / "signals").is_dir()
