"""The results store: migrations, the run life cycle, artifacts, refusing foreign files, URLs."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import types
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
    assert s.migrations_applied == names == ["m001_initial", "m002_indexes"]
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
    assert Store(db).applied_migrations() == ["m001_initial", "m002_indexes"]


def _open_store(path: str) -> str:
    try:
        Store(path).close()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return f"{type(exc).__name__}: {exc}"
