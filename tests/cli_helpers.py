"""Shared helpers for tests that drive the command line through its typer app."""

from __future__ import annotations

from typer.testing import CliRunner

from coreset_bench import cli

runner = CliRunner()


def invoke(*args: str):
    """``coreset-bench ARGS`` in-process; exceptions propagate (a crash is a test failure)."""
    return runner.invoke(cli.app, list(args), catch_exceptions=False)


def one_line_error(res, code: int = 2) -> str:
    """The single ``Error: ...`` line of a command that exited with ``code``."""
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]
