"""Cell records: the one shape the leaderboard reads, from the store or from entries.

A *record* is a plain dict per run::

    {"key", "track", "profile", "method", "method_version", "package", "package_version",
     "params", "axes", "repeat", "seed", "status", "error", "metrics", "timings", "info",
     "environment", "artifacts": [{"kind", "name", "sha256", "path", "size"}], "finished",
     "source", "point"}

``point`` is the canonical key of the axes (``point_key``), computed once per record.

``load_store_records`` reads a store in three bulk queries (runs, metrics, artifacts) through
SQLAlchemy Core, without building ORM objects, so that a store of 100,000 metric rows loads in
well under a second. JSON columns that repeat across runs (params, axes, environment) are parsed
once per distinct string; the parsed dicts are shared and must be treated as read-only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select

from coreset_bench.store import Artifact, Metric, Run, Store
from coreset_bench.tracks.base import canonical_json

RECORD_FIELDS = (
    "key",
    "track",
    "profile",
    "method",
    "method_version",
    "package",
    "package_version",
    "params",
    "axes",
    "repeat",
    "seed",
    "status",
    "error",
    "metrics",
    "timings",
    "info",
    "environment",
    "artifacts",
    "finished",
    "source",
    "point",
)


def _json_loader() -> Any:
    cache: dict[str, Any] = {}

    def load(raw: str | None) -> Any:
        if raw is None:
            return {}
        hit = cache.get(raw)
        if hit is None:
            hit = json.loads(raw)
            cache[raw] = hit
        return hit

    return load


def load_store_records(
    store: Store,
    *,
    track: str | None = None,
    profile: str | None = None,
    method: str | None = None,
    package: str | None = None,
) -> list[dict[str, Any]]:
    """Every run of the store (all statuses) as records, with metrics and artifacts attached."""
    rt = Run.__table__.c  # type: ignore[attr-defined]
    q = select(
        rt.id, rt.key, rt.track, rt.profile, rt.method, rt.method_version, rt.package, rt.package_version,
        rt.params, rt.axes, rt.repeat, rt.seed, rt.status, rt.error, rt.timings, rt.info, rt.environment,
        rt.finished,
    )
    conditions = [col == value for col, value in ((rt.track, track), (rt.profile, profile), (rt.method, method), (rt.package, package)) if value]
    if conditions:
        q = q.where(*conditions)
    shared = _json_loader()
    points: dict[str, str] = {}
    by_id: dict[int, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(q.order_by(rt.id)):
            pk = points.get(row.axes)
            if pk is None:
                pk = points[row.axes] = point_key(shared(row.axes))
            by_id[row.id] = {
                "key": row.key,
                "track": row.track,
                "profile": row.profile,
                "method": row.method,
                "method_version": row.method_version or "",
                "package": row.package or "",
                "package_version": row.package_version or "",
                "params": shared(row.params),
                "axes": shared(row.axes),
                "repeat": int(row.repeat),
                "seed": int(row.seed),
                "status": row.status,
                "error": row.error,
                "metrics": {},
                "timings": json.loads(row.timings) if row.timings else {},
                "info": json.loads(row.info) if row.info else {},
                "environment": shared(row.environment),
                "artifacts": [],
                "finished": row.finished.isoformat() if row.finished else None,
                "source": "store",
                "point": pk,
            }
        if not by_id:
            return []
        mt = Metric.__table__.c  # type: ignore[attr-defined]
        at = Artifact.__table__.c  # type: ignore[attr-defined]
        mq = select(mt.run_id, mt.name, mt.value)
        aq = select(at.run_id, at.kind, at.name, at.sha256, at.path, at.size)
        if conditions:
            ids = select(rt.id).where(*conditions)
            mq = mq.where(mt.run_id.in_(ids))
            aq = aq.where(at.run_id.in_(ids))
        for run_id, name, value in conn.execute(mq):
            rec = by_id.get(run_id)
            if rec is not None:
                rec["metrics"][name] = value
        for run_id, kind, name, sha, path, size in conn.execute(aq.order_by(at.id)):
            rec = by_id.get(run_id)
            if rec is not None:
                rec["artifacts"].append({"kind": kind, "name": name, "sha256": sha, "path": path, "size": size})
    return list(by_id.values())


def normalize_records(rows: Iterable[Mapping[str, Any]], source: str = "rows") -> list[dict[str, Any]]:
    """Records from dicts shaped like ``Store.results()`` (missing fields get neutral defaults)."""
    out = []
    for r in rows:
        rec: dict[str, Any] = {
            "key": r.get("key") or "",
            "track": r["track"],
            "profile": r["profile"],
            "method": r["method"],
            "method_version": str(r.get("method_version") or ""),
            "package": r.get("package") or "",
            "package_version": r.get("package_version") or "",
            "params": dict(r.get("params") or {}),
            "axes": dict(r.get("axes") or {}),
            "repeat": int(r.get("repeat") or 0),
            "seed": int(r.get("seed") or 0),
            "status": r.get("status") or "done",
            "error": r.get("error"),
            "metrics": {k: float(v) for k, v in (r.get("metrics") or {}).items()},
            "timings": dict(r.get("timings") or {}),
            "info": dict(r.get("info") or {}),
            "environment": dict(r.get("environment") or {}),
            "artifacts": [dict(a) for a in r.get("artifacts") or ()],
            "finished": r.get("finished"),
            "source": r.get("source") or source,
        }
        rec["point"] = point_key(rec["axes"])
        out.append(rec)
    return out


def variant_key(rec: Mapping[str, Any]) -> tuple[str, str, str]:
    """(method, method version, canonical params): one leaderboard row / one entry."""
    return (rec["method"], rec["method_version"], canonical_json(rec["params"]))


def point_key(axes: Mapping[str, Any]) -> str:
    """Canonical key of an axis point (the non-seed axes of a cell)."""
    return canonical_json(dict(axes))


def env_value(env: Mapping[str, Any], *names: str) -> str:
    """First non-empty value among ``names`` in an environment dict (top level, then ``versions``)."""
    for scope in (env, env.get("versions") if isinstance(env.get("versions"), Mapping) else {}):
        for n in names:
            v = scope.get(n) if isinstance(scope, Mapping) else None
            if v not in (None, ""):
                return str(v)
    return ""


def _commit_and_dirty(env: Mapping[str, Any]) -> tuple[str, bool | None]:
    """(bare commit, dirty flag) of a run's environment: ``git_dirty`` where recorded, else the
    ``-dirty`` suffix older runs carried on ``git_commit`` (no suffix: clean); ("", None) without
    a commit."""
    commit = env_value(env, "git_commit", "git", "commit")
    if not commit:
        return "", None
    dirty = commit.endswith("-dirty")
    commit = commit[: -len("-dirty")] if dirty else commit
    flag = env.get("git_dirty") if isinstance(env, Mapping) else None
    return commit, flag if isinstance(flag, bool) else dirty


def provenance_of(records: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Provenance fields over records: each the sorted distinct values, joined by ', '.

    ``git_commit`` holds bare commits; ``git_tree`` says whether they were ``clean`` or
    ``modified`` (uncommitted changes to tracked files; both when runs differ). ``cpu_model``,
    ``cpu_isa`` (float-relevant instruction-set extensions), ``torch_cpu_capability`` and ``gpu``
    say which machine computed the numbers (results of training on floats can differ across
    machines with the same code and seed); absent for runs made before they were recorded.
    ``hidden_salt`` only where the records carry one (tracks with hidden generated data): the
    salt that reproduces them (``run --hidden-salt``)."""
    fields = {
        "coreset_bench_version": ("coreset_bench", "coreset_bench_version"),
        "device": ("device_name", "device"),
        "torch_version": ("torch_version", "torch"),
    }
    machine = ("cpu_model", "cpu_isa", "torch_cpu_capability", "gpu")
    seen: dict[str, set[str]] = {k: set() for k in (*fields, "git_commit", *machine)}
    trees: set[str] = set()
    packages: set[str] = set()
    pversions: set[str] = set()
    dates: list[str] = []
    envs_seen: set[int] = set()
    salts: set[str] = set()
    for rec in records:
        env = rec.get("environment") or {}
        if id(env) not in envs_seen:  # store records share one dict per distinct environment
            envs_seen.add(id(env))
            for k, names in fields.items():
                v = env_value(env, *names)
                if v:
                    seen[k].add(v)
            for part in (p.strip() for p in env_value(env, "git_commit", "git", "commit").split(",")):
                if part:
                    commit, dirty = _commit_and_dirty({**env, "git_commit": part})
                    seen["git_commit"].add(commit)
                    if dirty is not None:
                        trees.add("modified" if dirty else "clean")
            tree = env_value(env, "git_tree")
            trees.update(t.strip() for t in tree.split(",") if t.strip())
            for k in machine:
                v = env_value(env, k)
                if v:
                    seen[k].add(v)
            if isinstance(env, Mapping) and "hidden_salt" in env:
                salts.add(str(env["hidden_salt"]))
        if rec.get("package"):
            packages.add(str(rec["package"]))
        pv = rec.get("package_version") or env_value(env, "plugin_package_version")
        if pv:
            pversions.add(str(pv))
        d = rec.get("finished") or env_value(env, "date")
        if d:
            dates.append(str(d))
    out = {k: ", ".join(sorted(seen[k])) for k in fields}
    out["git_commit"] = ", ".join(sorted(seen["git_commit"]))
    if trees:
        out["git_tree"] = ", ".join(sorted(trees))
    for k in machine:
        if seen[k]:
            out[k] = " | ".join(sorted(seen[k])) if k == "cpu_isa" else ", ".join(sorted(seen[k]))
    out["plugin_package"] = ", ".join(sorted(packages))
    out["plugin_version"] = ", ".join(sorted(pversions))
    out["first_run"] = min(dates) if dates else ""
    out["last_run"] = max(dates) if dates else ""
    if salts:  # runs of tracks with hidden generated data: the salt of their seeds ("" = public seeds)
        out["hidden_salt"] = ", ".join(sorted(salts))
    return out


