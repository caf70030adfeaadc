"""Copy a results store to another database: ``coreset-bench store copy SRC DST``.

The way an SQLite store moves to a shared PostgreSQL server (or back, or to another file). The
source is opened read-only; the destination is created and migrated, and must hold no runs yet
(so nothing is merged or overwritten). Every row of ``run``, ``metric``, ``artifact`` and ``meta``
(the hidden-data salt included, so the copied cells stay paired with new ones) is written with
its id, in one transaction: a failure leaves the destination without any of them. On
PostgreSQL the id sequences are then moved past the copied ids.

The copy is checked: the row counts and a content hash (``store_digest``: SHA-256 over every
row in key order, ids left out, times in UTC) of source and destination must agree, or the
command fails. Artifact rows keep their paths: the files stay where they are (content-addressed,
under the source's ``artifacts/``), so put that directory where the readers of the new store can
reach it (a shared file system on a cluster).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text

from .store import Artifact, Metric, Run, Store, StoreError, _aware

__all__ = ["CopyReport", "copy_store", "store_digest", "row_counts"]

_TABLES = (Run, Metric, Artifact)


@dataclass(frozen=True)
class CopyReport:
    """What ``copy_store`` copied: rows per table and the content hash both sides share."""

    counts: dict[str, int]
    digest: str
    source: str
    destination: str


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = _aware(value)
        return aware.isoformat() if aware is not None else None
    return value


def row_counts(store: Store) -> dict[str, int]:
    """Rows per table (``run``, ``metric``, ``artifact``, ``meta``)."""
    out: dict[str, int] = {}
    with store.engine.connect() as conn:
        for t in ("run", "metric", "artifact", "meta"):
            out[t] = int(conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() or 0)
    return out


def store_digest(store: Store) -> str:
    """SHA-256 over the store's content: every run (by key, without its id), its metrics and
    artifacts (by run key), and the ``meta`` rows; times in UTC ISO form, floats by ``repr``.
    Two stores with the same digest hold the same results whatever their back ends."""
    h = hashlib.sha256()
    with store.engine.connect() as conn:
        runs = [dict(r._mapping) for r in conn.execute(select(Run.__table__))]
        key_of = {r["id"]: r["key"] for r in runs}
        for r in sorted(runs, key=lambda r: r["key"]):
            h.update(json.dumps({k: _plain(v) for k, v in r.items() if k != "id"}, sort_keys=True, default=str).encode())
        mets = [(key_of[m.run_id], m.name, repr(float(m.value))) for m in conn.execute(select(Metric.__table__))]
        for m in sorted(mets):
            h.update(json.dumps(m).encode())
        arts = [(key_of[a.run_id], a.kind, a.name, a.sha256, a.path, int(a.size or 0)) for a in conn.execute(select(Artifact.__table__))]
        for a in sorted(arts):
            h.update(json.dumps(a).encode())
        for k, v in sorted(conn.execute(text("SELECT key, value FROM meta")).all()):
            h.update(json.dumps([k, v]).encode())
    return h.hexdigest()


def copy_store(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> CopyReport:
    """Copy every row of the store ``src`` into the new (empty) store ``dst``; see the module
    docstring. Raises ``StoreError`` (one line) when ``dst`` already holds runs, when the two
    stores' salts differ, or when the copy does not check out."""
    source = Store(src, create=False, read_only=True)
    try:
        dest = Store(dst, create=True)
    except StoreError:
        source.close()
        raise
    try:
        if source.url == dest.url:
            raise StoreError("the source and the destination are the same database; pass another DST")
        have = row_counts(dest)
        if have["run"] or have["metric"] or have["artifact"]:
            raise StoreError(f"{dest.safe_url} already holds {have['run']} run(s); copy into an empty database (a new file or a new PostgreSQL database)")
        with source.engine.connect() as sconn:
            rows = {t.__tablename__: [dict(r._mapping) for r in sconn.execute(select(t.__table__).order_by(t.__table__.c.id))] for t in _TABLES}
            meta = [tuple(r) for r in sconn.execute(text("SELECT key, value FROM meta")).all()]
        with dest.engine.connect() as dconn:
            dest_meta = {str(k): str(v) for k, v in dconn.execute(text("SELECT key, value FROM meta")).all()}
        for k, v in meta:
            if k in dest_meta and dest_meta[k] != v:
                raise StoreError(f"{dest.safe_url} already has a different {k!r}; copy into a new database")
        with dest.engine.begin() as conn:
            for t in _TABLES:
                batch = rows[t.__tablename__]
                for i in range(0, len(batch), 1000):
                    conn.execute(insert(t.__table__), batch[i : i + 1000])
            for k, v in meta:
                if k not in dest_meta:
                    conn.execute(text("INSERT INTO meta (key, value) VALUES (:k, :v)"), {"k": k, "v": v})
            if conn.dialect.name == "postgresql":  # explicit ids do not move a serial's sequence
                for t in ("run", "metric", "artifact"):
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE((SELECT MAX(id) FROM {t}), 0) + 1, false)"))
        counts_src, counts_dst = row_counts(source), row_counts(dest)
        digest_src, digest_dst = store_digest(source), store_digest(dest)
        if counts_src != counts_dst or digest_src != digest_dst:
            raise StoreError(f"the copy in {dest.safe_url} does not match its source (rows {counts_src} vs {counts_dst}); nothing else was changed, drop it and retry")
        return CopyReport(counts=counts_dst, digest=digest_dst, source=source.safe_url, destination=dest.safe_url)
    finally:
        source.close()
        dest.close()
