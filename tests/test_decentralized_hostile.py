"""Hostile decentralized methods through the real command line (issue 34 item 4, issue 37): each
tries to reach what the contract keeps from it -- the test split, the public set's hidden OOD
flags, another node's data or label counts, another node's parameters outside ``view.net``, the
byte count -- and fails its own cell with one line (or finds nothing and changes nothing), while
the honest reference ``d-psgd`` passes every cell of the same run.

The plugins are registered in-process here; the track runs them in the contestant worker, which
imports this module by name (the classes must stay at module level)."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cli_helpers import invoke
from coreset_bench import hookimpl
from coreset_bench.kinds import DistillationMethod
from coreset_bench.plugins.distillation import _gossip


def _local_train(view, i, model, steps=None):
    """Plain local SGD of node i on its own data (read acting as node i)."""
    with view.net.node(i):
        x, y = view.nodes[i]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(view.seed * 100 + i)
    for _ in range(steps or view.recipe["epochs"] * view.steps_per_epoch):
        idx = torch.randint(0, len(x), (view.recipe["batch_size"],), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model


class _Hostile(DistillationMethod):
    role = "decentralized"
    version = "0"


class ReadsTheTestSplit(_Hostile):
    """Looks for the harness's test tensors in memory (the track's world memo, any tensor shaped
    like the digits test split) and, failing that, asks the dataset registry for it."""

    name = "hostile-test-split"

    def distill(self, view):
        found = [o for o in gc.get_objects() if type(o).__name__ == "World" and hasattr(o, "x_test")]
        from coreset_bench import registry

        memo = getattr(registry.track("decentralized"), "_worlds", {})
        if found or memo:
            raise AssertionError("the test split was in reach")  # would train on it
        from coreset_bench import data

        data.resolve("digits", None, None)  # refused: LeakageError
        raise AssertionError("the dataset registry handed out the test split")


class ReadsTheOODFlags(_Hostile):
    """Searches memory for the public set's hidden in-distribution flags (a bool array of the
    public set's length) to report a perfect detector; fails when there is none."""

    name = "hostile-ood-flags"

    def distill(self, view):
        P = len(view.public_x)
        flags = [o for o in gc.get_objects() if type(o) is np.ndarray and o.dtype == bool and o.shape == (P,)]
        if not flags:
            raise RuntimeError("no OOD flags in reach")
        view.info["public_kept"] = [np.flatnonzero(flags[0]).tolist()] * view.n
        return [_local_train(view, i, view.model_factory(), 1) for i in range(view.n)]


class ReadsTheHarnessMemory(_Hostile):
    """Reads the harness process's memory (where the test split and the hidden flags live) through
    /proc/<parent>/mem, and asks the served network for something other than a network operation."""

    name = "hostile-harness-memory"

    def distill(self, view):
        import os

        try:
            view.net._call({"op": "world", "kind": "model"})  # the served channel answers network operations only
        except ValueError:
            pass
        with open(f"/proc/{os.getppid()}/mem", "rb") as f:  # refused: LeakageError
            f.read(1)
        raise AssertionError("the harness's memory was readable")


class PeeksAtANeighbour(_Hostile):
    """Acting as node 0, reads node 1's data."""

    name = "hostile-peek"

    def distill(self, view):
        with view.net.node(0):
            x1, _ = view.nodes[1]
        return [view.model_factory() for _ in range(view.n)]


class PeeksAndCatches(_Hostile):
    """Reads every node's label counts at once and swallows the refusal."""

    name = "hostile-counts-caught"

    def distill(self, view):
        try:
            np.asarray(view.own_label_counts)
        except Exception:  # noqa: BLE001 - the refusal is recorded all the same
            pass
        return [view.model_factory() for _ in range(view.n)]


class AveragesOutsideTheNetwork(_Hostile):
    """Every node trains on its own data, then every model is replaced by the average of all of
    them, read directly: no byte goes through view.net."""

    name = "hostile-average"

    def distill(self, view):
        models = [_local_train(view, i, view.model_factory()) for i in range(view.n)]
        avg = {k: torch.stack([m.state_dict()[k] for m in models]).mean(0) for k in models[0].state_dict()}
        for m in models:
            m.load_state_dict(avg)
        return models