def hidden_salt_of(rec: Mapping[str, Any]) -> str:
    """The salt of the hidden generated data a record was computed on ("" = public seeds, also
    for records made before the salt existed): cells of different salts saw different data."""
    env = rec.get("environment")
    return str(env.get("hidden_salt", "")) if isinstance(env, Mapping) else ""


def version_key(version: Any) -> tuple[int, Any]:
    """A sort key that compares versions as versions ("10" > "9", "1.10" > "1.9").

    PEP 440 versions compare with ``packaging.version``; others as tuples of the integers in
    them; anything else after every parsed version, by its text.
    """
    from packaging.version import InvalidVersion, Version

    text = str(version)
    try:
        return (0, Version(text))
    except InvalidVersion:
        pass
    parts = text.split(".")
    if parts and all(p.isdigit() for p in parts):
        return (1, tuple(int(p) for p in parts))
    return (2, text)


# ---- sources: published entries, a local store, a reproduction ---------------------------------

#: labels a non-published source's rows carry as a PEP 440 local version (``kcenter@1.0+local``)
SOURCE_LABELS = ("local", "reproduction")


def base_version(version: Any) -> str:
    """A method version without its source label (``1.0+local`` -> ``1.0``)."""
    text = str(version)
    head, sep, tail = text.rpartition("+")
    return head if sep and tail in SOURCE_LABELS else text


