"""The results store: migrations, the run life cycle, artifacts, refusing foreign files, URLs."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import types
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from coreset_bench import store as store_mod
from coreset_bench.store import DEFAULT_DB, Store, StoreError, resolve_url
from coreset_bench.tracks.base import ArtifactOut, Cell

METHOD = types.SimpleNamespace(package="fake-pkg")
ENV = {"coreset_bench": "0.1.0", "plugin_package_version": "9.9", "device": "cpu"}


def cell(budget: float = 0.5, repeat: int = 0, method: str = "m") -> Cell:
    return Cell("coreset", "coreset/tiny@1", method, "1", {"k": 1}, {"dataset": "digits", "budget": budget}, repeat)


def rows(path: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_migrations_are_applied_once_and_recorded_in_order(tmp_path, monkeypatch):
    db = tmp_path / "r.db"
    s = Store(db)
    names = [n for n, _ in store_mod.MIGRATIONS]
    assert s.migrations_applied == names == ["m001_initial", "m002_indexes", "m003_unique_rows", "m004_run_lease", "m005_interrupted_status", "m006_store_meta"]
    assert s.applied_migrations() == names
    s.close()
    again = Store(db)
    assert again.migrations_applied == []
    assert again.applied_migrations() == names
    again.close()
    assert [r[0] for r in rows(db, "SELECT name FROM _migrations ORDER BY rowid")] == names
    indexes = {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"ix_metric_run_name", "ix_run_track_profile_method"} <= indexes

    # a new migration is applied once, after the recorded ones, on the next open
    applied = []

    def m003(conn):
        applied.append(1)
        conn.execute(text("CREATE TABLE IF NOT EXISTS note (id INTEGER PRIMARY KEY, body TEXT)"))

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, ("m003_note", m003)])
    third = Store(db)
    assert third.migrations_applied == ["m003_note"]
    third.close()
    assert Store(db).migrations_applied == []
    assert applied == [1]
    assert [r[0] for r in rows(db, "SELECT name FROM _migrations ORDER BY rowid")] == [*names, "m003_note"]


def test_m005_moves_interrupted_failures_to_their_own_status(tmp_path, monkeypatch):
    """A store written before issue 23 kept Ctrl-C'd cells as `failed`; m005 re-labels them,
    and leaves real failures alone."""
    db = tmp_path / "r.db"
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:4])
    old = Store(db)
    for c, err in ((cell(0.2), "interrupted (Ctrl-C); rerun the same command"), (cell(0.5), "plugin 'm' failed: boom")):
        old.claim(c, METHOD, ENV)
        old.fail(c.key, err, None)
    old.close()
    monkeypatch.undo()
    new = Store(db)
    assert new.migrations_applied == ["m005_interrupted_status", "m006_store_meta"]
    assert [r.key for r in new.runs(status="interrupted")] == [cell(0.2).key]
    assert [r.key for r in new.runs(status="failed")] == [cell(0.5).key]


def test_m006_gives_an_older_store_its_meta_table_and_a_salt_on_first_use(tmp_path, monkeypatch):
    """A store written before the hidden-data salt gains the ``meta`` table on its next open; its
    runs are kept, and its salt is created the first time a run asks for it."""
    db = tmp_path / "r.db"
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:5])
    old = Store(db)
    old.claim(cell(0.2), METHOD, ENV)
    old.close()
    assert "meta" not in {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    monkeypatch.undo()
    new = Store(db)
    assert new.migrations_applied == ["m006_store_meta"] and len(new.runs()) == 1
    assert new.meta("hidden_salt") is None
    salt = new.hidden_salt()
    assert rows(db, "SELECT key, value FROM meta") == [("hidden_salt", salt)]


def test_delete_removes_runs_with_their_rows_but_not_live_ones(tmp_path):
    s = Store(tmp_path / "r.db")
    a, b = cell(0.2), cell(0.5)
    for c in (a, b):
        s.claim(c, METHOD, ENV)
        s.finish(c.key, metrics={"acc": 0.5}, timings={}, info={}, artifacts=[ArtifactOut("selection", "sel.npy", b"x")])
    assert s.delete([a.key, "nope"]) == 1
    assert [r.key for r in s.runs()] == [b.key]
    assert rows(tmp_path / "r.db", "SELECT COUNT(*) FROM metric")[0][0] == 1
    assert rows(tmp_path / "r.db", "SELECT COUNT(*) FROM artifact")[0][0] == 1
    other = Store(tmp_path / "r.db")
    other.claim(a, METHOD, ENV)  # running under another live run's lease: kept
    assert s.delete([a.key]) == 0 and len(s.runs()) == 2


def test_start_finish_roundtrip_with_metrics_and_content_addressed_artifacts(tmp_path):
    s = Store(tmp_path / "r.db")
    assert s.artifacts_dir == tmp_path / "artifacts"
    c1, c2 = cell(0.2), cell(0.5)
    s.start(c1, METHOD, ENV)
    s.start(c2, METHOD, ENV)
    (r1,) = s.runs(status="running", method="m", track="coreset", profile="coreset/tiny@1")[:1]
    assert (r1.key, r1.attempts, r1.package, r1.package_version, r1.seed) == (c1.key, 1, "fake-pkg", "9.9", c1.seed)
    assert s.done_keys() == set()

    payload = b"\x93NUMPY fake indices"
    shared = ArtifactOut("indices", "indices.npy", payload)
    s.finish(c1.key, metrics={"clean_acc": 0.75, "subset_size": 12}, timings={"total_s": 1.5}, info={"budget": 12}, artifacts=[shared, ArtifactOut("scores", "scores.npy", b"other")])
    s.finish(c2.key, metrics={"clean_acc": 0.5}, timings={}, info={}, artifacts=[ArtifactOut("indices", "indices.npy", payload)])

    assert s.done_keys() == {c1.key, c2.key}
    assert s.done_keys([c1.key, "nope"]) == {c1.key}
    res = {r["key"]: r for r in s.results()}
    d1 = res[c1.key]
    assert d1["status"] == "done" and d1["error"] is None
    assert d1["metrics"] == {"clean_acc": 0.75, "subset_size": 12.0}
    assert d1["timings"] == {"total_s": 1.5} and d1["info"] == {"budget": 12}
    assert d1["axes"] == {"budget": 0.2, "dataset": "digits"} and d1["params"] == {"k": 1}
    assert d1["environment"]["plugin_package_version"] == "9.9"
    assert d1["finished"] is not None and d1["repeat"] == 0 and d1["seed"] == c1.seed

    run_ids = [r.id for r in s.runs()]
    arts = s.artifacts_for(run_ids)
    a1 = {a.kind: a for a in arts[run_ids[0]]}
    (a2,) = arts[run_ids[1]]
    sha = hashlib.sha256(payload).hexdigest()
    expected = tmp_path / "artifacts" / sha[:2] / f"{sha}.npy"
    assert a1["indices"].sha256 == sha and Path(a1["indices"].path) == expected
    assert a1["indices"].size == len(payload) and expected.read_bytes() == payload
    assert a2.path == a1["indices"].path  # same content, one file
    assert Path(a1["scores"].path).read_bytes() == b"other"
    files = sorted(p.name for p in (tmp_path / "artifacts").rglob("*") if p.is_file())
    assert len(files) == 2 and not any(".tmp" in f for f in files)
    assert s.integrity() == "ok"


def test_a_failed_cell_rerun_reuses_its_row(tmp_path):
    db = tmp_path / "r.db"
    s = Store(db)
    c = cell()
    s.start(c, METHOD, ENV)
    s.fail(c.key, "plugin 'm' failed: boom", "Traceback ...", {"total_s": 0.1})
    (r,) = s.runs()
    assert (r.status, r.error, r.traceback, r.attempts) == ("failed", "plugin 'm' failed: boom", "Traceback ...", 1)
    assert s.done_keys() == set()

    s.start(c, METHOD, ENV)
    (r2,) = s.runs()
    assert (r2.id, r2.status, r2.error, r2.traceback, r2.attempts, r2.finished) == (r.id, "running", None, None, 2, None)
    s.finish(c.key, metrics={"clean_acc": 0.9}, timings={}, info={})
    (r3,) = s.runs()
    assert r3.attempts == 2 and r3.status == "done" and r3.error is None
    assert s.results()[0]["metrics"] == {"clean_acc": 0.9}
    s.close()
    assert rows(db, "SELECT COUNT(*) FROM run") == [(1,)]
    assert rows(db, "SELECT COUNT(*) FROM metric") == [(1,)]


def _sidecars(path: Path) -> list[Path]:
    return [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")) if p.exists()]


@pytest.mark.parametrize(
    "content",
    [os.urandom(4096), b"SQLite format 3\x00" + os.urandom(4080)],
    ids=["random-bytes", "sqlite-header-then-garbage"],
)
def test_a_corrupt_file_is_refused_and_left_untouched(tmp_path, content):
    db = tmp_path / "r.db"
    db.write_bytes(content)
    before = os.stat(db).st_mtime_ns
    with pytest.raises(StoreError) as ei:
        Store(db)
    msg = str(ei.value)
    assert str(db) in msg and "--db" in msg and "\n" not in msg
    assert db.read_bytes() == content and os.stat(db).st_mtime_ns == before
    assert _sidecars(db) == []
    with pytest.raises(StoreError):
        Store(f"sqlite:///{db}", create=False)
    assert db.read_bytes() == content


@pytest.mark.parametrize("folder", ["plain", "odd#name"])
def test_a_database_of_another_program_is_refused_and_left_untouched(tmp_path, folder):
    (tmp_path / folder).mkdir()
    db = tmp_path / folder / "other.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, total REAL)")
    con.executemany("INSERT INTO users (name) VALUES (?)", [("ada",), ("bob",)])
    con.commit()
    con.close()
    content = db.read_bytes()
    with pytest.raises(StoreError, match=r"another program \(tables: orders, users\)"):
        Store(db)
    assert db.read_bytes() == content
    assert _sidecars(db) == []
    assert rows(db, "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name") == [("orders",), ("users",)]


def test_an_empty_file_becomes_a_store(tmp_path):
    db = tmp_path / "empty.db"
    db.touch()
    Store(db).close()
    assert ("run",) in rows(db, "SELECT name FROM sqlite_master WHERE type='table'")


def test_explicit_url_env_var_and_default_location(workdir, monkeypatch):
    tmp_path = workdir
    explicit = tmp_path / "sub" / "explicit.db"
    s = Store(f"sqlite:///{explicit}")
    assert s.url == f"sqlite:///{explicit}" and s.sqlite_path == explicit and explicit.exists()
    s.start(cell(), METHOD, ENV)
    s.close()
    assert rows(explicit, "SELECT COUNT(*) FROM run") == [(1,)]

    env_db = tmp_path / "env" / "from-env.db"
    monkeypatch.setenv("CORESET_BENCH_DB", str(env_db))
    assert resolve_url(None) == f"sqlite:///{env_db}"
    e = Store()
    assert e.sqlite_path == env_db and env_db.exists() and e.artifacts_dir == env_db.parent / "artifacts"
    e.close()
    monkeypatch.setenv("CORESET_BENCH_DB", f"sqlite:///{explicit}")
    assert len(Store().runs()) == 1
    assert resolve_url("x.db") == "sqlite:///x.db"  # --db wins over the environment

    monkeypatch.delenv("CORESET_BENCH_DB")
    d = Store()
    assert d.sqlite_path == DEFAULT_DB and (tmp_path / "results" / "coreset-bench.db").exists()
    d.close()


def test_missing_database_without_create(tmp_path):
    with pytest.raises(StoreError, match="no results database at"):
        Store(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


def test_open_store_is_what_every_command_opens(tmp_path, monkeypatch):
    """Issue 37: one opener (``store.open_store``) for ``run``, ``results``, ``compare``,
    ``doctor``, ``leaderboard``, ``export`` and ``entries check``."""
    import ast

    from coreset_bench.store import open_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CORESET_BENCH_DB", raising=False)
    assert open_store(None, create=False, read_only=True, required=False) is None  # optional and absent
    with pytest.raises(StoreError, match="no results database at results/coreset-bench.db"):
        open_store(None, create=False, read_only=True)
    assert not (tmp_path / "results").exists()
    monkeypatch.setenv("CORESET_BENCH_DB", str(tmp_path / "env.db"))
    with pytest.raises(StoreError, match="env.db"):
        open_store(None, create=False, read_only=True, required=False)  # named, so required
    open_store(None).close()
    s = open_store(None, create=False, read_only=True, required=False)
    assert s is not None and s.sqlite_path == tmp_path / "env.db"
    s.close()
    root = Path(__file__).resolve().parents[1]
    for f in (root / "benchmark" / "cli.py", root / "leaderboard" / "cli.py"):
        tree = ast.parse(f.read_text())
        assert not [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and "open_store" in n.name], f
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Store"], f"{f} opens a Store itself"


def test_wal_mode_is_on(tmp_path):
    db = tmp_path / "r.db"
    s = Store(db)
    with s.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    s.close()
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]  # persistent in the file


def test_unwritable_location_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as ei:
        Store(blocker / "results" / "r.db")
    msg = str(ei.value)
    assert msg.startswith(f"cannot create {blocker / 'results'}") and "writable path" in msg


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() == 0, reason="needs a non-root user on Linux")
def test_read_only_directory_gives_a_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="cannot open the results database .*writable path"):
            Store(ro / "r.db")
    finally:
        ro.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_directory_where_no_file_can_be_created_gives_a_clear_error():
    # /proc/self exists but takes no new files, even for root
    with pytest.raises(StoreError, match=r"cannot open the results database sqlite:////proc/self/r\.db: .*writable path"):
        Store("/proc/self/r.db")


@pytest.mark.parametrize("name", ["a?b", "c%41d", "o#x"])
def test_plain_paths_with_url_characters_stay_literal(tmp_path, name):
    from coreset_bench.store import Store, resolve_url, sqlite_path

    path = tmp_path / name / "r.db"
    Store(path).close()
    assert path.exists()
    assert sqlite_path(resolve_url(str(path))) == path


def test_concurrent_creation_of_one_new_database(tmp_path):
    """Many processes opening the same new database at once all succeed (migrations race)."""
    import multiprocessing as mp

    db = tmp_path / "race.db"
    ctx = mp.get_context("fork")
    with ctx.Pool(6) as pool:
        results = pool.map(_open_store, [str(db)] * 12)
    assert all(r == "ok" for r in results), results
    assert Store(db).applied_migrations() == [n for n, _ in store_mod.MIGRATIONS]


def _open_store(path: str) -> str:
    try:
        Store(path).close()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return f"{type(exc).__name__}: {exc}"


# ---- issue 24: a foreign or corrupt file is never modified (item 9) ---------------------------


def _wal_header_garbage() -> bytes:
    """A valid-looking header that says WAL (bytes 18-19 = 2) over garbage pages: a plain
    read-only open of it creates -wal/-shm files (the cause of a once-flaky test)."""
    b = bytearray(b"SQLite format 3\x00" + bytes(range(256)) * 16)[:4096]
    b[16:18] = (4096).to_bytes(2, "big")
    b[18] = b[19] = 2
    return bytes(b)


def test_a_corrupt_file_whose_header_says_wal_leaves_no_sidecar_files(tmp_path):
    db = tmp_path / "r.db"
    content = _wal_header_garbage()
    db.write_bytes(content)
    for kwargs in ({}, {"create": False}, {"create": False, "read_only": True}):
        with pytest.raises(StoreError, match="corrupt SQLite database") as ei:
            Store(db, **kwargs)
        assert "--db" in str(ei.value) and "\n" not in str(ei.value)
        assert db.read_bytes() == content
        assert _sidecars(db) == []


def _foreign_with_run_table(db: Path, *, wal: bool, our_names: bool) -> None:
    con = sqlite3.connect(db)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE run (id INTEGER PRIMARY KEY, started TEXT, distance_km REAL)")
    if our_names:  # every table name is one of ours, but the columns are not
        con.execute("CREATE TABLE metric (id INTEGER PRIMARY KEY, athlete TEXT)")
    else:
        con.execute("CREATE TABLE shoes (id INTEGER PRIMARY KEY, brand TEXT)")
    con.execute("INSERT INTO run (started, distance_km) VALUES ('2026-01-01', 10.5)")
    con.commit()
    con.close()


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
@pytest.mark.parametrize("our_names", [False, True], ids=["run-and-others", "only-our-table-names"])
def test_a_foreign_database_with_a_run_table_is_refused_before_any_write(tmp_path, wal, our_names):
    db = tmp_path / "other.db"
    _foreign_with_run_table(db, wal=wal, our_names=our_names)
    assert _sidecars(db) == []
    content, mtime = db.read_bytes(), os.stat(db).st_mtime_ns
    for kwargs in ({}, {"create": False}, {"create": False, "read_only": True}):
        with pytest.raises(StoreError, match=r"is a database of another program \(tables: ") as ei:
            Store(db, **kwargs)
        assert "--db" in str(ei.value) and "\n" not in str(ei.value)
        assert db.read_bytes() == content and os.stat(db).st_mtime_ns == mtime
        assert _sidecars(db) == []
    tables = {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "_migrations" not in tables and "artifact" not in tables


def test_a_store_of_a_newer_version_is_refused_untouched(tmp_path):
    db = tmp_path / "r.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("INSERT INTO _migrations (name, applied_at) VALUES ('m999_future', 'x')")
    con.commit()
    con.close()
    content = db.read_bytes()
    with pytest.raises(StoreError, match="written by a newer coreset-bench \\(migration m999_future\\)"):
        Store(db)
    assert db.read_bytes() == content and _sidecars(db) == []


# ---- a healthy store in a read-only directory (item 10) ---------------------------------------


def _read_only_runner(directory: Path) -> list[str] | None:
    """A command prefix that runs a program with ``directory`` really read-only, or None.

    As a normal user, ``chmod`` suffices. Root ignores permission bits, so as root the program
    runs in a private mount namespace with ``directory`` bind-mounted read-only (needs
    ``unshare`` and CAP_SYS_ADMIN); writes then fail with EROFS, for root too.
    """
    import shutil
    import subprocess

    if os.geteuid() != 0:
        directory.chmod(0o555)
        return []
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return None
    d = str(directory)
    prefix = ["unshare", "-m", "sh", "-c", f'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && shift && exec "$@"', d, "--"]
    probe = subprocess.run([*prefix, "sh", "-c", f'! touch "{d}/.probe" 2>/dev/null'], capture_output=True)
    return prefix if probe.returncode == 0 and not (directory / ".probe").exists() else None


def test_a_healthy_store_in_a_read_only_directory(tmp_path):
    import json
    import subprocess

    ro = tmp_path / "ro"
    ro.mkdir()
    db = ro / "r.db"
    s = Store(db)
    c = cell()
    s.start(c, METHOD, ENV)
    s.finish(c.key, metrics={"clean_acc": 0.75}, timings={}, info={})
    s.close()
    assert _sidecars(db) == [] and rows(db, "PRAGMA journal_mode") == [("wal",)]
    content = db.read_bytes()
    prefix = _read_only_runner(ro)
    if prefix is None:
        pytest.skip("running as root without a way to mount a directory read-only (unshare + CAP_SYS_ADMIN)")
    script = f"""
