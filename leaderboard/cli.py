"""The ``leaderboard``, ``claims``, ``export``, ``keys`` and ``entries`` commands; ``register(app)`` adds them to a typer app."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    """Add ``leaderboard``, ``export``, ``keys generate`` and ``entries check|pin`` to ``app``."""

    @app.command("leaderboard")
    def leaderboard(
        out: Path = typer.Option(Path("results/site"), "--out", help="directory of the rendered site (replaced on each render)"),
        entries: list[Path] = typer.Option([], "--entries", help="directory (or file) of entries to merge; repeatable"),
        db: str | None = typer.Option(None, "--db", help="results database path or SQLAlchemy URL (default without --entries: CORESET_BENCH_DB or results/coreset-bench.db); with --entries its runs join only when --db is given, as their own labelled rows (--label), never replacing a published number"),
        label: str = typer.Option("local", "--label", help="how the --db rows are labelled beside --entries: local, or reproduction (a store of `coreset-bench reproduce`)"),
        trusted_keys: list[Path] = typer.Option([], "--trusted-keys", help="public key file (.pub) or directory of them; entries signed by one get a 'verified' badge; repeatable"),
        require_signed: bool = typer.Option(False, "--require-signed", help="reject every entry not signed by one of the --trusted-keys"),
        readings: str | None = typer.Option(None, "--readings", help="the long readings the claim cards link to: a file (default: README.md beside the first --entries directory, e.g. results/README.md) or a URL"),
    ) -> None:
        """Render the static leaderboard site from the store and/or validated entries.

        With --entries the page shows exactly the published numbers; a store joins only with
        --db, its rows labelled (``kcenter@1.0+local``); a cell of the store with a published key
        and other numbers is listed as a conflict and never replaces the published one."""
        from coreset_bench.store import StoreError, open_store

        from .data import SOURCE_LABELS

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
        if label not in SOURCE_LABELS:
            typer.echo(f"error: --label {label!r} is not a source label; use one of {', '.join(SOURCE_LABELS)}", err=True)
            raise typer.Exit(1)
        store = None
        if not entries or db is not None:  # published entries alone unless a store is asked for
            try:
                store = open_store(db, create=False, read_only=True, required=True)  # reads only: works in a read-only directory
            except StoreError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
        t0 = time.perf_counter()
        try:
            report = render_site(store, out, entries_dirs=entries, trust=trust, readings=readings, source_label=label)
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
        if report.conflicts:
            typer.echo(f"{len(report.conflicts)} conflict(s): cells of --db with a published key and other numbers (the published number is shown):", err=True)
            for c in report.conflicts:
                typer.echo(f"conflict: {c}", err=True)
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
        from coreset_bench.store import StoreError, open_store

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
            store = open_store(db, create=False, read_only=True)
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
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
        import os

        from coreset_bench import registry
        from coreset_bench.store import StoreError, open_store

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
                store = open_store(db, create=False, read_only=True)
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

    entries_app = typer.Typer(help="Check leaderboard entries, and pin the published ones.", no_args_is_help=True)

    @entries_app.command("check")
    def entries_check(
        entries: list[Path] = typer.Argument(..., help="entry files or directories of them"),
        db: str | None = typer.Option(None, "--db", help="results database whose finished runs may reproduce entries that claim built-in rows (default: CORESET_BENCH_DB or results/coreset-bench.db when it exists)"),
        trusted_keys: list[Path] = typer.Option([], "--trusted-keys", help="public key file (.pub) or directory of them whose signatures you accept; repeatable"),
        require_signed: bool = typer.Option(False, "--require-signed", help="reject every entry not signed by one of the --trusted-keys"),
    ) -> None:
        """Validate entries as `leaderboard --entries` does, without rendering; exits 1 if any is rejected."""
        from coreset_bench.store import StoreError, open_store

        from .data import load_store_records
        from .entries import load_entries

        trust = _trust(trusted_keys, require_signed)
        try:
            store = open_store(db, create=False, read_only=True, required=False)
            local = load_store_records(store) if store is not None else []
        except StoreError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        if store is not None:
            store.close()
        loaded = load_entries(entries, trust=trust, local=local)
        for path, reason in loaded.rejected:
            typer.echo(f"rejected {path}: {reason}", err=True)
        for path, _obj in loaded.accepted:
            who = loaded.vouched.get(path)
            typer.echo(f"ok {path}" + (f"  (built-in row; {who})" if who else ""))
        typer.echo(f"{len(loaded.accepted)} entries valid, {len(loaded.rejected)} rejected")
        if loaded.rejected:
            raise typer.Exit(1)

    @entries_app.command("pin")
    def entries_pin(
        entries: Path = typer.Argument(Path("results/entries"), help="the directory of the published entries"),
        out: Path | None = typer.Option(None, "--out", help="pins file to write (default: the one this coreset-bench ships and trusts, leaderboard/pinned-entries.txt)"),
    ) -> None:
        """Pin the published entries: their content digests, trusted by every render (built-in rows included)."""
        from .entries import EntryError, check_entry, known_profiles_from_plugins, load_entry, one_line_error
        from .signing import PINS_FILE, Trust, check_signature, entry_digest, pins_text

        if not entries.is_dir():
            typer.echo(f"error: {entries} is not a directory of entries; pass the directory to pin (results/entries)", err=True)
            raise typer.Exit(1)
        known = known_profiles_from_plugins()
        pins, bad = [], 0
        for f in sorted(entries.rglob("*.json")):
            try:
                obj, _ = check_signature(load_entry(f), Trust(pinned=frozenset()))
                pins.append((f.relative_to(entries).as_posix(), entry_digest(check_entry(obj, known))))
            except EntryError as exc:
                typer.echo(f"rejected {f}: {exc}", err=True)
                bad += 1
            except Exception as exc:  # noqa: BLE001 - named, one line
                typer.echo(f"rejected {f}: {one_line_error('could not be checked', exc)}", err=True)
                bad += 1
        if bad or not pins:
            typer.echo(f"error: {bad} invalid entries under {entries}; nothing pinned (fix or remove them)" if bad else f"error: no entries under {entries}", err=True)
            raise typer.Exit(1)
        target = out if out is not None else PINS_FILE
        target.write_text(pins_text(pins), encoding="utf-8")
        typer.echo(f"pinned {len(pins)} entries of {entries} in {target}")

    app.add_typer(entries_app, name="entries")


def _trust(trusted_keys: list[Path], require_signed: bool):  # -> signing.Trust | None
    """The ``Trust`` of --trusted-keys/--require-signed (None: the default, pins only); exits 1
    with a one-line error on a bad key file or --require-signed without keys."""
    from .signing import SigningError, Trust, load_trusted_keys

    if require_signed and not trusted_keys:
        typer.echo("error: --require-signed needs --trusted-keys FILE_OR_DIR (the public keys whose signatures you accept)", err=True)
        raise typer.Exit(1)
    try:
        return Trust(load_trusted_keys(trusted_keys), require_signed) if trusted_keys else None
    except SigningError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None

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
