"""Leaderboard entries: the portable result of one method variant on one profile.

An entry is one JSON file (``results/entries/<track>/<profile>@<version>/<method>@<version>.json``)
in the spirit of RobustBench's ``model_info`` files::

    {
      "schema": "coreset-bench/entry", "schema_version": 1,
      "track": "coreset",
      "profile": {"id": "coreset/quick@1", "name": "quick", "version": 1},
      "method": {"name", "version", "kind", "summary", "citation", "params", "package", "package_version"},
      "provenance": {"coreset_bench_version", "plugin_package", "plugin_version", "git_commit",
                     "device", "torch_version", "first_run", "last_run", "exported", "exported_with",
                     "hidden_salt" (tracks with hidden generated data: the salt of their seeds,
                     "" = public seeds; absent in older entries, read as "")},
      "coverage": {"done": 40, "expected": 45, "complete": false},
      "cells": [{"key", "axes", "repeat", "seed", "metrics", "timings", "info",
                 "subsets": [{"kind", "name", "sha256", "size"}], "finished"}],
      "cells_sha256": "<sha256 of the canonical JSON of cells>",
      "aggregates": {"points": [{"axes", "metrics": {name: {"mean", "ci95", "n"}}}]},
      "signature": {...}   (optional: Ed25519 over the rest of the entry, see ``signing``)
    }

``validate_entry(obj, known_profiles)`` returns every problem found (empty: valid). It checks the
schema, that the profile and its version are known (results of different profile versions are
never mixed), that every cell is a cell of that profile for that method (its key and seed are
recomputed from the axes and repeat), that metrics are finite, that the aggregates and the cell
digest agree with the cells (an edited number is caught), and that the coverage claim is true.
An incomplete entry is valid; it is marked incomplete on the board, never averaged silently.
``check_entry`` raises ``EntryError`` with a one-line reason instead.

Enforced before anything else is read from a file (``load_entry``, ``load_entries``):

* files above ``MAX_ENTRY_BYTES`` (16 MiB) are rejected before parsing, and JSON nested deeper
  than ``MAX_DEPTH`` levels is rejected (never a recursion error);
* every block has a closed set of keys (``SCHEMA_KEYS``; ``info`` of the coreset track:
  its ``Track.info_keys`` plus ``method_*``); an unknown key anywhere is rejected. Free-form maps
  are the method's ``params``, a cell's ``axes``, ``metrics`` and ``timings``, and the ``info``
  of tracks without a declared key set;
* every metric, per cell and as an aggregate mean, lies in the range its track declares
  (``Track.metric_bounds``; ``Track.proportion_metrics``: 0 or 1 per cell), read through
  ``board.metric_ranges``, the one reader the board uses too (``value_problem``); any metric,
  declared or not, has |x| <= ``METRIC_BOUND`` (1e12); timings are finite, >= 0 and <= 1e9 s;
* a method name owned by an installed plugin (every built-in method name is owned by
  ``coreset-bench``) is reserved: an entry of that name from another package is rejected;
* an entry that claims a built-in row (``builtin_claim``: package ``coreset-bench``, a built-in
  method name, an installed privileged method) is accepted only when something vouches for it
  (``vouch``): a signature by a trusted key, its digest among the published entries' pins
  (``signing.Trust.pinned``), or the same cells in the local store (``load_entries(local=...)``);
* any exception while loading or validating one entry rejects that entry with a one-line
  reason, and the other entries still render.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import coreset_bench
from coreset_bench import registry as plugins
from coreset_bench.store import Store
from coreset_bench.tracks.base import Cell, Profile, Track, canonical_json
from coreset_bench.tracks.coreset import CORESET_INFO_KEYS  # noqa: F401 - the coreset track's Track.info_keys, under its old name

from . import stats
from .board import MetricRanges, expected_cells, method_stand_in, metric_ranges
from .data import load_store_records, point_key, provenance_of, public_text, variant_key
from .errors import EntryError

SCHEMA = "coreset-bench/entry"
SCHEMA_VERSION = 1

MAX_ENTRY_BYTES = 16 * 1024 * 1024  # larger files are rejected before parsing
MAX_DEPTH = 32  # nesting levels of JSON containers

#: the closed key set of every block of an entry (``optional``: keys that may be absent)
SCHEMA_KEYS: dict[str, frozenset[str]] = {
    "entry": frozenset({"schema", "schema_version", "track", "profile", "method", "provenance", "coverage", "cells", "cells_sha256", "aggregates", "signature"}),
    "profile": frozenset({"id", "name", "version"}),
    "method": frozenset({"name", "version", "kind", "summary", "citation", "params", "package", "package_version"}),
    "provenance": frozenset({
        "coreset_bench_version", "plugin_package", "plugin_version", "git_commit", "device", "torch_version",
        "first_run", "last_run", "exported", "exported_with", "hidden_salt",
        # optional: whether the commit's tree was clean, and the machine (CPU model, instruction
        # set, torch's CPU kernel level, GPU) that computed the numbers
        "git_tree", "cpu_model", "cpu_isa", "torch_cpu_capability", "gpu",
    }),
    "coverage": frozenset({"done", "expected", "complete"}),
    "cell": frozenset({"key", "axes", "repeat", "seed", "metrics", "timings", "info", "subsets", "finished"}),
    "subset": frozenset({"kind", "name", "sha256", "size"}),
    "aggregates": frozenset({"points"}),
    "aggregate point": frozenset({"axes", "metrics"}),
    "aggregate metric": frozenset({"mean", "ci95", "n"}),
    "signature": frozenset({"algorithm", "key_id", "public_key", "signature"}),
    "per_point": frozenset({"n", "bits", "points_sha"}),
}
def info_keys_of(track: Track | None) -> frozenset[str] | None:
    """The ``info`` keys a cell of ``track`` may carry (``Track.info_keys``; None: free-form)."""
    keys = getattr(track, "info_keys", None) if track is not None else None
    return frozenset(str(k) for k in keys) if isinstance(keys, (set, frozenset, tuple, list)) else None

#: |x| of every metric, declared or not (a sanity bound: the track's declarations are the ranges)
METRIC_BOUND = 1e12
TIMING_BOUND = 1e9  # seconds


@dataclass
class ExportedEntry:
    path: Path
    method: str
    profile: str
    done: int
    expected: int
    #: the file already held this content (only the export time would differ): left untouched
    unchanged: bool = False

    @property
    def complete(self) -> bool:
        return self.done == self.expected


# ---- building ---------------------------------------------------------------------------------


def _cells_digest(cells: Sequence[Mapping[str, Any]]) -> str:
    return hashlib.sha256(canonical_json(list(cells)).encode()).hexdigest()


def aggregate_cells(cells: Sequence[Mapping[str, Any]], profile: Profile) -> dict[str, Any]:
    """Per axis point and metric: mean, 95 % t-interval half-width and n over repeats.

    ``ci95`` is the raw t half-width (``stats.t_interval``), never clipped to the metric's range:
    it is part of the signed entry and recomputed on load as an integrity check, and nothing
    shows it (the board recomputes its intervals from the cells, with the declared ranges).

    Points come in the profile's order, then any points outside the profile's matrix.
    """
    by_point: dict[str, dict[str, list[float]]] = {}
    axes_of: dict[str, dict[str, Any]] = {}
    for c in sorted(cells, key=lambda c: int(c["repeat"])):
        pk = point_key(c["axes"])
        axes_of[pk] = dict(c["axes"])
        slot = by_point.setdefault(pk, {})
        for m, v in c["metrics"].items():
            slot.setdefault(m, []).append(float(v))
    order = {point_key(ap): i for i, ap in enumerate(profile.axis_points())}
    points = []
    # the profile's points in its order, then points outside it (``full`` at budget 1.0)
    for pk in sorted(by_point, key=lambda k: (order.get(k, len(order)), k)):
        mets = {}
        for m in sorted(by_point[pk]):
            iv = stats.t_interval(by_point[pk][m])
            assert iv is not None
            mets[m] = iv.as_dict()
        points.append({"axes": axes_of[pk], "metrics": mets})
    return {"points": points}


def _method_block(track: Track, rec: Mapping[str, Any]) -> dict[str, Any]:
    m = method_stand_in(track, rec["method"], rec["method_version"], rec["params"])
    return {
        "name": rec["method"],
        "version": rec["method_version"],
        "kind": getattr(m, "kind", "") or track.contestant_kind,
        "summary": public_text(getattr(m, "summary", "") or ""),
        "citation": public_text(getattr(m, "citation", "") or ""),
        "params": dict(rec["params"]),
        "package": rec.get("package") or getattr(m, "package", "") or "",
        "package_version": rec.get("package_version") or "",
    }


def build_entry(track: Track, profile: Profile, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The entry of one method variant on ``profile`` from its records (done ones are exported)."""
    if not records:
        raise ValueError("build_entry needs at least one record")
    first = records[0]
    if len({variant_key(r) for r in records}) != 1:
        raise ValueError("build_entry got records of more than one method variant")
    expected = expected_cells(track, profile, first["method"], first["method_version"], first["params"])
    cells = []
    seen: set[tuple[str, int]] = set()
    done_recs = []
    for r in sorted(records, key=lambda r: (r["point"], int(r["repeat"]))):
        k = (r["point"], int(r["repeat"]))
        if r["status"] != "done" or k not in expected or k in seen:
            continue
        seen.add(k)
        done_recs.append(r)
        cells.append(
            {
                "key": r["key"],
                "axes": dict(r["axes"]),
                "repeat": int(r["repeat"]),
                "seed": int(r["seed"]),
                # a non-finite metric is no result (the board ignores it too); JSON has no NaN
                "metrics": {m: float(v) for m, v in sorted(r["metrics"].items()) if math.isfinite(v)},
                "timings": _finite(dict(r["timings"])),
                "info": _public(_finite(dict(r["info"]))),  # no local paths or issue numbers in a published entry
                "subsets": [
                    {"kind": a["kind"], "name": a["name"], "sha256": a["sha256"], "size": int(a.get("size") or 0)}
                    for a in r.get("artifacts") or ()
                ],
                "finished": r.get("finished"),
            }
        )
    prov = provenance_of(done_recs or records)
    prov["exported"] = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    prov["exported_with"] = coreset_bench.__version__
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "track": track.name,
        "profile": {"id": profile.id, "name": profile.name, "version": profile.version},
        "method": _method_block(track, first),
        "provenance": prov,
        "coverage": {"done": len(cells), "expected": len(expected), "complete": len(cells) == len(expected)},
        "cells": cells,
        "cells_sha256": _cells_digest(cells),
        "aggregates": aggregate_cells(cells, profile),
    }


