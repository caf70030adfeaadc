"""Known-answer tests of the decentralized machinery (tracks-phase2.md §3.9, tests 1-2): mixing
matrices, gossip, byte counts, the Dirichlet partition and the vmapped node ensemble."""

import numpy as np
import pytest
import torch

from coreset_bench.tracks.decentralized.network import (
    Network,
    NodeEnsemble,
    PartitionError,
    Topology,
    dirichlet_partition,
    label_counts,
    topology,
)
from coreset_bench.models import MLP, SmallCNNGN


@pytest.mark.parametrize("name, n", [("ring", 4), ("ring", 9), ("torus", 9), ("torus", 16), ("full", 5), ("isolated", 3)])
def test_mixing_matrices_are_symmetric_doubly_stochastic_and_connected(name, n):
    t = topology(name, n)
    W = t.W
    assert np.allclose(W, W.T) and np.allclose(W.sum(0), 1) and np.allclose(W.sum(1), 1) and (W >= 0).all()
    ev = np.sort(np.linalg.eigvalsh(W))[::-1]
    if name == "isolated":
        assert np.allclose(ev, 1) and all(t.neighbours(i) == [] for i in range(n))
    else:
        assert abs(ev[0] - 1) < 1e-12 and ev[1] < 1 - 1e-9  # eigenvalue 1 is simple: connected
    if name == "torus":
        assert all(len(t.neighbours(i)) == 4 for i in range(n)) and np.allclose(W[W > 0], 0.2)
    if name == "ring":
        assert all(len(t.neighbours(i)) == 2 for i in range(n)) and np.allclose(W[W > 0], 1 / 3)


def test_torus_layout_and_bad_sizes():
    t = Topology.torus(9)
    assert t.neighbours(0) == [1, 2, 3, 6] and t.neighbours(4) == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="torus needs n = rows x cols"):
        Topology.torus(8)
    with pytest.raises(ValueError, match="unknown topology 'star'"):
        topology("star", 4)


def test_ring_gossip_equals_the_hand_computed_average_and_counts_bytes():
    net = Network(topology("ring", 5))
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [8.0, 80.0], [16.0, 160.0]])
    out = net.gossip({"w": x})["w"]
    hand = torch.tensor([[(16 + 1 + 2) / 3, (160 + 10 + 20) / 3], [(1 + 2 + 4) / 3, (10 + 20 + 40) / 3], [(2 + 4 + 8) / 3, (20 + 40 + 80) / 3],
                         [(4 + 8 + 16) / 3, (40 + 80 + 160) / 3], [(8 + 16 + 1) / 3, (80 + 160 + 10) / 3]])
    assert torch.allclose(out, hand)
    assert net.bytes["model"] == 2 * 5 * 2 * 4  # ring: 2 neighbours x n nodes x numel x 4 bytes


@pytest.mark.parametrize("name, n", [("ring", 8), ("torus", 9), ("full", 4)])
def test_gossip_preserves_the_average_and_converges_to_it(name, n):
    net = Network(topology(name, n))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 2, generator=g, dtype=torch.float64)
    mean = x.mean(0)
    cur = x
    for _ in range(300):
        cur = net.gossip({"p": cur})["p"]
        assert torch.allclose(cur.mean(0), mean, atol=1e-12)
    assert torch.allclose(cur, mean.expand_as(cur), atol=1e-8)
    deg = sum(len(net.topology.neighbours(i)) for i in range(n))
    assert net.bytes["model"] == 300 * deg * 6 * 8


def test_gossip_never_mixes_a_non_neighbours_nan():
    net = Network(Topology.ring(6))
    x = torch.zeros(6, 2)
    x[3] = float("nan")
    out = net.gossip({"p": x})["p"]
    assert torch.isfinite(out[[0, 1, 5]]).all() and torch.isnan(out[[2, 3, 4]]).all()


def test_exchange_and_allgather_byte_counts_equal_the_payload_sizes():
    net = Network(Topology.ring(4))
    C = 10
    payloads = [(torch.arange(k, dtype=torch.int32), torch.zeros(k, C)) for k in (3, 0, 5, 2)]
    got = net.exchange(payloads)
    assert [j for j, _ in got[0]] == [1, 3]
    # every payload goes to 2 neighbours; k samples cost k * (4 + 4 C) bytes
    assert net.bytes["labels"] == 2 * (3 + 0 + 5 + 2) * (4 + 4 * C)
    counts = np.ones((4, C), dtype=np.int64)
    net.allgather(list(counts))
    assert net.bytes["meta"] == 4 * 3 * C * 8


# ---- Dirichlet partition ------------------------------------------------------------------------


