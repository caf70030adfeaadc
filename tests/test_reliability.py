"""Reliability: crash-resume, concurrent stores, write failures, the Ray executor."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from coreset_bench.cli import main; main()"]


def _cli(args, cwd, **kw):
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, env=env, **kw)


def _rows(db: Path):
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT key, status, finished, id FROM run").fetchall()
    finally:
        con.close()


def _metric_dupes(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT COUNT(*) FROM (SELECT run_id, name, COUNT(*) c FROM metric GROUP BY run_id, name HAVING c > 1)").fetchone()[0]
    finally:
        con.close()


def test_sigkill_mid_run_then_resume(tmp_path):
    db = tmp_path / "r.db"
    args = ["run", "--plugin", "random", "--profile", "tiny", "--seeds", "0,1,2,3,4,5", "--db", str(db)]
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(CLI + args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    done_before: list = []
    while time.time() < deadline:
        time.sleep(0.05)
        if db.exists():
            try:
                done_before = [r for r in _rows(db) if r[1] == "done"]
            except sqlite3.OperationalError:
                continue
            if len(done_before) >= 1:
                break
        if proc.poll() is not None:
            break
    assert proc.poll() is None, "the run finished before it could be killed; make the profile longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {k: (s, f, i) for k, s, f, i in _rows(db)}
    assert any(s != "done" for s, _f, _i in before.values()), "some cells must be unfinished at the kill"
    res = _cli(args, tmp_path)
    assert res.returncode == 0, res.stderr
    after = _rows(db)
    keys = [k for k, *_ in after]
    assert len(keys) == len(set(keys)) == 18  # 3 cells x 6 seeds, each exactly once
    assert all(s == "done" for _k, s, _f, _i in after)
    for k, s, f, i in after:
        if before.get(k, ("",))[0] == "done":  # finished cells kept as they were
            assert (s, f, i) == before[k]
    assert _metric_dupes(db) == 0
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_two_processes_one_database(tmp_path):
    db = tmp_path / "shared.db"
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    # overlapping work: both runs include the same random cells
    a = subprocess.Popen(CLI + ["run", "--plugin", "random", "--profile", "tiny", "--seeds", "0,1", "--db", str(db)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    b = subprocess.Popen(CLI + ["run", "--plugin", "random", "--profile", "tiny", "--seeds", "1,2", "--db", str(db)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out_a, err_a = a.communicate(timeout=300)
    out_b, err_b = b.communicate(timeout=300)
    assert a.returncode == 0, err_a
    assert b.returncode == 0, err_b
    assert "locked" not in err_a + err_b
    rows = _rows(db)
    keys = [k for k, *_ in rows]
    assert len(keys) == len(set(keys)) == 9  # 3 cells x seeds {0, 1, 2}
    assert all(s == "done" for _k, s, _f, _i in rows)
    assert _metric_dupes(db) == 0
    con = sqlite3.connect(db)
    try:  # each cell claimed (and computed) once: a second claim of a row would count an attempt
        assert con.execute("SELECT key, attempts FROM run WHERE attempts != 1").fetchall() == []
    finally:
        con.close()


def test_full_disk_during_write_leaves_consistent_store(tmp_path, monkeypatch):
    from coreset_bench import plugins
    from coreset_bench.runner import default_context, execute, make_plan
    from coreset_bench.store import Store, StoreError

    plugins.load_plugins()
    store = Store(tmp_path / "d.db")
    t = plugins.track("coreset")
    prof = t.profile("tiny")
    plan = make_plan(t, prof, [plugins.method("random")], store, references=False)
    calls = {"n": 0}
    real = Store._write_artifact

    def flaky(self, a):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, a)

    monkeypatch.setattr(Store, "_write_artifact", flaky)
    ctx = default_context(tmp_path, "cpu", None)
    with pytest.raises(StoreError, match="No space left on device"):
        execute(plan, store, ctx)
    rows = store.results()
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 1 and done[0]["metrics"]["clean_acc"] > 0
    # the cell whose write failed has no partial metrics
    assert all(not r["metrics"] for r in rows if r["status"] != "done")
    assert store.integrity() == "ok"
    monkeypatch.setattr(Store, "_write_artifact", real)
    plan2 = make_plan(t, prof, [plugins.method("random")], store, references=False)
    assert len(plan2.todo) == 1
    execute(plan2, store, ctx)
    assert all(r["status"] == "done" for r in store.results())


def test_unwritable_results_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = _cli(["run", "--plugin", "random", "--profile", "tiny", "--db", str(blocker / "sub" / "x.db")], tmp_path)
    assert res.returncode == 2
    assert "Error:" in res.stderr and "--db" in res.stderr
    assert "Traceback" not in res.stderr
    assert blocker.read_text() == "not a directory"


@pytest.mark.slow
def test_ray_executor_matches_inprocess(tmp_path):
    """Starts a local Ray cluster (half a minute or more on 2 cores), runs, stops it."""
    pytest.importorskip("ray", reason="the dev extra installs Ray")
    db_ray, db_local = tmp_path / "ray.db", tmp_path / "local.db"
    r1 = _cli(["run", "--plugin", "random", "--profile", "tiny", "--executor", "ray", "--jobs", "2", "--db", str(db_ray)], tmp_path, timeout=300)
    assert r1.returncode == 0, r1.stderr
    r2 = _cli(["run", "--plugin", "random", "--profile", "tiny", "--db", str(db_local)], tmp_path / "..", timeout=300)
    assert r2.returncode == 0, r2.stderr
    a = json.loads(_cli(["results", "--json", "--db", str(db_ray)], tmp_path).stdout)
    b = json.loads(_cli(["results", "--json", "--db", str(db_local)], tmp_path).stdout)
    ma = {r["key"]: r["metrics"]["clean_acc"] for r in a}
    mb = {r["key"]: r["metrics"]["clean_acc"] for r in b}
    assert ma == mb and len(ma) == 3


# ---- workers die with their driver (issue 24, item 12) ----------------------------------------


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for f in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out |= {int(x) for x in f.read_text().split()}
        except OSError:
            pass
    return out


def _wait_gone(pids, seconds: float) -> set[int]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        alive = {p for p in pids if _alive(p)}
        if not alive:
            return set()
        time.sleep(0.1)
    return {p for p in pids if _alive(p)}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("pdeathsig", [True, False], ids=["pdeathsig-and-watch", "watch-only"])
def test_die_with_parent_ends_a_child_whose_parent_is_killed(tmp_path, pdeathsig):
    grandchild = (
        "import os, sys, time\n"
        "import coreset_bench.lifetime as L\n"
        + ("" if pdeathsig else "L._set_pdeathsig = lambda sig: False\n")
        + "L.die_with_parent(interval=0.1)\n"
        "print(os.getpid(), flush=True)\n"
        "time.sleep(120)\n"
    )
    middle = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {grandchild!r}], stdout=sys.stdout)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", middle], stdout=subprocess.PIPE, text=True)
    pid = 0
    try:
        pid = int(proc.stdout.readline())
        assert _alive(pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _wait_gone({pid}, 5) == set(), "the child outlived its killed parent"
    finally:
        proc.kill()
        proc.wait()
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_kill_9_of_the_driver_takes_its_pool_workers_with_it(tmp_path):
    db = tmp_path / "r.db"
    args = ["run", "--plugin", "random", "--profile", "tiny", "--jobs", "2", "--seeds", "0,1,2,3", "--db", str(db)]
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(CLI + args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 180
        workers: set[int] = set()
        while time.time() < deadline and proc.poll() is None:
            workers = {p for p in _children(proc.pid) if _alive(p)}
            if len(workers) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None and len(workers) >= 2, "the run ended before its two workers were seen"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        survivors = _wait_gone(workers, 5)
        assert survivors == set(), f"pool workers {sorted(survivors)} outlived the killed driver"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in workers:  # do not leave a failed test's survivors running
            if _alive(p):
                os.kill(p, signal.SIGKILL)
