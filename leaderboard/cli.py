"""The ``leaderboard``, ``claims``, ``export`` and ``keys`` commands; ``register(app)`` adds them to a typer app."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # the store (SQLAlchemy) is imported when a command runs, not to list commands
    from coreset_bench.store import Store


def _open_store(db: str | None, required: bool) -> Store | None:
    """The store named by --db / CORESET_BENCH_DB / the default path; None when optional and absent."""
    from coreset_bench.store import DEFAULT_DB, Store, StoreError

    if db is None and not os.environ.get("CORESET_BENCH_DB") and not DEFAULT_DB.exists():
        if required:
            raise StoreError(f"no results database at {DEFAULT_DB}; run `coreset-bench run` first or pass --db")
        return None
    return Store(db, create=False, read_only=True)  # reads only: works in a read-only directory


def register(app: typer.Typer) -> None:
    """Add ``leaderboard``, ``export`` and ``keys generate`` to ``app``."""

    @app.command("leaderboard")
    def leaderboard(
        out: Path = typer.Option(Path("results/site"), "--out", help="directory of the rendered site (replaced on each render)"),
        entries: list[Path] = typer.Option([], "--entries", help="directory (or file) of entries to merge; repeatable"),
        db: str | None = typer.Option(None, "--db", help="results database path or SQLAlchemy URL (default: CORESET_BENCH_DB or results/coreset-bench.db)"),
        trusted_keys: list[Path] = typer.Option([], "--trusted-keys", help="public key file (.pub) or directory of them; entries signed by one get a 'verified' badge; repeatable"),
        require_signed: bool = typer.Option(False, "--require-signed", help="reject every entry not signed by one of the --trusted-keys"),
        readings: str | None = typer.Option(None, "--readings", help="the long readings the claim cards link to: a file (default: README.md beside the first --entries directory, e.g. results/README.md) or a URL"),
    ) -> None:
        """Render the static leaderboard site from the store and/or validated entries."""
        from coreset_bench.store import StoreError

        from .render import SiteError, render_site  # matplotlib: imported when the command runs
        from .signing import SigningError, Trust, load_trusted_keys

        if require_signed and not trusted_keys:
            typer.echo("error: --require-signed needs --trusted-keys FILE_OR_DIR (the public keys whose signatures you accept)", err=True)
            raise typer.Exit(1)
        try:
            trust = Trust(load_trusted_keys(trusted_keys), require_signed) if trusted_keys else None
        except SigningError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        try:
            store = _open_store(db, required=not entries)
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        t0 = time.perf_counter()
        try:
            report = render_site(store, out, entries_dirs=entries, trust=trust, readings=readings)
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
        sign_key: Path | None = typer.Option(None, "--sign-key", help="Ed25519 private key (.key of `coreset-bench keys generate`) to sign each entry with"),
    ) -> None:
        """Write one leaderboard entry (JSON) per method and profile, with provenance and subset hashes."""
        from coreset_bench.store import StoreError

        from .entries import export_entries
        from .signing import SigningError, fingerprint, load_private_key

        key = None
        if sign_key is not None:
            try:
                key = load_private_key(sign_key)
            except SigningError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
        try:
            store = _open_store(db, required=True)
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        assert store is not None
        try:
            written, warnings = export_entries(store, out, plugin=plugin, sign_key=key)
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
            typer.echo(f"{e.path}{mark}{'  (unchanged)' if e.unchanged else ''}")
        if key is not None:
            typer.echo(f"signed {len(written)} entries with key {fingerprint(key.public_key())}")

    @app.command("claims")
    def claims_cmd(
        as_json: bool = typer.Option(False, "--json", help="Print the cards as JSON (numbers in each card's unit: points for accuracies)."),
        entries: list[Path] = typer.Option([], "--entries", help="directory (or file) of entries; repeatable (default: results/entries when no --db is given)"),
        db: str | None = typer.Option(None, "--db", help="results database path or SQLAlchemy URL (read as well as, or instead of, entries)"),
        track: str | None = typer.Option(None, "--track", help="only the claims of this track"),
    ) -> None:
        """The claim cards: each seed paper's claim judged on the committed entries (or a store).

        One row per claim and profile: the paired difference seed − comparator with its 95 %
        interval (the board's paired bootstrap), the claimed effect or margin, the minimum
        detectable effect (2.8 × its standard error), the verdict and whether the profile is
        underpowered for the claim (rules: ``coreset_bench.claims.verdict``)."""
        from coreset_bench import registry
        from coreset_bench.store import StoreError

        from .claims import boards_from_records, cards, load_records

        tracks = registry.tracks()
        if track is not None and track not in tracks:
            typer.echo(f"error: unknown track {track!r}; known: {', '.join(sorted(tracks))}", err=True)
            raise typer.Exit(1)
        claim_list, problems = registry.claims_and_problems()
        if track is not None:
            claim_list = [c for c in claim_list if c.track == track]
        if not entries and db is None and not os.environ.get("CORESET_BENCH_DB"):
            entries = [Path("results/entries")]
        missing = [p for p in entries if not p.exists()]
        if missing:
            typer.echo(f"error: no entries at {missing[0]}; pass --entries DIR (the committed ones are under results/entries) or --db", err=True)
            raise typer.Exit(1)
        store = None
        if db is not None or os.environ.get("CORESET_BENCH_DB"):
            try:
                store = _open_store(db, required=True)
            except StoreError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
        try:
            records, rejected = load_records(entries, store, tracks)
        finally:
            if store is not None:
                store.close()
        wanted = {p for c in claim_list for p in c.profiles}
        boards, warnings = boards_from_records(records, tracks, wanted)
        result = cards(claim_list, boards, tracks)
        for line in [*problems, *rejected, *warnings]:
            typer.echo(f"warning: {line}", err=True)
        if as_json:
            import json

            typer.echo(json.dumps([c.as_dict() for c in result], indent=2, ensure_ascii=False))
            return
        _print_cards(result)

    keys = typer.Typer(help="Ed25519 keys for signing exported entries.", no_args_is_help=True)

    @keys.command("generate")
    def keys_generate(
        out: Path = typer.Option(..., "--out", help="directory for NAME.key (private, mode 0600) and NAME.pub (public)"),
        name: str = typer.Option("coreset-bench", "--name", help="file name stem of the key pair; also the key's name on the board of whoever trusts it"),
    ) -> None:
        """Make an Ed25519 key pair: sign with `export --sign-key NAME.key`, publish NAME.pub."""
        from .signing import SigningError, generate_keypair

        try:
            made = generate_keypair(out, name)
        except SigningError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"private key {made.private_path} (mode 0600; keep it secret)")
        typer.echo(f"public key  {made.public_path} (give it to whoever renders the board: --trusted-keys)")
        typer.echo(f"fingerprint {made.fingerprint}")

    app.add_typer(keys, name="keys")


def _print_cards(result: list) -> None:
    """The cards as a table on a terminal, one plain line each otherwise."""
    import sys

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    header = ("system", "claim", "profile", "metric", "difference [95 % interval]", "claimed", "MDE", "verdict", "underpowered")

    def row(c: Any) -> tuple[str, ...]:
        under = {True: "yes", False: "no", None: "—"}[c.judgement.underpowered]
        return (c.claim.system, f"{c.claim.id}: {c.what()}", c.profile, c.claim.metric, c.difference_text(), c.amount_text(),
                c.mde_text(), c.verdict, under)

    if not console.is_terminal:
        for c in result:
            cells = dict(zip(header, row(c)))
            sys.stdout.write(" | ".join(f"{k}: {v}" if k not in ("system",) else v for k, v in cells.items()) + f" | reason: {c.judgement.reason}\n")
        return
    table = Table(*header)
    for c in result:
        style = {"supported": "green", "contradicted": "red", "not testable": "dim"}.get(c.verdict.split(",")[0], "")
        table.add_row(*(Text(x) for x in row(c)[:-2]), Text(c.verdict, style=style), Text(row(c)[-1]))
    console.print(table)
