"""Real multi-process execution over torch.distributed (gloo): one process per node reproduces the
in-process simulation (tracks-phase2.md §3.9, test 7)."""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from coreset_bench import registry
from coreset_bench.tracks.decentralized.network import Network, Topology
from coreset_bench.tracks.decentralized.gloo import GlooNetwork, _spawn_entry, collect, run_node, save_bundle
from coreset_bench.testing import make_decentralized_view


def _bundle(view, method):
    """The common bundle and one part per node (its own data and counts), as make_bundle makes them."""
    parts = []
    for r in range(view.n):
        with view.net.node(r):
            parts.append({"rank": r, "node": tuple(view.nodes[r]), "counts": np.asarray(view.own_label_counts[r])})
    common = {
        "public_x": view.public_x, "num_classes": view.num_classes, "topology_name": view.topology.name, "topology_W": np.asarray(view.topology.W),
        "model_factory": view.model_factory, "recipe": dict(view.recipe), "steps_per_epoch": view.steps_per_epoch, "seed": view.seed, "method": method,
    }
    return common, parts


def _same_models(a, b, atol):
    for ma, mb in zip(a, b):
        for (k, x), y in zip(ma.state_dict().items(), mb.state_dict().values()):
            assert torch.allclose(x, y, atol=atol, rtol=0), (k, (x - y).abs().max())


def test_one_node_process_group_reproduces_the_simulation():
    """Fast variant: a one-process gloo group runs the whole node path (bundle, GlooNetwork,
    run_node, collect) and gives the simulated model."""
    method = registry.method("d-psgd").with_params(vmap=False)
    sim_view = make_decentralized_view(n_nodes=1, topology="isolated")
    sim = method.distill(sim_view)
    with tempfile.TemporaryDirectory() as tmp:
        bundle, parts = _bundle(make_decentralized_view(n_nodes=1, topology="isolated"), method)
        run_node(bundle, parts[0], 0, 1, f"file://{tmp}/rdv", Path(tmp) / "out")
        models, sent, _, traffic = collect(bundle, Path(tmp) / "out")
    _same_models(models, sim, atol=0)
    assert sent == sim_view.net.bytes and traffic.tolist() == [[0]]


def _ring_check(rank, world, init, out):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        topo = Topology.ring(world)
        net = GlooNetwork(topo, rank)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(world, 5, 3, generator=g)
        mixed = net.gossip({"p": x[rank : rank + 1]})["p"][0]
        got = net.exchange([(torch.arange(rank + 1, dtype=torch.int32), torch.full((rank + 1, 10), float(rank)))])[0]
        meta = net.allgather([torch.tensor([rank])])[0]
        torch.save({"mixed": mixed, "got": got, "meta": meta, "bytes": net.bytes}, Path(out) / f"r{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gloo_ring_gossip_equals_network_gossip_and_counts_the_same_bytes():
    world = 4
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_ring_check, args=(world, f"file://{tmp}/rdv", tmp), nprocs=world, join=True, start_method="spawn")
        res = [torch.load(Path(tmp) / f"r{r}.pt", weights_only=False) for r in range(world)]
    net = Network(Topology.ring(world))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(world, 5, 3, generator=g)
    ref = net.gossip({"p": x})["p"]
    for r in range(world):
        assert torch.equal(res[r]["mixed"], ref[r])  # same order of operations: bit-identical
        assert [j for j, _ in res[r]["got"]] == [(r - 1) % world, (r + 1) % world] if r in (1, 2) else sorted([(r - 1) % world, (r + 1) % world])
        for j, (idx, lab) in res[r]["got"]:
            assert torch.equal(idx, torch.arange(j + 1, dtype=torch.int32)) and torch.all(lab == j)
        assert [j for j, _ in res[r]["meta"]] == [0, 1, 2, 3]
    total = {k: sum(res[r]["bytes"][k] for r in range(world)) for k in ("model", "labels", "meta")}
    net.exchange([(torch.arange(r + 1, dtype=torch.int32), torch.full((r + 1, 10), float(r))) for r in range(world)])
    net.allgather([torch.tensor([r]) for r in range(world)])
    assert total == net.bytes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["d-psgd", "idkd"])
def test_multiprocess_run_gives_the_simulations_averaged_parameters(name):
    """4 node processes (gloo, point-to-point gossip) against the in-process simulation: the same
    parameters to float tolerance (the vmapped and per-process gradients may round differently),
    the same byte counts and, for IDKD, the same kept public samples."""
    method = registry.method(name).with_params(vmap=False)
    if name == "idkd":
        method = method.with_params(start_frac=0.5, every=1, tau=0.5)
    sim_view = make_decentralized_view(n_nodes=4, topology="ring")
    sim = method.distill(sim_view)
    with tempfile.TemporaryDirectory() as tmp:
        bundle, parts = _bundle(make_decentralized_view(n_nodes=4, topology="ring"), method)
        save_bundle(bundle, parts, Path(tmp) / "cell.pt")
        assert "nodes" not in torch.load(Path(tmp) / "cell.pt", weights_only=False)  # each process loads only its own node's file
        mp.start_processes(_spawn_entry, args=(4, str(Path(tmp) / "cell.pt"), f"file://{tmp}/rdv", str(Path(tmp) / "out")), nprocs=4, join=True, start_method="spawn")
        models, sent, info, traffic = collect(bundle, Path(tmp) / "out")
    _same_models(models, sim, atol=1e-5)
    assert np.array_equal(traffic, sim_view.net.traffic)
    avg = lambda ms: {k: torch.stack([m.state_dict()[k] for m in ms]).mean(0) for k in ms[0].state_dict()}  # noqa: E731
    a, b = avg(models), avg(sim)
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=0) for k in a)
    assert sent == sim_view.net.bytes
    if name == "idkd":
        assert info["public_kept"] == sim_view.info["public_kept"]
