"""The batched APGD-CE + APGD-T (``coreset_bench.apgd``) against pyautoattack, and its plumbing.

Agreement (issue 41): on the same model and points the per-point verdicts of the batched attack and
of pyautoattack's APGD-CE + APGD-T agree on >= 99.5 % of the points and the robust accuracies
differ by at most 0.5 points. Both are seeded, but they draw their random starts differently, so
the check is the threshold, not bit-identity. The fast cases shorten both attacks to the same
number of iterations (the checkpoint schedule scales with it); the slow case runs the standard 100.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from coreset_bench import models as M
from coreset_bench.apgd import autoattack_apgd, autoattack_apgd_models, fold_batchnorm, stackable
from coreset_bench.kinds import ThreatModel
from coreset_bench.plugins.attack.autoattack import AutoAttackMethod
from coreset_bench.robust import evaluate_robustness


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()
    return model.eval()


def _digits(steps: int = 80, seed: int = 0):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    torch.manual_seed(seed)
    model = M.build("cnn-small", (1, 8, 8), 10, [0.5], [0.5], seed)
    _train(model, x[:1200], y[:1200], steps, seed)
    return model, x[1200:], y[1200:]


def _cifar_shaped(steps: int = 40, n: int = 600, seed: int = 0):
    """Random CIFAR-shaped images with a learnable class signal (a colour pattern per class)."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.rand(10, 3, 4, 4, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    pat = nn.functional.interpolate(patterns[y], size=32, mode="nearest")
    x = (0.5 * torch.rand(n, 3, 32, 32, generator=g) + 0.5 * pat).clamp(0, 1)
    model = M.build("cnn-small", (3, 32, 32), 10, [0.5] * 3, [0.25] * 3, seed)
    _train(model, x[:400], y[:400], steps, seed)
    return model, x[400:], y[400:]


def _pyautoattack(model, x, y, eps, n_iter, targets, seed):
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    aa = AutoAttack(model, device="cpu", eps=eps, norm="Linf", seed=seed, version="standard")
    aa.verbose = False
    aa.apgd = APGDAttack(model, n_restarts=1, n_iter=n_iter, eps=eps, norm="Linf", seed=seed, device="cpu")
    aa.apgd_targeted = APGDAttack_targeted(model, n_restarts=1, n_iter=n_iter, eps=eps, norm="Linf", seed=seed, device="cpu", n_target_classes=targets)
    aa.attacks_to_run = ["apgd-ce", "apgd-t"]
    state = torch.get_rng_state()
    x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=len(x))
    torch.set_rng_state(state)
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def _agreement(model, x, y, eps, n_iter, targets, seed=0):
    x_adv, robust = autoattack_apgd(model, x, y, eps=eps, n_iter=n_iter, n_target_classes=targets, seed=seed)
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1) == y, robust)  # the verdicts are the returned inputs'
    assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    reference = _pyautoattack(model, x, y, eps, n_iter, targets, seed)
    clean = (model(x).argmax(1) == y).float().mean().item()
    return (robust == reference).float().mean().item(), robust.float().mean().item(), reference.float().mean().item(), clean


def test_agrees_with_pyautoattack_on_digits_cnn_small():
    model, x, y = _digits()
    agree, ours, ref, clean = _agreement(model, x[:300], y[:300], eps=0.075, n_iter=20, targets=9)
    # a case that separates the attacks: some points broken, some not
    assert clean > 0.8 and 0.1 < ref < clean - 0.1
    assert agree >= 0.995, (agree, ours, ref)
    assert abs(ours - ref) <= 0.005, (ours, ref)


def test_agrees_with_pyautoattack_on_a_cifar_shaped_cnn_small():
    model, x, y = _cifar_shaped()
    agree, ours, ref, clean = _agreement(model, x[:150], y[:150], eps=4 / 255, n_iter=10, targets=3)
    assert clean > 0.5 and 0.05 < ref < clean - 0.05
    assert agree >= 0.995, (agree, ours, ref)
    assert abs(ours - ref) <= 0.005, (ours, ref)


@pytest.mark.slow
def test_agrees_with_pyautoattack_standard_iterations_digits():
    model, x, y = _digits(steps=200)
    agree, ours, ref, clean = _agreement(model, x[:400], y[:400], eps=0.075, n_iter=100, targets=9)
    assert 0.1 < ref < clean - 0.1
    assert agree >= 0.995, (agree, ours, ref)
    assert abs(ours - ref) <= 0.005, (ours, ref)


def test_seeded_pruning_and_stacking_do_not_change_the_verdicts():
    m1, x, y = _digits(steps=60, seed=0)
    m2, _, _ = _digits(steps=60, seed=1)
    x, y = x[:120], y[:120]
    kw = dict(eps=0.075, n_iter=10, n_target_classes=4, seed=3)
    a1, r1 = autoattack_apgd(m1, x, y, **kw)
    a1b, r1b = autoattack_apgd(m1, x, y, **kw)
    assert torch.equal(a1, a1b) and torch.equal(r1, r1b)  # same seed, same result
    _, r1n = autoattack_apgd(m1, x, y, prune=False, **kw)
    assert torch.equal(r1, r1n)  # stopping a broken point's runs does not change a verdict
    assert stackable([m1, m2])
    _, r_loop = autoattack_apgd_models([m1, m2], x, y, stack=False, **kw)
    _, r_stack = autoattack_apgd_models([m1, m2], x, y, stack=True, **kw)
    assert torch.equal(r_loop[0], r1)
    assert (r_stack == r_loop).float().mean() >= 0.99  # vmapped convolutions round differently
    assert 0 < int(r1.sum()) < int((m1(x).argmax(1) == y).sum())


