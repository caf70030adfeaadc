"""The contest (issue 37): one call for every kind, in the contestant worker, numbers only back.

The methods are module-level classes: the worker imports them by reference, as it does an
installed plugin.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from coreset_bench import contestant as C
from coreset_bench import models as M
from coreset_bench.cells import CellFailure
from coreset_bench.contest import KINDS, contest
from coreset_bench.kinds import (
    AttackMethod,
    AttackView,
    DistillationMethod,
    NoiseCorrectionMethod,
    NoiseView,
    PrivacyMethod,
    PrivacyView,
    SelectionMethod,
    ThreatModel,
)
from coreset_bench.testing import make_selection_view
from coreset_bench.training import TrainingFixture

PROTECTED = C.protected_paths("digits", None, None)


def _model(seed: int = 0) -> torch.nn.Module:
    return M.build("mlp", (1, 4, 4), 3, (0.5,), (0.25,), seed).eval()


class _Box:
    """A black box over a model (as the privacy track's), counting forwards."""

    def __init__(self, model):
        self.model = model
        self.forwards = 0

    def __call__(self, x):
        self.forwards += len(x)
        with torch.no_grad():
            return self.model(x)


def _privacy_views(n_views: int = 2) -> list[PrivacyView]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 4, 4, generator=g)
    y = torch.arange(12) % 3
    shadows = [_Box(_model(s)) for s in (1, 2)]
    return [
        PrivacyView(x=x, y=y, num_classes=3, target=_Box(_model(10 + t)), shadows=shadows, shadow_in=np.zeros((2, 12), dtype=bool),
                    views=[], seed=0, generator=torch.Generator().manual_seed(0), input_std=(0.25,))
        for t in range(n_views)
    ]


def _noise_view() -> NoiseView:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 1, 4, 4, generator=g)
    y = torch.arange(12) % 3
    return NoiseView(
        model=_model(3), x_verified=x[:6], y_verified=y[:6], x_pool=x, y_pool_noisy=y, num_classes=3,
        model_factory=M.ModelFactory("mlp", (1, 4, 4), 3, (0.5,), (0.25,), 7), train=TrainingFixture({"epochs": 1, "batch_size": 4, "lr": 0.1}, 3, 0),
        seed=0, generator=torch.Generator().manual_seed(0), recipe={"epochs": 1},
    )


class ScoresAndPid(PrivacyMethod):
    """Scores = the target's max logit; reports its process and whether the shadows are shared."""

    name = "scores-and-pid"

    def score(self, view):
        view.target(view.x)
        for s in view.shadows:
            s(view.x)
        return view.target(view.x).max(1).values.numpy()


class BadScores(PrivacyMethod):
    name = "bad-scores"

    def score(self, view):
        return np.full(len(view.y) + 1, 0.5)


class FineTune(NoiseCorrectionMethod):
    """Trains a copy of the view's model with the training fixture; writes into view.info."""

    name = "fine-tune"

    def correct(self, view):
        import copy

        m = copy.deepcopy(view.model)
        view.train(m, view.x_verified, view.y_verified, epochs=1)
        view.info["pid"] = os.getpid()
        return m


class OwnModule(NoiseCorrectionMethod):
    name = "own-module"

    def correct(self, view):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))


class Sign(AttackMethod):
    name = "sign-step"

    def perturb(self, model, x, y, threat, generator):
        x = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        (g,) = torch.autograd.grad(loss, x)
        return (x + threat.eps * g.sign()).clamp(0, 1).detach()


class TooFar(AttackMethod):
    name = "too-far"

    def perturb(self, model, x, y, threat, generator):
        return (x + 3 * threat.eps).clamp(0, 1)


class Poisoner(SelectionMethod):
    """Leaves a mark in its worker's memory (a module global of the harness's code)."""

    name = "poisoner"

    def select(self, view):
        import coreset_bench.kinds as K

        K._POISON = os.getpid()
        return np.arange(view.budget)


class Reader(SelectionMethod):
    """Reports whether a mark is in its worker's memory, and the worker's process id."""

    name = "reader"

    def select(self, view):
        import coreset_bench.kinds as K
        from coreset_bench.kinds import Selection

        return Selection(np.arange(view.budget), info={"poison": getattr(K, "_POISON", None), "pid": os.getpid()})