def _labels(n=2000, C=10, seed=0):
    return np.random.default_rng(seed).integers(0, C, n)


def test_partition_assigns_every_index_once_and_respects_the_minimum_size():
    y = _labels()
    for alpha in (0.05, 0.1, 1.0):
        parts = dirichlet_partition(y, 9, alpha, seed=3)
        allidx = np.concatenate(parts)
        assert len(parts) == 9 and sorted(allidx.tolist()) == list(range(len(y)))
        assert min(len(p) for p in parts) >= int(0.5 * len(y) / 9)


def test_partition_is_deterministic_and_seeded():
    y = _labels()
    a, b = dirichlet_partition(y, 8, 0.1, seed=7), dirichlet_partition(y, 8, 0.1, seed=7)
    c = dirichlet_partition(y, 8, 0.1, seed=8)
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))


def test_partition_matches_alpha_in_distribution():
    y = _labels(5000)
    # large alpha: every node's class shares are close to uniform
    shares = label_counts(y, dirichlet_partition(y, 8, 1000.0, seed=1), 10)
    shares = shares / shares.sum(1, keepdims=True)
    assert np.abs(shares - 0.1).max() < 0.05
    # tiny alpha: most nodes hold one or two classes (>= 90 % of their samples)
    counts = label_counts(y, dirichlet_partition(y, 8, 0.01, seed=1), 10)
    top2 = np.sort(counts, 1)[:, -2:].sum(1) / counts.sum(1)
    assert (top2 >= 0.9).mean() >= 0.75
    # and skew grows as alpha falls (mean per-node entropy of the class shares)
    def entropy(alpha):
        c = label_counts(y, dirichlet_partition(y, 8, alpha, seed=2), 10).astype(float)
        p = c / c.sum(1, keepdims=True)
        return float(-(p * np.log(np.where(p > 0, p, 1))).sum(1).mean())
    assert entropy(0.1) < entropy(1.0) < entropy(100.0)


def test_partition_fails_with_a_clear_message_when_impossible():
    y = np.zeros(40, dtype=np.int64)  # one class: alpha 0.01 piles it on one node every time
    with pytest.raises(PartitionError, match="raise alpha, lower the node count"):
        dirichlet_partition(y, 4, 0.001, seed=0, max_tries=20)


def test_partition_groups_more_than_ten_nodes_like_the_reference():
    y = _labels(3200)
    parts = dirichlet_partition(y, 16, 0.5, seed=0)
    assert len(parts) == 16 and sum(len(p) for p in parts) == 3200


# ---- node ensemble ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [lambda: MLP(1, 10, 8, [0.3], [0.4]), lambda: SmallCNNGN(1, 10, 8, [0.3], [0.4])])
def test_vmapped_ensemble_equals_a_loop_and_single_models(arch):
    torch.manual_seed(0)
    models = [arch() for _ in range(3)]
    x = torch.rand(3, 16, 1, 8, 8)
    t = torch.nn.functional.one_hot(torch.randint(0, 10, (3, 16)), 10).float()
    ens, loop = NodeEnsemble(models), NodeEnsemble(models, vmap=False)
    g1, l1 = ens.loss_grads(ens.params, x, t)
    g2, l2 = loop.loss_grads(loop.params, x, t)
    assert ens.vmapped and not loop.vmapped
    for k in g1:
        assert torch.allclose(g1[k], g2[k], atol=1e-6)
    # node 1's gradient is the gradient of model 1 alone on its batch
    m = models[1]
    m.zero_grad()
    torch.nn.functional.cross_entropy(m(x[1]), t[1].argmax(1)).backward()
    for k, p in m.named_parameters():
        assert torch.allclose(g1[k][1], p.grad, atol=1e-6)
    assert torch.allclose(ens.forward(ens.params, x)[2], models[2](x[2]), atol=1e-6)
    back = ens.to_modules()
    assert len(back) == 3 and all(torch.equal(back[i](x[i]), models[i](x[i])) for i in range(3))


