"""The decentralized contestants (d-psgd, qgm, idkd, naive-kd): known-answer tests of their update
rules and IDKD's parts (tracks-phase2.md §3.9, tests 3-6), and the conformance kit."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreset_bench import registry
from coreset_bench.tracks.decentralized.network import Network, Topology
from coreset_bench.plugins.distillation import _gossip
from coreset_bench.plugins.distillation.idkd import aggregate, msp_mask
from coreset_bench.testing import check_decentralized_method, make_decentralized_view


def _kd(name, **kw):
    # the kit's recipe has 2 epochs: exchange labels at epoch 1
    return registry.method(name).with_params(start_frac=0.5, every=1, vmap=False, **kw)


def test_dpsgd_on_one_isolated_node_is_plain_sgd_with_momentum():
    view = make_decentralized_view(n_nodes=1, topology="isolated")
    m = registry.method("d-psgd").with_params(vmap=False, lr=0.05)
    got = m.distill(view)[0]
    model = view.model_factory()
    x, y = _gossip.own_row(view, 0)
    rec = view.recipe
    sampler = _gossip.NodeSampler(len(x), _gossip.node_seed(view.seed, 0, "batches", 0))
    buf = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for _ in range(rec["epochs"] * view.steps_per_epoch):
        idx = sampler.next(rec["batch_size"])
        model.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        with torch.no_grad():
            for k, p in model.named_parameters():
                buf[k] = rec["momentum"] * buf[k] + p.grad + 5e-4 * p  # d-psgd@2: the reference's weight decay
                p -= 0.05 * buf[k]
    for (k, a), b in zip(got.state_dict().items(), model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), k


@pytest.mark.parametrize("order", ["gossip-step", "step-gossip"])
def test_dpsgd_on_two_nodes_follows_its_update_order(order):
    """Two fully connected nodes, where gossip is the exact average: the reference's order
    (gradient at x_i, then x~ = mean, m <- mu m + g + wd x~, x <- x~ - lr m) and version 1's
    (step, then average) by hand, against the training loop; the two orders differ."""
    view = make_decentralized_view(n_nodes=2, topology="complete")
    lr, wd = 0.05, 5e-4
    got = registry.method("d-psgd").with_params(vmap=False, lr=lr, order=order).distill(view)
    models = [view.model_factory() for _ in range(2)]
    data = [_gossip.own_row(view, i) for i in range(2)]
    samplers = [_gossip.NodeSampler(len(x), _gossip.node_seed(view.seed, i, "batches", 0)) for i, (x, _) in enumerate(data)]
    names = [k for k, _ in models[0].named_parameters()]
    buf = [{k: torch.zeros_like(p) for k, p in m.named_parameters()} for m in models]
    for _ in range(view.recipe["epochs"] * view.steps_per_epoch):
        grads = []
        for m, s, (x, y) in zip(models, samplers, data):
            idx = s.next(view.recipe["batch_size"])
            m.zero_grad()
            F.cross_entropy(m(x[idx]), y[idx]).backward()
            grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
        with torch.no_grad():
            params = [{k: p.detach().clone() for k, p in m.named_parameters()} for m in models]
            if order == "gossip-step":
                mixed = {k: (params[0][k] + params[1][k]) / 2 for k in names}
                for i, m in enumerate(models):
                    for k, p in m.named_parameters():
                        buf[i][k] = 0.9 * buf[i][k] + grads[i][k] + wd * mixed[k]
                        p.copy_(mixed[k] - lr * buf[i][k])
            else:
                local = []
                for i in range(2):
                    for k in names:
                        buf[i][k] = 0.9 * buf[i][k] + grads[i][k] + wd * params[i][k]
                    local.append({k: params[i][k] - lr * buf[i][k] for k in names})
                for m in models:
                    for k, p in m.named_parameters():
                        p.copy_((local[0][k] + local[1][k]) / 2)
    for mg, mh in zip(got, models):
        for (k, a), b in zip(mg.state_dict().items(), mh.state_dict().values()):
            assert torch.allclose(a, b, atol=1e-6, rtol=0), (order, k)
    other = registry.method("d-psgd").with_params(vmap=False, lr=lr, order="step-gossip" if order == "gossip-step" else "gossip-step").distill(make_decentralized_view(n_nodes=2, topology="complete"))
    assert not torch.allclose(next(other[0].parameters()), next(got[0].parameters()), atol=1e-4)


def test_qgm_matches_hand_computed_iterates_on_two_nodes():
    # two nodes, one parameter, constant gradients g = (1, 3); W = [[.5, .5], [.5, .5]]; lr 0.1, mu 0.9, no wd
    net = Network(Topology.full(2))
    x, m = torch.tensor([[0.0], [1.0]]), torch.zeros(2, 1)
    g = torch.tensor([[1.0], [3.0]])
    lr, mu = 0.1, 0.9
    hand_x = [[0.0, 1.0]]
    hx, hm = [0.0, 1.0], [0.0, 0.0]
    for _ in range(3):
        local = [hx[i] - lr * (mu * hm[i] + [1.0, 3.0][i]) for i in range(2)]
        new = [(local[0] + local[1]) / 2] * 2
        hm = [mu * hm[i] + (1 - mu) * (hx[i] - new[i]) / lr for i in range(2)]
        hx = new
        hand_x.append(list(hx))
    for step in range(3):
        local = _gossip.qgm_local(x, m, g, lr, mu, 0.0)
        mixed = net.gossip({"p": local})["p"]
        m = _gossip.qgm_momentum(m, x, mixed, lr, mu)
        x = mixed
        assert torch.allclose(x.flatten(), torch.tensor(hand_x[step + 1]), atol=1e-6)
    # step 1 by hand: local = (-0.1, 0.7), mixed 0.3 each; m = 0.1 * ((0 - .3)/.1, (1 - .3)/.1) = (-0.3, 0.7)
    assert torch.allclose(torch.tensor(hand_x[1]), torch.tensor([0.3, 0.3]))


def test_dsgdm_local_step_by_hand():
    x, m, g = torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([2.0])
    nx, nm = _gossip.dsgdm_local(x, m, g, lr=0.1, mu=0.9, wd=0.01)
    assert torch.allclose(nm, torch.tensor([0.9 * 0.5 + 2.0 + 0.01])) and torch.allclose(nx, torch.tensor([1.0 - 0.1 * 2.46]))


def test_lr_schedule_and_sampler():
    assert _gossip.lr_at(0.1, 35, [36, 48], 0.1) == 0.1 and abs(_gossip.lr_at(0.1, 48, [36, 48], 0.1) - 0.001) < 1e-15
    s = _gossip.NodeSampler(5, seed=0)
    a = torch.cat([s.next(3), s.next(3)])
    assert sorted(a[:5].tolist()) == [0, 1, 2, 3, 4]  # each sample once per pass


def test_msp_mask_on_crafted_logits():
    probs = torch.softmax(torch.tensor([[10.0, 0.0, 0.0], [1.0, 0.9, 0.8], [0.0, 9.0, 0.0], [5.0, 5.0, -5.0]]), -1)
    assert msp_mask(probs, 0.98).tolist() == [True, False, True, False]
    assert msp_mask(probs, 0.0).all()


def test_select_max_count_picks_the_neighbour_that_knows_the_class_best():
    C, P = 3, 4
    counts = {0: torch.tensor([50, 1, 1]), 1: torch.tensor([1, 80, 1]), 2: torch.tensor([1, 1, 90])}
    v = lambda *p: torch.tensor([p], dtype=torch.float32)  # noqa: E731
    cands = [
        (0, (torch.tensor([0, 1], dtype=torch.int32), torch.cat([v(0.9, 0.05, 0.05), v(0.6, 0.3, 0.1)]))),  # self predicts class 0 twice
        (1, (torch.tensor([1, 2], dtype=torch.int32), torch.cat([v(0.1, 0.8, 0.1), v(0.2, 0.7, 0.1)]))),  # node 1 predicts class 1
        (2, (torch.tensor([2], dtype=torch.int32), v(0.0, 0.1, 0.9))),  # node 2 predicts class 2
    ]
    idx, lab = aggregate(cands, counts, P, C, "select_max_count")
    assert idx.tolist() == [0, 1, 2]  # sample 3: nobody labelled it
    assert torch.allclose(lab[0], v(0.9, 0.05, 0.05)[0])  # only self
    assert torch.allclose(lab[1], v(0.1, 0.8, 0.1)[0])  # node 1 (80 of class 1) beats self (50 of class 0)
    assert torch.allclose(lab[2], v(0.0, 0.1, 0.9)[0])  # node 2 (90 of class 2) beats node 1 (80)
    # the guard: a neighbour that did not flag a sample never wins, even with the largest count
    # of class 0 (the reference's all-zero vector has argmax 0)
    counts0 = {0: torch.tensor([1, 1, 1]), 1: torch.tensor([1000, 1, 1])}
    idx, lab = aggregate([(0, (torch.tensor([0], dtype=torch.int32), v(0.1, 0.2, 0.7))), (1, (torch.tensor([], dtype=torch.int32), torch.zeros(0, C)))], counts0, 1, C, "select_max_count")
    assert idx.tolist() == [0] and torch.allclose(lab[0], v(0.1, 0.2, 0.7)[0])
    idx, lab = aggregate(cands, counts, P, C, "mean_confident")
    assert torch.allclose(lab[1], (v(0.6, 0.3, 0.1) + v(0.1, 0.8, 0.1))[0] / 2)


def test_naive_kd_is_exactly_idkd_with_tau_zero_and_label_bytes_are_kept_times_4_plus_4C():
    a_view, b_view = make_decentralized_view(topology="ring"), make_decentralized_view(topology="ring")
    a = _kd("naive-kd").distill(a_view)
    b = _kd("idkd", tau=0.0).distill(b_view)
    for ma, mb in zip(a, b):
        for (k, x), y in zip(ma.state_dict().items(), mb.state_dict().values()):
            assert torch.equal(x, y), k
    assert a_view.net.bytes == b_view.net.bytes
    C, P = a_view.num_classes, len(a_view.public_x)
    kept = a_view.info["public_kept"]
    assert [len(k) for k in kept] == [P] * 3  # tau = 0 keeps everything
    # one exchange round on a 3-ring: each node sends its kept labels to 2 neighbours
    assert a_view.net.bytes["labels"] == sum(2 * len(k) * (4 + 4 * C) for k in kept)
    assert a_view.net.bytes["meta"] == 3 * 2 * C * 8  # the label histograms, once
    # IDKD's detector keeps fewer (the kit's public set is part OOD)
    c_view = make_decentralized_view(topology="ring")
    _kd("idkd", tau=0.9).distill(c_view)
    assert sum(len(k) for k in c_view.info["public_kept"]) < 3 * P
    assert c_view.net.bytes["labels"] == sum(2 * len(k) * (4 + 4 * C) for k in c_view.info["public_kept"])


def test_idkd_passes_the_conformance_kit_including_the_isolation_check():
    sent = check_decentralized_method(_kd("idkd", tau=0.5))
    assert sent["model"] > 0 and sent["meta"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["d-psgd", "qgm", "naive-kd"])
def test_every_contestant_passes_the_conformance_kit(name):
    m = registry.method(name)
    m = _kd(name) if "kd" in name else m.with_params(vmap=False)
    sent = check_decentralized_method(m)
    assert sent["model"] > 0


def test_a_method_that_talks_outside_the_network_fails_the_isolation_check():
    class Leaky(type(registry.method("d-psgd"))):
        name = "leaky-dpsgd"

        def distill(self, view):
            models = super().distill(view)
            # average every node's model directly: a channel outside view.net
            avg = {k: torch.stack([m.state_dict()[k] for m in models]).mean(0) for k in models[0].state_dict()}
            for m in models:
                m.load_state_dict(avg)
            return models

    with pytest.raises(AssertionError, match="isolation check failed"):
        check_decentralized_method(Leaky().with_params(vmap=False))


def test_methods_are_registered_with_role_and_citation():
    for name in ("d-psgd", "qgm", "idkd", "naive-kd"):
        m = registry.method(name)
        assert m.kind == "distillation" and m.role == "decentralized" and m.citation and m.multiprocess
        assert registry.tracks_for(m) == ["decentralized"]
    assert "tau" not in registry.method("naive-kd").params and registry.method("idkd").params["tau"] == 0.98
    with pytest.raises(ValueError, match="method 'idkd', parameter 'aggregation': expected one of 'select_max_count', 'mean_confident'"):
        registry.method("idkd").with_params(aggregation="vote")  # the declaration, before any cell
    with pytest.raises(ValueError, match="unknown aggregation"):  # the method's own check
        type(registry.method("idkd"))(aggregation="vote", start_frac=0.5, every=1).distill(make_decentralized_view())
