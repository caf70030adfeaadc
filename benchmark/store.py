"""The results store: SQLModel over SQLite (WAL) by default, any SQLAlchemy URL otherwise.

Tables: ``run`` (one row per cell key: status, error, timings, environment), ``metric`` (run,
name, value), ``artifact`` (run, kind, name, content hash, path), and ``_migrations`` (applied
migrations, in order). The database is plain SQLite: ``datasette results/coreset-bench.db``
browses it.

Only the driver process writes the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
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
    status: str = Field(default="running", index=True)  # running | done | failed
    error: str | None = None
    traceback: str | None = None
    timings: str = "{}"  # JSON: seconds per phase
    info: str = "{}"  # JSON: realized subset size, shared proxy flags, ...
    environment: str = "{}"  # JSON
    attempts: int = 1
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


MIGRATIONS: list[tuple[str, Any]] = [
    ("m001_initial", _m001_initial),
    ("m002_indexes", _m002_indexes),
]


def _migrate(engine: Engine) -> list[str]:
    applied_now = []
    with engine.begin() as conn:
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
        return raw
    # build the URL from parts so that characters like '?', '#' or '%' in a path stay literal
    return URL.create("sqlite", database=str(Path(raw).expanduser())).render_as_string(hide_password=False)


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL (None for other back ends or in-memory)."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


_OUR_TABLES = {"run", "metric", "artifact", "_migrations"}


def _check_sqlite_file(path: Path) -> None:
    """Refuse corrupt or foreign SQLite files without touching them."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header != b"SQLite format 3\x00":
        raise StoreError(
            f"{path} is not an SQLite database (corrupt or another file); move it away or pass --db with another path"
        )
    try:
        # as_uri() percent-encodes the path: a '#' or '?' in it would otherwise cut the URI short
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is a corrupt SQLite database ({exc}); move it away or pass --db with another path") from exc
    if ok != "ok":
        raise StoreError(f"{path} failed SQLite's integrity check ({ok}); move it away or pass --db with another path")
    foreign = {t for t in tables if not t.startswith("sqlite_")} - _OUR_TABLES
    if tables and not (tables & _OUR_TABLES) and foreign:
        raise StoreError(
            f"{path} is a database of another program (tables: {', '.join(sorted(foreign)[:5])}); "
            "pass --db with a path of its own"
        )


class Store:
    """Open (and migrate) a store. ``Store(None)`` uses ``CORESET_BENCH_DB`` or the default."""

    def __init__(self, db: str | os.PathLike[str] | None = None, *, artifacts_dir: Path | None = None, create: bool = True):
        self.url = resolve_url(db)
        url = make_url(self.url)
        self.sqlite_path: Path | None = None
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            self.sqlite_path = Path(url.database)
            _check_sqlite_file(self.sqlite_path)
            if create:
                try:
                    self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create {self.sqlite_path.parent} ({exc.strerror}); pass --db with a writable path") from exc
            elif not self.sqlite_path.exists():
                raise StoreError(f"no results database at {self.sqlite_path}; run `coreset-bench run` first or pass --db")
        kwargs: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
        self.engine = create_engine(self.url, **kwargs)
        if url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        for attempt in range(20):
            try:
                self.migrations_applied = _migrate(self.engine)
                break
            except (OperationalError, DatabaseError) as exc:
                # two processes creating one new database at once: the loser's CREATE fails
                # because the winner committed first; the migration record then says it is done
                if attempt < 19 and any(m in str(exc.orig) for m in ("already exists", "locked", "UNIQUE constraint failed: _migrations")):
                    time.sleep(0.1 * (attempt + 1))
                    continue
                raise StoreError(f"cannot open the results database {self.url}: {exc.orig}; pass --db with a writable path") from exc
        base = artifacts_dir
        if base is None:
            base = (self.sqlite_path.parent if self.sqlite_path else Path("results")) / "artifacts"
        self.artifacts_dir = base

    # ---- writing (driver only) -----------------------------------------------------------
    def start(self, cell: Any, method: Any, environment: dict[str, Any]) -> bool:
        """Record that a cell started (status running). A failed or stale row is reused.

        Returns False when the cell is already done (e.g. by a concurrent process).
        """
        with Session(self.engine) as s:
            row = s.exec(select(Run).where(Run.key == cell.key)).first()
            if row is not None and row.status == "done":
                return False
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
            row.created = utcnow()
            row.finished = None
            s.add(row)
            try:
                s.commit()
            except IntegrityError:  # a concurrent process inserted the same key first
                s.rollback()
                return self.start(cell, method, environment)
        return True

    def finish(self, key: str, *, metrics: dict[str, float], timings: dict[str, float], info: dict[str, Any], artifacts: Sequence[Any] = ()) -> bool:
        """Store a finished cell's results in one transaction (all or nothing).

        Returns False (and writes nothing) when another process already finished the same cell:
        the first result stored wins, so concurrent runs never duplicate a cell.
        """
        # write artifact files first (content-addressed, atomic rename); rows follow in one commit
        written = [self._write_artifact(a) for a in artifacts]
        with Session(self.engine) as s:
            row = s.exec(select(Run).where(Run.key == key)).one()
            if row.status == "done":
                return False
            for m in s.exec(select(Metric).where(Metric.run_id == row.id)):
                s.delete(m)
            for a in s.exec(select(Artifact).where(Artifact.run_id == row.id)):
                s.delete(a)
            for name, value in metrics.items():
                s.add(Metric(run_id=row.id, name=name, value=float(value)))
            for a, (sha, path, size) in zip(artifacts, written):
                s.add(Artifact(run_id=row.id, kind=a.kind, name=a.name, sha256=sha, path=path, size=size))
            row.status = "done"
            row.timings = json.dumps(timings, sort_keys=True)
            row.info = json.dumps(info, sort_keys=True, default=str)
            row.finished = utcnow()
            s.add(row)
            s.commit()
        return True

    def fail(self, key: str, error: str, tb: str | None, timings: dict[str, float] | None = None) -> None:
        with Session(self.engine) as s:
            row = s.exec(select(Run).where(Run.key == key)).one()
            if row.status == "done":  # finished by a concurrent process: keep its result
                return
            row.status = "failed"
            row.error = error
            row.traceback = tb
            row.timings = json.dumps(timings or {}, sort_keys=True)
            row.finished = utcnow()
            s.add(row)
            s.commit()

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

    # ---- reading -------------------------------------------------------------------------
    def done_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        with Session(self.engine) as s:
            q = select(Run.key).where(Run.status == "done")
            found = set(s.exec(q).all())
        return found if keys is None else found & set(keys)

    def runs(self, *, method: str | None = None, track: str | None = None, profile: str | None = None, status: str | None = None) -> list[Run]:
        with Session(self.engine) as s:
            q = select(Run)
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
            return [r[0] for r in conn.execute(text("SELECT name FROM _migrations ORDER BY rowid"))]

    def integrity(self) -> str:
        if self.sqlite_path is None:
            return "ok (not SQLite)"
        with self.engine.connect() as conn:
            return str(conn.execute(text("PRAGMA integrity_check")).scalar())

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()