def test_groupnorm_architectures_have_no_batchnorm():
    from coreset_bench.models import ResNet20GN

    for m in (SmallCNNGN(1, 10, 8, [0.3], [0.4]), ResNet20GN(3, 10, 32, [0.5] * 3, [0.25] * 3)):
        assert not any(isinstance(x, torch.nn.modules.batchnorm._BatchNorm) for x in m.modules())
    r = ResNet20GN(3, 10, 32, [0.5] * 3, [0.25] * 3)
    assert r(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert 260_000 < sum(p.numel() for p in r.parameters()) < 290_000  # ResNet-20: 0.27 M parameters


# ---- the harness's network, the worker's proxy and the consistency check (issue 34) ------------


def test_traffic_counts_bytes_per_pair_and_the_remote_network_equals_the_local_one():
    from coreset_bench.tracks.decentralized.network import NetworkService, RemoteNetwork

    topo = Topology.ring(4)
    local, harness = Network(topo), Network(topo)
    remote = RemoteNetwork(topo, NetworkService(harness))
    g = torch.Generator().manual_seed(0)
    t = {"w": torch.randn(4, 3, 2, generator=g), "b": torch.randn(4, 5, generator=g)}
    a, b = local.gossip(t), remote.gossip(t)
    assert all(torch.equal(a[k], b[k]) for k in t)  # the flat wire format mixes elementwise: bit-identical
    pay = [(torch.arange(r + 1, dtype=torch.int32), torch.full((r + 1, 2), float(r))) for r in range(4)]
    ga, gb = local.exchange(pay), remote.exchange(pay)
    assert [[j for j, _ in x] for x in ga] == [[j for j, _ in x] for x in gb]
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for x, y in zip(ga, gb) for (_, p), (_, q) in zip(x, y))
    local.allgather([torch.tensor([r]) for r in range(4)]), remote.allgather([torch.tensor([r]) for r in range(4)])
    assert local.bytes == harness.bytes == remote.bytes
    assert np.array_equal(local.traffic, harness.traffic)
    assert harness.traffic.sum() == sum(harness.bytes.values())
    assert harness.traffic[0, 2] == 8 and harness.traffic[0, 1] == (6 + 5) * 4 + (2 * 4 + 2 * 2 * 4) + 8  # allgather reaches node 2 through 1
    remote.bytes["model"] = 0  # a copy: the harness's count stands
    assert harness.bytes["model"] > 0 and remote.bytes["model"] > 0
    with pytest.raises(TypeError, match="cannot send a str"):
        remote.exchange(["x"] * 4)
    with pytest.raises(ValueError, match="unknown network operation"):
        NetworkService(harness)({"op": "teleport", "kind": "model"})


def test_a_node_context_guards_rows_and_restores_the_previous_node():
    from coreset_bench.data import LeakageError
    from coreset_bench.tracks.decentralized.network import NodeLocal

    net = Network(Topology.ring(3))
    rows = NodeLocal(["a", "b", "c"], net, "data")
    assert len(rows) == 3
    with pytest.raises(LeakageError, match="read node 1's data outside any node's context"):
        rows[1]
    with net.node(1):
        assert rows[1] == "b" and rows[-2] == "b"
        with pytest.raises(LeakageError, match="read node 2's data while acting as node 1"):
            rows[2]
        with pytest.raises(LeakageError):
            list(rows)
    with pytest.raises(ValueError, match="node 5 is not held"):
        net.node(5)
    with pytest.raises(LeakageError, match="every node's data at once"):
        np.asarray(rows)


def test_converged_without_communication_needs_a_model_of_bytes_along_some_path():
    from coreset_bench.tracks.decentralized.network import converged_without_communication, widest_paths

    x0 = np.zeros(4)
    moved = [np.array([1.0, 0, 0, 0]), np.array([0, 1.0, 0, 0]), np.array([0, 0, 1.0, 0])]
    none = np.zeros((3, 3), dtype=np.int64)
    assert converged_without_communication(moved, x0, none, model_bytes=16) is None  # apart: fine without traffic
    same = [np.array([1.0, 1, 0, 0])] * 2 + [np.array([0, 0, 1.0, 0])]
    hit = converged_without_communication(same, x0, none, model_bytes=16)
    assert hit is not None and hit[:2] == (0, 1) and hit[2] == 0.0 and hit[3] == 0.0
    chain = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=np.int64)
    chain[2, 0], chain[1, 2] = 100, 20  # 0 -> 2 -> 1: the widest path between 0 and 1 carries 20 bytes
    assert widest_paths(chain)[0, 1] == 20
    assert converged_without_communication(same, x0, chain, model_bytes=16) is None  # a model's worth passed
    assert converged_without_communication(same, x0, chain, model_bytes=32) is not None  # labels' worth only
    near = [np.array([1.0, 1, 0, 0]), np.array([1.0, 1.2, 0, 0]), np.array([0, 0, 1.0, 0])]  # 0.04 / 2 = 0.02 apart
    assert converged_without_communication(near, x0, none, model_bytes=16) is not None
    assert converged_without_communication(near, x0, none, model_bytes=16, tol=0.01) is None
    untrained = [x0, x0, np.array([0, 0, 1.0, 0])]
    assert converged_without_communication(untrained, x0, none, model_bytes=16) is None  # nothing moved: nothing to explain
