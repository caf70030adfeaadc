"""Selection methods I: score-based methods (EasyCore, CLD, LTC, EL2N, GraNd, Forgetting, AUM,
Uncertainty, CCS, Moderate, D2, TDDS) and the shared last-layer-gradient helper.

Each method gets a known-answer test on hand-made signals, the conformance kit, and a check of
its module's registration hook.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from coreset_bench.kinds import class_budgets
from coreset_bench.testing import check_selection_method, make_selection_view, validate_selection

MODULES = {
    "easycore": ["easycore", "easycore-balanced", "easycore-hard"],
    "cld": ["cld"],
    "ltc": ["ltc"],
    "el2n": ["el2n"],
    "grand": ["grand"],
    "forgetting": ["forgetting"],
    "aum": ["aum"],
    "uncertainty": ["uncertainty-entropy", "uncertainty-margin", "uncertainty-least-confidence"],
    "ccs": ["ccs"],
    "moderate": ["moderate"],
    "d2_pruning": ["d2-pruning"],
    "tdds": ["tdds"],
}


def _mod(name):
    return importlib.import_module(f"coreset_bench.plugins.selection.{name}")


def _methods(module):
    got = []
    _mod(module).register_methods(got.append)
    return {m.name: m for m in got}


def _method(name, **params):
    for module, names in MODULES.items():
        if name in names:
            m = _methods(module)[name]
            return m.with_params(**params) if params else m
    raise KeyError(name)


def _select(method, view):
    return validate_selection(method.select(view), view, method)


def _sorted(sel):
    return sorted(int(i) for i in sel.indices)


# ---- registration and conformance ---------------------------------------------------------------


@pytest.mark.parametrize("module", sorted(MODULES))
def test_register_methods_registers_expected_names(module):
    got = []
    _mod(module).register_methods(got.append)
    assert [m.name for m in got] == MODULES[module]
    for m in got:
        assert m.kind == "selection" and m.summary and m.citation
        assert m.signals, f"{m.name} declares no signals"


@pytest.mark.parametrize("name", [n for names in MODULES.values() for n in names])
def test_conformance_kit(name):
    check_selection_method(_method(name))


def test_conformance_kit_on_non_default_modes():
    for name, params in [
        ("easycore", {"class_balanced": True, "norm_power": 2}),
        ("ltc", {"reference": "class_mean"}),
        ("forgetting", {"unlearned": "zero", "class_balanced": True}),
        ("uncertainty-margin", {"class_balanced": False}),
        ("d2-pruning", {"score": "aum", "per_class": False, "mis_ratio": 0.3}),
        ("grand", {"class_balanced": True}),
    ]:
        check_selection_method(_method(name, **params))


# ---- shared helpers ------------------------------------------------------------------------------


def test_last_layer_grads_match_autograd():
    from coreset_bench.plugins.selection._lastlayer import last_layer_grad_norms, last_layer_grads

    torch.manual_seed(0)
    n, d, c = 5, 3, 4
    emb = torch.randn(n, d)
    head = torch.nn.Linear(d, c)
    labels = torch.tensor([0, 1, 2, 3, 1])
    with torch.no_grad():
        logits = head(emb)
    expected = []
    for i in range(n):  # reference: one autograd backward per sample
        head.zero_grad()
        torch.nn.functional.cross_entropy(head(emb[i : i + 1]), labels[i : i + 1]).backward()
        expected.append(torch.cat([head.bias.grad.clone(), head.weight.grad.clone().reshape(-1)]))
    expected = torch.stack(expected)
    got_t = last_layer_grads(emb, logits, labels)
    assert isinstance(got_t, torch.Tensor) and got_t.shape == (n, c * (d + 1)) and got_t.dtype == torch.float32
    torch.testing.assert_close(got_t, expected, atol=1e-5, rtol=1e-5)
    got_np = last_layer_grads(emb.numpy(), logits.numpy(), labels.numpy())
    assert isinstance(got_np, np.ndarray)
    np.testing.assert_allclose(got_np, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(last_layer_grad_norms(emb.numpy(), logits.numpy(), labels.numpy()), expected.norm(dim=1).numpy(), rtol=1e-5)


def test_topk_per_class_and_ties_by_index():
    from coreset_bench.plugins.selection._ranking import rank_order, topk_per_class

    scores = np.array([1.0, 3.0, 3.0, 0.0, 2.0, 2.0, 5.0])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    # class 0 keeps its best 2 (the tied 3.0s, 1 before 2); class 1 keeps 6 (5.0) then 4 (2.0, lower index than 5)
    assert sorted(topk_per_class(scores, labels, np.array([2, 2]), descending=True).tolist()) == [1, 2, 4, 6]
    assert sorted(topk_per_class(scores, labels, np.array([1, 1]), descending=False).tolist()) == [0, 3]
    assert rank_order(np.array([2.0, 1.0, 2.0, 1.0]), descending=True).tolist() == [0, 2, 1, 3]
    with pytest.raises(ValueError):
        topk_per_class(scores, labels, np.array([4, 1]), descending=True)


def test_checkpoint_rows_prefix_and_stride():
    from coreset_bench.plugins.selection._ranking import checkpoint_rows

    assert checkpoint_rows(10).tolist() == list(range(10))
    assert checkpoint_rows(10, 0.5).tolist() == [0, 1, 2, 3, 4]
    assert checkpoint_rows(10, 0.3).tolist() == [0, 1, 2]  # 0.3 * 10 is 3, not 4
    assert checkpoint_rows(10, 1.0, 3).tolist() == [0, 3, 6, 9]
    assert checkpoint_rows(9, 1.0, 2).tolist() == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError):
        checkpoint_rows(10, 0.0)


# ---- EasyCore ------------------------------------------------------------------------------------


def test_easycore_keeps_lowest_aign_and_hard_keeps_highest():
    g = np.array(
        [
            [0.5, 3.0, 1.0, 0.1, 2.0, 4.0, 0.2, 1.5],
            [0.7, 3.2, 1.2, 0.1, 2.2, 4.2, 0.4, 1.3],
        ],
        dtype=np.float32,
    )  # AIGN: 0.6 3.1 1.1 0.1 2.1 4.1 0.3 1.4
    view = make_selection_view(labels=np.array([0, 1] * 4), num_classes=2, budget=3, signals={"input_grad_norm": g})
    assert _sorted(_select(_method("easycore"), view)) == [0, 3, 6]
    assert _sorted(_select(_method("easycore-hard"), view)) == [1, 4, 5]
    sel = _select(_method("easycore"), view)
    np.testing.assert_allclose(sel.scores, g.mean(0), rtol=1e-6)


def test_easycore_norm_power_epochs_used_ties_and_class_balance():
    # sample 0: norms (0, 2): mean 1.0, mean square 2.0; sample 1: (1.2, 1.2): 1.2 and 1.44
    g = np.array([[0.0, 1.2], [2.0, 1.2]], dtype=np.float32)
    view = make_selection_view(labels=np.array([0, 1]), num_classes=2, budget=1, signals={"input_grad_norm": g})
    assert _sorted(_select(_method("easycore", norm_power=1), view)) == [0]
    assert _sorted(_select(_method("easycore", norm_power=2), view)) == [1]
    # only the first epoch: 0.0 < 1.2
    assert _sorted(_select(_method("easycore", norm_power=2, epochs_used=0.5), view)) == [0]
    with pytest.raises(ValueError):
        _method("easycore", norm_power=3).select(view)
    # ties are taken in index order (stable sort)
    tie = make_selection_view(labels=np.zeros(5, int), num_classes=1, budget=2, signals={"input_grad_norm": np.ones((3, 5), np.float32)})
    assert _sorted(_select(_method("easycore"), tie)) == [0, 1]
    assert _sorted(_select(_method("easycore-hard"), tie)) == [0, 1]
    # class-balanced: class 0 is the easy class; global ranking takes it all, balanced takes 2 + 2
    g2 = np.array([[0.1, 0.2, 0.3, 0.4, 5.0, 6.0, 7.0, 8.0]], dtype=np.float32)
    lab = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    v2 = make_selection_view(labels=lab, num_classes=2, budget=4, signals={"input_grad_norm": g2})
    assert _sorted(_select(_method("easycore"), v2)) == [0, 1, 2, 3]
    assert _sorted(_select(_method("easycore", class_balanced=True), v2)) == [0, 1, 4, 5]
    assert _sorted(_select(_method("easycore-hard", class_balanced=True), v2)) == [2, 3, 6, 7]


# ---- CLD and LTC ---------------------------------------------------------------------------------


def _cld_view(loss, val_loss, labels, val_labels, budget, seed=0):
    return make_selection_view(
        labels=np.asarray(labels),
        val_labels=np.asarray(val_labels),
        num_classes=int(max(labels)) + 1,
        budget=budget,
        signals={"loss": np.asarray(loss, np.float32), "val_loss": np.asarray(val_loss, np.float32)},
        seed=seed,
    )


def test_cld_known_answer_ranks_aligned_first_and_anti_aligned_last():
    # class 0 validation losses: mean trajectory 2.0, 1.2, 1.0, 0.4, 0.3 -> diffs -0.8 -0.2 -0.6 -0.1
    val = np.array([[2.1, 1.9], [1.3, 1.1], [1.1, 0.9], [0.5, 0.3], [0.4, 0.2]])
    dv = np.diff(val.mean(1))
    start = np.array([3.0, 3.0, 3.0, 3.0])
    aligned = np.concatenate([[start[0]], start[0] + np.cumsum(2.5 * dv)])  # diffs = 2.5 * dv: r = +1
    anti = np.concatenate([[start[1]], start[1] + np.cumsum(-dv)])  # r = -1
    linear = np.linspace(3.0, 1.0, 5)  # constant differences: zero variance -> r = 0
    noisy = np.array([3.0, 2.0, 1.9, 1.0, 0.95])
    loss = np.stack([noisy, anti, aligned, linear], axis=1)
    view = _cld_view(loss, val, [0, 0, 0, 0], [0, 0], budget=1)
    sel = _select(_method("cld"), view)
    assert _sorted(sel) == [2]
    np.testing.assert_allclose(sel.scores[[1, 2, 3]], [-1.0, 1.0, 0.0], atol=1e-6)
    expected_noisy = np.corrcoef(np.diff(noisy), dv)[0, 1]
    np.testing.assert_allclose(sel.scores[0], expected_noisy, atol=1e-6)
    view2 = _cld_view(loss, val, [0, 0, 0, 0], [0, 0], budget=3)
    assert 1 not in _sorted(_select(_method("cld"), view2))


def test_cld_matches_pearson_per_class_and_uses_class_budgets():
    rng = np.random.default_rng(3)
    labels = np.array([0] * 6 + [1] * 4 + [2] * 2)
    val_labels = np.array([0, 0, 1, 1, 1, 2])
    loss = rng.random((7, len(labels)))
    val = rng.random((7, len(val_labels)))
    view = _cld_view(loss, val, labels, val_labels, budget=6)
    sel = _select(_method("cld"), view)
    for i, c in enumerate(labels):
        ref = np.diff(val[:, val_labels == c].mean(1))
        np.testing.assert_allclose(sel.scores[i], np.corrcoef(np.diff(loss[:, i]), ref)[0, 1], atol=1e-6)
    per_class = np.bincount(labels[sel.indices], minlength=3)
    assert per_class.tolist() == class_budgets(labels, 6, 3).tolist() == [3, 2, 1]
    for c in range(3):
        members = np.flatnonzero(labels == c)
        kept = set(sel.indices.tolist()) & set(members.tolist())
        best = members[np.argsort(-sel.scores[members], kind="stable")][: len(kept)]
        assert kept == set(best.tolist())
    # epochs_used and checkpoint_stride change which checkpoints are used
    half = _select(_method("cld", epochs_used=0.5, checkpoint_stride=1), view)
    ref0 = np.diff(val[:4, val_labels == 0].mean(1))
    np.testing.assert_allclose(half.scores[0], np.corrcoef(np.diff(loss[:4, 0]), ref0)[0, 1], atol=1e-6)
    strided = _select(_method("cld", checkpoint_stride=2), view)
    ref0 = np.diff(val[[0, 2, 4, 6]][:, val_labels == 0].mean(1))
    np.testing.assert_allclose(strided.scores[0], np.corrcoef(np.diff(loss[[0, 2, 4, 6], 0]), ref0)[0, 1], atol=1e-6)
    with pytest.raises(ValueError, match="at least 3"):
        _method("cld", epochs_used=0.2).select(view)


def test_ltc_raw_losses_class_mean_and_pairwise_mean():
    from coreset_bench.plugins.selection import cld, ltc

    assert ltc.pearson_to_class_reference is cld.pearson_to_class_reference  # shared, not duplicated
    rng = np.random.default_rng(5)
    labels = np.array([0, 0, 0, 1, 1, 1])
    val_labels = np.array([0, 0, 0, 1, 1])
    val = rng.random((6, 5))
    loss = rng.random((6, 6))
    loss[:, 1] = 4.0 * val[:, val_labels == 0].mean(1) + 1.0  # a positive affine copy of the class mean: r = +1
    view = _cld_view(loss, val, labels, val_labels, budget=2)
    sel = _select(_method("ltc", reference="class_mean"), view)
    np.testing.assert_allclose(sel.scores[1], 1.0, atol=1e-6)
    assert 1 in sel.indices.tolist()
    for i, c in enumerate(labels):
        np.testing.assert_allclose(sel.scores[i], np.corrcoef(loss[:, i], val[:, val_labels == c].mean(1))[0, 1], atol=1e-6)
    pair = _select(_method("ltc"), view)  # default: mean of pairwise correlations
    for i, c in enumerate(labels):
        expected = np.mean([np.corrcoef(loss[:, i], val[:, v])[0, 1] for v in np.flatnonzero(val_labels == c)])
        np.testing.assert_allclose(pair.scores[i], expected, atol=1e-6)
    every = _select(_method("ltc", val_scope="all"), view)
    for i in range(6):
        expected = np.mean([np.corrcoef(loss[:, i], val[:, v])[0, 1] for v in range(5)])
        np.testing.assert_allclose(every.scores[i], expected, atol=1e-6)
    assert "reconstructed from the paper" in _method("ltc").summary


# ---- EL2N and GraNd ------------------------------------------------------------------------------


def _softmax_np(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_el2n_uses_checkpoints_within_the_first_epochs():
    labels = np.array([0, 1, 0, 1])
    logits = np.zeros((3, 4, 2), np.float32)
    logits[:2, :, :] = np.array([[4.0, 0.0], [0.0, 4.0], [0.0, 1.0], [1.0, 0.0]])  # samples 2, 3 misfit early
    logits[2] = np.array([[-5.0, 5.0], [5.0, -5.0], [5.0, 0.0], [0.0, 5.0]])  # at epoch 20 it is the reverse
    sig = {"logits": logits, "checkpoint_epochs": np.array([5, 10, 20])}
    view = make_selection_view(labels=labels, num_classes=2, budget=2, signals=sig)
    sel = _select(_method("el2n"), view)
    assert _sorted(sel) == [2, 3]
    p = _softmax_np(logits[:2].astype(np.float64))
    onehot = np.eye(2)[labels]
    np.testing.assert_allclose(sel.scores, np.linalg.norm(p - onehot, axis=-1).mean(0), rtol=1e-6)
    assert sel.info["checkpoints"] == [5, 10]
    late = _select(_method("el2n", epochs=30), view)
    p3 = _softmax_np(logits.astype(np.float64))
    np.testing.assert_allclose(late.scores, np.linalg.norm(p3 - onehot, axis=-1).mean(0), rtol=1e-6)
    # no checkpoint within the first 2 epochs: the earliest (epoch 5) alone
    early = _select(_method("el2n", epochs=2), view)
    assert early.info["checkpoints"] == [5]


def test_grand_keeps_largest_last_layer_gradient_norm():
    labels = np.array([0, 1, 0, 1, 0])
    emb = np.zeros((2, 5, 3), np.float32)
    emb[0] = [[1, 0, 0], [0, 5, 0], [0, 0, 1], [3, 0, 0], [0, 0, 0]]
    emb[1] = emb[0] * 10  # a later checkpoint that `epochs` excludes
    logits = np.zeros((2, 5, 2), np.float32)  # p = (0.5, 0.5): ||p - y|| = sqrt(0.5) for every sample
    sig = {"logits": logits, "embeddings": emb, "checkpoint_epochs": np.array([1, 50])}
    view = make_selection_view(labels=labels, num_classes=2, budget=2, signals=sig)
    sel = _select(_method("grand"), view)
    assert _sorted(sel) == [1, 3]
    expected = np.sqrt(0.5) * np.sqrt(1 + (emb[0].astype(np.float64) ** 2).sum(1))
    np.testing.assert_allclose(sel.scores, expected, rtol=1e-6)
    bal = _select(_method("grand", class_balanced=True), view)
    # budgets 1 + 1; class 0's best two tie (norm of e = 1), so the lower index is kept
    assert _sorted(bal) == [0, 1]


# ---- Forgetting and AUM --------------------------------------------------------------------------


def test_forgetting_counts_transitions_and_never_learned():
    from coreset_bench.plugins.selection.forgetting import forgetting_counts

    tc = np.array(
        [
            [1, 1, 0, 0, 1],
            [0, 1, 0, 1, 1],
            [1, 1, 0, 1, 0],
            [0, 1, 0, 0, 1],
        ],
        dtype=bool,
    )  # counts: 2, 0, never learned, 1, 1
    counts, never = forgetting_counts(tc)
    assert counts.tolist() == [2, 0, 0, 1, 1] and never.tolist() == [False, False, True, False, False]
    view = make_selection_view(labels=np.zeros(5, int), num_classes=1, budget=2, signals={"train_correct": tc})
    sel = _select(_method("forgetting"), view)  # default: never learned counts as infinite
    assert _sorted(sel) == [0, 2] and np.isinf(sel.scores[2])
    zero = _select(_method("forgetting", unlearned="zero"), view)
    assert 0 in zero.indices.tolist() and 2 not in zero.indices.tolist()
    assert set(zero.indices.tolist()) - {0} <= {3, 4}  # the tie between 3 and 4 is broken at random


def test_forgetting_ties_are_broken_by_the_seeded_rng():
    tc = np.ones((3, 12), dtype=bool)  # every count is 0: all tied
    picks = set()
    for seed in range(6):
        view = make_selection_view(labels=np.zeros(12, int), num_classes=1, budget=3, signals={"train_correct": tc}, seed=seed)
        a = _sorted(_select(_method("forgetting"), view))
        view2 = make_selection_view(labels=np.zeros(12, int), num_classes=1, budget=3, signals={"train_correct": tc}, seed=seed)
        assert a == _sorted(_select(_method("forgetting"), view2))
        picks.add(tuple(a))
    assert len(picks) > 1


def test_aum_sums_margins_and_keeps_lowest():
    pt = np.array([[0.9, 0.2, 0.5, 0.6], [0.95, 0.1, 0.6, 0.2]], np.float32)
    po = np.array([[0.05, 0.7, 0.4, 0.3], [0.03, 0.8, 0.3, 0.7]], np.float32)
    view = make_selection_view(labels=np.array([0, 1, 0, 1]), num_classes=2, budget=2, signals={"prob_true": pt, "prob_other_max": po})
    sel = _select(_method("aum"), view)
    np.testing.assert_allclose(sel.scores, (pt - po).sum(0), atol=1e-6)  # 1.77, -1.2, 0.4, -0.2
    assert _sorted(sel) == [1, 3]


# ---- Uncertainty ---------------------------------------------------------------------------------


def test_uncertainty_scores_keep_most_uncertain_in_both_modes():
    labels = np.array([0, 0, 0, 1, 1, 1])
    final = np.array(
        [
            [5.0, 0.0, 0.0],  # confident
            [1.0, 1.0, 1.0],  # uniform: highest entropy, zero margin
            [2.0, 1.9, -3.0],  # small margin, lower entropy than uniform
            [0.0, 6.0, 0.0],  # confident
            [0.2, 1.3, 0.0],  # low max logit, large margin
            [9.0, 8.8, 0.0],  # small margin but large max logit
        ],
        np.float32,
    )
    logits = np.stack([np.zeros_like(final), final])  # the first checkpoint must be ignored
    sig = {"logits": logits, "checkpoint_epochs": np.array([1, 9])}
    view = make_selection_view(labels=labels, num_classes=2, budget=2, signals=sig)
    p = _softmax_np(final.astype(np.float64))
    ent = _select(_method("uncertainty-entropy"), view)
    np.testing.assert_allclose(ent.scores, -(p * np.log(p)).sum(1), rtol=1e-6)
    assert _sorted(ent) == [1, 4]  # per class: the highest entropy of each
    top2 = np.sort(p, axis=1)[:, -2:]
    margin = _select(_method("uncertainty-margin", class_balanced=False), view)
    np.testing.assert_allclose(margin.scores, -(top2[:, 1] - top2[:, 0]), atol=1e-9)
    # global: the two smallest margins (0 and 0.05), not the most certain as DeepCore's global path
    assert _sorted(margin) == [1, 2]
    assert _sorted(_select(_method("uncertainty-margin"), view)) == [1, 5]  # balanced: one per class
    lc = _select(_method("uncertainty-least-confidence", class_balanced=False), view)
    np.testing.assert_allclose(lc.scores, -final.max(1), rtol=1e-6)
    assert _sorted(lc) == [1, 4]  # max logits 1.0 and 1.3 are the lowest
    lcs = _select(_method("uncertainty-least-confidence", class_balanced=False, use_softmax=True), view)
    np.testing.assert_allclose(lcs.scores, 1 - p.max(1), rtol=1e-6)


# ---- CCS -----------------------------------------------------------------------------------------


def _aum_signals(aum):
    aum = np.asarray(aum, np.float64)
    return {"prob_true": (aum / 2 + 0.5)[None].astype(np.float32), "prob_other_max": (0.5 - aum / 2)[None].astype(np.float32)}


def test_ccs_never_selects_the_pruned_lowest_aum_fraction():
    rng = np.random.default_rng(0)
    aum = rng.uniform(-1, 1, 50)
    lowest = set(np.argsort(aum)[:15].tolist())
    for seed in range(4):
        view = make_selection_view(labels=np.arange(50) % 5, num_classes=5, budget=10, signals=_aum_signals(aum), seed=seed)
        sel = _select(_method("ccs", beta=0.3), view)
        assert not lowest & set(sel.indices.tolist())
        assert sel.info["pruned"] == 15


def test_ccs_stratified_allocation_takes_sparse_strata_whole():
    high = [0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95, 1.0]  # strata 1..8 hold one each, stratum 9 two
    aum = np.concatenate([np.linspace(-0.9, -0.5, 30), np.linspace(0.0, 0.009, 60), high])
    view = make_selection_view(labels=np.zeros(100, int), num_classes=1, budget=20, signals=_aum_signals(aum))
    sel = _select(_method("ccs", beta=0.3, bins=10), view)
    chosen = set(sel.indices.tolist())
    assert set(range(90, 100)) <= chosen  # the ten sparse high-AUM samples are all taken
    assert len(chosen & set(range(30, 90))) == 10  # the dense stratum gives the rest
    assert not chosen & set(range(30))


def test_ccs_helpers_and_prune_cap():
    from coreset_bench.plugins.selection.ccs import allocate_budget, equal_width_strata

    assert allocate_budget(10, np.array([3, 3, 3, 3])).sum() == 10
    assert allocate_budget(5, np.array([0, 1, 10, 2])).tolist() == [0, 1, 2, 2]
    assert equal_width_strata(np.array([0.0, 0.5, 1.0]), 2).tolist() == [0, 1, 1]
    assert equal_width_strata(np.array([2.0, 2.0]), 5).tolist() == [0, 0]
    aum = np.arange(20, dtype=float) / 20
    view = make_selection_view(labels=np.zeros(20, int), num_classes=1, budget=15, signals=_aum_signals(aum))
    sel = _select(_method("ccs", beta=0.9), view)
    assert sel.info["pruned"] == 5 and _sorted(sel) == list(range(5, 20))


# kept fraction -> CCS beta (paper-anchored: 0.3 at >= 90 % pruning, 0.2 at 80 %, 0.1 at 70 %, 0 below)
CCS_AUTO = [(0.01, 0.3), (0.05, 0.3), (0.1, 0.3), (0.2, 0.2), (0.3, 0.1), (0.5, 0.0), (0.7, 0.0)]


@pytest.mark.parametrize("fraction,beta", CCS_AUTO)
def test_ccs_auto_beta_follows_the_budget(fraction, beta):
    """The default beta is the hard-cutoff rate for the cell's budget: the lowest-AUM
    floor(beta N) samples are pruned, and info says which beta was used."""
    n = 200
    aum = np.random.default_rng(3).uniform(-1, 1, n)
    budget = int(round(fraction * n))
    view = make_selection_view(labels=np.arange(n) % 4, num_classes=4, budget=budget, signals=_aum_signals(aum))
    assert view.fraction == pytest.approx(fraction)
    ccs = _method("ccs")
    assert ccs.params["beta"] == "auto"
    sel = _select(ccs, view)
    m = int(np.floor(beta * n))
    assert sel.info["beta"] == beta and sel.info["pruned"] == m
    assert not set(np.argsort(aum)[:m].tolist()) & set(sel.indices.tolist())


def test_ccs_beta_number_overrides_auto_and_bad_values_are_named():
    aum = np.linspace(-1, 1, 40)
    view = make_selection_view(labels=np.zeros(40, int), num_classes=1, budget=4, signals=_aum_signals(aum))
    sel = _select(_method("ccs", beta="0.25"), view)  # a CLI --param arrives as text
    assert sel.info["beta"] == 0.25 and sel.info["pruned"] == 10
    for bad in ("high", "1.5", -0.1):
        with pytest.raises(ValueError, match=r"ccs: beta must be 'auto' or a number in \[0, 1\)"):
            _method("ccs", beta=bad).select(view)


# ---- Moderate ------------------------------------------------------------------------------------


def test_moderate_keeps_the_band_around_the_median_distance():
    feats = np.array([0.0, 1, 3, 6, 10, 15, 21])[:, None]  # median 6: distances 6 5 3 0 4 9 15
    emb = np.stack([np.zeros_like(feats), feats]).astype(np.float32)
    sig = {"embeddings": emb, "checkpoint_epochs": np.array([1, 2])}
    view = make_selection_view(labels=np.zeros(7, int), num_classes=1, budget=3, signals=sig)
    sel = _select(_method("moderate"), view)
    np.testing.assert_allclose(sel.scores, [6, 5, 3, 0, 4, 9, 15])
    assert _sorted(sel) == [0, 1, 4]  # ranks 2..4 of (3, 2, 4, 1, 0, 5, 6)


def test_moderate_uses_per_class_coordinate_wise_median():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [9.0, 9.0]])  # coordinate-wise median (0.5, 1.0)
    feats = np.concatenate([a, a + 100.0])
    emb = feats[None].astype(np.float32)
    sig = {"embeddings": emb, "checkpoint_epochs": np.array([3])}
    view = make_selection_view(labels=np.array([0] * 4 + [1] * 4), num_classes=2, budget=4, signals=sig)
    sel = _select(_method("moderate"), view)
    d = np.linalg.norm(a - np.array([0.5, 1.0]), axis=1)
    np.testing.assert_allclose(sel.scores, np.concatenate([d, d]), rtol=1e-6)
    # six tied distances (indices 0 1 2 4 5 6) then the outliers 3 and 7: ranks 2..5 are 2 4 5 6
    assert _sorted(sel) == [2, 4, 5, 6]


# ---- D2 pruning ----------------------------------------------------------------------------------


def test_d2_knn_and_forward_message_passing():
    from coreset_bench.plugins.selection.d2_pruning import forward_message_passing, knn_graph

    x = np.array([[0.0], [1.0], [3.0], [7.0]])
    d, nb = knn_graph(x, 2, chunk_elems=4)  # one row per chunk
    assert nb.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    np.testing.assert_allclose(d, [[1, 3], [1, 2], [2, 3], [4, 6]])
    s = np.array([1.0, 2.0, 3.0, 4.0])
    expected = s + np.array([np.exp(-1) * 2 + np.exp(-3) * 3, np.exp(-1) * 1 + np.exp(-2) * 3, np.exp(-2) * 2 + np.exp(-3) * 1, np.exp(-4) * 3 + np.exp(-6) * 2])
    np.testing.assert_allclose(forward_message_passing(s, d, nb), expected)


def test_d2_reverse_message_passing_spreads_picks_over_clusters():
    # cluster A (hard) and cluster B (easier), far apart; plain top-2 difficulty would take two from A
    feats = np.array([[0.0], [0.01], [0.02], [100.0], [100.01], [100.02]])
    emb = feats[None].astype(np.float32)
    tc = np.zeros((11, 6), dtype=bool)
    tc[0::2, :] = True  # alternating: 5 forgetting events each ...
    tc[:, 3:] = np.array([True] * 6 + [False] * 5)[:, None]  # ... but cluster B forgets once
    sig = {"train_correct": tc, "embeddings": emb, "checkpoint_epochs": np.array([11])}
    view = make_selection_view(labels=np.zeros(6, int), num_classes=1, budget=2, signals=sig)
    sel = _select(_method("d2-pruning", k=2), view)
    chosen = _sorted(sel)
    assert len(set(chosen) & {0, 1, 2}) == 1 and len(set(chosen) & {3, 4, 5}) == 1


def test_d2_class_budgets_and_mis_ratio_prunes_lowest_aum():
    rng = np.random.default_rng(1)
    labels = np.array([0] * 12 + [1] * 8)
    aum = rng.uniform(-1, 1, 20)
    sig = {**_aum_signals(aum), "embeddings": rng.standard_normal((1, 20, 4)).astype(np.float32), "checkpoint_epochs": np.array([5])}
    view = make_selection_view(labels=labels, num_classes=2, budget=10, signals=sig)
    sel = _select(_method("d2-pruning", score="aum", mis_ratio=0.25), view)
    assert not set(np.argsort(aum)[:5].tolist()) & set(sel.indices.tolist())
    kept_labels = labels[np.sort(np.argsort(aum)[5:])]
    assert np.bincount(labels[sel.indices], minlength=2).tolist() == class_budgets(kept_labels, 10, 2).tolist()


# kept fraction -> D2 mislabel ratio (0.4 at >= 90 % pruning as the README's CIFAR-10 command, 0.3, 0.2, 0)
D2_AUTO = [(0.05, 0.4), (0.1, 0.4), (0.2, 0.3), (0.3, 0.2), (0.5, 0.0), (0.7, 0.0)]


@pytest.mark.parametrize("fraction,ratio", D2_AUTO)
def test_d2_auto_mis_ratio_follows_the_budget(fraction, ratio):
    n = 100
    rng = np.random.default_rng(4)
    aum = rng.uniform(-1, 1, n)
    sig = {**_aum_signals(aum), "embeddings": rng.standard_normal((1, n, 3)).astype(np.float32), "checkpoint_epochs": np.array([5])}
    view = make_selection_view(labels=np.arange(n) % 2, num_classes=2, budget=int(round(fraction * n)), signals=sig)
    d2 = _method("d2-pruning", score="aum")
    assert d2.params["mis_ratio"] == "auto"
    sel = _select(d2, view)
    m = int(np.floor(ratio * n))
    assert sel.info["mis_ratio"] == ratio and sel.info["pruned"] == m
    assert not set(np.argsort(aum)[:m].tolist()) & set(sel.indices.tolist())
    with pytest.raises(ValueError, match="d2-pruning: mis_ratio must be 'auto' or a number"):
        _method("d2-pruning", mis_ratio="lots").select(view)


# ---- TDDS ----------------------------------------------------------------------------------------


def _tdds_reference(probs, window, decay):
    """Loop-for-loop port of the original ``importance_evaluation.generate`` (indexes = identity)."""
    t_len = probs.shape[0]
    moving = []
    for k in range(t_len - window + 1):
        win = probs[k : k + window]
        kd = []
        for j in range(window - 1):
            log = np.log(win[j + 1] + 1e-8) - np.log(win[j] + 1e-8)
            kd.append(np.abs(win[j + 1] * log).sum(axis=1))
        kd = np.array(kd)
        avg = kd.sum(0) / (window - 1)
        diff = np.array([kd[ii] - avg for ii in range(window - 1)])
        moving.append(np.linalg.norm(diff, axis=0) * decay * (1 - decay) ** (t_len - window - k))
    return np.sum(np.array(moving), 0)


def test_tdds_matches_the_original_computation_and_keeps_highest():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 8, 3)).astype(np.float32)
    logits[:, 0] = logits[0, 0]  # a sample whose prediction never changes: score 0
    sig = {"logits": logits, "checkpoint_epochs": np.arange(1, 7)}
    view = make_selection_view(labels=np.arange(8) % 3, num_classes=3, budget=3, signals=sig)
    sel = _select(_method("tdds", window=3, beta=0.9, epochs=30), view)
    expected = _tdds_reference(_softmax_np(logits.astype(np.float64)), 3, 0.9)
    np.testing.assert_allclose(sel.scores, expected, rtol=1e-6, atol=1e-12)
    assert sel.scores[0] == pytest.approx(0.0, abs=1e-12)
    assert _sorted(sel) == sorted(np.argsort(-expected, kind="stable")[:3].tolist())
    # only the checkpoints within `epochs` (1..4) are used
    short = _select(_method("tdds", window=3, epochs=4), view)
    np.testing.assert_allclose(short.scores, _tdds_reference(_softmax_np(logits[:4].astype(np.float64)), 3, 0.9), rtol=1e-6)
    # a window longer than the trajectory shrinks to it
    whole = _select(_method("tdds", window=10), view)
    assert whole.info["window"] == 6
    np.testing.assert_allclose(whole.scores, _tdds_reference(_softmax_np(logits.astype(np.float64)), 6, 0.9), rtol=1e-6)
