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
from .public import public_text


class _LazyRegistry:
    """``coreset_bench.registry``, imported on first use: ``--version``, ``--help`` and commands
    that need no plugins (``results``) never import it (nor numpy, torch or any plugin)."""

    def __getattr__(self, name: str) -> Any:
        from . import registry

        return getattr(registry, name)


plugins: Any = _LazyRegistry()

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
    profile: Optional[str] = typer.Option(None, "--profile", help="Profile, e.g. quick or coreset/quick@1 (default: the track's default profile at its newest version (coreset: quick); `coreset-bench profiles` marks each track's default)."),
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
    hidden_salt: Optional[str] = typer.Option(
        None, "--hidden-salt", envvar="CORESET_BENCH_HIDDEN_SALT", show_envvar=True,
        help="Salt (32 hex digits, or 'public') of the seeds of hidden generated data; default: the database's own secret salt. Reproduces a run from its entry's provenance.hidden_salt.",
    ),
) -> None:
    """Run a method's cells of a profile; cells already done in the store are skipped."""
    if dry_run and _DRY is not None:  # main() found this command line's plan in the cache
        _print_dry(_DRY, db)
        return
    from . import env as envmod
    from .runner import default_context, execute, make_plan
    from .store import StoreError, open_store

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
    from .cells import with_dataset

    try:
        target = with_dataset(prof, dataset) if dataset is not None else prof
    except ValueError as exc:
        fail(str(exc))
    _check_datasets(t, target, data_dir)
    if dry_run:
        try:
            empty = make_plan(t, prof, methods, _NoStore(), seeds=seed_list, dataset=dataset, references=references)
        except ValueError as exc:
            fail(str(exc))
        label = _labeller(methods)
        extra = empty.profile.description[len(prof.description) :].strip() if empty.profile.description.startswith(prof.description) and empty.profile.description != prof.description else ""
        data = {"track": t.name, "profile": empty.profile.id, "extra": extra, "cells": [{"key": p.cell.key, "label": label(p.cell), "method": _method_label(p.cell.method, p.cell.params, label.defaults), "axes": " ".join(f"{k}={v}" for k, v in p.cell.axes.items()), "repeat": p.cell.repeat} for p in empty.todo]}
        if _DRY_NAME is not None:
            from . import metacache

            metacache.save(data, name=_DRY_NAME)
        _print_dry(data, db)
        return
    try:
        store = open_store(db)
    except StoreError as exc:
        fail(str(exc))
    try:
        plan = make_plan(t, prof, methods, store, seeds=seed_list, dataset=dataset, references=references)
    except ValueError as exc:
        fail(str(exc))
    console.print(Text.assemble((t.name, "bold"), " profile ", (plan.profile.id, "bold"), f": {len(plan.todo)} cell(s) to run, {len(plan.done)} already done"), highlight=False)
    if plan.profile.description.startswith(prof.description) and plan.profile.description != prof.description:
        console.print(plan.profile.description[len(prof.description) :].strip(), markup=False)  # --dataset: the data and its threat model
    label = _labeller(methods)
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
    from .runner import hidden_salt_for
    from .salt import SaltError, parse_salt, salt_id

    try:
        salt = hidden_salt_for(plan, store, parse_salt(hidden_salt))
    except (SaltError, StoreError) as exc:
        fail(str(exc))
    if getattr(t, "hidden_data", False):
        if not plan.profile.salted:
            _line(f"hidden data of {plan.profile.id} is seeded from public seeds (an unsalted profile: published before the salt, or one that generates no hidden data)" + ("; --hidden-salt ignored" if hidden_salt else ""))
        elif not salt:
            _line("hidden data seeded from public seeds (--hidden-salt public): a contestant can rebuild it")
        else:
            _line(f"hidden data seeded with this database's secret salt {salt_id(salt)} (recorded with every run)")
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
    try:
        _load_datasets(t, plan.profile, ctx)  # decoded once, here (with a spinner), not inside the first cell
    except KeyboardInterrupt:
        err.print("interrupted while loading the data, before any cell started: no cell was stored; rerun the same command", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(130) from None
    from .progress import RunDisplay

    primary = t.primary_for(prof)
    shown = [primary] + [c for c in t.secondary_metrics if c != primary][:3]
    costs = {p.cell.key: float(t.cost_hint(p.cell)) for p in plan.todo}
    t0 = time.perf_counter()
    display = RunDisplay(console, costs, shown, terminal=console.is_terminal, label=label)
    def heard(running: int) -> None:  # Ctrl-C: one line at once, before the workers are stopped
        display.__exit__(None, None, None)
        err.print(f"Ctrl-C: stopping {running} running cell(s); finished cells stay stored", highlight=False, markup=False, soft_wrap=True)

    with display:
        try:
            execute(plan, store, ctx, jobs=jobs, executor=executor, timeout_s=timeout, address=address, on_done=display.on_done, on_progress=display.on_progress, hidden_salt=salt, on_interrupt=heard)
        except KeyboardInterrupt as exc:
            display.__exit__(None, None, None)
            marked = getattr(exc, "interrupted", display.total - display.done)
            cut = getattr(exc, "cut", marked)
            waiting = marked - cut  # claimed by this run, never started: marked too, so nothing stays "running"
            rest = display.total - display.done - marked
            err.print(
                f"interrupted: {display.done} finished cell(s) are stored; {cut} cut short"
                + (f" and {waiting} not yet started" if waiting > 0 else "")
                + " are marked interrupted (not failed)"
                + (f"; {rest} not started" if rest > 0 else "")
                + "; rerun the same command to complete them",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
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


class _NoStore:
    """The store of a ``--dry-run`` whose database does not exist yet: nothing done, and no
    file created (a dry run writes nothing)."""

    url = "(none yet)"

    def done_keys(self, keys: Any = None) -> set[str]:
        return set()


#: ``run --dry-run``: the cached plan of this command line (set by ``main``), and the cache file
#: to save it to when it was not cached
_DRY: Optional[dict[str, Any]] = None
_DRY_NAME: Optional[str] = None


def _print_dry(data: dict[str, Any], db: Optional[str]) -> None:
    """What ``run --dry-run`` prints: each cell of the plan, todo or done in the store."""
    try:
        store = _dry_run_store(db)
        done = store.done_keys([c["key"] for c in data["cells"]])
    except Exception as exc:  # noqa: BLE001 - StoreError, imported only where a store is opened
        if type(exc).__name__ != "StoreError":
            raise
        fail(str(exc))
    todo = [c for c in data["cells"] if c["key"] not in done]
    have = [c for c in data["cells"] if c["key"] in done]
    console.print(Text.assemble((data["track"], "bold"), " profile ", (data["profile"], "bold"), f": {len(todo)} cell(s) to run, {len(have)} already done"), highlight=False)
    if data["extra"]:
        console.print(data["extra"], markup=False)  # --dataset: the data and its threat model
    if _plain():
        for status, items in (("todo", todo), ("done", have)):
            for c in items:
                _line(f"  {status:5} {c['key']}  {c['label']}")
        return
    table = Table("status", "method", "axes", "repeat", "key")
    for status, items in (("todo", todo), ("done", have)):
        for c in items:
            _row(table, status, c["method"], c["axes"], str(c["repeat"]), c["key"])
    console.print(table)


class _SqliteDone:
    """The done cells of an SQLite store read with ``sqlite3`` alone, read-only: a ``--dry-run``
    needs nothing else, and SQLAlchemy's import costs more than the whole command otherwise."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.url = f"sqlite:///{path}"
        self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        self.con.execute("SELECT key, status FROM run LIMIT 1").fetchall()  # our schema, or sqlite3.Error

    def done_keys(self, keys: Any = None) -> set[str]:
        wanted = list(keys or ())
        out: set[str] = set()
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            q = f"SELECT key FROM run WHERE status = 'done' AND key IN ({','.join('?' * len(chunk))})"
            out.update(k for (k,) in self.con.execute(q, chunk))
        return out


#: ``store.DEFAULT_DB``, spelled here so that a dry run need not import the store (SQLAlchemy);
#: tests/test_cli_edges.py checks that the two agree
DEFAULT_DB = Path("results") / "coreset-bench.db"


def _plain_db_path(db: Optional[str]) -> Optional[Path]:
    """The file a ``--db`` (or ``CORESET_BENCH_DB``, or the default) names when it is a plain
    path; None for a URL (the store resolves those)."""
    raw = str(db) if db is not None else os.environ.get("CORESET_BENCH_DB") or str(DEFAULT_DB)
    return None if "://" in raw else Path(raw).expanduser()


def _dry_run_store(db: Optional[str]) -> Any:
    path = _plain_db_path(db)
    if path is None:
        from .store import resolve_url, sqlite_path

        path = sqlite_path(resolve_url(db))
    if path is not None and not path.exists():
        return _NoStore()
    if path is not None:
        import sqlite3

        try:
            return _SqliteDone(path)
        except sqlite3.Error:  # not our database, locked, corrupt: the store says so in one line
            pass
    from .store import open_store

    return open_store(db, create=False, read_only=True)


def _plain() -> bool:
    """Plain, unwrapped lines instead of tables and live bars: stdout is not a terminal."""
    return not console.is_terminal


def _line(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _check_datasets(track: Any, profile: Any, data_dir: Optional[Path]) -> None:
    """Every dataset on the profile's dataset axis is known to its track and present (cheap
    checks, ``Track.check_dataset``), then the track's other up-front checks of the profile
    (``Track.check_inputs``: e.g. the instruction track's model and its optional packages)."""
    from . import data as D

    for ref in dict.fromkeys(str(v) for v in profile.axes.get("dataset", ())):
        try:
            track.check_dataset(ref, data_dir)
        except LookupError as exc:
            fail(f"--dataset: {str(exc).strip(chr(39) + chr(34))}")
        except (ValueError, D.DatasetError) as exc:
            fail(str(exc))
    try:
        track.check_inputs(profile, data_dir)
    except (ValueError, D.DatasetError) as exc:
        fail(str(exc))


def _load_datasets(track: Any, profile: Any, ctx: Any) -> None:
    """Load (decode) the profile's datasets once before the cells (``Track.load_dataset``), under
    a spinner on a terminal; the in-process memo then serves every cell (forked workers inherit it)."""
    if "dataset" not in profile.axes:
        return
    import contextlib

    from . import data as D

    for ref in dict.fromkeys(str(v) for v in profile.axes["dataset"]):
        spin = console.status(f"loading dataset {ref}", spinner="dots") if console.is_terminal else contextlib.nullcontext()
        try:
            with spin:
                track.load_dataset(ref, ctx)
        except LookupError as exc:
            fail(f"--dataset: {str(exc).strip(chr(39) + chr(34))}")
        except (ValueError, D.DatasetError) as exc:
            fail(str(exc))


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
    percent = {c: fraction_metric((r["metrics"].get(c) for r in rows), c) for c in cols}
    title = f"{prof.id}: this run's cells and references (mean ± std over seeds{'; in %' if any(percent.values()) else ''})"
    lines = []
    board = _SummaryBoard(store, t, prof)
    for key, rs in sorted(groups.items()):
        cells = []
        for c in cols:
            v = np.array([x["metrics"].get(c, np.nan) for x in rs], dtype=float)
            v = v[np.isfinite(v)]
            cells.append(fmt_metric(float(v.mean()), percent[c], float(v.std()) if v.size > 1 else None) if v.size else "-")
        lines.append((key, len(rs), cells, board.mark(rs)))
    marked = any(mark for *_, mark in lines)
    if _plain():
        _line(title)
        for key, n, cells, mark in lines:
            _line("  " + "  ".join([key[0], *(f"{a}={v}" for a, v in zip(varied, key[1:])), f"n={n}", *(f"{c}={x}" for c, x in zip(cols, cells))] + ([f"board: {mark}"] if mark else [])))
    else:
        _line(title)  # above the table, unwrapped (a title narrower than it wraps into a column)
        table = Table("method", *varied, "n", *cols, *(["board"] if marked else []))
        for key, n, cells, mark in lines:
            _row(table, *key, str(n), *cells, *([Text(mark, style="yellow") if mark else ""] if marked else []))
        console.print(table)
    if marked:
        _line("board: flagged rows (a degenerate model or a track flag) and rows at the constant-classifier floor are shown and never ranked on the leaderboard; their numbers are no verdict on the method")
    _claim_cards(board, t, prof, {m.name for m in methods})


class _SummaryBoard:
    """The leaderboard's reading of this profile in the store (built on first use): the flags of
    a row's cells and whether its board row is at the constant-classifier floor."""

    def __init__(self, store: Any, track: Any, profile: Any) -> None:
        self.store, self.track, self.profile = store, track, profile
        self._board: Any = None
        self.error = ""

    @property
    def board(self) -> Any:
        if self._board is None and not self.error:
            from .leaderboard.board import build_board
            from .leaderboard.data import load_store_records

            try:
                recs = [r for r in load_store_records(self.store, track=self.track.name, profile=self.profile.id) if r["status"] != "interrupted"]
                self._board = build_board(self.track, self.profile, recs)
            except Exception as exc:  # noqa: BLE001 - the summary must never fail the run
                self.error = f"{type(exc).__name__}: {exc}"
        return self._board

    def mark(self, rows: list[dict[str, Any]]) -> str:
        """``flagged: f (k of n cells)`` and/or ``at floor``, as the board marks the row."""
        from .leaderboard.board import derived_flags
        from .leaderboard.data import point_key, variant_key

        counts: dict[str, int] = {}
        for r in rows:
            fl = (r.get("info") or {}).get("flags")
            if not isinstance(fl, list):
                fl = derived_flags(r)
            for f in dict.fromkeys(str(x) for x in fl):
                counts[f] = counts.get(f, 0) + 1
        out = []
        if counts:
            out.append("flagged: " + ", ".join(f"{f} ({k} of {len(rows)} cells)" for f, k in sorted(counts.items())))
        b = self.board
        if b is not None and rows:
            vk, point = variant_key(rows[0]), point_key(rows[0]["axes"])
            for table in b.tables:
                if table.kind != "setting" or point not in table.points:
                    continue
                row = next((r for r in table.rows if r.variant.key == vk), None)
                if row is not None and row.status == "at floor":
                    out.append("at floor")
        return "; ".join(out)


def _claim_cards(board: "_SummaryBoard", t: Any, prof: Any, names: set[str]) -> None:
    """The card of each claim this run's methods take part in (as the seed row or a named
    comparator): computed from the store's results on this profile, or a line naming the
    profile(s) that decide it."""
    from .claims import Row

    try:
        claims = [c for c in plugins.claims() if c.track == t.name and (c.seed.method in names or (isinstance(c.comparator, Row) and c.comparator.method in names))]
    except Exception as exc:  # noqa: BLE001 - a broken claim declaration must not fail the run
        _line(f"claims: not read ({type(exc).__name__}: {exc})")
        return
    if not claims:
        return
    from .leaderboard.claims import card

    for c in claims:
        head = f"claim {c.id} ({c.system}, {c.paper.short()}): \u201c{c.quote}\u201d"
        if prof.id not in c.profiles:
            ps = ", ".join(c.profiles)
            _line(head)
            _line(f"    decided on {ps}, not on this run's profile {prof.id}: coreset-bench run --plugin {c.seed.method} --profile {c.profiles[0]}")
            continue
        b = board.board
        if b is None:
            _line(head)
            _line(f"    no card: the board of {prof.id} could not be built ({board.error})")
            continue
        k = card(c, b)
        under = " (underpowered)" if k.judgement.underpowered else ""
        where = ", ".join(f"{a}={v}" for a, v in c.where.items())
        _line(head)
        _line(f"    {prof.id} · {c.metric}{' · ' + where if where else ''}: {k.what()} = {k.difference_text()}; claimed {k.amount_text()}; MDE {k.mde_text()}")
        _line(f"    verdict: {k.verdict}{under}: {k.judgement.reason}")
        for n in k.notes:
            _line(f"    {n}")


plugins_app = typer.Typer(
    help="List the plugins (one line per method; --verbose or --json for detail); `plugins show NAME` for one.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
)
app.add_typer(plugins_app, name="plugins")


def _plugin_rows() -> list[dict[str, Any]]:
    recs = plugins.records()
    rows: list[dict[str, Any]] = []
    for m in plugins.methods():
        rec = next((r for r in recs if ("methods", m.name) in r.objects), None)
        rows.append({"name": m.name, "kind": m.kind, "version": m.version, "package": m.package, "package_version": rec.package_version if rec else "", "entry_point": rec.name if rec else "", "tracks": plugins.tracks_for(m), "refused": _refusals(m), "summary": m.summary, "citation": m.citation, "params": {r["name"]: {"default": r["default"], "rule": r["rule"], "help": r["help"]} for r in m.param_table()}, "error": None})
    for reg, kind in (("datasets", "dataset"), ("architectures", "architecture"), ("tracks", "track")):
        for name in sorted(getattr(plugins.manager(), reg).items):
            rec = next((r for r in recs if (reg, name) in r.objects), None)
            rows.append({"name": name, "kind": kind, "version": rec.package_version if rec else "", "package": rec.package if rec else "", "package_version": rec.package_version if rec else "", "entry_point": rec.name if rec else "", "tracks": [name] if kind == "track" else [], "refused": {}, "summary": getattr(getattr(plugins.manager(), reg).items[name], "summary", ""), "error": None})
    for r in recs:
        if r.error:
            rows.append({"name": r.name, "kind": "?", "version": r.package_version, "package": r.package, "package_version": r.package_version, "entry_point": r.name, "tracks": [], "refused": {}, "summary": "", "error": r.error})
    return rows


def _first_sentence(text: str) -> str:
    text = " ".join(str(text or "").split())
    cut = text.find(". ")
    return text[: cut + 1] if 0 < cut < 100 else text


@plugins_app.callback()
def plugins_cmd(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON: every field of every plugin, with the tracks that refuse a method and why."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Every column (version, package) and the whole summary."),
) -> None:
    """List the plugins that loaded (and those that failed, with their errors): one line each.

    Each method's ``tracks`` are the tracks that accept it (``Track.accepts``); with ``--json``,
    ``refused`` maps each other track of its kind to the reason it does not rank the method.
    ``coreset-bench plugins show NAME`` prints one plugin in full."""
    if ctx.invoked_subcommand is not None:
        return
    rows = _META["plugins"] if _META is not None else _plugin_rows()
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if verbose:
        table = Table("name", "kind", "version", "package", "tracks", "summary / error")
        for r in rows:
            _row(table, r["name"], r["kind"], str(r["version"]), r["package"], ", ".join(r["tracks"]), Text(str(r["error"]), style="red") if r["error"] else r["summary"])
        console.print(table)
        return
    if _plain():
        for r in rows:
            what = f"ERROR {r['error']}" if r["error"] else _first_sentence(r["summary"])
            _line(f"{r['name']}  {r['kind']}  [{', '.join(r['tracks'])}]  {what}")
        return
    table = Table("name", "kind", "tracks", "summary / error", box=None, pad_edge=False)
    for i, col in enumerate(table.columns):
        col.no_wrap = True
        col.overflow = "ellipsis"
        if i < 3:  # names, kinds and tracks whole; the summary is cut to the terminal's width
            col.min_width = max([len(col.header)] + [len(", ".join(r["tracks"]) if i == 2 else str(r[("name", "kind")[i]])) for r in rows])
    table.columns[3].ratio = 1
    for r in rows:
        _row(table, r["name"], r["kind"], ", ".join(r["tracks"]), Text(str(r["error"]), style="red") if r["error"] else _first_sentence(r["summary"]))
    console.print(table)
    console.print(Text("details: coreset-bench plugins show NAME (or --verbose, --json)", style="dim"))


@plugins_app.command("show")
def plugins_show(name: str = typer.Argument(..., help="A method, track, dataset or architecture."), as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """One plugin in full: parameters (default, type and range), signals, citation, package, version, tracks."""
    rows = {r["name"]: r for r in (_META["plugins"] if _META is not None else _plugin_rows())}
    if name not in rows:
        from .registry import _closest

        fail(f"no plugin named {name!r}; {_closest(name, rows)}".rstrip("; "))
    r = dict(rows[name])
    if r["kind"] not in ("dataset", "architecture", "track", "?"):
        r.update(_META["details"].get(name, {}) if _META is not None else _method_details(name))
    if as_json:
        print(json.dumps(r, indent=2, default=str))
        return
    _line(f"{r['name']} ({r['kind']}) version {r['version']}, package {r['package'] or '-'} {r['package_version']}".rstrip())
    if r.get("error"):
        _line(f"  load error: {r['error']}")
    if r.get("summary"):
        _line(f"  {' '.join(str(r['summary']).split())}")
    if r.get("citation"):
        _line(f"  citation: {r['citation']}")
    _line(f"  tracks: {', '.join(r['tracks']) or '(none)'}")
    for t, why in (r.get("refused") or {}).items():
        _line(f"  not ranked by {t}: {why}")
    if r.get("signals"):
        _line(f"  signals: {', '.join(r['signals'])}")
    for attr in ("modalities", "role", "privileged"):
        if r.get(attr):
            _line(f"  {attr}: {r[attr]}")
    if "params" in r:
        if not r["params"]:
            _line("  parameters: none")
        else:
            _line("  parameters (--param NAME=VALUE):")
            for pname, spec in r["params"].items():
                hint = f"  {spec['help']}" if spec["help"] else ""
                _line(f"    {pname} = {spec['default']!r}  ({spec['rule']}){hint}")


def _method_details(name: str) -> dict[str, Any]:
    """What ``plugins show`` adds for a method: its signals and declarations."""
    m = plugins.method(name)
    out: dict[str, Any] = {"signals": sorted(getattr(m, "signals", ()) or ())}
    for attr in ("modalities", "role", "privileged"):
        if getattr(m, attr, None):
            v = getattr(m, attr)
            out[attr] = sorted(v) if isinstance(v, (set, frozenset)) else v
    return out


#: set by ``main`` for the listing commands (plugins, plugins show, tracks, profiles): their
#: answers from ``metacache`` (no plugin imported, hence no torch) instead of the loaded plugins
_META: Optional[dict[str, Any]] = None


def _build_meta() -> dict[str, Any]:
    """Everything the listing commands print, from the loaded plugins (``metacache`` saves it)."""
    rows = _plugin_rows()
    details = {r["name"]: _method_details(r["name"]) for r in rows if r["kind"] not in ("dataset", "architecture", "track", "?")}
    return {"plugins": rows, "details": details, "tracks": _track_items(), "profiles": {name: _profile_items(t) for name, t in plugins.tracks().items()}}


def _track_items() -> list[dict[str, Any]]:
    out = []
    for t in plugins.tracks().values():
        who = t.contestant_kind + "".join(f" ({v})" for v in (getattr(t, "modality", ""), getattr(t, "role", "")) if v)
        out.append({"name": t.name, "who": who, "primary": t.primary_metric, "profiles": [p.id for p in t.profiles()], "summary": t.summary, "describe": t.describe()})
    return out


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
    items = _META["tracks"] if _META is not None else _track_items()
    if as_json:
        print(json.dumps([t["describe"] for t in items], indent=2))
        return
    if _plain():  # piped: whole names, one line per track, never cut to a terminal width
        for t in items:
            _line(f"{t['name']}  {t['who']}  primary={t['primary']}  profiles={','.join(t['profiles'])}  {' '.join(str(t['summary']).split())}")
        return
    table = Table("track", "contestants", "primary metric", "profiles", "summary")
    for t in items:
        _row(table, t["name"], t["who"], t["primary"], ", ".join(t["profiles"]), t["summary"])
    console.print(table)


def _profile_items(t: Any) -> list[dict[str, Any]]:
    """One dict per profile of track ``t``, as ``profiles --json`` prints it."""
    try:
        default_id = t.profile(None).id
    except LookupError:
        default_id = ""
    return [
        {"id": p.id, "track": t.name, "default": p.id == default_id, "axes": {k: list(v) for k, v in p.axes.items()}, "seeds": list(p.seeds), "cells_per_method": p.n_cells(), "device": p.device, "description": public_text(p.description), "conventions": _conventions(p.settings), "settings": dict(p.settings)}
        for p in t.profiles()
    ]


def _conventions(settings: Any) -> dict[str, str]:
    """The conventions a profile fixes, in words: what a budget means, class balance, the
    optimizer steps of training, the proxy; from its settings (text entries and the recipe)."""
    out: dict[str, str] = {}
    names = {"budget_semantics": "budget", "class_balance": "class balance", "proxy_convention": "proxy"}
    for k, v in dict(settings).items():
        if isinstance(v, str) and k not in ("checkpoints",):
            out[names.get(k, k.replace("_", " "))] = v
    train = settings.get("train") if hasattr(settings, "get") else None
    if isinstance(train, dict):
        mode = train.get("budget_mode")
        bits = []
        if "steps" in train:
            bits.append(f"{train['steps']} optimizer steps" + (" whatever the budget" if mode == "iterations" else ""))
        elif "epochs" in train:
            bits.append(f"{train['epochs']} epochs")
        if mode:
            bits.append(f"budget mode {mode}")
        bits += [f"{k.replace('_', ' ')} {train[k]}" for k in ("batch_size", "lr") if k in train]
        out["training"] = ", ".join(bits)
    proxy = settings.get("proxy") if hasattr(settings, "get") else None
    if isinstance(proxy, dict) and "epochs" in proxy:
        out["proxy training"] = f"{proxy['epochs']} epochs" + (f", batch size {proxy['batch_size']}" if "batch_size" in proxy else "")
    rb = settings.get("robust") if hasattr(settings, "get") else None
    if isinstance(rb, dict) and "eps" in rb:
        from .progress import fmt_value

        out["threat model"] = f"L-inf eps {fmt_value(float(rb['eps']), False)}" + (f", {rb['attack_steps']} PGD steps in training" if "attack_steps" in rb else "")
    return out


@app.command()
def profiles(track: Optional[str] = typer.Argument(None, help="Only this track."), as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List profiles: their matrices and the conventions they fix (budget meaning, class
    balance, optimizer steps, proxy, threat model)."""
    if _META is not None:
        known = _META["profiles"]
        if track is not None and track not in known:
            from .registry import _closest

            fail(f"unknown track {track!r}; {_closest(track, known)}")
        items = [it for name, its in known.items() if track is None or name == track for it in its]
    else:
        try:
            ts = [plugins.track(track)] if track else list(plugins.tracks().values())
        except LookupError as exc:
            fail(str(exc).strip("'\""))
        items = [it for t in ts for it in _profile_items(t)]
    if as_json:
        print(json.dumps(items, indent=2, default=str))
        return
    for it in items:
        console.print(Text.assemble((it["id"], "bold"), "  (default)" if it["default"] else "", f"  {it['cells_per_method']} cells per method, seeds {', '.join(map(str, it['seeds']))}, {it['device']}"), highlight=False, soft_wrap=not console.is_terminal)
        _line("  matrix: " + "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in it["axes"].items()))
        for k, v in it["conventions"].items():
            _line(f"  {k}: {v}")
        if it["description"]:
            _line(f"  {' '.join(it['description'].split())}")


results_app = typer.Typer(
    help="Show stored runs; `results prune` removes failed or unwanted ones.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
)
app.add_typer(results_app, name="results")


@results_app.callback()
def results(
    ctx: typer.Context,
    plugin: Optional[str] = typer.Option(None, "--plugin", "-p", help="Only this method."),
    track: Optional[str] = typer.Option(None, "--track", help="Only this track."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Only this profile, as `run` takes it: quick, quick@2 or coreset/quick@2 (no version: every stored one)."),
    status: Optional[str] = typer.Option(None, "--status", help="done, failed, interrupted or running."),
    db: Optional[str] = typer.Option(None, "--db", help="Results database path or SQLAlchemy URL (env CORESET_BENCH_DB); opened read-only."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array with one object per run (key, method, params, axes, status, metrics, ...)."),
) -> None:
    """Show stored runs (``results prune --help``: remove runs)."""
    if ctx.invoked_subcommand is not None:
        return
    from .store import StoreError, open_store

    try:
        store = open_store(db, create=False, read_only=True)  # reads only: works in a read-only directory
    except StoreError as exc:
        fail(str(exc))
    rows = store.results(method=plugin, track=track, status=status)
    if profile is not None:
        ids = _profile_ids({r["profile"] for r in rows}, profile)
        rows = [r for r in rows if r["profile"] in ids]
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    mets = _metric_text(rows)
    if _plain():
        for r, m in zip(rows, mets):
            _line(f"{r['key'][:12]}  {r['method']}  {r['profile']}  {' '.join(f'{k}={v}' for k, v in r['axes'].items())}  repeat={r['repeat']}  {r['status']}  {_one_line(r['error']) if r['error'] else m}")
        return
    table = Table("key", "method", "profile", "axes", "repeat", "status", "metrics / error")
    for r, m in zip(rows, mets):
        _row(table, r["key"][:12], r["method"], r["profile"], " ".join(f"{k}={v}" for k, v in r["axes"].items()), str(r["repeat"]), r["status"], _one_line(r["error"]) if r["error"] else m)
    console.print(table)


#: metrics per row that ``results`` prints (the rest: ``--json``)
RESULTS_METRICS = 5


def _metric_text(rows: list[dict[str, Any]]) -> list[str]:
    """Per row, its metrics as ``run`` prints them: fractions in % (the leaderboard's rule, per
    metric over all rows), amounts as numbers; per-class metrics left out; at most
    ``RESULTS_METRICS`` of them, then how many more ``--json`` shows."""
    from .progress import fmt_value, fraction_metric

    names: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r["metrics"].items():
            if not k.startswith("class_acc_") and v is not None:
                names.setdefault(k, []).append(v)
    percent = {k: fraction_metric(vs, k) for k, vs in names.items()}
    out = []
    for r in rows:
        items = [(k, v) for k, v in r["metrics"].items() if k in percent and v is not None]
        shown = " ".join(f"{k}={fmt_value(float(v), percent[k])}" for k, v in items[:RESULTS_METRICS])
        more = len(items) - RESULTS_METRICS
        out.append(shown + (f" (+{more} more: --json)" if more > 0 else ""))
    return out


def _one_line(text: Any, limit: int = 200) -> str:
    """An error as one line of at most ``limit`` characters (the whole text: ``--json``)."""
    first = " ".join(str(text).split())
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _profile_ids(stored: set[str], ref: str) -> set[str]:
    """The stored profile ids ``ref`` names, as ``run --profile`` reads it: ``tiny``,
    ``tiny@1``, ``coreset/tiny`` or ``coreset/tiny@1`` (without a version: every stored version
    of that name). No match: one-line error listing what is stored."""
    if ref in stored:
        return {ref}
    track, _, rest = ref.rpartition("/")
    name, _, version = rest.partition("@")
    out = set()
    for pid in stored:
        t, _, r = pid.rpartition("/")
        n, _, v = r.partition("@")
        if n == name and (not track or t == track) and (not version or v == version):
            out.add(pid)
    if not out:
        from .registry import _closest

        fail(f"no stored runs of profile {ref!r}; {_closest(ref, stored)}".replace("known:", "stored:"))
    return out


def _json_value(text: str) -> Any:
    """A --param value as the store holds it: JSON (numbers, true/false, null) or the string."""
    try:
        return json.loads(text)
    except ValueError:
        low = text.strip().lower()
        return {"yes": True, "on": True, "no": False, "off": False}.get(low, text)


def _params_match(stored: Any, wanted: dict[str, Any]) -> bool:
    return all(k in stored and (stored[k] == v or str(stored[k]) == str(v)) for k, v in wanted.items())


@results_app.command("prune")
def results_prune(
    failed: bool = typer.Option(False, "--failed", help="Failed runs (and interrupted ones)."),
    interrupted: bool = typer.Option(False, "--interrupted", help="Runs cut by Ctrl-C."),
    status: Optional[str] = typer.Option(None, "--status", help="Runs of this status (done, failed, interrupted, running)."),
    plugin: Optional[str] = typer.Option(None, "--plugin", "-p", help="Only this method."),
    param: list[str] = typer.Option([], "--param", help="Only runs with this parameter value KEY=VALUE (repeatable)."),
    track: Optional[str] = typer.Option(None, "--track", help="Only this track."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Only this profile id, e.g. coreset/quick@2."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed; remove nothing."),
    db: Optional[str] = typer.Option(None, "--db", help="Results database path or SQLAlchemy URL (env CORESET_BENCH_DB)."),
) -> None:
    """Remove runs from the store: failed or interrupted ones, a method, a parameter setting, a
    profile (filters combine). A run another live run is computing is kept. Artifact files are
    shared by content and stay (``doctor`` reports the cache size)."""
    statuses = {s for s, on in (("failed", failed), ("interrupted", failed or interrupted)) if on}
    if status:
        statuses.add(status)
    wanted = {k: _json_value(v) for k, v in _parse_params(param).items()}
    if not (statuses or plugin or wanted or track or profile):
        fail("name what to remove: --failed, --interrupted, --status, --plugin, --param, --track or --profile (see --dry-run)")
    from .store import StoreError, open_store

    try:
        store = open_store(db, create=False, read_only=dry_run)
    except StoreError as exc:
        fail(str(exc))
    rows = [r for r in store.results(method=plugin, track=track, profile=profile) if (not statuses or r["status"] in statuses) and _params_match(r["params"], wanted)]
    for r in rows:
        _line(f"{'would remove' if dry_run else 'remove'} {r['key'][:12]}  {r['method']}  {r['profile']}  {' '.join(f'{k}={v}' for k, v in r['axes'].items())}  repeat={r['repeat']}  {r['status']}")
    if dry_run:
        _line(f"{len(rows)} run(s) would be removed from {store.url}")
        return
    try:
        n = store.delete([r["key"] for r in rows])
    except StoreError as exc:
        fail(str(exc))
    kept = len(rows) - n
    _line(f"removed {n} run(s) from {store.url}" + (f"; kept {kept} that another live run is computing" if kept else ""))


store_app = typer.Typer(help="Manage the results store: `store copy SRC DST` moves it to another database.", no_args_is_help=True, add_completion=False)
app.add_typer(store_app, name="store")


@store_app.command("copy")
def store_copy(
    src: str = typer.Argument(..., help="The store to copy: a path or SQLAlchemy URL (opened read-only)."),
    dst: str = typer.Argument(..., help="The new store: a path or URL, e.g. postgresql://user@host/dbname (must hold no runs)."),
) -> None:
    """Copy every run, metric, artifact row and the salt of SRC into the empty store DST, and check
    the copy (row counts and a content hash); artifact files stay where they are."""
    from .store import StoreError
    from .store_copy import copy_store

    try:
        rep = copy_store(src, dst)
    except StoreError as exc:
        fail(str(exc))
    counts = ", ".join(f"{n} {t}" for t, n in rep.counts.items())
    _line(f"copied {counts} from {rep.source} to {rep.destination}; content hash {rep.digest[:16]} matches")


def _setting(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE`` -> (name, parameters), checked like ``--param``."""
    name, _, rest = spec.partition(":")
    items = [x for x in rest.split(",") if x.strip()] if rest else []
    given = _parse_params(items)
    try:
        m = plugins.method(name)
    except LookupError:  # not installed: the stored parameters are taken as written
        return name, {k: _json_value(v) for k, v in given.items()}
    try:
        return name, dict(m.with_params(**given).params)
    except ValueError as exc:
        fail(str(exc))
    raise AssertionError  # unreachable


@app.command()
def compare(
    a: str = typer.Argument(..., help="A method, or a parameter setting NAME:KEY=VALUE[,KEY=VALUE]."),
    b: str = typer.Argument(..., help="The method or setting to compare with (the difference is A − B)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Only this profile, as `run` takes it: tiny, tiny@1 or coreset/tiny@1 (default: every profile where both have finished cells)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Metric (default: the track's primary metric)."),
    db: Optional[str] = typer.Option(None, "--db", help="Results database path or SQLAlchemy URL (env CORESET_BENCH_DB); opened read-only."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Paired difference A − B per cell with its 95 % interval over seeds.

    Cells pair by profile, axes and repeat (the same seed, splits and training noise); per cell
    the difference is averaged over seeds with a t-interval (none for fewer than 2 seeds; a
    difference of a bounded metric is clipped to [−(hi − lo), hi − lo], of accuracies ±100 pp),
    and the last row averages the cells of each seed first. ``cld`` means cld with its installed
    default parameters; ``cld:epochs_used=0.5`` another setting."""
    import numpy as np

    from .leaderboard.board import metric_ranges
    from .leaderboard.stats import UNBOUNDED, seed_interval
    from .progress import fraction_metric
    from .store import StoreError, open_store

    (na, pa), (nb, pb) = _setting(a), _setting(b)
    try:
        store = open_store(db, create=False, read_only=True)
    except StoreError as exc:
        fail(str(exc))

    # --profile as `run` reads it: tiny, tiny@1, coreset/tiny or coreset/tiny@1
    ids = _profile_ids({r.profile for r in store.runs(status="done")}, profile) if profile is not None else None

    def rows_of(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = store.results(method=name, status="done")
        return [r for r in rows if _params_match(r["params"], params) and (ids is None or r["profile"] in ids)]

    ra, rb = rows_of(na, pa), rows_of(nb, pb)
    if not ra or not rb:
        fail(f"no finished runs of {a if not ra else b}{' on ' + profile if profile else ''}; `coreset-bench results --plugin {na if not ra else nb}` lists what is stored")
    out = []
    for prof_id in sorted({r["profile"] for r in ra} & {r["profile"] for r in rb}):
        track_name = next(r["track"] for r in ra if r["profile"] == prof_id)
        met = metric
        if met is None:
            try:
                t = plugins.track(track_name)
                met = t.primary_for(t.profile(prof_id))
            except LookupError:
                met = next(iter(ra[0]["metrics"]), "")
        va = {(json.dumps(r["axes"], sort_keys=True), r["repeat"]): r["metrics"].get(met) for r in ra if r["profile"] == prof_id}
        vb = {(json.dumps(r["axes"], sort_keys=True), r["repeat"]): r["metrics"].get(met) for r in rb if r["profile"] == prof_id}
        pairs = {k: va[k] - vb[k] for k in va.keys() & vb.keys() if va[k] is not None and vb[k] is not None}
        if not pairs:
            continue
        pct = fraction_metric([*(v for v in va.values() if v is not None), *(v for v in vb.values() if v is not None)], met)
        try:  # a difference of a bounded metric lies in [−(hi − lo), hi − lo] (of accuracies: ±100 pp)
            span = metric_ranges(plugins.track(track_name)).get(met, UNBOUNDED).difference()
        except LookupError:
            span = UNBOUNDED
        cells = []
        for point in sorted({p for p, _ in pairs}):
            ds = [pairs[(point, r)] for r in sorted(r for p, r in pairs if p == point)]
            cells.append({"axes": json.loads(point), "n": len(ds), "interval": seed_interval(ds, span)})
        by_seed: dict[int, list[float]] = {}
        points = sorted({p for p, _ in pairs})
        for (p, r), d in pairs.items():
            by_seed.setdefault(r, []).append(d)
        overall = seed_interval([float(np.mean(v)) for r, v in by_seed.items() if len(v) == len(points)], span)
        out.append({"profile": prof_id, "metric": met, "percent": pct, "cells": cells, "overall": overall})
    if not out:
        fail(f"{a} and {b} have no finished cells in common (same profile, axes and repeat); run both on one profile first")
    if as_json:
        def iv(x: Any) -> Any:
            return None if x is None else {"mean": x.mean, "low": x.low, "high": x.high, "n": x.n}

        print(json.dumps([{**o, "a": a, "b": b, "cells": [{**c, "interval": iv(c["interval"])} for c in o["cells"]], "overall": iv(o["overall"])} for o in out], indent=2, default=str))
        return
    for o in out:
        unit = " pp" if o["percent"] else ""
        scale = 100.0 if o["percent"] else 1.0

        def fmt(x: Any) -> str:
            if x is None:
                return "-"
            m = f"{x.mean * scale:+.2f}"
            return f"{m}{unit} (no interval: n={x.n})" if x.low is None else f"{m} [{x.low * scale:+.2f}, {x.high * scale:+.2f}]{unit}"

        _line(f"{o['profile']}: {o['metric']}, {a} − {b} (paired by seed; mean and 95 % interval over seeds)")
        for c in o["cells"]:
            _line(f"  {' '.join(f'{k}={v}' for k, v in c['axes'].items())}  n={c['n']}  {fmt(c['interval'])}")
        _line(f"  all {len(o['cells'])} cells (mean over cells per seed)  {fmt(o['overall'])}")


@app.command()
def reproduce(
    entry: Path = typer.Argument(..., help="A published entry (JSON file), e.g. results/entries/coreset/quick@2/random@1.json."),
    cells: int = typer.Option(4, "--cells", "-n", min=1, help="How many of its cells to re-run (the first N by cell key: the same sample on every machine)."),
    db: Optional[str] = typer.Option(None, "--db", help="Store of the reproduced runs (default: results/reproduce.db; never your main store, so a reproduction never mixes with local runs)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="Cells run in parallel (default as for `run`)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where datasets live (CIFAR python batches)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Per-cell time-out in seconds (overrides the profile's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the judgements as JSON."),
) -> None:
    """Re-run a sample of a published entry's cells and compare with its published numbers.

    Per metric: the paired difference reproduced − published with its 95 % interval, judged
    against the entry's seed-to-seed spread: within the noise band (1.96·√2·spread/√n) it is
    "reproduced within noise", beyond it a "systematic deviation" (flagged), and bit-equal
    numbers are "reproduced exactly". The CPU model and instruction set of this machine and of
    the published runs are printed (and stored with every run). Show the reproduction on the
    board: `leaderboard --entries DIR --db results/reproduce.db --label reproduction`."""
    from . import env as envmod
    from . import reproduce as rp
    from .leaderboard.entries import EntryError, check_entry, known_profiles_from_plugins, load_entry
    from .runner import Plan, default_context, execute, make_plan
    from .salt import SaltError, parse_salt
    from .store import StoreError, open_store

    if not entry.is_file():
        fail(f"no entry file at {entry}; pass one JSON entry, e.g. results/entries/coreset/quick@2/random@1.json")
    try:
        obj = check_entry(load_entry(entry), known_profiles_from_plugins())
    except EntryError as exc:
        fail(f"{entry}: {exc}")
    meta, prov = obj["method"], obj.get("provenance") or {}
    try:
        t = plugins.track(obj["track"])
        prof = t.profile(obj["profile"]["id"])
        installed = plugins.method(meta["name"])
    except LookupError as exc:
        fail(f"{str(exc).strip(chr(39) + chr(34))}; install the package that provides it to reproduce {entry.name}")
    if str(installed.version) != str(meta["version"]):
        fail(f"{meta['name']} is installed at version {installed.version}, the entry was made with {meta['version']}; a reproduction needs the same version")
    try:
        method = installed.with_params(**meta["params"])
    except ValueError as exc:
        fail(f"the entry's parameters do not apply to the installed {meta['name']}: {exc}")
    done_cells = [c for c in obj["cells"] if c.get("metrics")]
    try:
        store = open_store(db if db is not None else str(Path("results") / "reproduce.db"))
    except StoreError as exc:
        fail(str(exc))
    plan = make_plan(t, prof, [method], store, references=False)
    by_key = {p.cell.key: p for p in [*plan.todo, *plan.done]}
    chosen = rp.choose_cells([c for c in done_cells if c["key"] in by_key], cells)
    if not chosen:
        fail(f"none of the {len(done_cells)} cells of {entry.name} is a cell of the installed {meta['name']} {meta['version']} on {prof.id} (other parameters or axes); nothing to reproduce")
    keys = {c["key"] for c in chosen}
    plan = Plan(plan.track, plan.profile, [p for p in plan.todo if p.cell.key in keys], [p for p in plan.done if p.cell.key in keys])
    here = envmod.cpu_info()
    _line(f"reproducing {len(chosen)} of {len(done_cells)} cells of {entry.name} ({prof.id}, {meta['name']} {meta['version']}) into {store.url}; {len(plan.done)} already there")
    _line(f"published on: {prov.get('cpu_model') or prov.get('device') or 'unrecorded machine'}" + (f" [{prov['cpu_isa']}]" if prov.get("cpu_isa") else "") + f"; this machine: {here['cpu_model']} [{here['cpu_isa'] or '-'}]")
    if plan.todo:
        try:
            dev = envmod.pick_device(device)
            salt_text = prov.get("hidden_salt")
            salt = parse_salt(salt_text, where="the entry's provenance.hidden_salt") if salt_text is not None else None
            from .runner import hidden_salt_for

            salt = hidden_salt_for(plan, store, salt)
            jobs = jobs or envmod.default_jobs(dev, len(plan.todo))
        except (ValueError, SaltError, StoreError) as exc:
            fail(str(exc))
        ctx = default_context(_results_dir(db if db is not None else str(Path("results") / "reproduce.db")), dev, data_dir)
        _check_datasets(t, prof, data_dir)
        _load_datasets(t, prof, ctx)

        def on_done(o: Any) -> None:
            _line(f"  {o.cell.key[:12]} {' '.join(f'{k}={v}' for k, v in o.cell.axes.items())} repeat={o.cell.repeat}: {o.status}" + (f" ({o.error.splitlines()[0]})" if o.error else ""))

        try:
            execute(plan, store, ctx, jobs=jobs, executor="process" if jobs > 1 else "inprocess", timeout_s=timeout, on_done=on_done, hidden_salt=salt)
        except KeyboardInterrupt:
            err.print("interrupted: the finished cells are stored; rerun the same command to complete the reproduction", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except (ValueError, StoreError) as exc:
            fail(str(exc))
    runs = {r["key"]: r["metrics"] for r in store.results(track=t.name, profile=prof.id, status="done") if r["key"] in keys}
    failed = len(keys) - len(runs)
    primary = t.primary_for(prof)
    present = {k for c in chosen for k in (c.get("metrics") or {})}
    metrics = [m for m in dict.fromkeys([primary, *t.secondary_metrics, *sorted(dict(t.metric_directions))]) if m in present]
    judgements = rp.compare(done_cells, chosen, runs, metrics)
    if as_json:
        print(json.dumps({"entry": str(entry), "profile": prof.id, "method": meta["name"], "cells": sorted(keys), "reproduced": len(runs), "failed": failed, "machine": here, "published_machine": {k: prov.get(k, "") for k in ("cpu_model", "cpu_isa", "device")}, "metrics": [j.as_dict() for j in judgements]}, indent=2))
    else:
        for j in judgements:
            _line(j.text())
        if failed:
            _line(f"{failed} of {len(keys)} cells did not finish (`coreset-bench results --db {store.url} --status failed` shows why)")
        _line(f"on the board: coreset-bench leaderboard --entries {entry.parent.parent.parent if entry.parent.parent.parent != Path('.') else entry.parent} --db {db or 'results/reproduce.db'} --label reproduction")
    if not runs:
        raise typer.Exit(1)


@app.command()
def doctor(db: Optional[str] = typer.Option(None, "--db", help="Results database path or SQLAlchemy URL to check (env CORESET_BENCH_DB); opened read-only.")) -> None:
    """Check the installation: versions, device, plugin load errors, MPEG-4 encoding with PyAV,
    the optional SmolLM2 weights, store health, cache size. Exits 1 on a load error, a bad
    setting, or when PyAV cannot encode MPEG-4 (a core dependency); SmolLM2 is optional."""
    from . import env as envmod
    from .signals import cache_size
    from .store import StoreError, open_store

    dev = envmod.pick_device("auto")
    e = envmod.environment(dev)
    for k in ("coreset_bench", "git_commit", "git_dirty", "python", "torch", "cuda", "device_name", "gpu", "cpu_model", "cpu_isa", "torch_cpu_capability", "platform"):
        console.print(f"{ {'torch_cpu_capability': 'torch kernels'}.get(k, k):14} {e.get(k)}", markup=False, soft_wrap=True)
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
        from .tracks.instruction import lm as lmmod

        miss = lmmod.missing_packages(gguf=True)
        if miss:
            console.print(f"{'smollm2':14} {gguf}; loading it needs {' and '.join(miss)}: {lmmod.TEXT_EXTRA}", highlight=False, markup=False, soft_wrap=True)
        else:
            import importlib.metadata as md

            vers = ", ".join(f"{n} {md.version(n)}" for n in ("transformers", "gguf", "accelerate"))
            console.print(f"{'smollm2':14} {gguf} (loads with {vers})", highlight=False, markup=False, soft_wrap=True)
    else:
        console.print(f"{'smollm2':14} not installed (optional: the instruction track's real-model profile); install it with: {envmod.SMOLLM2_HINT}", highlight=False, markup=False, soft_wrap=True)
    ok = not bad and settings_ok and video_ok
    try:
        store = open_store(db, create=False, read_only=True)  # checks only: works in a read-only directory
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
_BUILTIN_ADDED = False


def _add_plugin_commands() -> None:
    global _COMMANDS_ADDED
    if _COMMANDS_ADDED:
        return
    _COMMANDS_ADDED = True
    _add_builtin_commands()
    plugins.add_commands(app)


#: built-in commands that need no plugin loaded (nor torch): they read the store only
_NO_PLUGINS = {"results", "store"}


def _needs_plugins(argv: list[str]) -> bool:
    """Whether the command line in ``argv`` needs the plugins loaded: not for ``--version`` or
    ``--help`` (of the app or of a built-in command), nor for the store-only commands."""
    words = [a for a in argv if not a.startswith("-")]
    if not words:  # --version, --help, or nothing (help)
        return False
    builtin = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands} | {g.name for g in app.registered_groups} | {"leaderboard", "export", "keys", "entries", "claims"}
    if words[0] in builtin and ("--help" in argv or "-h" in argv):
        return False
    return words[0] not in _NO_PLUGINS


#: commands that print plugin metadata only: answered from ``metacache`` (no torch) when current
_LISTING = {"plugins", "tracks", "profiles"}


def _listing(argv: list[str]) -> bool:
    words = [a for a in argv if not a.startswith("-")]
    return bool(words) and words[0] in _LISTING


def main() -> None:
    global _META, _DRY, _DRY_NAME
    argv = sys.argv[1:]
    if _listing(argv) and _needs_plugins(argv):
        from . import metacache

        def build() -> dict[str, Any]:
            try:
                plugins.load_plugins()
            except plugins.PluginError as exc:
                err.print(Text.assemble(("Error:", "bold red"), f" {exc}"), highlight=False)
                sys.exit(2)
            return _build_meta()

        _META = metacache.get(build)
        _add_builtin_commands()
        app()
        return
    words = [a for a in argv if not a.startswith("-")]
    if words[:1] == ["run"] and "--dry-run" in argv and "--help" not in argv:
        from . import metacache

        if metacache.enabled():
            _DRY_NAME = metacache.dry_run_name(argv)
            _DRY = metacache.load(name=_DRY_NAME)
            if _DRY is not None:
                _add_builtin_commands()
                app()
                return
    if _needs_plugins(argv):
        try:
            plugins.load_plugins()
        except plugins.PluginError as exc:
            err.print(Text.assemble(("Error:", "bold red"), f" {exc}"), highlight=False)
            sys.exit(2)
        _add_plugin_commands()
    else:
        _add_builtin_commands()
    app()


def _add_builtin_commands() -> None:
    """The leaderboard commands without loading plugins (their modules import lazily)."""
    global _BUILTIN_ADDED
    if _BUILTIN_ADDED:
        return
    _BUILTIN_ADDED = True
    try:
        from .leaderboard import cli as lb_cli

        lb_cli.register(app)
    except ImportError:
        pass


if __name__ == "__main__":  # pragma: no cover
    main()
