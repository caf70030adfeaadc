"""The conformance kit of the phase-2 kinds (issue 15, item 4): for each check, a correct minimal
method passes and deliberately broken methods fail with a message naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreset_bench.data import LeakageError
from coreset_bench.tracks.decentralized.network import Network, Topology
from coreset_bench.kinds import DistillationMethod, ExitModel, ProvisioningMethod, Selection, SelectionMethod
from coreset_bench.testing import (
    check_decentralized_method,
    check_exit_method,
    check_provisioning_method,
    check_text_selection_method,
    make_decentralized_view,
    make_demand_trace,
    make_exit_view,
    make_instruction_view,
    make_instruction_world,
)

# ---- text selection ----------------------------------------------------------------------------


class LossToTarget(SelectionMethod):
    """Minimal correct text method: keep the pool examples whose response loss under the warm-up
    model is closest to the targets' (uses lm, warmup, masks)."""

    name = "kit-text-ok"
    modalities = frozenset({"text"})

    def select(self, view):
        run = view.warmup()
        model = run.checkpoints[-1]()
        with torch.no_grad():
            def loss(ids, mask):
                logits = view.lm.forward(model, ids).logits
                ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none").view(len(ids), -1)
                m = mask[:, :-1].float()
                return ((ce * m).sum(1) / m.sum(1).clamp_min(1)).numpy()

            pool = loss(view.ids, view.response_mask)
            target = loss(view.target_ids, view.target_response_mask).mean()
        return Selection(np.argsort(np.abs(pool - target), kind="stable")[: view.budget])


class ReadsTheWorld(LossToTarget):
    """Broken: regenerates the world to read the hidden task ids."""

    name = "kit-text-leak"

    def select(self, view):
        world = make_instruction_world(view.n, view.ids.shape[1], seed=view.seed)
        return Selection(np.flatnonzero(world.task == 1)[: view.budget])


class Unseeded(LossToTarget):
    name = "kit-text-random"

    def select(self, view):
        return Selection(np.random.default_rng().choice(view.n, view.budget, replace=False))


class OverBudget(LossToTarget):
    name = "kit-text-over"

    def select(self, view):
        return Selection(np.arange(view.budget + 1))


class ImageOnly(LossToTarget):
    name = "kit-text-image"
    modalities = frozenset({"image"})


def test_text_selection_check_passes_a_correct_method_and_random_and_full():
    from coreset_bench.plugins.selection.full import FullData
    from coreset_bench.plugins.selection.random_baseline import RandomSelection

    sel = check_text_selection_method(LossToTarget())
    view = make_instruction_view()
    assert len(sel.indices) == view.budget
    check_text_selection_method(RandomSelection())
    check_text_selection_method(FullData(), lambda seed: make_instruction_view(seed=seed, fraction=1.0))


@pytest.mark.parametrize(
    "method, message",
    [
        (ReadsTheWorld(), "tried to generate the instruction world"),
        (Unseeded(), "not deterministic"),
        (OverBudget(), "return exactly the budget"),
        (ImageOnly(), "lack 'text'"),
    ],
)
def test_text_selection_check_fails_broken_methods(method, message):
    with pytest.raises(AssertionError, match=message):
        check_text_selection_method(method)


def test_instruction_view_hides_the_worlds_truth_and_the_warmup_is_real():
    view = make_instruction_view()
    world = make_instruction_world(48, 16, seed=0)
    assert np.array_equal(view.ids.numpy(), world.ids)
    for name in ("task", "noisy", "task_ids"):
        assert not hasattr(view, name)
    assert world.noisy.any() and len(set(world.task.tolist())) == 4
    run = view.warmup()
    assert run is view.warmup()  # cached
    assert len(run.checkpoints) == len(run.lrs) == len(run.adam_states) == 2 and run.lrs[0] > run.lrs[1]
    first, last = run.checkpoints[0](), run.checkpoints[-1]()
    assert not torch.equal(first.head.weight, last.head.weight)
    assert set(run.adam_states[0]) == set(run.grad_params)


