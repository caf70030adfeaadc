"""The ``leaderboard`` and ``export`` commands; ``register(app)`` adds them to a typer app."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from coreset_bench.store import DEFAULT_DB, Store, StoreError


def _open_store(db: str | None, required: bool) -> Store | None:
    """The store named by --db / CORESET_BENCH_DB / the default path; None when optional and absent."""
    if db is None and not os.environ.get("CORESET_BENCH_DB") and not DEFAULT_DB.exists():
        if required:
            raise StoreError(f"no results database at {DEFAULT_DB}; run `coreset-bench run` first or pass --db")
        return None
    return Store(db, create=False, read_only=True)  # reads only: works in a read-only directory


def register(app: typer.Typer) -> None:
    """Add ``leaderboard`` and ``export`` to ``app``."""

    @app.command("leaderboard")
    def leaderboard(
        out: Path = typer.Option(Path("results/site"), "--out", help="directory of the rendered site (replaced on each render)"),
        entries: list[Path] = typer.Option([], "--entries", help="directory (or file) of entries to merge; repeatable"),
        db: str | None = typer.Option(None, "--db", help="results database path or SQLAlchemy URL (default: CORESET_BENCH_DB or results/coreset-bench.db)"),
    ) -> None:
        """Render the static leaderboard site from the store and/or validated entries."""
        from .render import SiteError, render_site  # matplotlib: imported when the command runs
        try:
            store = _open_store(db, required=not entries)
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        t0 = time.perf_counter()
        try:
            report = render_site(store, out, entries_dirs=entries)
        except (SiteError, StoreError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        finally:
            if store is not None:
                store.close()
        for path, reason in report.rejected:
            typer.echo(f"rejected {path}: {reason}", err=True)
        for w in report.warnings:
            typer.echo(f"warning: {w}", err=True)
        typer.echo(
            f"rendered {len(report.pages)} pages from {report.records} runs "
            f"({len(report.rejected)} entries rejected, {report.artifacts} subset files) "
            f"in {time.perf_counter() - t0:.2f} s: {report.index}"
        )

    @app.command("export")
    def export(
        plugin: str | None = typer.Option(None, "--plugin", help="only this method (or plugin package)"),
        out: Path = typer.Option(Path("results/entries"), "--out", help="directory the entries are written under"),
        db: str | None = typer.Option(None, "--db", help="results database path or SQLAlchemy URL"),
    ) -> None:
        """Write one leaderboard entry (JSON) per method and profile, with provenance and subset hashes."""
        from .entries import export_entries
        try:
            store = _open_store(db, required=True)
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        assert store is not None
        try:
            written, warnings = export_entries(store, out, plugin=plugin)
        finally:
            store.close()
        for w in warnings:
            typer.echo(f"warning: {w}", err=True)
        if not written:
            what = f" of {plugin!r}" if plugin else ""
            typer.echo(f"error: no finished runs{what} to export", err=True)
            raise typer.Exit(1)
        for e in written:
            mark = "" if e.complete else f"  (incomplete: {e.done}/{e.expected} cells)"
            typer.echo(f"{e.path}{mark}")