class GossipsOffTheBooks(_Hostile):
    """D-PSGD whose ring mixing reads the neighbours' parameters directly instead of using
    view.net (models close but not equal: what a gossip would give, uncounted)."""

    name = "hostile-uncounted-gossip"

    def distill(self, view):
        from coreset_bench.tracks.decentralized.network import Network

        private = Network(view.topology)  # a network of its own: nothing reaches the harness

        class Shadow:
            def __init__(self, v):
                self._v = v

            def __getattr__(self, k):
                return private if k == "net" else getattr(self._v, k)

        data = [_gossip.own_row(view, i) for i in range(view.n)]

        class Rows:
            """the nodes' rows, read once each acting as that node"""

            def __init__(self, rows):
                self.rows = rows

            def __len__(self):
                return len(self.rows)

            def __getitem__(self, r):
                return self.rows[r]

        shadow = Shadow(view)
        shadow.nodes = Rows(data)
        shadow.own_label_counts = Rows([None] * view.n)
        return _gossip.train(shadow, algo="dsgdm", lr=0.1, vmap=False)


class UnderReportsBytes(_Hostile):
    """Honest D-PSGD that then zeroes the byte count it can see; the harness's count stands."""

    name = "hostile-zero-bytes"

    def distill(self, view):
        models = _gossip.train(view, algo="dsgdm", lr=0.1, vmap=False)
        view.net.bytes["model"] = 0
        try:
            view.net._bytes = {"model": 0, "labels": 0, "meta": 0}
        except AttributeError:
            pass
        return models


HOSTILE = (ReadsTheTestSplit, ReadsTheOODFlags, ReadsTheHarnessMemory, PeeksAtANeighbour, PeeksAndCatches, AveragesOutsideTheNetwork, GossipsOffTheBooks, UnderReportsBytes)


class _Plugins:
    @hookimpl
    def register_methods(self, register):
        for cls in HOSTILE:
            register(cls())


@pytest.fixture
def hostile(monkeypatch):
    from coreset_bench import registry

    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard,d-psgd")
    old = registry._manager
    registry.reset()
    registry.load_plugins()
    registry.register(_Plugins(), name="decentralized-hostile-test")
    yield registry
    registry._manager = old


def test_hostile_methods_fail_their_own_cells_with_one_line_and_the_honest_reference_passes(hostile, tmp_path):
    from coreset_bench.store import Store

    db = str(tmp_path / "r.db")
    args = ["run", "--track", "decentralized", "--profile", "tiny", "--db", db]
    for cls in HOSTILE:
        args += ["-p", cls.name]
    res = invoke(*args)
    assert res.exit_code == 1, (res.stdout, res.stderr)  # some cells failed
    store = Store(tmp_path / "r.db")
    rows = {r["method"]: r for r in store.results(track="decentralized")}
    store.close()
    expect = {
        "hostile-test-split": "LeakageError: plugin 'hostile-test-split' tried to load dataset 'digits' while it was being evaluated",
        "hostile-ood-flags": "plugin 'hostile-ood-flags' failed: RuntimeError: no OOD flags in reach",
        "hostile-harness-memory": "LeakageError: plugin 'hostile-harness-memory' tried to open /proc/",
        "hostile-peek": "LeakageError: plugin 'hostile-peek' read node 1's data while acting as node 0",
        "hostile-counts-caught": "LeakageError: plugin 'hostile-counts-caught' read every node's label counts at once",
        "hostile-average": "plugin 'hostile-average': models converged without communication: nodes 0 and 1",
        "hostile-uncounted-gossip": "plugin 'hostile-uncounted-gossip': models converged without communication",
    }
    for name, start in expect.items():
        r = rows[name]
        assert r["status"] == "failed", (name, r["status"], r.get("metrics"))
        assert r["error"].startswith(start), (name, r["error"])
        assert "\n" not in r["error"]
        assert r["error"] in res.stderr  # named in the run's closing list, one line
    # the reference passes; the byte count the harness measured is not the plugin's to change
    ref, zero = rows["d-psgd"], rows["hostile-zero-bytes"]
    assert ref["status"] == "done" and ref["metrics"]["mean_node_acc"] > 0.5
    assert zero["status"] == "done" and ref["metrics"]["comm_mb_model"] > 0
    assert zero["metrics"]["comm_mb_model"] == pytest.approx(ref["metrics"]["comm_mb_model"])
    assert zero["info"]["bytes"]["model"] == ref["info"]["bytes"]["model"]