def test_every_ported_kind_has_one_call_and_one_check():
    assert {k: v.call for k, v in KINDS.items()} == {"selection": "select", "privacy": "score", "attack": "perturb", "noise-correction": "correct", "provisioning": "plan",
                                                    "node-models": "distill", "node-models-gloo": "distill", "distillation:early-exit": "distill"}
    assert [k for k, v in KINDS.items() if v.served] == ["node-models"] and [k for k, v in KINDS.items() if v.external] == ["node-models-gloo"]


def test_a_kind_with_roles_is_looked_up_by_the_methods_role():
    from coreset_bench.contest import kind_for
    from coreset_bench.kinds import DistillationMethod

    class Exits(DistillationMethod):
        name, role = "exits", "early-exit"

        def distill(self, view):  # pragma: no cover - never called
            raise AssertionError

    class NoRole(Exits):
        name, role = "no-role", ""

    assert kind_for("distillation", Exits()) is KINDS["distillation:early-exit"]
    assert kind_for("distillation", NoRole()) is KINDS.get("distillation")  # a role without an entry: the kind's own (none yet)
    assert kind_for("selection", Exits()) is KINDS["selection"]


def test_views_of_one_contest_share_objects_in_the_worker_and_report_forwards():
    views = _privacy_views(2)
    out = contest(ScoresAndPid(), views, kind="privacy", device="cpu", protected=PROTECTED)
    assert len(out.outputs) == 2 and all(o.shape == (12,) and o.dtype == np.float64 for o in out.outputs)
    # the harness's own model gives the same scores: the worker rebuilt it from its weights
    with torch.no_grad():
        want = views[0].target.model(views[0].x).max(1).values.numpy().astype(np.float64)
    assert np.array_equal(out.outputs[0], want)
    # forwards counted per view; shadows counted per view (shared objects, reset between views)
    assert out.reports == [{"target": 24, "shadows": 24}, {"target": 24, "shadows": 24}]
    assert views[0].target.forwards == 0  # the harness's objects were not touched
    assert out.seconds > 0 and len(out.call_seconds) == 2


def test_an_invalid_output_fails_with_one_line_naming_the_plugin():
    with pytest.raises(CellFailure) as exc:
        contest(BadScores(), _privacy_views(1), kind="privacy", device="cpu", protected=PROTECTED)
    assert str(exc.value) == "invalid output of plugin 'bad-scores': returned scores of shape (13,); expected one score per query, shape (12,)"


def test_a_corrected_model_comes_back_as_weights_of_the_views_architecture():
    view = _noise_view()
    out = contest(FineTune(), [view], kind="noise-correction", device="cpu", protected=PROTECTED)
    model = out.output
    assert M.build_spec(model) == M.build_spec(view.model)
    assert not any(torch.equal(a, b) for a, b in zip(model.state_dict().values(), view.model.state_dict().values()) if a.dim() == 2)
    report = out.reports[0]
    assert report["fixture_calls"] == 1 and report["fixture_s"] > 0 and report["info"]["pid"] != os.getpid()
    with pytest.raises(CellFailure, match="^invalid output of plugin 'own-module': correct\\(\\) returned a Sequential that is not a model of a registered architecture"):
        contest(OwnModule(), [_noise_view()], kind="noise-correction", device="cpu", protected=PROTECTED)


def test_an_attack_gets_a_rebuilt_model_and_its_ball_is_checked():
    model = _model(1)
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 3
    threat = ThreatModel(eps=0.1, step_size=0.025, steps=1)
    view = AttackView(model, x, y, threat, torch.Generator().manual_seed(0))
    out = contest(Sign(), [view], kind="attack", device="cpu", protected=PROTECTED)
    assert torch.equal(out.output, Sign().perturb(model, x, y, threat, None))  # same numbers as in the harness
    with pytest.raises(CellFailure, match="^attack plugin 'too-far' violated the threat model: 8 of 8 perturbations exceed eps=0.1"):
        contest(TooFar(), [view], kind="attack", device="cpu", protected=PROTECTED)


def test_a_view_holding_a_module_of_no_registered_architecture_or_a_track_is_refused():
    bad = AttackView(torch.nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), ThreatModel(), None)
    with pytest.raises(CellFailure, match="cannot be sent to the contestant worker: it holds a Linear that is not a model of a registered architecture"):
        contest(Sign(), [bad], kind="attack", device="cpu", protected=PROTECTED)
    from coreset_bench.tracks.robustness import RobustnessTrack

    leaky = AttackView(_model(), torch.zeros(1, 1, 4, 4), torch.zeros(1, dtype=torch.long), ThreatModel(), RobustnessTrack())
    with pytest.raises(CellFailure, match="it holds the track object RobustnessTrack"):
        contest(Sign(), [leaky], kind="attack", device="cpu", protected=PROTECTED)


