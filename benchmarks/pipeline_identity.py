"""Do the numbers of a track stay bit-identical across a change of the harness? (issue 37, item 8)

Runs a sample of a profile's cells with the code of this checkout, exactly as the runner does
(``runner.run_one``: the registry's method with the cell's parameters, the cell's numeric settings
of ``env.cell_scope``, one torch thread on the CPU), and compares each cell's metrics with a
reference: the committed entries of that profile (``results/entries/<track>/<profile>/``, one
per-cell value each) or an earlier run file of this script (for profiles without entries, e.g. a
tiny one: run it before the change, then after, and compare the two).

    # a sample of cells, compared with the committed entries (exit status 1 on any difference)
    python benchmarks/pipeline_identity.py run privacy/quick@2 -p loss -p lira --out /tmp/after.json
    python benchmarks/pipeline_identity.py compare /tmp/after.json

    # a salted profile (hidden generated data): with the salt its entries ran with
    python benchmarks/pipeline_identity.py run pooling/quick@2 -p static --hidden-salt entries --out /tmp/after.json

    # no entries: before and after
    python benchmarks/pipeline_identity.py run robustness/tiny@1 -p pgd -p fgsm --out /tmp/before.json   # old code
    python benchmarks/pipeline_identity.py run robustness/tiny@1 -p pgd -p fgsm --out /tmp/after.json    # new code
    python benchmarks/pipeline_identity.py compare /tmp/after.json --against /tmp/before.json

    # the cells' info as well (run files store it; measured seconds, keys ending in _s, are skipped)
    python benchmarks/pipeline_identity.py compare /tmp/after.json --against /tmp/before.json --info

To run the "before" side from an older commit without checking it out, put its package first
on the path (the contestant worker inherits it)::

    mkdir -p /tmp/pre/src /tmp/pre/pkg && git archive COMMIT | tar -x -C /tmp/pre/src
    cp -r /tmp/pre/src/benchmark /tmp/pre/pkg/coreset_bench
    cp -r /tmp/pre/src/plugins /tmp/pre/pkg/coreset_bench/plugins
    cp -r /tmp/pre/src/leaderboard /tmp/pre/pkg/coreset_bench/leaderboard
    PYTHONPATH=/tmp/pre/pkg python benchmarks/pipeline_identity.py run ... --out /tmp/before.json

Salted profiles (hidden generated data, ``Profile.salted``: e.g. ``instruction/quick@2``) were run
with their store's salt; ``--hidden-salt entries`` reads it from the committed entries'
provenance (or give the hex salt), so the cells generate the same hidden data as the published run::

    python benchmarks/pipeline_identity.py run instruction/quick@2 -p trim -p bm25 --seeds 0 --where target=add --where budget=0.01 --hidden-salt entries --out /tmp/after.json
    python benchmarks/pipeline_identity.py compare /tmp/after.json

Metrics that are seconds (names ending in ``_s``, e.g. the robustness track's ``attack_s``) are
measured, not computed, and are left out of the comparison. Fixtures (model banks, noisy models,
proxy runs) are read from ``--cache-dir`` when present there (default ``results/cache``); give a
fresh directory to train them again with this checkout's code.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _cells(profile_ref: str, plugins: list[str], params: list[str], limit: int | None, where: list[str], seeds: str | None) -> list[Any]:
    from coreset_bench import registry
    from coreset_bench.runner import expand

    track_name, _, rest = profile_ref.partition("/")
    track = registry.track(track_name)
    profile = track.profile(rest)
    kv = dict(p.split("=", 1) for p in params)
    filters = [w.split("=", 1) for w in where]
    out = []
    for name in plugins:
        method = registry.method(name).with_params(**kv) if kv else registry.method(name)
        cells = expand(track, profile, method, seeds=[int(s) for s in seeds.split(",")] if seeds else None)
        cells = [c for c in cells if all(str(c.axes.get(k)) == v for k, v in filters)]
        out += [(track, method, c) for c in (cells[:limit] if limit else cells)]
    return out


def cmd_run(args: argparse.Namespace) -> int:
    try:
        from coreset_bench.cells import CellContext
    except ImportError:  # a checkout from before coreset_bench.cells (to run the "before" side)
        from coreset_bench.tracks.base import CellContext  # type: ignore[no-redef]
    from coreset_bench.runner import _format_error, run_one

    results = Path(args.results_dir)
    ctx = CellContext(results_dir=results, cache_dir=Path(args.cache_dir) if args.cache_dir else results / "cache", data_dir=Path(args.data_dir) if args.data_dir else None, device="cpu")
    salt = _salt(args.profile, args.hidden_salt, Path(args.entries))
    if salt:
        import dataclasses

        ctx = dataclasses.replace(ctx, hidden_salt=salt)
    rows: dict[str, Any] = {}
    for track, method, cell in _cells(args.profile, args.plugin, args.param, args.cells, args.where, args.seeds):
        t0 = time.perf_counter()
        try:
            res = run_one(track.name, method.name, dict(cell.params), cell, ctx)
            row = {"metrics": res.metrics, "info": json.loads(json.dumps(res.info, sort_keys=True, default=str)), "error": None}
        except Exception as exc:  # noqa: BLE001 - a failed cell is a result too
            row = {"metrics": {}, "info": {}, "error": _format_error(exc, method.name)}
        row.update({"profile": cell.profile, "method": cell.method, "axes": dict(cell.axes), "repeat": cell.repeat, "seconds": time.perf_counter() - t0})
        rows[cell.key] = row
        state = row["error"] or f"{len(row['metrics'])} metrics"
        print(f"{cell.key}  {cell.label()}  {row['seconds']:.1f}s  {state}", flush=True)
    Path(args.out).write_text(json.dumps({"profile": args.profile, "cells": rows}, indent=1, sort_keys=True))
    return 0


def _salt(profile_ref: str, given: str | None, entries_dir: Path) -> str:
    """The hidden-data salt to run with: none, the hex salt given, or (``entries``) the one the
    committed entries of ``profile_ref`` record in their provenance (all must agree)."""
    if not given:
        return ""
    if given != "entries":
        return given.strip().lower()
    track, _, name = profile_ref.partition("/")
    salts = {json.loads(f.read_text()).get("provenance", {}).get("hidden_salt", "") for f in sorted((entries_dir / track / name).glob("*.json"))}
    if len(salts) != 1:
        raise SystemExit(f"--hidden-salt entries: the entries of {profile_ref} record {len(salts)} salts ({sorted(salts)}); give one with --hidden-salt HEX")
    return salts.pop()


def _entry_cells(profile_ref: str, entries_dir: Path) -> dict[str, dict[str, Any]]:
    track, _, name = profile_ref.partition("/")
    out: dict[str, dict[str, Any]] = {}
    for f in sorted((entries_dir / track / name).glob("*.json")):
        entry = json.loads(f.read_text())
        for c in entry.get("cells", []):
            out[c["key"]] = {"metrics": c["metrics"], "error": None, "source": f.name}
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b))


def cmd_compare(args: argparse.Namespace) -> int:
    run = json.loads(Path(args.run).read_text())
    ref = json.loads(Path(args.against).read_text())["cells"] if args.against else _entry_cells(run["profile"], Path(args.entries))
    what = args.against or f"the committed entries of {run['profile']}"
    bad = missing = same = 0
    for key, row in sorted(run["cells"].items(), key=lambda kv: (kv[1]["method"], json.dumps(kv[1]["axes"], sort_keys=True), kv[1]["repeat"])):
        label = f"{row['method']} {' '.join(f'{k}={v}' for k, v in sorted(row['axes'].items()))} repeat={row['repeat']}"
        other = ref.get(key)
        if other is None:
            missing += 1
            print(f"  no reference  {label}")
            continue
        if row["error"] or other.get("error"):
            ok = row["error"] == other.get("error")
            print(f"  {'same error' if ok else 'DIFFERS'}    {label}: {row['error']!r} vs {other.get('error')!r}")
            same += ok
            bad += not ok
            continue
        names = sorted(n for n in set(row["metrics"]) | set(other["metrics"]) if not n.endswith("_s"))
        diff = [n for n in names if not _same(row["metrics"].get(n), other["metrics"].get(n))]
        info_names: list[str] = []
        if args.info and "info" in row and "info" in other:  # the cell's info too, where both runs stored it
            skip = set(args.ignore_info)
            info_names = sorted(n for n in set(row["info"]) | set(other["info"]) if not n.endswith("_s") and n not in skip)
            diff += [f"info.{n}" for n in info_names if row["info"].get(n) != other["info"].get(n)]
        if diff:
            bad += 1
            shown = [(n, row["info"].get(n[5:]) if n.startswith("info.") else row["metrics"].get(n), other["info"].get(n[5:]) if n.startswith("info.") else other["metrics"].get(n)) for n in diff[:6]]
            print(f"  DIFFERS       {label}: " + "; ".join(f"{n} {a!r} vs {b!r}" for n, a, b in shown))
        else:
            same += 1
            print(f"  identical     {label} ({len(names)} metrics{f', {len(info_names)} info keys' if info_names else ''})")
    print(f"{same} cells bit-identical to {what}, {bad} differ, {missing} without a reference")
    return 1 if bad or (missing and not same) else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a sample of cells and write their metrics")
    r.add_argument("profile", help="track/name@version, e.g. privacy/quick@2")
    r.add_argument("-p", "--plugin", action="append", required=True)
    r.add_argument("--param", action="append", default=[], help="KEY=VALUE method parameter")
    r.add_argument("--cells", type=int, default=None, help="at most this many cells per plugin (in the profile's order)")
    r.add_argument("--where", action="append", default=[], help="AXIS=VALUE: only cells at this axis value")
    r.add_argument("--seeds", default=None, help="comma-separated repeats")
    r.add_argument("--results-dir", default=str(ROOT / "results"))
    r.add_argument("--cache-dir", default=None, help="fixtures' cache (default: RESULTS_DIR/cache)")
    r.add_argument("--data-dir", default=None)
    r.add_argument("--hidden-salt", default=None, help="HEX, or 'entries': the salt the committed entries of the profile were run with (salted profiles)")
    r.add_argument("--entries", default=str(ROOT / "results" / "entries"))
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare", help="compare a run file with the committed entries or another run file")
    c.add_argument("run")
    c.add_argument("--against", default=None, help="another run file (default: the committed entries)")
    c.add_argument("--entries", default=str(ROOT / "results" / "entries"))
    c.add_argument("--info", action="store_true", help="compare the cells' info as well (keys ending in _s, measured seconds, are left out); run files only")
    c.add_argument("--ignore-info", action="append", default=[], help="an info key not to compare (e.g. one that records whether a cache served the cell)")
    args = ap.parse_args(argv)
    return cmd_run(args) if args.cmd == "run" else cmd_compare(args)


if __name__ == "__main__":
    sys.exit(main())
