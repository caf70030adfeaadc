"""The phase-2 views of ``kinds.py`` (issue 15, item 3): every view has a seed, a seeded
generator and/or rng, and an ``info`` dict; none has a field for hidden truth."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from coreset_bench import kinds
from coreset_bench.testing import make_decentralized_view, make_exit_view, make_instruction_view

HIDDEN = {"task", "tasks", "task_id", "task_ids", "noisy", "noise_flags", "is_noisy", "twin", "twin_labels", "ood", "is_ood", "ood_flags", "public_ood", "demand", "x_test", "y_test", "test"}


@pytest.mark.parametrize("view", [kinds.InstructionView, kinds.DecentralizedView, kinds.ExitView, kinds.ProvisioningView])
def test_views_have_seed_randomness_and_info_and_no_hidden_truth(view):
    names = {f.name for f in dataclasses.fields(view)}
    assert "seed" in names and "info" in names and ({"generator", "rng"} & names)
    assert not names & HIDDEN, names & HIDDEN
    info = next(f for f in dataclasses.fields(view) if f.name == "info")
    assert info.default_factory is dict  # a fresh dict per view


def test_provisioning_view_keeps_its_first_fields_and_hides_the_future_by_default():
    v = kinds.ProvisioningView(np.zeros(5), 10, 60.0, 3)
    assert (v.horizon, v.step_seconds, v.seed, v.future, v.t, v.lead) == (10, 60.0, 3, None, 0, 1)
    assert kinds.ProvisioningMethod.privileged is False


def test_distillation_view_placeholder_is_gone_and_the_docstring_table_lists_the_new_views():
    assert not hasattr(kinds, "DistillationView")
    for name in ("InstructionView", "DecentralizedView", "ExitView", "ProvisioningView", 'role = "decentralized"', '"early-exit"', '"text"'):
        assert name in kinds.__doc__


def test_kit_views_are_instances_and_their_factories_pickle():
    d, e, i = make_decentralized_view(), make_exit_view(), make_instruction_view()
    assert isinstance(d, kinds.DecentralizedView) and isinstance(e, kinds.ExitView) and isinstance(i, kinds.InstructionView)
    assert d.n == 3 and e.n == 24 and i.n == 48
    a = pickle.loads(pickle.dumps(d.model_factory))()
    b = d.model_factory()
    assert all(np.array_equal(x.detach().numpy(), y.detach().numpy()) for x, y in zip(a.parameters(), b.parameters()))
    pickle.loads(pickle.dumps(e.head_factory))("res", 1)
    with pytest.raises(ValueError), d.net.node(0):
        d.own_label_counts[0][0] = 1  # read-only


def test_phase2_views_hand_out_protected_copies():
    """As for the other views (``_ReadOnlyView``): tensors are the view's own copies, arrays are
    read-only, and the exit view's mappings of features and logits cannot be rebound."""
    import torch

    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    a = np.arange(6.0)
    e = kinds.ExitView(("res",), {"res": (t, t)}, {"res": t}, t, 3, lambda m, k: None, (("res", 1),), a, {}, 0, None, np.random.default_rng(0))
    e.feats_train["res"][0].zero_()
    e.final_logits_train["res"].zero_()
    with pytest.raises(TypeError):
        e.feats_train["res"] = ()
    with pytest.raises(ValueError, match="read-only"):
        e.exit_macs[0] = 1
    i = kinds.InstructionView(t, t, t, t, ("a",), t, t, t, ("x",), ("v",), 1, 0.5, None, lambda: None, 0, None, np.random.default_rng(0))
    i.ids.zero_()
    p = kinds.ProvisioningView(a, 3, 60.0, 0, future=a)
    with pytest.raises(ValueError, match="read-only"):
        p.future[0] = 1
    p.info["note"] = "methods may fill info"
    assert torch.equal(t, torch.arange(12, dtype=torch.float32).reshape(3, 4)) and a[0] == 0.0