def source_label(version: Any) -> str:
    """The source label of a version (``1.0+reproduction`` -> ``reproduction``), "" if published."""
    text = str(version)
    _, sep, tail = text.rpartition("+")
    return tail if sep and tail in SOURCE_LABELS else ""


def _same_numbers(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.get("status") != b.get("status"):
        return False
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    if set(ma) != set(mb):
        return False
    for k, x in ma.items():
        y = mb[k]
        if x is None or y is None:
            if x is not y:
                return False
            continue
        fx, fy = float(x), float(y)
        if fx != fy and not (fx != fx and fy != fy):  # NaN == NaN here
            return False
    return True


def join_source(
    published: list[dict[str, Any]], other: Iterable[dict[str, Any]], label: str = "local"
) -> tuple[list[dict[str, Any]], list[str], int]:
    """Published records plus another source's, which never replaces a published number.

    Returns (records, conflicts, identical). Of ``other``'s records (a local store, a
    reproduction): one whose cell key a published record has, with the same status and metrics,
    is dropped (the published row shows it; counted in ``identical``); one with the same key and
    different numbers is a *conflict*: listed (one line each) and shown in its own row; the rest
    join as their own rows. Every joining record of a profile that has published records is
    labelled: its method version gets ``+label`` (a PEP 440 local version), so the board shows
    ``kcenter@1.0+local`` beside the published ``kcenter@1.0`` and never mixes the two in one row.
    Profiles with no published record are not relabelled (there is nothing to confuse them with).
    """
    if label not in SOURCE_LABELS:
        raise ValueError(f"unknown source label {label!r}; one of {', '.join(SOURCE_LABELS)}")
    by_key = {r["key"]: r for r in published if r.get("key")}
    published_profiles = {r["profile"] for r in published}
    out = list(published)
    conflicts: list[str] = []
    identical = 0
    for rec in other:
        pub = by_key.get(rec.get("key") or "")
        if pub is not None:
            if _same_numbers(pub, rec):
                identical += 1
                continue
            diffs = []
            for k in sorted(set(pub.get("metrics") or {}) | set(rec.get("metrics") or {})):
                x, y = (pub.get("metrics") or {}).get(k), (rec.get("metrics") or {}).get(k)
                if x != y:
                    diffs.append(f"{k} {_fmt(x)} published, {_fmt(y)} {label}")
            what = "; ".join(diffs[:3]) + (f"; {len(diffs) - 3} more" if len(diffs) > 3 else "")
            if pub.get("status") != rec.get("status"):
                what = f"status {pub.get('status')} published, {rec.get('status')} {label}" + (f"; {what}" if what else "")
            axes = " ".join(f"{k}={v}" for k, v in (rec.get("axes") or {}).items())
            conflicts.append(f"{rec['profile']} {rec['method']} {axes} repeat={rec['repeat']} (cell {str(rec['key'])[:12]}): {what}; the published number is shown, the {label} one in its own row")
        if rec["profile"] in published_profiles:
            rec = dict(rec)
            rec["method_version"] = f"{base_version(rec.get('method_version') or '')}+{label}"
            rec["source"] = label
        out.append(rec)
    return out, conflicts, identical


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{float(x):.4g}"


# ---- public text: what a published page or entry may say (``coreset_bench.public``) ----------

from coreset_bench.public import public_text  # noqa: E402,F401 - its old home; the board and the exporter import it from here
