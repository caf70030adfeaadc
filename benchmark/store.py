"""The results store: SQLModel over SQLite (WAL) by default, any SQLAlchemy URL otherwise.

Tables: ``run`` (one row per cell key: status, error, timings, environment, and the lease of a
running cell: owner and heartbeat), ``metric`` (run, name, value; unique per run and name),
``artifact`` (run, kind, name, content hash, path; unique per run, kind and name), ``meta``
(key, value: the store's own settings, e.g. its hidden-data salt, ``Store.hidden_salt``), and
``_migrations`` (applied migrations, in order). The database is plain SQLite:
``datasette results/coreset-bench.db`` browses it.

Only the driver process writes the store. Several drivers may share one store: a cell is
claimed under a lease (``Store.claim``) and finished with first-writer-wins (``Store.finish``),
each in one transaction holding the write lock (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR
UPDATE`` elsewhere).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, overload

from sqlalchemy import event, inspect, text, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError, SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, create_engine, select

DEFAULT_DB = Path("results") / "coreset-bench.db"


class StoreError(Exception):
    """The store cannot be used (corrupt or foreign file, unwritable location)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Run(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(index=True, unique=True)
    track: str = Field(index=True)
    profile: str = Field(index=True)
    method: str = Field(index=True)
    method_version: str = ""
    package: str = ""
    package_version: str = ""
    params: str = "{}"  # JSON
    axes: str = "{}"  # JSON
    repeat: int = 0
    seed: int = 0
    status: str = Field(default="running", index=True)  # running | done | failed | interrupted
    error: str | None = None
    traceback: str | None = None
    timings: str = "{}"  # JSON: seconds per phase
    info: str = "{}"  # JSON: realized subset size, shared proxy flags, ...
    environment: str = "{}"  # JSON
    attempts: int = 1
    owner: str | None = None  # lease: the process running the cell (see Store.claim)
    heartbeat: datetime | None = None  # lease: refreshed every HEARTBEAT_S while it runs
    created: datetime = Field(default_factory=utcnow)
    finished: datetime | None = None

    def as_dict(self, metrics: dict[str, float] | None = None) -> dict[str, Any]:
        return {
            "key": self.key,
            "track": self.track,
            "profile": self.profile,
            "method": self.method,
            "method_version": self.method_version,
            "package": self.package,
            "params": json.loads(self.params),
            "axes": json.loads(self.axes),
            "repeat": self.repeat,
            "seed": self.seed,
            "status": self.status,
            "error": self.error,
            "timings": json.loads(self.timings),
            "info": json.loads(self.info),
            "environment": json.loads(self.environment),
            "created": self.created.isoformat() if self.created else None,
            "finished": self.finished.isoformat() if self.finished else None,
            "metrics": metrics if metrics is not None else {},
        }


class Metric(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    name: str = Field(index=True)
    value: float


class Artifact(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    kind: str
    name: str
    sha256: str
    path: str
    size: int = 0


# ---- migrations -------------------------------------------------------------------------------
# Ordered and idempotent; each is recorded in _migrations once applied (simonw/llm pattern).


def _m001_initial(conn: Any) -> None:
    SQLModel.metadata.create_all(conn)


def _m002_indexes(conn: Any) -> None:
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_metric_run_name ON metric (run_id, name)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_run_track_profile_method ON run (track, profile, method)"))


def _m003_unique_rows(conn: Any) -> None:
    """One metric per (run, name) and one artifact per (run, kind, name), enforced by the database.

    Duplicates left by older versions (two processes finishing one cell) keep the first row.
    """
    conn.execute(text("DELETE FROM metric WHERE id NOT IN (SELECT MIN(id) FROM metric GROUP BY run_id, name)"))
    conn.execute(text("DELETE FROM artifact WHERE id NOT IN (SELECT MIN(id) FROM artifact GROUP BY run_id, kind, name)"))
    conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ux_metric_run_name ON metric (run_id, name)"))
    conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ux_artifact_run_kind_name ON artifact (run_id, kind, name)"))


def _m004_run_lease(conn: Any) -> None:
    """The lease of a running cell: its owner (process) and heartbeat."""
    have = {c["name"] for c in inspect(conn).get_columns("run")}
    if "owner" not in have:
        conn.execute(text("ALTER TABLE run ADD COLUMN owner VARCHAR"))
    if "heartbeat" not in have:
        kind = "DATETIME" if conn.dialect.name == "sqlite" else "TIMESTAMP"
        conn.execute(text(f"ALTER TABLE run ADD COLUMN heartbeat {kind}"))


def _m005_interrupted_status(conn: Any) -> None:
    """Cells cut by Ctrl-C get their own status, ``interrupted`` (not a failure of the method).

    Older versions stored them as ``failed`` with an error starting ``interrupted``; those rows
    are moved to the new status."""
    conn.execute(text("UPDATE run SET status = 'interrupted' WHERE status = 'failed' AND error LIKE 'interrupted%'"))


def _m006_store_meta(conn: Any) -> None:
    """A key/value table of the store's own settings (its hidden-data salt, ``Store.hidden_salt``)."""
    conn.execute(text("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"))


MIGRATIONS: list[tuple[str, Any]] = [
    ("m001_initial", _m001_initial),
    ("m002_indexes", _m002_indexes),
    ("m003_unique_rows", _m003_unique_rows),
    ("m004_run_lease", _m004_run_lease),
    ("m005_interrupted_status", _m005_interrupted_status),
    ("m006_store_meta", _m006_store_meta),
]

#: statuses a run row can have; ``interrupted`` (Ctrl-C) is neither a result nor a failure
STATUSES = ("running", "done", "failed", "interrupted")


#: the advisory-lock key that serializes migrations on PostgreSQL ("cbmigrat" as a 64-bit int)
_PG_MIGRATION_LOCK = int.from_bytes(b"cbmigrat", "big") & 0x7FFFFFFFFFFFFFFF


def _migration_order(names: Iterable[str]) -> list[str]:
    """Applied migrations in the order they were applied (the code's order; unknown ones last)."""
    known = [n for n, _ in MIGRATIONS]
    pos = {n: i for i, n in enumerate(known)}
    return sorted(names, key=lambda n: (pos.get(n, len(known)), n))


def _migrate(engine: Engine) -> list[str]:
    applied_now = []
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            # one write transaction for all of it (the driver would run DDL outside one): a
            # concurrent opener waits, then finds the migrations done; readers never see half
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            # the same on PostgreSQL: one transaction (its DDL is transactional) holding an
            # advisory lock, so concurrent openers apply the migrations once, one after another
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        conn.execute(text("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"))
        done = {r[0] for r in conn.execute(text("SELECT name FROM _migrations"))}
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            fn(conn)
            conn.execute(
                text("INSERT INTO _migrations (name, applied_at) VALUES (:n, :t)"),
                {"n": name, "t": utcnow().isoformat()},
            )
            applied_now.append(name)
    return applied_now


def resolve_url(db: str | os.PathLike[str] | None) -> str:
    """``--db`` value or ``CORESET_BENCH_DB`` or the default path -> SQLAlchemy URL."""
    raw = str(db) if db is not None else os.environ.get("CORESET_BENCH_DB") or str(DEFAULT_DB)
    if "://" in raw:
        return _postgres_driver(raw)
    # build the URL from parts so that characters like '?', '#' or '%' in a path stay literal
    return URL.create("sqlite", database=str(Path(raw).expanduser())).render_as_string(hide_password=False)


def _postgres_driver(raw: str) -> str:
    """``postgresql://`` / ``postgres://`` -> the installed driver's dialect (psycopg 3, the
    ``[postgres]`` extra, unless psycopg2 is installed); other URLs unchanged. A PostgreSQL URL
    with no driver installed is a one-line ``StoreError`` naming the extra."""
    scheme, sep, rest = raw.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return raw
    import importlib.util

    for module, dialect in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{dialect}{sep}{rest}"
    raise StoreError("a PostgreSQL store needs its driver: pip install 'coreset-bench[postgres]'")


def _one_line(exc: BaseException) -> str:
    """The first line of a database error (drivers add SQL and hints on further lines)."""
    orig = getattr(exc, "orig", None) or exc
    text_ = str(orig).strip().splitlines()
    return text_[0] if text_ else type(orig).__name__


def _permission_denied(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlstate", None) == "42501" or "permission denied" in str(orig).lower() or "read-only transaction" in str(orig).lower()


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None for other back ends or in-memory)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


_OUR_TABLES = {"run", "metric", "artifact", "meta", "_migrations"}
# the columns each of our tables had since its first migration: a table of that name without
# them belongs to another program
_OUR_COLUMNS = {
    "run": {"id", "key", "track", "profile", "method", "status", "params", "axes", "repeat", "seed"},
    "metric": {"id", "run_id", "name", "value"},
    "artifact": {"id", "run_id", "kind", "name", "sha256", "path"},
    "meta": {"key", "value"},
    "_migrations": {"name", "applied_at"},
}


def _refuse(path: Path, why: str) -> StoreError:
    return StoreError(f"{path} {why}; move it away or pass --db with another path")


def _ro_uri(path: Path, *, immutable: bool) -> str:
    # as_uri() percent-encodes the path: a '#' or '?' in it would otherwise cut the URI short
    return f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")


def _sidecar_files(path: Path) -> list[Path]:
    return [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")) if p.exists()]


def _inspect(path: Path) -> tuple[dict[str, set[str]], list[str], str]:
    """Tables (with columns), applied migrations and quick_check of ``path``, without writing.

    One read transaction on a read-only connection. A file with no ``-wal``/``-journal`` beside
    it is read as ``immutable`` (SQLite then creates no ``-wal``/``-shm`` files: a plain
    read-only open of a file whose header says WAL would create them, and leave them beside a
    corrupt file); a file in use by a writer is read through the writer's sidecar files.
    """
    in_use = any(p.exists() for p in (Path(f"{path}-wal"), Path(f"{path}-journal")))
    con = sqlite3.connect(_ro_uri(path, immutable=not in_use), uri=True, isolation_level=None)
    try:
        con.execute("BEGIN")
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        columns = {t: {r[1] for r in con.execute(f"PRAGMA table_info({_quote(t)})")} for t in tables}
        migrations = [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY rowid")] if "_migrations" in tables else []
        ok = str(con.execute("PRAGMA quick_check").fetchone()[0])
        con.execute("COMMIT")
    finally:
        con.close()
    return columns, migrations, ok


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cannot_open_beside(exc: sqlite3.Error) -> bool:
    """True when SQLite failed because it cannot create files beside the database."""
    code = getattr(exc, "sqlite_errorcode", None)
    # SQLITE_CANTOPEN (14), SQLITE_READONLY_DIRECTORY (1544), SQLITE_READONLY_CANTINIT (1288)
    return code in (14, 1288, 1544) or any(m in str(exc) for m in ("unable to open database file", "readonly database"))


def _dir_writable(path: Path) -> bool:
    return os.access(path.parent if str(path.parent) else Path("."), os.W_OK)


def _read_only_location(path: Path) -> StoreError:
    return StoreError(
        f"cannot create the WAL/lock files beside {path}: its directory {path.parent} is read-only; "
        "make the directory writable or copy the file to a writable place and pass --db with the copy"
    )


def _check_sqlite_file(path: Path) -> list[str]:
    """Refuse corrupt, foreign or newer SQLite files before anything writes to them.

    Returns the migrations already applied ([] for a new or empty file). Nothing is written:
    the header is read as bytes, the rest in one read-only transaction (see ``_inspect``).
    """
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header != b"SQLite format 3\x00":
        raise _refuse(path, "is not an SQLite database (corrupt or another file)")
    for attempt in range(50):
        try:
            columns, migrations, ok = _inspect(path)
            break
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc) and attempt < 49:
                time.sleep(0.1)  # a writer is checkpointing
                continue
            if _cannot_open_beside(exc) and not _dir_writable(path):
                raise _read_only_location(path) from exc
            if attempt < 5 and _sidecar_files(path):
                time.sleep(0.1)  # read while another process was creating the file: look again
                continue
            raise _refuse(path, f"is a corrupt SQLite database ({exc})") from exc
    if ok != "ok":
        raise _refuse(path, f"failed SQLite's integrity check ({ok})")
    tables = {t for t in columns if not t.startswith("sqlite_")}
    if not tables:
        return []
    known = [n for n, _ in MIGRATIONS]
    wrong = sorted(t for t in tables & set(_OUR_COLUMNS) if not _OUR_COLUMNS[t] <= columns[t])
    foreign = bool(tables - _OUR_TABLES) and "_migrations" not in tables
    if wrong or foreign or ("_migrations" in tables and "run" not in tables):
        shown = ", ".join(sorted(tables)[:5])
        raise StoreError(f"{path} is a database of another program (tables: {shown}); pass --db with a path of its own")
    unknown = [m for m in migrations if m not in known]
    if unknown:
        raise StoreError(
            f"{path} was written by a newer coreset-bench (migration {unknown[0]}); upgrade coreset-bench or pass --db with another path"
        )
    return migrations


HEARTBEAT_S = 10.0  # a running cell's lease is refreshed this often by its driver
STALE_S = 120.0  # a lease not refreshed for this long is stale: another run may take the cell over


def _proc_start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux), or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_id() -> str:
    """``HOST/PID/START/TOKEN``: names this process (and this Store) as a lease owner."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{_proc_start_time(pid) or '-'}/{uuid.uuid4().hex[:8]}"


def _owner_gone(owner: str) -> bool:
    """True when ``owner`` is a process on this machine that no longer runs."""
    parts = owner.split("/")
    if len(parts) != 4 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False  # another machine: only the heartbeat tells
    pid = int(parts[1])
    if Path("/proc/self/stat").exists():
        return _proc_start_time(pid) != parts[2]  # dead, or its pid reused by another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t


@overload
def open_store(db: str | os.PathLike[str] | None = ..., *, create: bool = ..., read_only: bool = ..., required: Literal[True] = ...) -> Store: ...
@overload
def open_store(db: str | os.PathLike[str] | None = ..., *, create: bool = ..., read_only: bool = ..., required: bool) -> Store | None: ...
def open_store(db: str | os.PathLike[str] | None = None, *, create: bool = True, read_only: bool = False, required: bool = True) -> Store | None:
    """The store a command names: ``--db``, else ``CORESET_BENCH_DB``, else ``DEFAULT_DB``.

    The one way every command opens its store (``StoreError``, one line, when it cannot).
    ``required=False`` (a command that can do without one, e.g. ``leaderboard --entries``): None
    when neither ``db`` nor ``CORESET_BENCH_DB`` names a store and ``DEFAULT_DB`` does not exist.
    """
    if not required and db is None and not os.environ.get("CORESET_BENCH_DB") and not DEFAULT_DB.exists():
        return None
    return Store(db, create=create, read_only=read_only)


class Store:
    """Open a store. ``Store(None)`` uses ``CORESET_BENCH_DB`` or the default.

    Before anything is written, an SQLite file is checked in one read-only transaction:
    corrupt, foreign (tables of another program, or our table names with other columns) and
    newer-schema files are refused untouched, with no ``-wal``/``-shm`` files left beside them.
    Only then are migrations applied and WAL switched on.

    ``read_only=True`` (``results``, ``leaderboard``, ``export``) never writes the database: no
    WAL switch, no migrations (unless the file lacks some and its directory is writable); in a
    read-only directory the file is read as immutable. A writable open in a read-only directory
    fails with a message saying so (SQLite must create its WAL and lock files beside the file).
    """

    def __init__(self, db: str | os.PathLike[str] | None = None, *, artifacts_dir: Path | None = None, create: bool = True, read_only: bool = False):
        self.url = resolve_url(db)
        url = make_url(self.url)
        self.read_only = read_only
        self.owner = _owner_id()
        self.sqlite_path: Path | None = None
        self.migrations_applied: list[str] = []
        applied: list[str] = []
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            self.sqlite_path = Path(url.database)
            applied = _check_sqlite_file(self.sqlite_path)
            if create and not read_only:
                try:
                    self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create {self.sqlite_path.parent} ({exc.strerror}); pass --db with a writable path") from exc
            elif not self.sqlite_path.exists():
                raise StoreError(f"no results database at {self.sqlite_path}; run `coreset-bench run` first or pass --db")
        kwargs: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
        elif url.get_backend_name() == "postgresql":
            # timestamps in UTC whatever the server's zone; a read-only open cannot write at all
            opts = "-c timezone=UTC" + (" -c default_transaction_read_only=on" if read_only else "")
            kwargs["connect_args"] = {"options": opts, "connect_timeout": 10}
            kwargs["pool_pre_ping"] = True
        if read_only and self.sqlite_path is not None:
            pending = [n for n, _ in MIGRATIONS if n not in applied]
            if pending:  # an older (or empty) store: bring its schema up to date once, if allowed
                if not _dir_writable(self.sqlite_path):
                    raise StoreError(
                        f"{self.sqlite_path} lacks migrations ({', '.join(pending)}) that cannot be applied in the read-only directory "
                        f"{self.sqlite_path.parent}; copy the file to a writable place and pass --db with the copy"
                    )
                Store(self.url, create=False).close()
            self.engine = create_engine(self.url, creator=_read_only_connector(self.sqlite_path))
        else:
            self.engine = create_engine(self.url, **kwargs)
            if url.get_backend_name() == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            if not read_only:
                self.migrations_applied = self._migrate_with_retries()
            elif self.sqlite_path is None:
                self._check_server_schema()
        base = artifacts_dir
        if base is None:
            base = (self.sqlite_path.parent if self.sqlite_path else Path("results")) / "artifacts"
        self.artifacts_dir = base

    def _check_server_schema(self) -> None:
        """A read-only open of a server database (PostgreSQL): it must be reachable and hold an
        up-to-date store of ours; otherwise one line saying what to do."""
        try:
            with self.engine.connect() as conn:
                names = set(inspect(conn).get_table_names())
                if "_migrations" not in names or "run" not in names:
                    raise StoreError(f"{self.safe_url} holds no coreset-bench store; run `coreset-bench run --db ...` against it first")
                applied = {r[0] for r in conn.execute(text("SELECT name FROM _migrations"))}
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the results database {self.safe_url}: {_one_line(exc)}") from exc
        known = [n for n, _ in MIGRATIONS]
        unknown = sorted(applied - set(known))
        if unknown:
            raise StoreError(f"{self.safe_url} was written by a newer coreset-bench (migration {unknown[0]}); upgrade coreset-bench")
        pending = [n for n in known if n not in applied]
        if pending:
            raise StoreError(f"{self.safe_url} lacks migrations ({', '.join(pending)}); open it once with a role that may write (any `run`), then read it")

    @property
    def safe_url(self) -> str:
        """The store's URL without its password (for messages)."""
        return make_url(self.url).render_as_string(hide_password=True)

    def _migrate_with_retries(self) -> list[str]:
        for attempt in range(20):
            try:
                return _migrate(self.engine)
            except SQLAlchemyError as exc:
                if self.sqlite_path is None and _permission_denied(exc):
                    raise StoreError(
                        f"the database role cannot write to {self.safe_url} ({_one_line(exc)}); "
                        "grant it write access or use a role that may write (reading commands work read-only)"
                    ) from exc
                if self.sqlite_path is None and not isinstance(exc, (OperationalError, DatabaseError)):
                    raise StoreError(f"cannot open the results database {self.safe_url}: {_one_line(exc)}") from exc
                if self.sqlite_path is None and isinstance(exc, OperationalError) and "connect" in str(getattr(exc, "orig", exc)).lower():
                    raise StoreError(f"cannot connect to the results database {self.safe_url}: {_one_line(exc)}; start the server or fix --db") from exc
                # two processes creating one new database at once: the loser's CREATE fails
                # because the winner committed first; the migration record then says it is done
                if attempt < 19 and any(m in str(getattr(exc, "orig", exc)) for m in ("already exists", "locked", "UNIQUE constraint failed: _migrations")):
                    time.sleep(0.1 * (attempt + 1))
                    continue
                path = self.sqlite_path
                if path is not None and isinstance(getattr(exc, "orig", None), sqlite3.Error) and _cannot_open_beside(exc.orig) and path.exists() and not _dir_writable(path):
                    raise _read_only_location(path) from exc
                raise StoreError(f"cannot open the results database {self.safe_url}: {_one_line(exc)}; pass --db with a writable path") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """A session whose transaction holds SQLite's write lock from its first statement.

        Reading a row and writing depending on it is then one atomic step across processes (a
        plain deferred transaction lets two processes read the same state, then both write).
        Other back ends lock the row read with ``SELECT ... FOR UPDATE``.
        """
        if self.read_only:
            raise StoreError(f"{self.url} was opened read-only; this command cannot write results")
        with Session(self.engine) as s:
            try:
                if self.engine.dialect.name == "sqlite":
                    s.connection().exec_driver_sql("BEGIN IMMEDIATE")
                yield s
            except SQLAlchemyError as exc:
                if self.sqlite_path is None and _permission_denied(exc):
                    raise StoreError(
                        f"the database role cannot write to {self.safe_url} ({_one_line(exc)}); grant it write access or use a role that may write"
                    ) from exc
                raise

    # ---- writing (driver only) -----------------------------------------------------------
    def lease_is_live(self, row: Run, now: datetime | None = None) -> bool:
        """Whether ``row`` is running under another owner's live lease (this Store's never counts).

        A lease is live while its heartbeat is younger than ``STALE_S`` and, for an owner on
        this machine, its process still exists (a killed run's cells are taken over at once).
        """
        if row.status != "running" or not row.owner or row.owner == self.owner:
            return False
        beat = _aware(row.heartbeat)
        if beat is None or ((now or utcnow()) - beat).total_seconds() > STALE_S:
            return False
        return not _owner_gone(row.owner)

    def claim(self, cell: Any, method: Any, environment: dict[str, Any]) -> str:
        """Take the lease of a cell and mark it running, in one write transaction.

        Returns ``"claimed"``; ``"done"`` when it is finished (by anyone); ``"busy"`` when
        another live process holds its lease. A failed, interrupted or stale row is reused.
        """
        for _ in range(20):
            with self._write() as s:
                row = s.exec(select(Run).where(Run.key == cell.key).with_for_update()).first()
                if row is not None and row.status == "done":
                    return "done"
                if row is not None and self.lease_is_live(row):
                    return "busy"
                if row is None:
                    row = Run(key=cell.key, track=cell.track, profile=cell.profile, method=cell.method)
                else:
                    row.attempts += 1
                    for m in s.exec(select(Metric).where(Metric.run_id == row.id)):
                        s.delete(m)
                    for a in s.exec(select(Artifact).where(Artifact.run_id == row.id)):
                        s.delete(a)
                row.method_version = cell.method_version
                row.package = getattr(method, "package", "") or ""
                row.package_version = environment.get("plugin_package_version", "")
                row.params = json.dumps(dict(cell.params), sort_keys=True, default=str)
                row.axes = json.dumps(dict(cell.axes), sort_keys=True, default=str)
                row.repeat = cell.repeat
                row.seed = cell.seed
                row.status = "running"
                row.error = None
                row.traceback = None
                row.environment = json.dumps(environment, sort_keys=True, default=str)
                row.created = row.heartbeat = utcnow()
                row.owner = self.owner
                row.finished = None
                s.add(row)
                try:
                    s.commit()
                except IntegrityError:  # another database back end: a concurrent insert won
                    s.rollback()
                    continue
            return "claimed"
        raise StoreError(f"cannot claim cell {cell.key} in {self.url}: it keeps changing under concurrent writers")

    def start(self, cell: Any, method: Any, environment: dict[str, Any]) -> bool:
        """Record that a cell started (``claim``); False when it is done or running elsewhere."""
        return self.claim(cell, method, environment) == "claimed"

    def heartbeat(self) -> int:
        """Refresh the leases of this Store's running cells; returns how many."""
        with self._write() as s:
            res = s.execute(update(Run).where(Run.owner == self.owner, Run.status == "running").values(heartbeat=utcnow()))  # type: ignore[arg-type]
            s.commit()
            return int(res.rowcount or 0)

    @contextlib.contextmanager
    def keep_leases(self, interval: float | None = None) -> Iterator[None]:
        """Refresh this Store's leases every ``interval`` (default ``HEARTBEAT_S``) s in a thread."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S if interval is None else interval):
                try:
                    self.heartbeat()
                except SQLAlchemyError:  # busy or briefly unavailable: the next beat retries
                    pass

        t = threading.Thread(target=beat, name="store-heartbeat", daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join(timeout=5)

    def finish(self, key: str, *, metrics: dict[str, float], timings: dict[str, float], info: dict[str, Any], artifacts: Sequence[Any] = ()) -> bool:
        """Store a finished cell's results in one write transaction (all or nothing).

        Returns False (and writes nothing) when another process already finished the same cell:
        the check and the write are one transaction holding the write lock, and the database
        allows one metric per (run, name) and one artifact per (run, kind, name), so the first
        result stored wins and concurrent runs never duplicate a cell's rows.
        """
        # write artifact files first (content-addressed, atomic rename); rows follow in one commit
        written = [self._write_artifact(a) for a in artifacts]
        with self._write() as s:
            row = s.exec(select(Run).where(Run.key == key).with_for_update()).one()
            if row.status == "done":
                return False
            for m in s.exec(select(Metric).where(Metric.run_id == row.id)):
                s.delete(m)
            for a in s.exec(select(Artifact).where(Artifact.run_id == row.id)):
                s.delete(a)
            s.flush()
            for name, value in metrics.items():
                s.add(Metric(run_id=row.id, name=name, value=float(value)))
            for a, (sha, path, size) in zip(artifacts, written):
                s.add(Artifact(run_id=row.id, kind=a.kind, name=a.name, sha256=sha, path=path, size=size))
            row.status = "done"
            row.owner = self.owner
            row.timings = json.dumps(timings, sort_keys=True)
            row.info = json.dumps(info, sort_keys=True, default=str)
            row.finished = utcnow()
            s.add(row)
            s.commit()
        return True

    def fail(self, key: str, error: str, tb: str | None, timings: dict[str, float] | None = None) -> None:
        """Record a failed cell, unless it is done or another live run has taken it over."""
        with self._write() as s:
            row = s.exec(select(Run).where(Run.key == key).with_for_update()).one()
            if row.status == "done" or self.lease_is_live(row):  # keep the other run's result or lease
                return
            row.status = "failed"
            row.error = error
            row.traceback = tb
            row.timings = json.dumps(timings or {}, sort_keys=True)
            row.finished = utcnow()
            s.add(row)
            s.commit()

    def interrupt(self, key: str, note: str) -> None:
        """Record that a cell this run holds was cut by an interrupt (status ``interrupted``):
        not a failure; a rerun computes it. A cell done or taken over by another run is left."""
        with self._write() as s:
            row = s.exec(select(Run).where(Run.key == key).with_for_update()).first()
            if row is None or row.status == "done" or self.lease_is_live(row):
                return
            row.status = "interrupted"
            row.error = note
            row.traceback = None
            row.finished = utcnow()
            s.add(row)
            s.commit()

    def interrupt_running(self, keys: Iterable[str], note: str) -> int:
        """Mark every cell among ``keys`` that this Store holds as running (its own lease) as
        ``interrupted``, in one write transaction; returns how many.

        This is what a Ctrl-C leaves behind: it also catches a cell whose claim was committed
        just before the interrupt reached the caller (it never learned it holds the cell).
        Cells done, or held by another run, are left as they are."""
        wanted = list(dict.fromkeys(keys))
        n = 0
        with self._write() as s:
            for i in range(0, len(wanted), 500):
                stmt = update(Run).where(Run.key.in_(wanted[i : i + 500]), Run.owner == self.owner, Run.status == "running")  # type: ignore[attr-defined,arg-type]
                res = s.execute(stmt.values(status="interrupted", error=note, traceback=None, finished=utcnow()))
                n += int(res.rowcount or 0)
            s.commit()
        return n

    def delete(self, keys: Iterable[str]) -> int:
        """Remove the runs with these keys (and their metric and artifact rows) in one write
        transaction; a cell running under another live run's lease is kept. Returns how many
        were removed. Artifact files are content-addressed and may be shared, so they stay."""
        wanted = list(dict.fromkeys(keys))
        removed = 0
        with self._write() as s:
            for i in range(0, len(wanted), 500):
                for row in s.exec(select(Run).where(Run.key.in_(wanted[i : i + 500]))):  # type: ignore[attr-defined]
                    if self.lease_is_live(row):
                        continue
                    for m in s.exec(select(Metric).where(Metric.run_id == row.id)):
                        s.delete(m)
                    for a in s.exec(select(Artifact).where(Artifact.run_id == row.id)):
                        s.delete(a)
                    s.flush()
                    s.delete(row)
                    removed += 1
            s.commit()
        return removed

    def _write_artifact(self, a: Any) -> tuple[str, str, int]:
        sha = hashlib.sha256(a.data).hexdigest()
        sub = self.artifacts_dir / sha[:2]
        path = sub / f"{sha}{Path(a.name).suffix}"
        if not path.exists():
            sub.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
            with open(tmp, "wb") as fh:
                fh.write(a.data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        return sha, str(path), len(a.data)

    # ---- the hidden-data salt ---------------------------------------------------------------
    HIDDEN_SALT_KEY = "hidden_salt"

    def hidden_salt(self, requested: str | None = None) -> str:
        """The store's salt for hidden generated data (``coreset_bench.salt``), set once.

        A store without one takes ``requested`` (32 hex digits, or "" for the public seeds) or,
        when None, a fresh random 128-bit salt, in one write transaction (two runs starting at
        once agree on the first one written). A store that has one returns it; a ``requested``
        salt that differs is a one-line ``SaltError``: one store holds cells of one salt, so
        that its cells stay paired (reproduce another salt in a new store, ``--db``)."""
        from .salt import SaltError, new_salt, salt_id

        have = self.meta(self.HIDDEN_SALT_KEY)
        if have is None:
            value = new_salt() if requested is None else requested
            for _ in range(20):
                with self._write() as s:
                    row = s.connection().execute(text("SELECT value FROM meta WHERE key = :k"), {"k": self.HIDDEN_SALT_KEY}).first()
                    if row is not None:
                        have = str(row[0])
                        break
                    try:
                        s.connection().execute(text("INSERT INTO meta (key, value) VALUES (:k, :v)"), {"k": self.HIDDEN_SALT_KEY, "v": value})
                        s.commit()
                    except IntegrityError:  # another back end: a concurrent insert won
                        s.rollback()
                        continue
                    return value
        assert have is not None
        if requested is not None and requested != have:
            raise SaltError(
                f"the results database {self.url} seeds its hidden data with salt {salt_id(have)}, not the requested {salt_id(requested)}; "
                "pass --db with a new database to reproduce a run of another salt (one database holds cells of one salt)"
            )
        return have

    def meta(self, key: str) -> str | None:
        """The value of ``key`` in the store's ``meta`` table (None: not set)."""
        with self.engine.connect() as conn:
            row = conn.execute(text("SELECT value FROM meta WHERE key = :k"), {"k": key}).first()
        return None if row is None else str(row[0])

    # ---- reading -------------------------------------------------------------------------
    def done_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        with Session(self.engine) as s:
            q = select(Run.key).where(Run.status == "done")
            found = set(s.exec(q).all())
        return found if keys is None else found & set(keys)

    def runs(self, *, method: str | None = None, track: str | None = None, profile: str | None = None, status: str | None = None, key: str | None = None) -> list[Run]:
        with Session(self.engine) as s:
            q = select(Run)
            if key:
                q = q.where(Run.key == key)
            if method:
                q = q.where(Run.method == method)
            if track:
                q = q.where(Run.track == track)
            if profile:
                q = q.where(Run.profile == profile)
            if status:
                q = q.where(Run.status == status)
            return list(s.exec(q.order_by(Run.id)).all())

    def metrics_for(self, run_ids: Sequence[int]) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {i: {} for i in run_ids}
        if not run_ids:
            return out
        with Session(self.engine) as s:
            ids = list(run_ids)
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                for m in s.exec(select(Metric).where(Metric.run_id.in_(chunk))):  # type: ignore[attr-defined]
                    out[m.run_id][m.name] = m.value
        return out

    def artifacts_for(self, run_ids: Sequence[int]) -> dict[int, list[Artifact]]:
        out: dict[int, list[Artifact]] = {i: [] for i in run_ids}
        if not run_ids:
            return out
        with Session(self.engine) as s:
            ids = list(run_ids)
            for i in range(0, len(ids), 500):
                for a in s.exec(select(Artifact).where(Artifact.run_id.in_(ids[i : i + 500]))):  # type: ignore[attr-defined]
                    out[a.run_id].append(a)
        return out

    def results(self, **filters: Any) -> list[dict[str, Any]]:
        runs = self.runs(**filters)
        mets = self.metrics_for([r.id for r in runs if r.id is not None])
        return [r.as_dict(mets.get(r.id, {})) for r in runs]

    def applied_migrations(self) -> list[str]:
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "sqlite":
                return [r[0] for r in conn.execute(text("SELECT name FROM _migrations ORDER BY rowid"))]
            return _migration_order(r[0] for r in conn.execute(text("SELECT name FROM _migrations")))

    def integrity(self) -> str:
        if self.sqlite_path is None:
            return "ok (not SQLite)"
        with self.engine.connect() as conn:
            return str(conn.execute(text("PRAGMA integrity_check")).scalar())

    def close(self) -> None:
        self.engine.dispose()


def _read_only_connector(path: Path) -> Any:
    """A DBAPI connector that cannot change ``path``'s data.

    In a writable directory: a normal connection with ``PRAGMA query_only`` (SQLite refuses
    every write; the WAL and lock files are managed, and removed on close, as for any reader).
    In a read-only directory: ``mode=ro``, or ``immutable`` when SQLite cannot create the lock
    files there (no writer can use the file in WAL mode there either).
    """

    def connect() -> sqlite3.Connection:
        if _dir_writable(path):
            con = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
            con.execute("PRAGMA query_only=ON")
            return con
        con = None
        try:
            con = sqlite3.connect(_ro_uri(path, immutable=False), uri=True, timeout=60, check_same_thread=False)
            con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.Error as exc:
            if con is not None:
                con.close()
            if not _cannot_open_beside(exc):
                raise
            wal = Path(f"{path}-wal")
            if wal.exists() and wal.stat().st_size > 0:  # unread changes SQLite cannot reach: refuse
                raise _read_only_location(path) from exc
        return sqlite3.connect(_ro_uri(path, immutable=True), uri=True, check_same_thread=False)

    return connect


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()
