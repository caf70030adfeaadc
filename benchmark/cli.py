"""The ``coreset-bench`` command line (typer + rich)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import __version__
from . import registry as plugins

app = typer.Typer(
    name="coreset-bench",
    help="Benchmark suite for data-centric deep learning: coreset selection, robustness, privacy, label noise.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (the message is printed literally: it may quote plugin text)."""
    err.print(Text.assemble(("Error:", "bold red"), " ", str(message)), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _lit(value: Any) -> Text:
    """Plugin-supplied text (names, summaries, errors, info) as a literal ``Text``: never parsed as
    console markup, so ``[/bold]`` in an error message prints as is instead of crashing the run."""
    return Text("" if value is None else str(value))


def _row(table: Table, *cells: Any) -> None:
    table.add_row(*(c if isinstance(c, Text) else _lit(c) for c in cells))


def _version(value: bool) -> None:
    if value:
        console.print(f"coreset-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit.")) -> None:
    """coreset-bench."""


def _results_dir(db: Optional[str]) -> Path:
    from .store import resolve_url, sqlite_path

    path = sqlite_path(resolve_url(db))
    return path.parent if path is not None else Path("results")


def _open_store(db: Optional[str], create: bool = True, read_only: bool = False) -> Any:
    from .store import Store, StoreError

    try:
        return Store(db, create=create, read_only=read_only)
    except StoreError as exc:
        fail(str(exc))