import json, sys
from coreset_bench.store import Store, StoreError
out = {{}}
try:
    Store({str(db)!r})
    out["writer"] = "opened"
except StoreError as exc:
    out["writer"] = str(exc)
ro = Store({str(db)!r}, create=False, read_only=True)
out["results"] = ro.results()
ro.close()
print(json.dumps(out, default=str))
"""
    env = {**os.environ, "COLUMNS": "200"}
    try:
        res = subprocess.run([*prefix, sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout.strip().splitlines()[-1])
        main = [sys.executable, "-c", "from coreset_bench.cli import main; main()"]
        cli = subprocess.run([*prefix, *main, "results", "--json", "--db", str(db)], capture_output=True, text=True, env=env, timeout=300)
        doctor = subprocess.run([*prefix, *main, "doctor", "--db", str(db)], capture_output=True, text=True, env=env, timeout=300)
    finally:
        ro.chmod(0o755)
    writer = out["writer"]
    assert writer.startswith(f"cannot create the WAL/lock files beside {db}") and "read-only" in writer
    assert "make the directory writable or copy the file" in writer and "corrupt" not in writer and "\n" not in writer
    (r,) = out["results"]
    assert r["key"] == c.key and r["metrics"] == {"clean_acc": 0.75}
    assert cli.returncode == 0, cli.stderr
    assert [x["key"] for x in json.loads(cli.stdout)] == [c.key]
    assert "integrity ok" in doctor.stdout and "1 done" in doctor.stdout, doctor.stdout + doctor.stderr
    assert db.read_bytes() == content and _sidecars(db) == []


def test_read_only_store_refuses_writes_and_leaves_no_trace_on_the_file(tmp_path):
    db = tmp_path / "r.db"
    s = Store(db)
    s.start(cell(), METHOD, ENV)
    s.close()
    content = db.read_bytes()
    ro = Store(db, create=False, read_only=True)
    assert [r.key for r in ro.runs()] == [cell().key]
    with pytest.raises(StoreError, match="opened read-only"):
        ro.start(cell(0.3), METHOD, ENV)
    with ro.engine.connect() as conn, pytest.raises(Exception, match="readonly database"):
        conn.execute(text("DELETE FROM run"))  # SQLite itself refuses: PRAGMA query_only
    ro.close()
    assert db.read_bytes() == content and _sidecars(db) == []
    assert rows(db, "SELECT COUNT(*) FROM run") == [(1,)]


# ---- one cell, one owner, one set of rows (item 11) -------------------------------------------


def test_a_running_cell_is_leased_to_one_live_owner(tmp_path):
    db = tmp_path / "r.db"
    a, b = Store(db), Store(db)
    c = cell()
    assert a.claim(c, METHOD, ENV) == "claimed"
    assert b.claim(c, METHOD, ENV) == "busy"  # a lives and its heartbeat is fresh
    assert a.claim(c, METHOD, ENV) == "claimed"  # its own lease
    b.fail(c.key, "not mine", None)  # must not fail a cell another live run holds
    assert a.runs()[0].status == "running"
    assert a.finish(c.key, metrics={"clean_acc": 0.5}, timings={}, info={}, artifacts=[ArtifactOut("indices", "i.npy", b"1")])
    assert not b.finish(c.key, metrics={"clean_acc": 0.9}, timings={}, info={}, artifacts=[ArtifactOut("indices", "i.npy", b"2")])
    assert b.claim(c, METHOD, ENV) == "done"
    assert rows(db, "SELECT name, value FROM metric") == [("clean_acc", 0.5)]
    assert rows(db, "SELECT COUNT(*) FROM artifact") == [(1,)]


def test_a_stale_or_orphaned_lease_is_taken_over(tmp_path):
    import subprocess

    db = tmp_path / "r.db"
    a, b = Store(db), Store(db)
    c1, c2 = cell(0.1), cell(0.2)
    assert a.claim(c1, METHOD, ENV) == "claimed"
    old = store_mod.utcnow() - timedelta(seconds=store_mod.STALE_S + 1)
    with a.engine.begin() as conn:
        conn.execute(store_mod.update(store_mod.Run).values(heartbeat=old))
    assert b.claim(c1, METHOD, ENV) == "claimed"  # heartbeat older than STALE_S
    assert a.heartbeat() == 0 and b.heartbeat() == 1
    # an owner process on this machine that is gone: taken over at once, heartbeat still fresh
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    assert a.claim(c2, METHOD, ENV) == "claimed"
    host, _pid, _start, token = a.owner.split("/")
    with a.engine.begin() as conn:
        conn.execute(text("UPDATE run SET owner = :o WHERE key = :k"), {"o": f"{host}/{dead}/1/{token}", "k": c2.key})
    assert b.claim(c2, METHOD, ENV) == "claimed"
    (r2,) = [r for r in b.runs() if r.key == c2.key]
    assert r2.owner == b.owner and r2.attempts == 2


def test_the_database_rejects_duplicate_metric_and_artifact_rows(tmp_path):
    db = tmp_path / "r.db"
    s = Store(db)
    c = cell()
    s.start(c, METHOD, ENV)
    s.finish(c.key, metrics={"clean_acc": 0.5}, timings={}, info={}, artifacts=[ArtifactOut("indices", "i.npy", b"1")])
    (rid,) = [r.id for r in s.runs()]
    s.close()
    con = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("INSERT INTO metric (run_id, name, value) VALUES (?, 'clean_acc', 0.9)", (rid,))
        with pytest.raises(sqlite3.IntegrityError):
            con.execute("INSERT INTO artifact (run_id, kind, name, sha256, path, size) VALUES (?, 'indices', 'i.npy', 'x', 'y', 1)", (rid,))
    finally:
        con.close()


def test_the_unique_rows_migration_keeps_the_first_of_duplicates(tmp_path, monkeypatch):
    db = tmp_path / "r.db"
    monkeypatch.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:2])
    old = Store(db)
    c = cell()
    old.start(c, METHOD, ENV)
    old.finish(c.key, metrics={"clean_acc": 0.5}, timings={}, info={})
    old.close()
    con = sqlite3.connect(db)
    con.execute("INSERT INTO metric (run_id, name, value) SELECT run_id, name, 0.9 FROM metric")  # a duplicate
    con.commit()
    con.close()
    monkeypatch.undo()
    assert Store(db).migrations_applied == ["m003_unique_rows", "m004_run_lease", "m005_interrupted_status", "m006_store_meta"]
    assert rows(db, "SELECT name, value FROM metric") == [("clean_acc", 0.5)]