def test_another_method_gets_a_fresh_worker_and_the_same_method_keeps_its_own():
    view = make_selection_view()
    contest(Poisoner(), [view], kind="selection", device="cpu", protected=PROTECTED)
    first = contest(Reader(), [view], kind="selection", device="cpu", protected=PROTECTED).output.info
    assert first["poison"] is None  # the poisoner's worker is gone
    again = contest(Reader(), [view], kind="selection", device="cpu", protected=PROTECTED).output.info
    assert again["pid"] == first["pid"]  # one method keeps its worker across cells


def test_the_kit_runs_any_ported_kind_as_the_pipeline_does():
    from coreset_bench.testing import check_in_worker

    assert check_in_worker(ScoresAndPid(), _privacy_views(1)).output.shape == (12,)
    with pytest.raises(AssertionError, match="^bad-scores: invalid output of plugin 'bad-scores': returned scores of shape"):
        check_in_worker(BadScores(), _privacy_views(1))


# ---- a served kind: the decentralized view's network talks to the harness -----------------------


class OneGossip(DistillationMethod):
    """Each node's factory model, its weights mixed once through view.net; the node count and
    the bytes it saw (a copy of the harness's count) in view.info."""

    name = "one-gossip"
    role = "decentralized"

    def distill(self, view):
        models = [view.model_factory() for _ in range(view.n)]
        for m, shift in zip(models, range(view.n)):
            with torch.no_grad():
                next(m.parameters()).add_(float(shift))
        names = [k for k, _ in models[0].named_parameters()]
        stacked = {k: torch.stack([dict(m.named_parameters())[k].detach() for m in models]) for k in names}
        mixed = view.net.gossip(stacked)
        for i, m in enumerate(models):
            m.load_state_dict({**m.state_dict(), **{k: mixed[k][i] for k in names}})
        view.info["seen_bytes"] = dict(view.net.bytes)
        view.info["pid"] = os.getpid()
        return models


class ForgesARequest(OneGossip):
    """Asks the harness's service for something other than a network operation."""

    name = "forges-a-request"

    def distill(self, view):
        view.net._call({"op": "__dict__", "kind": "model"})
        return super().distill(view)


class OneTooFew(OneGossip):
    name = "one-too-few"

    def distill(self, view):
        return super().distill(view)[:-1]


def test_a_served_view_talks_to_the_harness_network_which_counts_the_bytes():
    from coreset_bench.tracks.decentralized.network import Network, NetworkService
    from coreset_bench.testing import make_decentralized_spec

    spec = make_decentralized_spec(n_nodes=3, topology="ring")
    net = Network(spec.topology)
    out = contest(OneGossip(), [spec], kind="node-models", device="cpu", protected=PROTECTED, service=NetworkService(net))
    got = out.output
    # the same numbers as the method run here on a view over the harness's network
    here = OneGossip().distill(spec.open(Network(spec.topology)))
    assert len(got.models) == 3 and all(torch.equal(a, b) for m, h in zip(got.models, here) for a, b in zip(m.state_dict().values(), h.state_dict().values()))
    assert got.info["pid"] != os.getpid() and net.bytes["model"] > 0  # ran in the worker; the harness counted
    assert got.info["seen_bytes"]["model"] == net.bytes["model"] and got.bytes is None and got.traffic is None
    assert net.traffic.sum() == net.bytes["model"]
    with pytest.raises(CellFailure, match="^kind 'node-models' serves its views while the contestant runs, but the track gave no service"):
        contest(OneGossip(), [spec], kind="node-models", device="cpu", protected=PROTECTED)
    with pytest.raises(CellFailure, match="^kind 'node-models-gloo' runs its contestant in the track's own processes, but the track gave no runner"):
        contest(OneGossip(), [spec], kind="node-models-gloo", device="cpu", protected=PROTECTED)
    with pytest.raises(CellFailure, match="^plugin 'forges-a-request' failed: ValueError: unknown network operation; use gossip, exchange or allgather$"):
        contest(ForgesARequest(), [spec], kind="node-models", device="cpu", protected=PROTECTED, service=NetworkService(Network(spec.topology)))
    with pytest.raises(CellFailure, match="^invalid output of plugin 'one-too-few': distill\\(\\) returned 2 models for 3 nodes; return exactly one per node$"):
        contest(OneTooFew(), [spec], kind="node-models", device="cpu", protected=PROTECTED, service=NetworkService(Network(spec.topology)))