def _parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            fail(f"--param {it!r} is not KEY=VALUE; write e.g. --param class_balanced=true")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command()
def run(
    plugin: list[str] = typer.Option(..., "--plugin", "-p", help="Method(s) to run (repeatable)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Profile, e.g. quick or coreset/quick@1 (default: the track's first)."),
    track: Optional[str] = typer.Option(None, "--track", help="Track (default: the one that ranks the plugin's kind)."),
    db: Optional[str] = typer.Option(None, "--db", help="Results database path or SQLAlchemy URL (env CORESET_BENCH_DB)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Cells run in parallel (process pool); default: one per CPU core on the CPU (env CORESET_BENCH_JOBS), 1 on a GPU."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated repeat indices overriding the profile's, e.g. 0,1,2."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells that would run and those already done."),
    param: list[str] = typer.Option([], "--param", help="Method parameter KEY=VALUE (repeatable; part of the cell key)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Override the dataset axis, e.g. imagefolder:PATH."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where datasets live (CIFAR python batches)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    executor: Optional[str] = typer.Option(None, "--executor", help="inprocess, process or ray (default: process when cells run in parallel, else inprocess)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (with --executor ray)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Per-cell time-out in seconds (overrides the profile's)."),
    references: bool = typer.Option(True, "--references/--no-references", help="Also run missing reference cells (random, full)."),
) -> None:
    """Run a method's cells of a profile; cells already done in the store are skipped."""
    from . import env as envmod
    from .runner import default_context, execute, make_plan
    from .store import StoreError

    try:
        methods = [plugins.method(p) for p in plugin]
    except LookupError as exc:
        fail(str(exc).strip("'\""))
    params = _parse_params(param)
    if params:
        if len(methods) != 1:
            fail("--param applies to one --plugin at a time; run the methods separately")
        try:
            methods = [methods[0].with_params(**params)]
        except ValueError as exc:
            fail(str(exc))
    kinds = {m.kind for m in methods}
    if len(kinds) != 1:
        fail(f"the plugins are of different kinds ({', '.join(sorted(kinds))}); run one kind at a time")
    try:
        if track is None:
            # the first track (by name) that ranks every given method
            names = [n for n in plugins.tracks_for(methods[0]) if all(plugins.refusal(n, m) is None for m in methods[1:])]
            if not names and len(methods) > 1 and plugins.tracks_for(methods[0]):
                fail(f"no single track ranks all of {', '.join(m.name for m in methods)}; pass --track or run them separately")
            if not names:
                fail(f"no track ranks {methods[0].kind} methods like {methods[0].name!r}; `coreset-bench tracks` lists the tracks")
            track = names[0]
        t = plugins.track(track)
        prof = t.profile(profile)
    except LookupError as exc:
        fail(str(exc).strip("'\""))
    for m in methods:
        if m.kind != t.contestant_kind:
            fail(f"track {t.name!r} ranks {t.contestant_kind} methods; {m.name!r} is a {m.kind} method")
        reason = plugins.refusal(t.name, m)  # before any cell is created
        if reason:
            others = [n for n in plugins.tracks_for(m) if n != t.name]
            fail(f"{reason}; " + (f"run it on {', '.join(others)}" if others else "no installed track ranks it"))
    seed_list = None
    if seeds:
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            fail(f"--seeds {seeds!r} is not a comma-separated list of integers, e.g. 0,1,2")
    # the data, checked once before any plan or cell exists (a missing image folder is one
    # error here, not one failed cell per method, budget and seed)
    from .tracks.base import with_dataset

    try:
        target = with_dataset(prof, dataset) if dataset is not None else prof
    except ValueError as exc:
        fail(str(exc))
    _check_datasets(target, data_dir)
    store = _open_store(db)
    try:
        plan = make_plan(t, prof, methods, store, seeds=seed_list, dataset=dataset, references=references)
    except ValueError as exc:
        fail(str(exc))
    console.print(Text.assemble((t.name, "bold"), " profile ", (plan.profile.id, "bold"), f": {len(plan.todo)} cell(s) to run, {len(plan.done)} already done"), highlight=False)
    if plan.profile.description.startswith(prof.description) and plan.profile.description != prof.description:
        console.print(plan.profile.description[len(prof.description) :].strip(), markup=False)  # --dataset: the data and its threat model
    label = _labeller(methods)
    if dry_run:
        if _plain():
            for status, items in (("todo", plan.todo), ("done", plan.done)):
                for p in items:
                    _line(f"  {status:5} {p.cell.key}  {label(p.cell)}")
            return
        table = Table("status", "method", "axes", "repeat", "key")
        for status, items in (("todo", plan.todo), ("done", plan.done)):
            for p in items:
                _row(table, status, _method_label(p.cell.method, p.cell.params, label.defaults), " ".join(f"{k}={v}" for k, v in p.cell.axes.items()), str(p.cell.repeat), p.cell.key)
        console.print(table)
        return
    if not plan.todo:
        console.print("Nothing to do.")
        _summary(store, t, prof, plan, methods, seed_list, dataset)
        return
    try:
        dev = envmod.pick_device(device)
    except ValueError as exc:
        fail(str(exc))
    if prof.device == "cuda" and dev == "cpu":
        err.print(Text.assemble(("warning:", "yellow"), f" profile {prof.id} is meant for a GPU; running on the CPU will be slow"))
    results_dir = _results_dir(db)
    ctx = default_context(results_dir, dev, data_dir)
    try:
        if jobs is None:
            jobs = 1 if executor == "inprocess" else envmod.default_jobs(dev, len(plan.todo))
        if executor is None:
            executor = "process" if jobs > 1 else "inprocess"
        envmod.cell_threads(dev)  # a malformed CORESET_BENCH_THREADS fails here, before any cell
    except ValueError as exc:
        fail(str(exc))
    _load_datasets(plan.profile, ctx)  # decoded once, here (with a spinner), not inside the first cell
    from .progress import RunDisplay

    primary = t.primary_for(prof)
    shown = [primary] + [c for c in t.secondary_metrics if c != primary][:3]
    costs = {p.cell.key: float(t.cost_hint(p.cell)) for p in plan.todo}
    t0 = time.perf_counter()
    display = RunDisplay(console, costs, shown, terminal=console.is_terminal, label=label)
    with display:
        try:
            execute(plan, store, ctx, jobs=jobs, executor=executor, timeout_s=timeout, address=address, on_done=display.on_done, on_progress=display.on_progress)
        except KeyboardInterrupt:
            display.__exit__(None, None, None)
            err.print(f"interrupted: {display.done} finished cell(s) are stored; the {display.total - display.done} cut short are marked interrupted (not failed); rerun the same command to complete them", highlight=False, markup=False)
            raise typer.Exit(130)
        except (ValueError, StoreError) as exc:
            display.__exit__(None, None, None)
            fail(str(exc))
    _summary(store, t, prof, plan, methods, seed_list, dataset)
    par = f"{jobs} cells side by side, " if jobs > 1 else ""
    _line(f"wall time {time.perf_counter() - t0:.1f}s ({par}{envmod.cell_threads(dev)} torch thread(s) per cell); results in {store.url}")
    if display.failures:
        err.print(f"[bold red]{len(display.failures)} cell(s) failed[/]:")
        for f in display.failures:
            err.print(f"  {label(f.cell)}: {f.error}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(1)


def _plain() -> bool:
    """Plain, unwrapped lines instead of tables and live bars: stdout is not a terminal."""
    return not console.is_terminal


def _line(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _check_datasets(profile: Any, data_dir: Optional[Path]) -> None:
    """Every dataset on the profile's dataset axis is registered and present (cheap checks)."""
    if "dataset" not in profile.axes:
        return
    from . import data as D

    for ref in dict.fromkeys(str(v) for v in profile.axes["dataset"]):
        try:
            D.check(ref, data_dir)
        except LookupError as exc:
            fail(f"--dataset: {str(exc).strip(chr(39) + chr(34))}")
        except D.DatasetError as exc:
            fail(str(exc))


def _load_datasets(profile: Any, ctx: Any) -> None:
    """Load (decode) the profile's datasets once before the cells, under a spinner on a terminal;
    the in-process memo then serves every cell (forked workers inherit it)."""
    if "dataset" not in profile.axes:
        return
    import contextlib

    from . import data as D

    for ref in dict.fromkeys(str(v) for v in profile.axes["dataset"]):
        spin = console.status(f"loading dataset {ref}", spinner="dots") if console.is_terminal else contextlib.nullcontext()
        try:
            with spin:
                D.resolve(ref, ctx.data_dir, ctx.cache_dir)
        except D.DatasetError as exc:
            fail(str(exc))
        except LookupError as exc:
            fail(f"--dataset: {str(exc).strip(chr(39) + chr(34))}")


class _Labeller:
    """Cell labels that name the parameters differing from the installed defaults."""

    def __init__(self, methods: list[Any]) -> None:
        self.defaults: dict[str, dict[str, Any]] = {}
        for m in methods:
            try:
                self.defaults[m.name] = dict(plugins.method(m.name).params)
            except LookupError:
                self.defaults[m.name] = dict(m.params)

    def __call__(self, cell: Any) -> str:
        ax = " ".join(f"{k}={v}" for k, v in cell.axes.items())
        return f"{_method_label(cell.method, cell.params, self.defaults)} {ax} repeat={cell.repeat}"


def _labeller(methods: list[Any]) -> _Labeller:
    return _Labeller(methods)


def _method_label(name: str, params: Any, defaults: dict[str, dict[str, Any]]) -> str:
    """``cld`` or ``cld(epochs_used=0.5)``: the parameters that differ from the installed defaults."""
    if name not in defaults:
        try:
            defaults[name] = dict(plugins.method(name).params)
        except LookupError:
            defaults[name] = {}
    base = defaults[name]
    diff = {k: v for k, v in dict(params or {}).items() if k not in base or base[k] != v}
    return f"{name}({', '.join(f'{k}={v}' for k, v in sorted(diff.items()))})" if diff else name


def _summary(store: Any, t: Any, base: Any, plan: Any, methods: list[Any], seeds: Optional[list[int]], dataset: Optional[str]) -> None:
    """Mean ± std over seeds of this invocation's cells (and the references it compares with),
    one row per method, parameter setting and value of every axis the profile varies."""
    import numpy as np

    from .progress import fmt_metric, fraction_metric
    from .runner import expand

    prof = plan.profile
    primary = t.primary_for(prof)
    keys = {p.cell.key for p in [*plan.todo, *plan.done]}
    for ref in t.reference_methods:  # the references this run is compared with, even with --no-references
        try:
            keys |= {c.key for c in expand(t, base, t.reference(base, ref), seeds=seeds, dataset=dataset)}
        except (LookupError, ValueError):
            continue
    own = {p.cell.key for p in [*plan.todo, *plan.done] if p.method.name in {m.name for m in methods}}
    rows = [r for r in store.results(track=t.name, profile=prof.id, status="done") if r["key"] in keys]
    if not any(r["key"] in own for r in rows):  # references alone are no summary of this run
        console.print(f"no finished cells of this run on {prof.id} to summarise", markup=False, highlight=False)
        return
    defaults: dict[str, dict[str, Any]] = {}
    varied = [a for a, vals in prof.axes.items() if len(vals) > 1]
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        key = (_method_label(r["method"], r["params"], defaults),) + tuple(f"{r['axes'].get(a)}" for a in varied)
        groups.setdefault(key, []).append(r)
    present = {k for r in rows for k in r["metrics"]}
    cols = [primary] + [c for c in t.secondary_metrics if c != primary and c in present][:3]
    percent = {c: fraction_metric(r["metrics"].get(c) for r in rows) for c in cols}
    title = f"{prof.id}: this run's cells and references (mean ± std over seeds{'; in %' if any(percent.values()) else ''})"
    lines = []
    for key, rs in sorted(groups.items()):
        cells = []
        for c in cols:
            v = np.array([x["metrics"].get(c, np.nan) for x in rs], dtype=float)
            v = v[np.isfinite(v)]
            cells.append(fmt_metric(float(v.mean()), percent[c], float(v.std()) if v.size > 1 else None) if v.size else "-")
        lines.append((key, len(rs), cells))
    if _plain():
        _line(title)
        for key, n, cells in lines:
            _line("  " + "  ".join([key[0], *(f"{a}={v}" for a, v in zip(varied, key[1:])), f"n={n}", *(f"{c}={x}" for c, x in zip(cols, cells))]))
        return
    table = Table("method", *varied, "n", *cols, title=_lit(title))
    for key, n, cells in lines:
        _row(table, *key, str(n), *cells)
    console.print(table)


@app.command("plugins")
def plugins_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the plugins that loaded (and those that failed, with their errors).

    Each method's ``tracks`` are the tracks that accept it (``Track.accepts``); with ``--json``,
    ``refused`` maps each other track of its kind to the reason it does not rank the method."""
    recs = plugins.records()
    rows: list[dict[str, Any]] = []
    by_module: dict[str, Any] = {r.name: r for r in recs}
    for m in plugins.methods():
        rec = next((r for r in recs if ("methods", m.name) in r.objects), None)
        rows.append({"name": m.name, "kind": m.kind, "version": m.version, "package": m.package, "package_version": rec.package_version if rec else "", "entry_point": rec.name if rec else "", "tracks": plugins.tracks_for(m), "refused": _refusals(m), "summary": m.summary, "error": None})
    for reg, kind in (("datasets", "dataset"), ("architectures", "architecture"), ("tracks", "track")):
        for name in sorted(getattr(plugins.manager(), reg).items):
            rec = next((r for r in recs if (reg, name) in r.objects), None)
            rows.append({"name": name, "kind": kind, "version": rec.package_version if rec else "", "package": rec.package if rec else "", "package_version": rec.package_version if rec else "", "entry_point": rec.name if rec else "", "tracks": [name] if kind == "track" else [], "refused": {}, "summary": getattr(getattr(plugins.manager(), reg).items[name], "summary", ""), "error": None})
    for r in recs:
        if r.error:
            rows.append({"name": r.name, "kind": "?", "version": r.package_version, "package": r.package, "package_version": r.package_version, "entry_point": r.name, "tracks": [], "refused": {}, "summary": "", "error": r.error})
    del by_module
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "kind", "version", "package", "tracks", "summary / error")
    for r in rows:
        _row(table, r["name"], r["kind"], str(r["version"]), r["package"], ", ".join(r["tracks"]), Text(str(r["error"]), style="red") if r["error"] else r["summary"])
    console.print(table)


def _refusals(m: Any) -> dict[str, str]:
    """Tracks of ``m``'s kind that do not rank it, with their one-line reasons."""
    out = {}
    for name, t in sorted(plugins.tracks().items()):
        if t.contestant_kind == m.kind:
            reason = plugins.refusal(name, m)
            if reason:
                out[name] = reason
    return out


@app.command()
def tracks(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the tracks."""
    ts = plugins.tracks()
    if as_json:
        print(json.dumps([t.describe() for t in ts.values()], indent=2))
        return
    table = Table("track", "contestants", "primary metric", "profiles", "summary")
    for t in ts.values():
        who = t.contestant_kind + "".join(f" ({v})" for v in (getattr(t, "modality", ""), getattr(t, "role", "")) if v)
        _row(table, t.name, who, t.primary_metric, ", ".join(p.id for p in t.profiles()), t.summary)
    console.print(table)


@app.command()
def profiles(track: Optional[str] = typer.Argument(None, help="Only this track."), as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List profiles with their matrices."""
    try:
        ts = [plugins.track(track)] if track else list(plugins.tracks().values())
    except LookupError as exc:
        fail(str(exc).strip("'\""))
    items = []
    for t in ts:
        for p in t.profiles():
            items.append({"id": p.id, "track": t.name, "axes": {k: list(v) for k, v in p.axes.items()}, "seeds": list(p.seeds), "cells_per_method": p.n_cells(), "device": p.device, "description": p.description, "settings": dict(p.settings)})
    if as_json:
        print(json.dumps(items, indent=2, default=str))
        return
    table = Table("profile", "axes", "seeds", "cells/method", "device", "description")
    for it in items:
        _row(table, it["id"], "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in it["axes"].items()), ", ".join(map(str, it["seeds"])), str(it["cells_per_method"]), it["device"], it["description"])
    console.print(table)


@app.command()
def results(
    plugin: Optional[str] = typer.Option(None, "--plugin", "-p", help="Only this method."),
    track: Optional[str] = typer.Option(None, "--track", help="Only this track."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Profile id, e.g. coreset/quick@1."),
    status: Optional[str] = typer.Option(None, "--status", help="done, failed or running."),
    db: Optional[str] = typer.Option(None, "--db", help="Results database path or SQLAlchemy URL (env CORESET_BENCH_DB); opened read-only."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per run."),
) -> None:
    """Show stored runs."""
    store = _open_store(db, create=False, read_only=True)  # reads only: works in a read-only directory
    rows = store.results(method=plugin, track=track, profile=profile, status=status)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    table = Table("key", "method", "profile", "axes", "repeat", "status", "metrics / error")
    for r in rows:
        mets = " ".join(f"{k}={v:.4f}" for k, v in r["metrics"].items() if not k.startswith("class_acc_"))
        _row(table, r["key"][:12], r["method"], r["profile"], " ".join(f"{k}={v}" for k, v in r["axes"].items()), str(r["repeat"]), r["status"], r["error"] or mets)
    console.print(table)


@app.command()
def doctor(db: Optional[str] = typer.Option(None, "--db", help="Results database path or SQLAlchemy URL to check (env CORESET_BENCH_DB); opened read-only.")) -> None:
    """Check the installation: versions, device, plugin load errors, MPEG-4 encoding with PyAV,
    the optional SmolLM2 weights, store health, cache size. Exits 1 on a load error, a bad
    setting, or when PyAV cannot encode MPEG-4 (a core dependency); SmolLM2 is optional."""
    from . import env as envmod
    from .signals import cache_size
    from .store import Store, StoreError

    dev = envmod.pick_device("auto")
    e = envmod.environment(dev)
    for k in ("coreset_bench", "git_commit", "python", "torch", "cuda", "device_name", "platform"):
        console.print(f"{k:14} {e.get(k)}", markup=False)
    settings_ok = True
    try:
        console.print(f"{'parallelism':14} {envmod.default_jobs(dev, 10**6)} cell(s) side by side by default on {dev}, {envmod.cell_threads(dev)} torch thread(s) each")
    except ValueError as exc:
        settings_ok = False
        console.print(Text.assemble(f"{'parallelism':14} ", (str(exc), "red")), highlight=False)
    bad = [r for r in plugins.records() if r.error]
    console.print(f"{'plugins':14} {len(plugins.methods())} methods, {len(plugins.tracks())} tracks, {len(bad)} load error(s)")
    for r in bad:
        console.print(Text.assemble("  ", (r.name, "red"), f" ({r.package}): {r.error}"), highlight=False)
    video_ok, video = envmod.mpeg4_encoding()
    console.print(Text.assemble(f"{'video':14} ", (video, "" if video_ok else "red")), highlight=False)
    gguf = envmod.smollm2_gguf()
    if gguf is not None:
        console.print(f"{'smollm2':14} {gguf}", highlight=False, markup=False)
    else:
        console.print(f"{'smollm2':14} not installed (optional: the instruction track's real-model profile); install it with: {envmod.SMOLLM2_HINT}", highlight=False, markup=False)
    ok = not bad and settings_ok and video_ok
    try:
        store = Store(db, create=False, read_only=True)  # checks only: works in a read-only directory
        console.print(f"{'store':14} {store.url}: integrity {store.integrity()}, migrations {', '.join(store.applied_migrations())}", markup=False)
        console.print(f"{'runs':14} {len(store.runs(status='done'))} done, {len(store.runs(status='failed'))} failed, {len(store.runs(status='interrupted'))} interrupted (Ctrl-C; not failures), {len(store.runs(status='running'))} running")
    except StoreError as exc:
        console.print(f"{'store':14} {exc}", markup=False)
        ok = ok and "no results database" in str(exc)
    cache = _results_dir(db) / "cache"
    console.print(f"{'cache':14} {cache} {cache_size(cache) / 1e6:.1f} MB" if cache.exists() else f"{'cache':14} (empty)", markup=False)
    if not ok:
        raise typer.Exit(1)


_COMMANDS_ADDED = False


def _add_plugin_commands() -> None:
    global _COMMANDS_ADDED
    if _COMMANDS_ADDED:
        return
    _COMMANDS_ADDED = True
    try:
        from .leaderboard import cli as lb_cli

        lb_cli.register(app)
    except ImportError:
        pass
    plugins.add_commands(app)


def main() -> None:
    try:
        plugins.load_plugins()
    except plugins.PluginError as exc:
        err.print(Text.assemble(("Error:", "bold red"), f" {exc}"), highlight=False)
        sys.exit(2)
    _add_plugin_commands()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
