"""Shared fixtures of the core test suite (small on purpose)."""

from __future__ import annotations

import pytest

# the coreset-bench pytest plugin (fixtures coreset_bench_*) is loaded through its pytest11
# entry point; nothing to import here.

CORE_PLUGINS = "core,random,full,standard"

# A suite started in the background of a non-interactive shell (``bash .ci/run &``) inherits
# SIGINT ignored, and Python then installs no KeyboardInterrupt handler, in this process or in the
# subprocesses the Ctrl-C tests start: give SIGINT back its default meaning (a handler set here is
# reset to the default in an exec'd child, where an ignored signal would stay ignored).
import signal as _signal

if _signal.getsignal(_signal.SIGINT) is _signal.SIG_IGN:
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch):
    """One intra-op thread per test: tiny models on a shared 2-core machine run many times
    faster without OpenMP workers competing. ``CORESET_BENCH_THREADS`` pins what cells use (1 is
    also the CPU default), and ``CORESET_BENCH_JOBS=1`` keeps ``coreset-bench run`` in-process
    unless a test asks for a pool (subprocesses inherit both)."""
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("CORESET_BENCH_THREADS", "1")
    monkeypatch.setenv("CORESET_BENCH_JOBS", "1")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run the test in an empty directory: the default ``results/`` lands in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CORESET_BENCH_DB", raising=False)
    return tmp_path


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A fresh plugin manager limited to the core plugins; the previous one is restored after.

    The allow-list keeps these tests independent of the other built-in methods.
    """
    from coreset_bench import registry

    for var in ("CORESET_BENCH_DISABLE_PLUGINS", "CORESET_BENCH_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", CORE_PLUGINS)
    old = registry._manager
    registry.reset()
    registry.load_plugins()
    yield registry
    registry._manager = old


# ---- a PostgreSQL server for the store's tests (issue 39) --------------------------------------
# CORESET_BENCH_TEST_PG names a server (admin URL; `bash .ci/run` starts one with
# .ci/postgres.sh); without it, a throwaway server is started when PostgreSQL's binaries are on
# the machine, and the tests that need one are skipped (with the reason) when neither works.
# Under CI=true a named server that cannot be reached fails those tests instead of skipping them.


def _pg_binaries() -> bool:
    import glob
    import shutil

    return bool(glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """The admin URL of a PostgreSQL server (``postgresql://postgres@127.0.0.1:PORT/postgres``)."""
    import os
    import subprocess
    from pathlib import Path

    named = os.environ.get("CORESET_BENCH_TEST_PG")
    started = None
    if named:
        url = named
    elif _pg_binaries():
        base = Path("/tmp") / f"cb-pg-{os.getpid()}"  # short: the server's socket path lives in it
        script = Path(__file__).resolve().parents[1] / ".ci" / "postgres.sh"
        res = subprocess.run(["bash", str(script), "start", str(base), str(_free_port())], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            pytest.skip(f"could not start a PostgreSQL server: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
        url, started = res.stdout.strip().splitlines()[-1], (script, base)
    else:
        pytest.skip("no PostgreSQL server: install postgresql or set CORESET_BENCH_TEST_PG=postgresql://... (bash .ci/run does both)")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") and named:
            pytest.fail(f"CORESET_BENCH_TEST_PG={named} cannot be reached: {exc}")
        pytest.skip(f"PostgreSQL at {url} cannot be reached: {exc}")
    yield url
    if started:
        import shutil

        subprocess.run(["bash", str(started[0]), "stop", str(started[1])], capture_output=True, timeout=120)
        shutil.rmtree(started[1], ignore_errors=True)


@pytest.fixture
def pg_db(pg_server):
    """A new, empty PostgreSQL database for one test (dropped after it): its URL."""
    import uuid

    import psycopg

    name = f"cb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg_server.rsplit("/", 1)[0] + "/" + name
    yield url
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A new store's location on each back end: an SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "r.db")
    return request.getfixturevalue("pg_db")