def test_the_kits_instruction_view_runs_a_text_method_in_the_contestant_worker():
    """The kit's view travels as the track's does (base and warm-up as weights): a method that
    uses the warm-up and the counted handle runs there, and its work comes back in the report."""
    from coreset_bench import registry
    from coreset_bench.testing import check_in_worker

    view = make_instruction_view()
    out = check_in_worker(registry.method("trim"), view, kind="selection")
    assert len(out.output.indices) == view.budget
    rep = out.reports[0]
    assert rep["warmup_used"] is True and rep["lm"]["fwd_examples"] == view.n + len(view.target_ids) and rep["lm"]["bwd_examples"] == 0
    assert not view.warmup.used  # the worker's copy was used, not the harness's


# ---- decentralized -----------------------------------------------------------------------------


def _local_sgd(view, model, x, y, steps, gen):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=view.recipe["momentum"])
    bs = view.recipe["batch_size"]
    for _ in range(steps):
        idx = torch.randint(0, len(x), (bs,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


class GossipSGD(DistillationMethod):
    """Minimal correct D-PSGD: local SGD at each node (its own seeded generator), parameters mixed
    through net.gossip after every epoch."""

    name = "kit-dec-ok"
    role = "decentralized"

    def distill(self, view):
        models = [view.model_factory() for _ in range(view.n)]
        gens = [torch.Generator().manual_seed(view.seed * 100 + i) for i in range(view.n)]
        for _ in range(view.recipe["epochs"]):
            for i in range(view.n):
                with view.net.node(i):  # node i reads its own data only
                    x, y = view.nodes[i]
                _local_sgd(view, models[i], x, y, view.steps_per_epoch, gens[i])
            names = [k for k, _ in models[0].named_parameters()]
            stacked = {k: torch.stack([dict(m.named_parameters())[k].detach() for m in models]) for k in names}
            mixed = view.net.gossip(stacked)
            for i, m in enumerate(models):
                with torch.no_grad():
                    for k, p in m.named_parameters():
                        p.copy_(mixed[k][i])
        return models


class DirectAverage(GossipSGD):
    """Broken: averages every node's model directly, bypassing the network."""

    name = "kit-dec-leak"

    def distill(self, view):
        models = [view.model_factory() for _ in range(view.n)]
        gens = [torch.Generator().manual_seed(i) for i in range(view.n)]
        for i in range(view.n):
            with view.net.node(i):
                x, y = view.nodes[i]
            _local_sgd(view, models[i], x, y, view.steps_per_epoch, gens[i])
        avg = {k: torch.stack([m.state_dict()[k] for m in models]).mean(0) for k in models[0].state_dict()}
        for m in models:
            m.load_state_dict(avg)
        return models


class GlobalLabelPrior(GossipSGD):
    """Broken: node i reads every node's row of own_label_counts (other nodes' knowledge), each
    row acting as its node, then uses their sum at every node."""

    name = "kit-dec-counts"

    def distill(self, view):
        models = super().distill(view)
        rows = []
        for i in range(view.n):
            with view.net.node(i):
                rows.append(np.asarray(view.own_label_counts[i]))
        prior = torch.from_numpy(np.log(np.sum(rows, 0) + 1.0)).float()
        for m in models:
            with torch.no_grad():
                m[-1].bias.add_(prior)
        return models


class PeekNeighbour(GossipSGD):
    """Broken: acting as node 0, reads node 1's data."""

    name = "kit-dec-peek"

    def distill(self, view):
        with view.net.node(0):
            view.nodes[1]
        return super().distill(view)


class AllCounts(GossipSGD):
    """Broken: reads the whole label-count table at once."""

    name = "kit-dec-allcounts"

    def distill(self, view):
        np.asarray(view.own_label_counts)
        return super().distill(view)


class OneShort(GossipSGD):
    name = "kit-dec-short"

    def distill(self, view):
        return super().distill(view)[:-1]


class NoRole(GossipSGD):
    name = "kit-dec-norole"
    role = ""


def test_decentralized_check_passes_a_correct_method_and_counts_bytes():
    sent = check_decentralized_method(GossipSGD())
    # ring of 3: each node sends each parameter tensor to 2 neighbours, twice (2 epochs)
    n_params = sum(p.numel() for p in make_decentralized_view().model_factory().parameters())
    assert sent["model"] == 2 * 3 * 2 * n_params * 4


@pytest.mark.parametrize(
    "method, message",
    [
        (DirectAverage(), "isolation check failed: with no edges between nodes, changing node 0's data changed node 1's model"),
        (GlobalLabelPrior(), "isolation check failed"),
        (PeekNeighbour(), "read node 1's data while acting as node 0"),
        (AllCounts(), "read every node's label counts at once"),
        (OneShort(), "returned 2 models for 3 nodes"),
        (NoRole(), "set role = 'decentralized'"),
    ],
)
def test_decentralized_check_fails_broken_methods(method, message):
    with pytest.raises(AssertionError, match=message):
        check_decentralized_method(method)


def test_network_counts_bytes_and_keeps_isolated_nodes_apart():
    ring = Network(Topology.ring(4))
    t = torch.arange(8, dtype=torch.float32).view(4, 2)
    out = ring.gossip({"w": t})["w"]
    assert torch.allclose(out[0], (t[3] + t[0] + t[1]) / 3)
    assert ring.bytes["model"] == 4 * 2 * 2 * 4  # 4 nodes x 2 neighbours x 2 floats x 4 bytes
    got = ring.exchange([np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3)])
    assert [j for j, _ in got[0]] == [1, 3] and ring.bytes["labels"] == 4 * 2 * 24
    iso = Network(Topology.isolated(3))
    assert iso.allgather([1, 2, 3]) == [[(0, 1)], [(1, 2)], [(2, 3)]] and iso.bytes["meta"] == 0
    assert torch.equal(iso.gossip({"w": t[:3]})["w"], t[:3]) and iso.bytes["model"] == 0
    assert Network(Topology.complete(3)).allgather([1, 2, 3])[0] == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match="doubly stochastic"):
        Topology("bad", np.array([[0.5, 0.2], [0.5, 0.8]]))