def test_targets_in_sequence_and_batch_agree_and_the_sequence_saves_passes():
    """pyautoattack's order (a target after another, on the points still robust) and one batch of
    all targets are the same algorithm with other random draws; the sequence skips the later
    targets of points an earlier target broke, so it makes fewer passes where APGD-T breaks some
    (here about 1 % fewer: APGD-T breaks few of the points APGD-CE leaves)."""
    model, x, y = _digits()
    x, y = x[:150], y[:150]
    passes = [0]
    handle = model.register_forward_pre_hook(lambda mod, inp: passes.__setitem__(0, passes[0] + inp[0].shape[0]))
    kw = dict(eps=0.075, n_iter=20, n_target_classes=9, seed=0)
    runs = {}
    for order in ("sequence", "batch"):
        passes[0] = 0
        runs[order] = autoattack_apgd(model, x, y, targets_in=order, **kw)[1], passes[0]
    handle.remove()
    (r_seq, p_seq), (r_batch, p_batch) = runs["sequence"], runs["batch"]
    assert 0 < int(r_seq.sum()) < int((model(x).argmax(1) == y).sum())
    assert (r_seq == r_batch).float().mean() >= 0.98
    assert p_seq < p_batch, (p_seq, p_batch)
    _, r_auto = autoattack_apgd(model, x, y, **kw)  # on the CPU: the sequence
    assert torch.equal(r_auto, r_seq)


def test_channels_last_changes_only_the_rounding():
    model, x, y = _cifar_shaped()
    x, y = x[:100], y[:100]
    kw = dict(eps=4 / 255, n_iter=10, n_target_classes=3, seed=0)
    _, r_cl = autoattack_apgd(model, x, y, **kw)  # "auto": channels-last for 32x32 on the CPU
    _, r_plain = autoattack_apgd(model, x, y, channels_last=False, **kw)
    assert 0 < int(r_cl.sum()) < int((model(x).argmax(1) == y).sum())
    assert (r_cl == r_plain).float().mean() >= 0.98
    assert next(model.parameters()).is_contiguous()  # the given model is untouched


def test_bf16_search_counts_only_float32_verdicts():
    """``search_precision="bf16"``: whatever the reduced-precision search finds, a point is broken
    only if the float32 model misclassifies the returned input."""
    model, x, y = _digits(steps=60)
    x, y = x[:100], y[:100]
    x_adv, robust = autoattack_apgd(model, x, y, eps=0.075, n_iter=10, n_target_classes=4, seed=0, search_precision="bf16")
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1) == y, robust)
    assert 0 < int(robust.sum()) < 100
    assert (x_adv - x).abs().max() <= 0.075 + 1e-6


def test_fold_batchnorm_is_the_same_function():
    model, x, _ = _digits(steps=20)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    with torch.no_grad():
        assert torch.allclose(folded(x[:50]), model(x[:50]), atol=1e-4)


def test_bad_input_is_named():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(2, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="norms linf and l2"):
        autoattack_apgd(model, x, y, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="not fab-t"):
        autoattack_apgd(model, x, y, eps=0.1, attacks=("apgd-ce", "fab-t"))
    with pytest.raises(ValueError, match="targets_in must be auto, sequence or batch, not 'serial'"):
        autoattack_apgd(model, x, y, eps=0.1, targets_in="serial")
    with pytest.raises(ValueError, match="search_precision must be fp32 or bf16, not 'fp16'"):
        autoattack_apgd(model, x, y, eps=0.1, search_precision="fp16")
    with torch.no_grad():
        y = model(x).argmax(1)
    with pytest.raises(ValueError, match="at least 4 classes"):
        autoattack_apgd(model, x, y, eps=1e-4, attacks=("apgd-t",))


def test_l2_and_other_boxes_stay_in_the_threat_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 6))
    x = torch.rand(40, 1, 4, 4) * 2 - 1
    with torch.no_grad():
        y = model(x).argmax(1)
    x_adv, robust = autoattack_apgd(model, x, y, eps=0.5, norm="l2", lower=-1.0, upper=1.0, n_iter=10)
    assert (x_adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
    assert x_adv.min() >= -1 and x_adv.max() <= 1
    assert not robust.all()


def test_plugin_batched_backend_in_the_harness(monkeypatch):
    """``backend="batched"``: the harness's checks pass, the global RNG is untouched, and the
    components after APGD go through pyautoattack on the points still robust only."""
    import pyautoattack

    model, x, y = _digits(steps=60)
    x, y = x[:80], y[:80]
    threat = ThreatModel(eps=0.075, step_size=0.02, steps=5)
    state = torch.get_rng_state()
    res = evaluate_robustness(model, x, y, {"autoattack": AutoAttackMethod(attacks="apgd-ce", backend="batched")}, threat, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert res["check_ball_ok"] == 1.0 and res["autoattack_acc"] < res["clean_acc"]
    seen = []

    def spy(self, xs, ys, **kw):
        seen.append((list(self.attacks_to_run), len(xs)))
        return xs.clone(), ys.clone()

    monkeypatch.setattr(pyautoattack.AutoAttack, "run_standard_evaluation", spy)
    res2 = evaluate_robustness(model, x, y, {"autoattack": AutoAttackMethod(attacks="apgd-ce,square", backend="batched")}, threat, seed=0)
    assert seen == [(["square"], round(res["autoattack_acc"] * len(x)))]
    assert res2["autoattack_acc"] == res["autoattack_acc"]
    with pytest.raises(ValueError, match="backend must be"):
        AutoAttackMethod(attacks="apgd-ce", backend="fast").perturb(model, x, y, threat, torch.Generator())