def _public(obj: Any) -> Any:
    """``obj`` with every string as a public entry may hold it (``data.public_text``)."""
    if isinstance(obj, str):
        return public_text(obj)
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_public(v) for v in obj]
    return obj


def _finite(obj: Any) -> Any:
    """``obj`` with non-finite floats replaced by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "method"


def entry_filename(entry: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> str:
    m = entry["method"]
    base = f"{_safe(m['name'])}@{_safe(str(m['version']))}"
    if defaults is not None and dict(m["params"]) == dict(defaults):
        return base + ".json"
    return base + "-" + hashlib.sha256(canonical_json(m["params"]).encode()).hexdigest()[:8] + ".json"


def setting_label(method: str, params: Mapping[str, Any], defaults: Mapping[str, Any] | None) -> str:
    """``cld`` for the installed defaults, else ``cld(epochs_used=0.5)`` (the parameters that differ)."""
    diff = {k: v for k, v in dict(params).items() if defaults is None or k not in defaults or defaults[k] != v}
    return f"{method}({', '.join(f'{k}={v}' for k, v in sorted(diff.items()))})" if diff else method


def _content(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry without what changes on every export (the export time) or with the signer."""
    out = {k: v for k, v in entry.items() if k != "signature"}
    out["provenance"] = {k: v for k, v in dict(out.get("provenance") or {}).items() if k != "exported"}
    return out


