"""The store's guarantees on both back ends, SQLite and a real PostgreSQL server (issue 39).

Each test runs twice through the ``store_url`` fixture (tests/conftest.py): on an SQLite file and
on a new database of the PostgreSQL server that ``.ci/postgres.sh`` starts (skipped, with the
reason, where no server can be had). Runs go through the real entry point in subprocesses, as a
user's (or a cluster's) processes would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text

from coreset_bench import store as store_mod
from coreset_bench.store import Store, StoreError, resolve_url, utcnow
from coreset_bench.store_copy import row_counts, store_digest
from coreset_bench.tracks.base import Cell

CLI = [sys.executable, "-c", "import sys; from coreset_bench.cli import main; sys.argv[0] = 'coreset-bench'; main()"]
METHOD = types.SimpleNamespace(package="fake-pkg")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, CORESET_BENCH_LOAD_PLUGINS="core,random,full,standard", CORESET_BENCH_THREADS="1", CORESET_BENCH_JOBS="1", COLUMNS="200", OMP_NUM_THREADS="1")
    env.pop("CORESET_BENCH_DB", None)
    env.update(extra)
    return env


def cli(args: list[str], cwd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, cwd=cwd, capture_output=True, text=True, env=_env(), timeout=600, **kw)


def q(url: str, sql: str) -> list[tuple]:
    eng = create_engine(resolve_url(url))
    try:
        with eng.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        eng.dispose()


def cell(budget: float = 0.5, repeat: int = 0) -> Cell:
    return Cell("coreset", "coreset/tiny@1", "m", "1", {"k": 1}, {"dataset": "digits", "budget": budget}, repeat)


def _exactly_once(url: str, n_keys: int) -> None:
    keys = [r[0] for r in q(url, "SELECT key FROM run")]
    assert len(keys) == len(set(keys)) == n_keys
    assert q(url, "SELECT status, COUNT(*) FROM run GROUP BY status") == [("done", n_keys)]
    assert q(url, "SELECT key, attempts FROM run WHERE attempts != 1") == []  # claimed (computed) once
    assert q(url, "SELECT run_id, name FROM metric GROUP BY run_id, name HAVING COUNT(*) > 1") == []
    assert q(url, "SELECT run_id, kind, name FROM artifact GROUP BY run_id, kind, name HAVING COUNT(*) > 1") == []


# ---- migrations ---------------------------------------------------------------------------------


def test_a_run_migrates_an_empty_database_and_a_second_run_changes_nothing(store_url, tmp_path):
    args = ["run", "--plugin", "random", "--profile", "tiny", "--seeds", "0", "--db", store_url]
    first = cli(args, tmp_path)
    assert first.returncode == 0, first.stderr
    s = Store(store_url)
    assert s.migrations_applied == [] and s.applied_migrations() == [n for n, _ in store_mod.MIGRATIONS]
    before = (row_counts(s), store_digest(s))
    s.close()
    second = cli(args, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already done" in (second.stdout + second.stderr)
    s = Store(store_url)
    assert (row_counts(s), store_digest(s)) == before
    assert before[0]["run"] == 3


def _insert_old_run(url: str, key: str, status: str, error: str | None) -> None:
    cols = ["key", "track", "profile", "method", "method_version", "package", "package_version", "params", "axes", "repeat", "seed", "status", "error", "timings", "info", "environment", "attempts", "created"]
    vals = [key, "coreset", "coreset/tiny@1", "m", "1", "p", "", "{}", "{}", 0, 0, status, error, "{}", "{}", "{}", 1, utcnow()]
    eng = create_engine(resolve_url(url))
    with eng.begin() as conn:
        conn.execute(text(f"INSERT INTO run ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"), dict(zip(cols, vals)))
    eng.dispose()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_migrations_from_every_earlier_schema_version(store_url, monkeypatch, version):
    """A store left at schema version ``version`` (its first ``version`` migrations, with the
    shape those versions had: no lease columns before m004, duplicate metric rows allowed before
    m003, Ctrl-C'd cells stored as failures before m005, no meta table before m006) is brought up
    to date on its next open, keeping (and, where a migration says so, fixing) its rows."""
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:version])
    Store(store_url).close()
    monkeypatch.undo()
    if version < 4:  # m001 creates today's tables: take the lease columns away, as before m004
        eng = create_engine(resolve_url(store_url))
        with eng.begin() as conn:
            conn.execute(text("ALTER TABLE run DROP COLUMN owner"))
            conn.execute(text("ALTER TABLE run DROP COLUMN heartbeat"))
        eng.dispose()
    _insert_old_run(store_url, "cut", "failed", "interrupted (Ctrl-C); rerun the same command")
    _insert_old_run(store_url, "bad", "failed", "plugin 'm' failed: boom")
    run_id = q(store_url, "SELECT id FROM run WHERE key = 'bad'")[0][0]
    eng = create_engine(resolve_url(store_url))
    with eng.begin() as conn:
        conn.execute(text(f"INSERT INTO metric (run_id, name, value) VALUES ({run_id}, 'acc', 0.5)"))
        if version < 3:  # no unique index yet: an old version could write a duplicate
            conn.execute(text(f"INSERT INTO metric (run_id, name, value) VALUES ({run_id}, 'acc', 0.7)"))
    eng.dispose()

    s = Store(store_url)
    names = [n for n, _ in store_mod.MIGRATIONS]
    assert s.migrations_applied == names[version:]
    assert s.applied_migrations() == names
    assert sorted((r.key, r.status) for r in s.runs()) == [("bad", "failed"), ("cut", "interrupted" if version < 5 else "failed")]
    assert q(store_url, f"SELECT name, value FROM metric WHERE run_id = {run_id}") == [("acc", 0.5)]  # the first of duplicates kept
    assert len(s.hidden_salt()) == 32
    # the lease columns work after the migration
    assert s.claim(cell(), METHOD, {}) == "claimed" and len(s.runs(status="running")) == 1
    s.close()
    assert Store(store_url).migrations_applied == []


def test_concurrent_first_opens_apply_the_migrations_once(store_url, tmp_path):
    code = "import sys; from coreset_bench.store import Store; Store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, store_url], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    assert sorted(r[0] for r in q(store_url, "SELECT name FROM _migrations")) == sorted(n for n, _ in store_mod.MIGRATIONS)


# ---- exactly once -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 4])
def test_processes_running_one_plan_compute_each_cell_once(store_url, tmp_path, n):
    """``n`` runs of overlapping plans against one database: every cell computed once, no
    duplicate metric or artifact rows (the claim and the finish are row-locked transactions)."""
    seeds = ["0,1,2", "1,2,3", "2,3,0", "3,0,1"][:n]
    procs = [
        subprocess.Popen(CLI + ["run", "--plugin", "random", "--profile", "tiny", "--seeds", s, "--db", store_url], cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for s in seeds
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert not any("Traceback" in o[1] for o in outs)
    _exactly_once(store_url, 3 * len({x for s in seeds for x in s.split(",")}))


# ---- leases, kills, Ctrl-C ----------------------------------------------------------------------


def test_a_lease_is_kept_while_live_and_taken_over_when_stale_or_dead(store_url):
    a, b = Store(store_url), Store(store_url)
    c = cell()
    assert a.claim(c, METHOD, {}) == "claimed"
    assert b.claim(c, METHOD, {}) == "busy"  # a's lease is live (its process runs, its heartbeat is fresh)
    old = utcnow() - timedelta(seconds=store_mod.STALE_S + 5)
    eng = create_engine(resolve_url(store_url))
    with eng.begin() as conn:  # a's machine went silent: another host's owner, no heartbeat since
        conn.execute(text("UPDATE run SET owner = 'other-host/1/1/x', heartbeat = :t"), {"t": old})
    eng.dispose()
    assert b.claim(c, METHOD, {}) == "claimed"
    assert a.finish(c.key, metrics={"x": 1.0}, timings={}, info={}) is True  # first writer wins
    assert b.finish(c.key, metrics={"x": 2.0}, timings={}, info={}) is False
    assert q(store_url, "SELECT value FROM metric") == [(1.0,)]


def _wait_for(url: str, sql: str, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if q(url, sql)[0][0]:
                return
        except Exception:  # noqa: BLE001 - not created yet
            pass
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before the signal: {proc.communicate()[1][-2000:]}")
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the run")


def test_a_killed_writers_cells_are_taken_over_exactly_once(store_url, tmp_path):
    args = ["run", "--plugin", "random", "--profile", "tiny", "--seeds", "0,1,2,3", "--db", store_url]
    proc = subprocess.Popen(CLI + args, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(store_url, "SELECT COUNT(*) FROM run WHERE status = 'done'", proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = dict(q(store_url, "SELECT key, status FROM run"))
    assert "running" in before.values() or len(before) < 12
    res = cli(args, tmp_path)  # same machine: the dead owner's lease is taken over at once
    assert res.returncode == 0, res.stderr
    keys = [r[0] for r in q(store_url, "SELECT key FROM run")]
    assert len(keys) == len(set(keys)) == 12
    assert q(store_url, "SELECT status, COUNT(*) FROM run GROUP BY status") == [("done", 12)]
    assert q(store_url, "SELECT run_id, name FROM metric GROUP BY run_id, name HAVING COUNT(*) > 1") == []


def test_ctrl_c_leaves_cut_cells_interrupted(store_url, tmp_path):
    args = ["run", "--plugin", "random", "--profile", "tiny", "--seeds", "0,1,2,3", "--db", store_url]
    proc = subprocess.Popen(CLI + args, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(store_url, "SELECT COUNT(*) FROM run WHERE status = 'running'", proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    statuses = [r[0] for r in q(store_url, "SELECT status FROM run")]
    assert "interrupted" in statuses and "running" not in statuses and "failed" not in statuses, statuses
    res = cli(args, tmp_path)
    assert res.returncode == 0, res.stderr
    assert q(store_url, "SELECT status, COUNT(*) FROM run GROUP BY status") == [("done", 12)]


# ---- reading, and a role that may not write (PostgreSQL) ----------------------------------------


def test_reading_commands_work_with_a_read_only_role_and_run_says_why_it_cannot(pg_db, tmp_path):
    import psycopg

    res = cli(["run", "--plugin", "random", "--profile", "tiny", "--seeds", "0", "--db", pg_db], tmp_path)
    assert res.returncode == 0, res.stderr
    role = f"reader_{pg_db.rsplit('_', 1)[1]}"
    dbname = pg_db.rsplit("/", 1)[1]
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT CONNECT ON DATABASE {dbname} TO {role}")
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    reader = pg_db.replace("postgres@", f"{role}@", 1)
    try:
        listed = cli(["results", "--json", "--db", reader], tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert len(json.loads(listed.stdout)) == 3
        site = cli(["leaderboard", "--db", reader, "--out", str(tmp_path / "site")], tmp_path)
        assert site.returncode == 0, site.stderr
        assert (tmp_path / "site" / "index.html").exists()
        exported = cli(["export", "--db", reader, "--out", str(tmp_path / "entries")], tmp_path)
        assert exported.returncode == 0, exported.stderr
        assert list((tmp_path / "entries").rglob("*.json"))
        doc = cli(["doctor", "--db", reader], tmp_path)
        assert "Traceback" not in doc.stderr + doc.stdout, doc.stderr
        assert "3 run" in doc.stdout or "runs" in doc.stdout.lower(), doc.stdout
        denied = cli(["run", "--plugin", "random", "--profile", "tiny", "--seeds", "1", "--db", reader], tmp_path)
        assert denied.returncode == 2, (denied.stdout, denied.stderr)
        assert "Traceback" not in denied.stderr
        line = [ln for ln in denied.stderr.splitlines() if ln.strip()]
        assert len(line) == 1 and "cannot write" in line[0] and "grant it write access" in line[0], denied.stderr
        assert q(pg_db, "SELECT COUNT(*) FROM run") == [(3,)]
    finally:
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute(f"REASSIGN OWNED BY {role} TO postgres")
            conn.execute(f"DROP OWNED BY {role}")
        with psycopg.connect(pg_db.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_an_unreachable_server_is_one_line(tmp_path):
    res = cli(["results", "--db", "postgresql://nobody@127.0.0.1:1/none"], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1, res.stderr


# ---- moving a store ---------------------------------------------------------------------------


def test_store_copy_moves_an_sqlite_store_to_postgresql_and_back(pg_db, tmp_path):
    src = tmp_path / "local.db"
    res = cli(["run", "--plugin", "random", "--profile", "tiny", "--seeds", "0,1", "--db", str(src)], tmp_path)
    assert res.returncode == 0, res.stderr
    moved = cli(["store", "copy", str(src), pg_db], tmp_path)
    assert moved.returncode == 0, moved.stderr
    assert "copied 6 run" in moved.stdout and "matches" in moved.stdout, moved.stdout
    a, b = Store(src, read_only=True), Store(pg_db, read_only=True)
    assert row_counts(a) == row_counts(b) and store_digest(a) == store_digest(b)
    assert a.meta("hidden_salt") == b.meta("hidden_salt")
    # the copy is a store like any other: done cells stay done, new cells get new ids
    more = cli(["run", "--plugin", "random", "--profile", "tiny", "--seeds", "0,1,2", "--db", pg_db], tmp_path)
    assert more.returncode == 0, more.stderr
    assert q(pg_db, "SELECT COUNT(*), COUNT(DISTINCT id) FROM run") == [(9, 9)]
    assert q(pg_db, "SELECT key, attempts FROM run WHERE attempts != 1") == []
    again = cli(["store", "copy", str(src), pg_db], tmp_path)
    assert again.returncode == 2 and "already holds 9 run(s)" in again.stderr
    back = tmp_path / "back.db"
    home = cli(["store", "copy", pg_db, str(back)], tmp_path)
    assert home.returncode == 0, home.stderr
    assert store_digest(Store(back, read_only=True)) == store_digest(Store(pg_db, read_only=True))


def test_store_copy_refuses_a_destination_with_runs(store_url, tmp_path):
    src = tmp_path / "src.db"
    s = Store(src)
    s.claim(cell(), METHOD, {})
    s.close()
    d = Store(store_url)
    d.claim(cell(0.2), METHOD, {})
    d.close()
    from coreset_bench.store_copy import copy_store

    with pytest.raises(StoreError, match="already holds 1 run"):
        copy_store(src, store_url)