def test_decentralized_view_perturbs_only_one_node_and_hides_ood_flags():
    a, b = make_decentralized_view(), make_decentralized_view(perturb_node=1)

    def row(v, i, what="nodes"):
        with v.net.node(i):
            return getattr(v, what)[i]

    assert torch.equal(row(a, 0)[0], row(b, 0)[0]) and torch.equal(row(a, 2)[1], row(b, 2)[1])
    assert not torch.equal(row(a, 1)[0], row(b, 1)[0])
    assert torch.equal(a.public_x, b.public_x)
    assert not any(hasattr(a, n) for n in ("ood", "is_ood", "public_ood"))
    assert [int(row(a, i, "own_label_counts").sum()) for i in range(3)] == [24, 24, 24]
    with pytest.raises(LeakageError, match="read node 2's data outside any node's context"):
        a.nodes[2]
    with a.net.node(0), pytest.raises(LeakageError, match="read node 1's label counts while acting as node 0"):
        a.own_label_counts[1]
    with a.net.node(0), a.net.node(1):
        assert a.net.acting == 1 and len(row(a, 1)) == 2
    assert a.net.acting is None


# ---- early exit ----------------------------------------------------------------------------------


class TrainHeads(DistillationMethod):
    """Minimal correct early-exit method: each head trained with cross-entropy on its cached
    features; a uniform combiner."""

    name = "kit-exit-ok"
    role = "early-exit"

    def distill(self, view):
        heads = {}
        for m in view.modalities:
            for k in (1, 2, 3):
                head = view.head_factory(m, k).train()
                f = view.feats_train[m][k - 1]
                x, y = f.reshape(-1, *f.shape[2:]), view.y_train.repeat_interleave(f.shape[1])
                opt = torch.optim.Adam(head.parameters(), lr=view.recipe["lr"][m])
                for _ in range(view.recipe["ic_epochs"]):
                    opt.zero_grad()
                    F.cross_entropy(head(x), y).backward()
                    opt.step()
                heads[(m, k)] = head.eval()
        return ExitModel(heads, [np.full(e + 1, 1.0 / (e + 1)) for e in range(len(view.exit_order))])


class NormalizesInPlace(TrainHeads):
    name = "kit-exit-inplace"

    def distill(self, view):
        for m in view.modalities:
            for f in view.feats_train[m]:
                f.sub_(f.mean())
        return super().distill(view)


class MissingHead(TrainHeads):
    name = "kit-exit-missing"

    def distill(self, view):
        out = super().distill(view)
        del out.heads[("mv", 2)]
        return out


class BadCombiner(TrainHeads):
    name = "kit-exit-combiner"

    def distill(self, view):
        out = super().distill(view)
        out.combiner = [np.ones(2) for _ in view.exit_order]
        return out


