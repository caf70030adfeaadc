"""Shared fixtures of the core test suite (small on purpose)."""

from __future__ import annotations

import pytest

# the coreset-bench pytest plugin (fixtures coreset_bench_*) is loaded through its pytest11
# entry point; nothing to import here.

CORE_PLUGINS = "core,random,full,standard"


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