def _same_content(path: Path, entry: Mapping[str, Any], sign_key: Any) -> bool:
    """Whether ``path`` already holds ``entry`` (up to its export time), signed as asked: then
    ``export`` leaves the file byte-identical instead of writing a new timestamp."""
    if not path.is_file():
        return False
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if sign_key is None:
        if "signature" in old:  # re-exporting unsigned replaces a signed file on purpose
            return False
    else:
        from .signing import fingerprint

        if (old.get("signature") or {}).get("key_id") != fingerprint(sign_key.public_key()):
            return False
    # the JSON round trip of the new entry, as it would be read back
    return _content(old) == _content(json.loads(json.dumps(entry, allow_nan=False)))


def export_entries(
    source: Store | Iterable[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    plugin: str | None = None,
    tracks: Mapping[str, Track] | None = None,
    sign_key: Any = None,
) -> tuple[list[ExportedEntry], list[str]]:
    """Write one entry per (method variant, profile) of a store or records; returns (written, warnings).

    ``plugin`` keeps only runs whose method name or plugin package is ``plugin``. Files go to
    ``out_dir/<track>/<profile>@<version>/<method>@<version>[-<params hash>].json`` (the hash
    only when the parameters are not the installed method's defaults) and are replaced in place.
    ``sign_key`` (an Ed25519 private key, see ``signing``) adds a ``signature`` block to each.
    """
    records = load_store_records(source) if isinstance(source, Store) else source
    tracks = dict(tracks) if tracks is not None else plugins.tracks()
    out = Path(out_dir)
    groups: dict[tuple[str, str, tuple[str, str, str]], list[Mapping[str, Any]]] = {}
    for r in records:
        if plugin and plugin not in (r["method"], r.get("package")):
            continue
        groups.setdefault((r["track"], r["profile"], variant_key(r)), []).append(r)
    written: list[ExportedEntry] = []
    warnings: list[str] = []
    skipped: dict[str, int] = {}
    for (tname, pid, _vk), recs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        track = tracks.get(tname)
        profile = _find_profile(track, pid) if track is not None else None
        if track is None or profile is None:
            skipped[pid] = skipped.get(pid, 0) + len(recs)
            continue
        entry = build_entry(track, profile, recs)
        try:
            defaults = plugins.method(recs[0]["method"]).params
        except LookupError:
            defaults = None
        if not entry["cells"]:
            warnings.append(f"{setting_label(recs[0]['method'], recs[0]['params'], defaults)} on {pid}: no finished cells, no entry written")
            continue
        d = out / _safe(tname) / f"{_safe(profile.name)}@{profile.version}"
        d.mkdir(parents=True, exist_ok=True)
        path = d / entry_filename(entry, defaults)
        cov = entry["coverage"]
        if _same_content(path, entry, sign_key):
            written.append(ExportedEntry(path, recs[0]["method"], pid, cov["done"], cov["expected"], unchanged=True))
            continue
        if sign_key is not None:
            from .signing import sign_entry

            entry = sign_entry(entry, sign_key)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(entry, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        written.append(ExportedEntry(path, recs[0]["method"], pid, cov["done"], cov["expected"]))
    for pid, n in sorted(skipped.items()):
        warnings.append(f"{n} runs of {pid} not exported: no installed track defines that profile")
    return written, warnings


def _find_profile(track: Track, pid: str) -> Profile | None:
    for p in track.profiles():
        if p.id == pid:
            return p
    return None


# ---- loading and validating -------------------------------------------------------------------


def known_profiles_from_plugins() -> dict[str, Profile]:
    """Every profile of every installed track, by id."""
    out: dict[str, Profile] = {}
    for t in plugins.tracks().values():
        for p in t.profiles():
            out[p.id] = p
    return out


def load_entry(path: str | Path) -> dict[str, Any]:
    """Parse an entry file; ``EntryError`` for unreadable, oversized, too deep or malformed JSON."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_ENTRY_BYTES:
            raise EntryError(f"file is {size} bytes, above the {MAX_ENTRY_BYTES} byte limit for an entry; not parsed")
        with p.open("rb") as fh:
            raw = fh.read(MAX_ENTRY_BYTES + 1)
    except OSError as exc:
        raise EntryError(f"cannot read: {exc}") from exc
    if len(raw) > MAX_ENTRY_BYTES:
        raise EntryError(f"file is above the {MAX_ENTRY_BYTES} byte limit for an entry; not parsed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EntryError(f"cannot read: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    depth = _max_depth_of_text(text)
    if depth > MAX_DEPTH:
        raise EntryError(f"JSON nested {depth} levels deep, above the limit of {MAX_DEPTH}; not parsed")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EntryError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError:
        raise EntryError(f"JSON nested too deeply (limit {MAX_DEPTH} levels); not parsed") from None
    if not isinstance(obj, dict):
        raise EntryError(f"malformed entry: the top level is a JSON {type(obj).__name__}, not an object")
    return obj


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


def _max_depth_of_text(text: str) -> int:
    """Deepest nesting of ``[``/``{`` outside JSON strings (vectorized, no recursion)."""
    import numpy as np

    bare = _JSON_STRING.sub("", text).encode("utf-8", "replace")
    if not bare:
        return 0
    arr = np.frombuffer(bare, dtype=np.uint8)
    step = np.isin(arr, (ord("["), ord("{"))).astype(np.int64) - np.isin(arr, (ord("]"), ord("}"))).astype(np.int64)
    return int(np.cumsum(step).max(initial=0))


def _max_depth(obj: Any) -> int:
    """Nesting depth of parsed JSON containers (iterative)."""
    best = 0
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            vals = o.values()
        elif isinstance(o, list):
            vals = o
        else:
            continue
        best = max(best, d)
        if best > MAX_DEPTH:
            return best
        stack.extend((v, d + 1) for v in vals)
    return best


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return _is_number(a) and _is_number(b) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _axes_text(axes: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in axes.items())


def _schema_problems(obj: Any, tracks: Mapping[str, Track] | None = None) -> list[str]:
    if not isinstance(obj, dict):
        return [f"malformed entry: the top level is a JSON {type(obj).__name__}, not an object"]
    if obj.get("schema") != SCHEMA:
        return [f"not a coreset-bench entry (schema {obj.get('schema')!r}, expected {SCHEMA!r})"]
    sv = obj.get("schema_version")
    if not isinstance(sv, int) or isinstance(sv, bool):
        return ["schema_version is missing or not an integer"]
    if sv != SCHEMA_VERSION:
        newer = " (newer than this coreset-bench; upgrade it)" if sv > SCHEMA_VERSION else ""
        return [f"unsupported schema_version {sv}{newer}; this coreset-bench reads version {SCHEMA_VERSION}"]
    spec: dict[str, type | tuple[type, ...]] = {
        "track": str,
        "profile": dict,
        "method": dict,
        "provenance": dict,
        "coverage": dict,
        "cells": list,
        "cells_sha256": str,
        "aggregates": dict,
    }
    problems = []
    depth = _max_depth(obj)
    if depth > MAX_DEPTH:
        return [f"JSON nested {depth} levels deep, above the limit of {MAX_DEPTH}"]
    unknown = _unknown_key(obj, SCHEMA_KEYS["entry"], "the entry")
    if unknown:
        return [unknown]
    for k, t in spec.items():
        if k not in obj:
            problems.append(f"schema: missing field {k!r}")
        elif not isinstance(obj[k], t):
            problems.append(f"schema: field {k!r} must be a JSON {'object' if t is dict else 'array' if t is list else 'string'}")
    if problems:
        return problems
    for block in ("profile", "method", "provenance", "coverage", "aggregates"):
        unknown = _unknown_key(obj[block], SCHEMA_KEYS[block], block)
        if unknown:
            return [unknown]
    if "signature" in obj:
        sig = obj["signature"]
        if not isinstance(sig, dict):
            return ["schema: signature must be a JSON object"]
        unknown = _unknown_key(sig, SCHEMA_KEYS["signature"], "signature")
        if unknown:
            return [unknown]
        bad_sig = [k for k, v in sig.items() if not isinstance(v, str)]
        if bad_sig:
            return [f"schema: signature.{bad_sig[0]} must be a string"]
    for block, fields in (
        ("profile", {"id": str, "version": int}),
        ("method", {"name": str, "version": str, "params": dict}),
        ("coverage", {"done": int, "expected": int, "complete": bool}),
        ("aggregates", {"points": list}),
    ):
        for f, t in fields.items():
            v = obj[block].get(f)
            if not isinstance(v, t) or (t is int and isinstance(v, bool)):
                problems.append(f"schema: {block}.{f} is missing or not a {t.__name__}")
    for block, keys in (("method", ("kind", "summary", "citation", "package", "package_version")), ("provenance", tuple(obj["provenance"]))):
        bad_text = [k for k in keys if k in obj[block] and not isinstance(obj[block][k], str)]
        if bad_text:
            problems.append(f"schema: {block}.{bad_text[0]} must be a string")
    if problems:
        return problems
    for k, p in enumerate(obj["aggregates"]["points"]):
        if not isinstance(p, dict):
            return [f"schema: aggregates.points[{k}] is not an object"]
        unknown = _unknown_key(p, SCHEMA_KEYS["aggregate point"], f"aggregates.points[{k}]")
        if unknown:
            return [unknown]
        for m, agg in (p.get("metrics") or {}).items() if isinstance(p.get("metrics"), dict) else ():
            if isinstance(agg, dict):
                unknown = _unknown_key(agg, SCHEMA_KEYS["aggregate metric"], f"aggregates.points[{k}].metrics.{m}")
                if unknown:
                    return [unknown]
    info_keys = info_keys_of(tracks.get(obj["track"]) if tracks is not None and isinstance(obj["track"], str) else None)
    for i, c in enumerate(obj["cells"]):
        if not isinstance(c, dict):
            problems.append(f"schema: cells[{i}] is not an object")
            break
        unknown = _unknown_key(c, SCHEMA_KEYS["cell"], f"cells[{i}]")
        if unknown:
            problems.append(unknown)
            break
        bad = [
            f
            for f, t in (("key", str), ("axes", dict), ("repeat", int), ("seed", int), ("metrics", dict), ("timings", dict), ("info", dict), ("subsets", list))
            if not isinstance(c.get(f), t) or isinstance(c.get(f), bool)
        ]
        if bad:
            problems.append(f"schema: cells[{i}] lacks or mistypes {', '.join(bad)}")
            break
        where = f"cells[{i}] ({_axes_text(c['axes'])}, repeat {c['repeat']})"
        nonfinite = [m for m, v in c["metrics"].items() if not _is_number(v)]
        if nonfinite:
            problems.append(f"{where}: metric {nonfinite[0]} is not a finite number")
            break
        bad_timing = next((k for k, v in c["timings"].items() if not (_is_number(v) and 0.0 <= v <= TIMING_BOUND)), None)
        if bad_timing is not None:
            problems.append(f"{where}: timing {bad_timing} = {c['timings'][bad_timing]!r} is not a finite number of seconds in [0, {TIMING_BOUND:g}]")
            break
        bad_subset = next((j for j, sub in enumerate(c["subsets"]) if not isinstance(sub, dict) or _unknown_key(sub, SCHEMA_KEYS["subset"], "")), None)
        if bad_subset is not None:
            sub = c["subsets"][bad_subset]
            problems.append(_unknown_key(sub, SCHEMA_KEYS["subset"], f"{where} subsets[{bad_subset}]") if isinstance(sub, dict) else f"schema: {where} subsets[{bad_subset}] is not an object")
            break
        info_problem = _info_problem(c["info"], info_keys, c["metrics"])
        if info_problem:
            problems.append(f"{where}: {info_problem}")
            break
    return problems


def _span_text(lo: float | None, hi: float | None) -> str:
    return f"{'(-inf' if lo is None else f'[{lo:g}'}, {'inf)' if hi is None else f'{hi:g}]'}"


def value_problem(metric: str, value: float, ranges: MetricRanges, track: str, *, per_cell: bool = True) -> str:
    """'' when ``value`` is a value ``metric`` can take, else why not (one line).

    The range is the one the track declares (``Track.metric_bounds``; ``Track.proportion_metrics``:
    0 or 1 per cell, a mean in [0, 1] over cells), read through ``board.metric_ranges``; any
    metric, declared or not, must moreover satisfy |x| <= ``METRIC_BOUND``.
    """
    span = ranges.get(metric)
    if span is not None and span.proportion and per_cell and value not in (0.0, 1.0):
        return f"metric {metric} = {value:.6g} is not 0 or 1: track {track!r} declares it one yes/no outcome per cell (proportion_metrics)"
    if span is not None and ((span.low is not None and value < span.low) or (span.high is not None and value > span.high)):
        return f"metric {metric} = {value:.6g} is outside {_span_text(span.low, span.high)}, the range track {track!r} declares for it (metric_bounds)"
    if abs(value) > METRIC_BOUND:
        return f"metric {metric} = {value:.6g} is outside {_span_text(-METRIC_BOUND, METRIC_BOUND)}, the bound of every metric"
    return ""


def _range_problems(obj: Mapping[str, Any], track: Track | None) -> list[str]:
    """The first per-cell value and the first aggregate mean outside the range the entry's track
    declares (a track that is not installed declares nothing: only ``METRIC_BOUND`` applies)."""
    ranges = metric_ranges(track) if track is not None else MetricRanges()
    name = obj["track"]
    problems = []
    for i, c in enumerate(obj["cells"]):
        bad = next((p for m, v in c["metrics"].items() if (p := value_problem(m, v, ranges, name))), "")
        if bad:
            problems.append(f"cells[{i}] ({_axes_text(c['axes'])}, repeat {c['repeat']}): {bad}")
            break
    for p in obj["aggregates"]["points"]:
        mets = p.get("metrics") if isinstance(p.get("metrics"), dict) else {}
        bad = next(
            (
                why
                for m, agg in mets.items()
                if isinstance(agg, dict) and _is_number(agg.get("mean")) and (why := value_problem(m, agg["mean"], ranges, name, per_cell=False))
            ),
            "",
        )
        if bad:
            axes = p.get("axes") if isinstance(p.get("axes"), dict) else {}
            problems.append(f"aggregates at {_axes_text(axes)}: {bad.replace('metric ', 'mean ', 1)}")
            break
    return problems


def _unknown_key(block: Mapping[str, Any], allowed: frozenset[str], where: str) -> str:
    """A one-line reason naming the first key of ``block`` outside ``allowed`` ('' if none)."""
    extra = sorted(k for k in block if k not in allowed)
    if not extra:
        return ""
    name = extra[0] if len(extra[0]) <= 60 else extra[0][:57] + "..."
    return f"schema: unknown key {name!r} in {where} (allowed: {', '.join(sorted(allowed))}); remove it or re-export with this coreset-bench"


def _is_count_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)


def _info_problem(info: Mapping[str, Any], allowed: frozenset[str] | None, metrics: Mapping[str, Any]) -> str:
    """The first problem of a cell's ``info`` ('' if none): unknown keys, and the types of the keys the board reads."""
    if allowed is not None:
        extra = sorted(k for k in info if k not in allowed and not k.startswith("method_"))
        if extra:
            return _unknown_key({extra[0]: None}, allowed, "info").replace("(allowed: ", "(allowed: method_*, ")
    for k in ("budget", "realized_size", "pool_size", "test_size"):
        v = info.get(k)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10**12):
            return f"info.{k} must be a non-negative integer"
    if "flags" in info and not (isinstance(info["flags"], list) and all(isinstance(f, str) and 0 < len(f) <= 100 for f in info["flags"])):
        return "info.flags must be a list of short strings"
    for k in ("class_histogram", "pred_histogram"):
        if k in info and not _is_count_list(info[k]):
            return f"info.{k} must be a list of non-negative integers"
    if "chance_floor" in info:
        v = info["chance_floor"]
        if not (_is_number(v) and 0.0 < v <= 1.0):
            return "info.chance_floor must be a number in (0, 1]"
    if "per_point" in info:
        pp = info["per_point"]
        if not isinstance(pp, dict):
            return "info.per_point must be an object {metric: {n, bits}}"
        for m, spec in pp.items():
            if m not in metrics:
                return f"info.per_point.{m} is not a metric of the cell"
            if not isinstance(spec, dict):
                return f"info.per_point.{m} must be an object with n and bits"
            unknown = _unknown_key(spec, SCHEMA_KEYS["per_point"], f"info.per_point.{m}")
            if unknown:
                return unknown
            try:
                stats.decode_bits(spec.get("n"), spec.get("bits"))
            except (ValueError, TypeError) as exc:
                return f"info.per_point.{m}: {exc}"
    return ""


def _as_profile_map(known_profiles: Mapping[str, Profile] | Iterable[Profile]) -> dict[str, Profile]:
    if isinstance(known_profiles, Mapping):
        return dict(known_profiles)
    return {p.id: p for p in known_profiles}


def validate_entry(
    obj: Any,
    known_profiles: Mapping[str, Profile] | Iterable[Profile],
    *,
    tracks: Mapping[str, Track] | None = None,
) -> list[str]:
    """Every problem of ``obj`` as a one-line reason; an empty list means the entry is valid.

    ``known_profiles``: the profiles an entry may be for (``known_profiles_from_plugins()``).
    ``tracks``: tracks by name, used for the method's expected cells (default: installed tracks;
    a track that is not installed falls back to the full cross product of the profile).
    """
    tracks = tracks if tracks is not None else plugins.tracks()
    problems = _schema_problems(obj, tracks)
    if problems:
        return problems
    known = _as_profile_map(known_profiles)
    pid = obj["profile"]["id"]
    profile = known.get(pid)
    if profile is None:
        short = pid.split("@", 1)[0]
        others = sorted(p.id for p in known.values() if p.short == short)
        if others:
            return [f"profile {pid} is not a current profile version (known: {', '.join(others)}); results of different profile versions are never mixed"]
        return [f"unknown profile {pid}"]
    if obj["profile"]["version"] != profile.version or obj["profile"].get("name", profile.name) != profile.name:
        return [f"profile name/version ({obj['profile'].get('name')}@{obj['profile']['version']}) contradict the profile id {pid}"]
    if obj["track"] != profile.track:
        return [f"track {obj['track']!r} is not the track of profile {pid} ({profile.track!r})"]
    track = tracks.get(profile.track)
    problems = _range_problems(obj, track)
    if problems:
        return problems
    meth = obj["method"]
    reserved = reserved_name_problem(meth)
    if reserved:
        return [reserved]
    if track is not None:
        expected = expected_cells(track, profile, meth["name"], meth["version"], meth["params"])
    else:
        expected = {(point_key(ap), int(r)) for ap in profile.axis_points() for r in profile.seeds}
    seen: set[tuple[str, int]] = set()
    for c in obj["cells"]:
        where = f"cell {_axes_text(c['axes'])} repeat {c['repeat']}"
        k = (point_key(c["axes"]), c["repeat"])
        if k not in expected:
            problems.append(f"{where}: not a cell of {pid} for {meth['name']}")
            continue
        if k in seen:
            problems.append(f"{where}: appears twice")
            continue
        seen.add(k)
        cell = Cell(profile.track, pid, meth["name"], meth["version"], meth["params"], c["axes"], c["repeat"])
        if c["key"] != cell.key:
            problems.append(f"{where}: key {c['key']} does not match its method, params, axes and repeat (edited?)")
        if c["seed"] != cell.seed:
            problems.append(f"{where}: seed {c['seed']} is not the seed of that cell ({cell.seed})")
    if problems:
        return problems
    claimed = {point_key(p["axes"]): p for p in obj["aggregates"]["points"] if isinstance(p, dict) and isinstance(p.get("axes"), dict)}
    recomputed = aggregate_cells(obj["cells"], profile)["points"]
    if len(claimed) != len(obj["aggregates"]["points"]) or set(claimed) != {point_key(p["axes"]) for p in recomputed}:
        problems.append("aggregates do not list the axis points of the cells (tampered?)")
    else:
        for p in recomputed:
            got = claimed[point_key(p["axes"])].get("metrics")
            if not isinstance(got, dict) or set(got) != set(p["metrics"]):
                problems.append(f"aggregates at {_axes_text(p['axes'])} do not list the metrics of its cells (tampered?)")
                break
            bad = next(
                (
                    m
                    for m, want in p["metrics"].items()
                    if not isinstance(got[m], dict) or not all(_close(got[m].get(f), want[f]) for f in ("mean", "ci95")) or got[m].get("n") != want["n"]
                ),
                None,
            )
            if bad is not None:
                shown = got[bad].get("mean") if isinstance(got[bad], dict) else got[bad]
                problems.append(
                    f"aggregate {bad} at {_axes_text(p['axes'])} is {shown} but its cells give "
                    f"{p['metrics'][bad]['mean']:.6g} (tampered?)"
                )
                break
    if _cells_digest(obj["cells"]) != obj["cells_sha256"]:
        problems.append("cells_sha256 does not match the cells: per-cell values were changed after export (tampered?)")
    cov = obj["coverage"]
    done, n_exp = len(seen), len(expected)
    if cov["done"] != done or cov["expected"] != n_exp or cov["complete"] != (done == n_exp):
        problems.append(
            f"coverage claims {cov['done']}/{cov['expected']} cells (complete={str(cov['complete']).lower()}) "
            f"but the entry holds {done} of the {n_exp} cells {pid} asks of {meth['name']}"
        )
    return problems


def reserved_name_problem(method: Mapping[str, Any]) -> str:
    """'' unless the entry's method name belongs to an installed plugin of another package.

    Built-in method names (``random``, ``full``, ...) are owned by ``coreset-bench``; an entry of
    such a name from any other package is an impostor and could take a reference row's place.
    """
    name = method.get("name")
    try:
        installed = plugins.method(str(name))
    except LookupError:
        return ""
    owner = str(getattr(installed, "package", "") or "")
    claimed = str(method.get("package") or "")
    if owner and claimed != owner:
        return (
            f"method name {name!r} is reserved by the installed package {owner!r} but this entry is from "
            f"package {claimed or '(none)'!r}; rename the method"
        )
    return ""


def check_entry(
    obj: Any, known_profiles: Mapping[str, Profile] | Iterable[Profile], *, tracks: Mapping[str, Track] | None = None
) -> dict[str, Any]:
    """``obj`` when valid, else ``EntryError`` whose message is the first problem (one line)."""
    problems = validate_entry(obj, known_profiles, tracks=tracks)
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise EntryError(" ".join((problems[0] + more).split()))  # one line, whatever the values held
    return obj


def entry_records(obj: Mapping[str, Any], source: str) -> list[dict[str, Any]]:
    """The cells of a validated entry as leaderboard records."""
    m = obj["method"]
    prov = obj.get("provenance") or {}
    env = {
        "coreset_bench_version": prov.get("coreset_bench_version", ""),
        "git_commit": prov.get("git_commit", ""),
        "device": prov.get("device", ""),
        **{k: prov[k] for k in ("git_tree", "cpu_model", "cpu_isa", "torch_cpu_capability", "gpu") if k in prov},
        "torch_version": prov.get("torch_version", ""),
        **({"hidden_salt": prov["hidden_salt"]} if "hidden_salt" in prov else {}),
    }
    out = []
    for c in obj["cells"]:
        out.append(
            {
                "key": c["key"],
                "track": obj["track"],
                "profile": obj["profile"]["id"],
                "method": m["name"],
                "method_version": m["version"],
                "package": m.get("package") or "",
                "package_version": m.get("package_version") or "",
                "params": dict(m["params"]),
                "axes": dict(c["axes"]),
                "repeat": c["repeat"],
                "seed": c["seed"],
                "status": "done",
                "error": None,
                "metrics": {k: float(v) for k, v in c["metrics"].items()},
                "timings": dict(c["timings"]),
                "info": dict(c["info"]),
                "environment": env,
                "artifacts": [
                    {"kind": s.get("kind", ""), "name": s.get("name", ""), "sha256": s.get("sha256", ""), "path": None, "size": s.get("size", 0)}
                    for s in c["subsets"]
                    if isinstance(s, dict)
                ],
                "finished": c.get("finished"),
                "source": source,
                "point": point_key(c["axes"]),
            }
        )
    return out


def one_line_error(what: str, exc: BaseException) -> str:
    """``what: ExcType: message`` on one line, at most 300 characters."""
    text = " ".join(f"{what}: {type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."


def builtin_claim(method: Mapping[str, Any]) -> str:
    """What built-in row an entry's method block claims, as words ('' when it claims none).

    An entry claims a built-in row when its package is the suite's own (``coreset-bench``), when
    its method name is one the suite owns (``reserved_name_problem`` already rejects that name
    from any other package), or when its name is an installed *privileged* method (a bound such
    as the pooling track's ``oracle``, which sees what contestants may not and is never ranked).
    """
    name = str(method.get("name") or "")
    package = str(method.get("package") or "")
    try:
        installed = plugins.method(name)
    except LookupError:
        installed = None
    privileged = installed is not None and bool(getattr(installed, "privileged", False))
    bound = " (a privileged bound)" if privileged else ""
    if plugins.is_builtin_package(package) or (installed is not None and plugins.is_builtin_package(str(getattr(installed, "package", "") or ""))):
        return f"the built-in row {name!r} of package {plugins.BUILTIN_PACKAGE!r}{bound}"
    if privileged:
        return f"the row of the privileged method {name!r} (a bound) of package {package or '(none)'!r}"
    return ""


def _reproduced(obj: Mapping[str, Any], local: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether every cell of a validated entry is a finished run of the local store with the same
    key (method, version, parameters, axes, repeat), the same metrics and the same flags."""
    if not obj["cells"]:
        return False
    for c in obj["cells"]:
        r = local.get(c["key"])
        if r is None or r.get("status") != "done":
            return False
        mets = {str(k): float(v) for k, v in (r.get("metrics") or {}).items() if _is_number(v)}
        if mets != c["metrics"]:
            return False
        if list((r.get("info") or {}).get("flags") or []) != list(c["info"].get("flags") or []):
            return False
    return True


def vouch(obj: Mapping[str, Any], verdict: Any, trust: Any, local: Mapping[str, Mapping[str, Any]]) -> str:
    """Who vouches for a validated entry that claims a built-in row (``builtin_claim``); '' for an
    entry that claims none. ``EntryError`` (one line naming the fix) when nobody does.

    Accepted: a signature that verifies under a trusted key (``verdict``), the digest of a
    published entry (``trust.pinned``, ``signing.entry_digest``), or the same cells in the local
    store (``local``: records by key; ``_reproduced``).
    """
    from .signing import Trust, entry_digest

    claim = builtin_claim(obj["method"])
    if not claim:
        return ""
    if verdict is not None and getattr(verdict, "verified_by", None) is not None:
        return f"signed by {verdict.label}"
    if entry_digest(obj) in (trust if trust is not None else Trust()).pinned:
        return "pinned: a published entry of this coreset-bench"
    if _reproduced(obj, local):
        return "reproduced by the local store"
    raise EntryError(
        f"claims {claim} but is not signed by a trusted key, not a published entry and not reproduced by the --db store; "
        f"sign it (export --sign-key, then leaderboard --trusted-keys KEY.pub), run those cells into the store you render from, "
        f"or give the method your own name and package"
    )


@dataclass
class LoadedEntries:
    accepted: list[tuple[Path, dict[str, Any]]]
    rejected: list[tuple[Path, str]]
    #: per accepted file: the signature verdict (``signing.Verdict``), when ``trust`` was checked
    verdicts: dict[Path, Any] = field(default_factory=dict)
    #: per accepted file that claims a built-in row: who vouches for it (``vouch``)
    vouched: dict[Path, str] = field(default_factory=dict)


def load_entries(
    dirs: Iterable[str | Path],
    known_profiles: Mapping[str, Profile] | Iterable[Profile] | None = None,
    *,
    tracks: Mapping[str, Track] | None = None,
    trust: Any = None,
    local: Iterable[Mapping[str, Any]] = (),
) -> LoadedEntries:
    """Every ``*.json`` under ``dirs`` (recursively), validated; rejected files with their reason.

    A ``signature`` block is checked first and removed before validation
    (``signing.check_signature``; ``trust`` is a ``signing.Trust``, None: ``Trust()``, no trusted
    keys and the published entries' pins). An entry that claims a built-in row is then accepted
    only when vouched for (``vouch``): signed by a trusted key, pinned as published, or reproduced
    by ``local`` (the records of the store the board is rendered from).
    """
    from .signing import Trust, check_signature

    trust = trust if trust is not None else Trust()
    known = _as_profile_map(known_profiles) if known_profiles is not None else known_profiles_from_plugins()
    mine = {str(r["key"]): r for r in local if r.get("key") and r.get("status") == "done"}
    accepted: list[tuple[Path, dict[str, Any]]] = []
    rejected: list[tuple[Path, str]] = []
    verdicts: dict[Path, Any] = {}
    vouched: dict[Path, str] = {}
    for d in dirs:
        base = Path(d)
        if base.is_file():
            files = [base]
        elif base.is_dir():
            files = sorted(base.rglob("*.json"))
        else:
            rejected.append((base, "no such file or directory"))
            continue
        for f in files:
            try:
                obj, verdict = check_signature(load_entry(f), trust)
                obj = check_entry(obj, known, tracks=tracks)
                who = vouch(obj, verdict, trust, mine)
            except EntryError as exc:
                rejected.append((f, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - one bad entry must not take down the board
                rejected.append((f, one_line_error("could not be checked", exc)))
                continue
            accepted.append((f, obj))
            verdicts[f] = verdict
            if who:
                vouched[f] = who
    return LoadedEntries(accepted, rejected, verdicts, vouched)