class NanHead(TrainHeads):
    name = "kit-exit-nan"

    def distill(self, view):
        out = super().distill(view)
        with torch.no_grad():
            out.heads[("res", 1)][-1].weight.fill_(float("nan"))
        return out


class OwnHead(TrainHeads):
    """Returns a head of its own (wider) architecture for one exit: the harness counts the
    exits' costs for its own heads, so the kit refuses it, as the track does."""

    name = "kit-exit-own-head"

    def distill(self, view):
        out = super().distill(view)
        ch = view.feats_train["res"][0].shape[2]
        out.heads[("res", 1)] = torch.nn.Sequential(torch.nn.Conv2d(ch, 4 * ch, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4 * ch, view.num_classes))
        return out


def test_exit_check_passes_a_correct_method():
    out = check_exit_method(TrainHeads())
    assert len(out.heads) == 9 and len(out.combiner) == 13


@pytest.mark.parametrize(
    "method, message",
    [
        (NormalizesInPlace(), "changed the frozen backbones' cached features"),
        (MissingHead(), r"it needs exactly one head per \(modality, k\)"),
        (BadCombiner(), r"combiner weights of exit 0 have 2 entries; exit e weighs exits 0..e"),
        (NanHead(), r"head \('res', 1\) has non-finite \(NaN or inf\) values in 4.weight"),
        (OwnHead(), r"head \('res', 1\) is not of the harness's architecture"),
    ],
)
def test_exit_check_fails_broken_methods(method, message):
    with pytest.raises(AssertionError, match=message):
        check_exit_method(method)


def test_exit_view_shapes():
    v = make_exit_view()
    assert v.exit_order[-1] == ("fused", 4) and len(v.exit_order) == 13 == len(v.exit_macs)
    assert np.all(np.diff(v.exit_macs) > 0)
    f = v.feats_train["mv"][2]
    assert v.head_factory("mv", 3)(f.reshape(-1, *f.shape[2:])).shape == (f.shape[0] * f.shape[1], v.num_classes)


# ---- provisioning --------------------------------------------------------------------------------


class RecentPeak(ProvisioningMethod):
    """Minimal correct method: the recent hour's 95th-percentile demand times the lead."""

    name = "kit-pool-ok"

    def fit(self, view):
        self.scale = float(view.lead)

    def plan(self, view):
        recent = view.history[-60:] if len(view.history) else np.zeros(1)
        return np.full(view.horizon, np.ceil(np.quantile(recent, 0.95) * self.scale))


class Negative(RecentPeak):
    name = "kit-pool-negative"

    def plan(self, view):
        return super().plan(view) - 100


class WrongLength(RecentPeak):
    name = "kit-pool-length"

    def plan(self, view):
        return super().plan(view)[:-1]


class WritesHistory(RecentPeak):
    name = "kit-pool-write"

    def plan(self, view):
        view.history[-1] = 0
        return super().plan(view)


class Jittery(RecentPeak):
    name = "kit-pool-jitter"

    def plan(self, view):
        return super().plan(view) + np.random.default_rng().integers(0, 3, view.horizon)


class Peeks(RecentPeak):
    name = "kit-pool-peek"

    def plan(self, view):
        demand = make_demand_trace(2)
        return np.asarray(demand[view.t : view.t + view.horizon], dtype=float)


class Oracle(RecentPeak):
    name = "kit-pool-oracle"
    privileged = True

    def plan(self, view):
        return np.cumsum(view.future)[::-1].astype(float)


def test_provisioning_check_passes_correct_methods_and_simulates():
    res = check_provisioning_method(RecentPeak())
    assert len(res.plans) == 1440 // 5 and 0.5 < res.hit_rate <= 1.0 and res.idle_steps > 0
    check_provisioning_method(Oracle())  # privileged: sees the future, still conformant


@pytest.mark.parametrize(
    "method, message",
    [
        (Negative(), "negative pool sizes"),
        (WrongLength(), r"plan has shape \(9,\), expected \(10,\)"),
        (Jittery(), "not deterministic"),
        (Peeks(), "tried to generate the demand trace"),
    ],
)
def test_provisioning_check_fails_broken_methods(method, message):
    with pytest.raises(AssertionError, match=message):
        check_provisioning_method(method)


def test_provisioning_history_is_read_only():
    with pytest.raises(ValueError, match="read-only"):
        check_provisioning_method(WritesHistory())
