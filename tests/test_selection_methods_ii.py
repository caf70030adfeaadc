"""Geometric, gradient and submodular selection methods: herding, k-center, contextual
diversity, CAL, DeepFool, CRAIG, GradMatch, GLISTER and the submodular-* methods.

Known-answer tests on small synthetic embeddings, the conformance kit on every method, and
registration through each module's hook.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from coreset_bench.kinds import SelectionMethod
from coreset_bench.plugins.selection import _greedy
from coreset_bench.plugins.selection._lastlayer import last_layer_grads
from coreset_bench.testing import check_selection_method, make_selection_view, validate_selection

MODULES = {
    "herding": ["herding"],
    "kcenter": ["kcenter"],
    "contextual_diversity": ["contextual-diversity"],
    "cal": ["cal"],
    "deepfool": ["deepfool"],
    "craig": ["craig"],
    "gradmatch": ["gradmatch"],
    "glister": ["glister"],
    "submodular": ["submodular-graphcut", "submodular-facility-location", "submodular-logdet"],
}


def _methods() -> list[SelectionMethod]:
    out = []
    for mod in MODULES:
        reg: list = []
        importlib.import_module(f"coreset_bench.plugins.selection.{mod}").register_methods(reg.append)
        out.extend(reg)
    return out


METHODS = {m.name: m for m in _methods()}


def _view(emb: np.ndarray, labels: np.ndarray, budget: int, logits: np.ndarray | None = None, **extra):
    """A view whose final-checkpoint embeddings (and logits) are the given arrays."""
    sig = {"embeddings": np.stack([emb, emb]).astype(np.float32)}
    if logits is not None:
        sig["logits"] = np.stack([logits, logits]).astype(np.float32)
    n_val = 30
    sig.setdefault("val_embeddings", np.random.default_rng(99).standard_normal((2, n_val, emb.shape[1])).astype(np.float32))
    sig.update(extra)
    return make_selection_view(n_val=n_val, labels=labels, budget=budget, signals=sig, num_classes=int(labels.max()) + 1)


def _sym_kl_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise 1/2 KL(a||b) + 1/2 KL(b||a) written out with explicit loops over pairs."""
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = 0.5 * np.sum(a[i] * np.log(a[i] / b[j])) + 0.5 * np.sum(b[j] * np.log(b[j] / a[i]))
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


# --------------------------------------------------------------------------------------------
# registration and conformance
# --------------------------------------------------------------------------------------------


def test_each_module_registers_its_methods():
    for mod, names in MODULES.items():
        reg: list = []
        importlib.import_module(f"coreset_bench.plugins.selection.{mod}").register_methods(reg.append)
        assert [m.name for m in reg] == names
        for m in reg:
            assert isinstance(m, SelectionMethod) and m.kind == "selection"
            assert m.summary and m.citation and m.version
            assert m.params["class_balanced"] is True
            assert m.signals
    assert METHODS["craig"].weighted and METHODS["gradmatch"].weighted
    assert METHODS["gradmatch"].exact_budget is False
    assert all(m.exact_budget for n, m in METHODS.items() if n != "gradmatch")
    assert METHODS["deepfool"].params["max_iter"] == 50
    assert METHODS["cal"].params["keep"] == "high"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_conformance(name):
    sel = check_selection_method(METHODS[name])
    if METHODS[name].weighted:
        assert sel.weights is not None


@pytest.mark.parametrize("name", ["herding", "kcenter", "contextual-diversity", "cal", "craig", "gradmatch", "glister", "submodular-logdet"])
def test_conformance_global(name):
    check_selection_method(METHODS[name].with_params(class_balanced="false"))


def test_unknown_choice_is_rejected():
    view = make_selection_view()
    with pytest.raises(ValueError, match="keep"):
        METHODS["cal"].with_params(keep="middle").select(view)
    with pytest.raises(ValueError, match="greedy"):
        METHODS["craig"].with_params(greedy="fast").select(view)


def test_class_budgets_are_respected():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    rng = np.random.default_rng(0)
    view = _view(rng.standard_normal((60, 5)), labels, budget=12)
    for name in ["herding", "kcenter", "contextual-diversity", "cal", "craig", "glister", "submodular-graphcut"]:
        sel = validate_selection(METHODS[name].select(view), view, METHODS[name])
        assert np.bincount(labels[sel.indices], minlength=3).tolist() == view.class_budgets().tolist() == [2, 4, 6]


# --------------------------------------------------------------------------------------------
# pairwise helpers
# --------------------------------------------------------------------------------------------


def test_pairwise_helpers_match_direct_formulas(monkeypatch):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((7, 4)), rng.standard_normal((5, 4))
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    direct = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    assert np.allclose(_greedy.euclidean(ta, tb).numpy(), direct, atol=1e-9)
    cos = (a @ b.T) / np.linalg.norm(a, axis=1)[:, None] / np.linalg.norm(b, axis=1)[None, :]
    assert np.allclose(_greedy.cosine01(ta, tb).numpy(), 0.5 + 0.5 * cos)
    # kNN excludes the point itself and is unchanged by tiny blocks
    x = torch.tensor(rng.standard_normal((30, 3)))
    full = _greedy.knn(x, 4)
    monkeypatch.setattr(_greedy, "CHUNK_ELEMS", 7)
    assert torch.equal(_greedy.knn(x, 4), full)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    d.fill_diagonal_(float("inf"))
    assert torch.equal(full, torch.argsort(d, dim=1, stable=True)[:, :4])


def test_symmetric_kl_is_the_symmetrized_divergence():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4), 6)
    q = rng.dirichlet(np.ones(4), 3)
    got = _greedy.sym_kl(torch.tensor(p), torch.tensor(q)).numpy()
    assert np.allclose(got, _sym_kl_np(p, q), atol=1e-10)
    sq = _greedy.sym_kl(torch.tensor(p), torch.tensor(p)).numpy()
    assert np.allclose(sq, sq.T, atol=1e-12) and np.allclose(np.diag(sq), 0, atol=1e-12)
    assert np.allclose(_greedy.sym_kl_to(torch.tensor(p), torch.tensor(q[0])).numpy(), _sym_kl_np(p, q[:1])[:, 0])
    # it is not the one-sided KL
    one_sided = np.sum(p[0] * np.log(p[0] / q[0]))
    assert not np.isclose(got[0, 0], one_sided)


# --------------------------------------------------------------------------------------------
# k-center and contextual diversity
# --------------------------------------------------------------------------------------------


def test_kcenter_picks_farthest_points_in_order_on_a_line():
    pts = torch.tensor([[0.0], [1.0], [3.0], [7.0], [15.0]], dtype=torch.float64)
    order = _greedy.kcenter_greedy(5, 5, lambda j: _greedy.euclidean(pts, pts[j : j + 1])[:, 0], first=0)
    assert order == [0, 4, 3, 2, 1]
    order = _greedy.kcenter_greedy(5, 3, lambda j: _greedy.euclidean(pts, pts[j : j + 1])[:, 0], first=2)
    # from 3: farthest is 15 (distance 12); then 7 (min(4, 8) = 4) beats 0 (3) and 1 (2)
    assert order == [2, 4, 3]


def _maxmin_holds(points_dist: np.ndarray, order: list[int]) -> bool:
    """Each pick after the first maximizes the distance to its nearest earlier pick."""
    n = points_dist.shape[0]
    for t in range(1, len(order)):
        mins = points_dist[:, order[:t]].min(1)
        mins[order[:t]] = -np.inf
        if not np.isclose(mins[order[t]], mins.max(), rtol=1e-6, atol=1e-9):
            return False
    return n > 0


def test_kcenter_method_is_max_min_within_each_class():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 25)
    emb = rng.standard_normal((50, 3)) * np.array([5.0, 1.0, 0.2])
    view = _view(emb, labels, budget=12)
    sel = METHODS["kcenter"].select(view)
    idx = np.asarray(sel.indices)
    for c in (0, 1):
        members = np.flatnonzero(labels == c)
        picks = idx[labels[idx] == c]
        pos = [int(np.flatnonzero(members == i)[0]) for i in picks]
        e = emb[members]
        dist = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
        assert len(pos) == 6 and _maxmin_holds(dist, pos)


def test_contextual_diversity_is_kcenter_under_symmetric_kl():
    rng = np.random.default_rng(4)
    labels = np.zeros(30, dtype=np.int64)
    logits = rng.standard_normal((30, 4)) * 3.0
    view = _view(rng.standard_normal((30, 2)), labels, budget=8, logits=logits)
    order = list(METHODS["contextual-diversity"].select(view).indices)
    p = _softmax(logits.astype(np.float32).astype(np.float64))
    kl = _sym_kl_np(p, p)
    assert _maxmin_holds(kl, order)
    # the data tell the distances apart: Euclidean k-center from the same start differs
    eu = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    pe = torch.tensor(p)
    eu_order = _greedy.kcenter_greedy(30, 8, lambda j: _greedy.euclidean(pe, pe[j : j + 1])[:, 0], order[0])
    assert eu_order != order and _maxmin_holds(eu, eu_order)


# --------------------------------------------------------------------------------------------
# herding
# --------------------------------------------------------------------------------------------


def test_herding_known_order_on_a_line():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    # mean 3.2: closest is 3; then target 6.4 - 3 = 3.4 -> 2; then 9.6 - 5 = 4.6 -> 1; then 12.8 - 6 = 6.8 -> 10
    assert _greedy.herding(x, 4) == [3, 2, 1, 4]
    assert _greedy.herding(x, 1, pick="farthest") == [4]


def test_herding_first_pick_is_closest_to_class_mean_and_mean_is_tracked():
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], 100)
    emb = rng.standard_normal((200, 4)) + labels[:, None] * 3.0
    view = _view(emb, labels, budget=20)
    idx = np.asarray(METHODS["herding"].select(view).indices)
    for c in (0, 1):
        members = np.flatnonzero(labels == c)
        mu = emb[members].mean(0)
        picks = idx[labels[idx] == c]
        assert picks[0] == members[np.argmin(np.linalg.norm(emb[members] - mu, axis=1))]
        err = np.linalg.norm(emb[picks].mean(0) - mu)
        random_errs = [np.linalg.norm(emb[rng.choice(members, 10, replace=False)].mean(0) - mu) for _ in range(200)]
        assert err < np.quantile(random_errs, 0.02)
        # the running-mean error at the end is far below the first pick's
        running = np.cumsum(emb[picks], 0) / np.arange(1, 11)[:, None]
        errs = np.linalg.norm(running - mu, axis=1)
        assert errs[-1] <= errs[:3].max()


# --------------------------------------------------------------------------------------------
# greedy maximization and set functions
# --------------------------------------------------------------------------------------------


def _fl_value(sim: np.ndarray, picks: list[int]) -> float:
    return float(np.maximum(sim[:, picks].max(1), 0).sum()) if picks else 0.0


def test_facility_location_greedy_is_monotone_and_lazy_equals_naive(monkeypatch):
    rng = np.random.default_rng(6)
    x = torch.tensor(rng.standard_normal((60, 5)))
    kernel = _greedy.Kernel(x, _greedy.cosine01)
    sim = kernel.full.numpy()
    fn = _greedy.FacilityLocation(kernel)
    values = [0.0]
    order: list[int] = []
    for _ in range(15):
        g = fn.gains_all().numpy()
        j = int(np.argmax(np.where(np.isin(np.arange(60), order), -np.inf, g)))
        # the gain is the true increase of the objective
        assert np.isclose(g[j], _fl_value(sim, order + [j]) - _fl_value(sim, order))
        order.append(j)
        fn.update(j)
        values.append(fn.value())
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))
    assert np.isclose(values[-1], _fl_value(sim, order))
    naive = _greedy.greedy_maximize(_greedy.FacilityLocation(_greedy.Kernel(x, _greedy.cosine01)), 15, lazy=False)
    lazy = _greedy.greedy_maximize(_greedy.FacilityLocation(_greedy.Kernel(x, _greedy.cosine01)), 15, lazy=True, batch=3)
    assert naive == lazy == order
    # the same picks when the kernel is not cached and blocks are tiny
    monkeypatch.setattr(_greedy, "CHUNK_ELEMS", 50)
    uncached = _greedy.greedy_maximize(_greedy.FacilityLocation(_greedy.Kernel(x, _greedy.cosine01, max_cache_elems=0)), 15)
    assert uncached == order


def test_graphcut_and_logdet_gains_match_their_objectives():
    rng = np.random.default_rng(7)
    x = torch.tensor(rng.standard_normal((25, 6)))
    sim = _greedy.cosine01(x, x).numpy()
    lam = 1.0

    def graphcut(s):
        return lam * sim[:, s].sum() - sim[np.ix_(s, s)].sum() if s else 0.0

    gc = _greedy.GraphCut(_greedy.Kernel(x, _greedy.cosine01), lam=lam)
    order = _greedy.greedy_maximize(gc, 6, lazy=False)
    assert np.isclose(gc.value(), graphcut(order))
    for t in range(6):  # each pick had the best true marginal gain
        gains = [graphcut(order[:t] + [j]) - graphcut(order[:t]) for j in range(25) if j not in order[:t]]
        assert np.isclose(graphcut(order[: t + 1]) - graphcut(order[:t]), max(gains))

    ld = _greedy.LogDeterminant(_greedy.Kernel(x, _greedy.cosine01), 6, ridge=1e-6)
    order = _greedy.greedy_maximize(ld, 6, lazy=False)

    def logdet(s):
        return np.linalg.slogdet(sim[np.ix_(s, s)] + 1e-6 * np.eye(len(s)))[1] if s else 0.0

    assert np.isclose(ld.value(), logdet(order), atol=1e-6)
    for t in range(1, 6):
        gains = [logdet(order[:t] + [j]) for j in range(25) if j not in order[:t]]
        assert np.isclose(logdet(order[: t + 1]), max(gains), atol=1e-6)
    lazy = _greedy.greedy_maximize(_greedy.LogDeterminant(_greedy.Kernel(x, _greedy.cosine01), 6), 6, lazy=True)
    assert lazy == order
    # the kernel recomputed block by block (not cached) gives the same picks
    uncached = _greedy.Kernel(x, _greedy.cosine01, max_cache_elems=0)
    assert uncached.full is None
    assert _greedy.greedy_maximize(_greedy.LogDeterminant(uncached, 6), 6) == order
    gc_order = _greedy.greedy_maximize(_greedy.GraphCut(_greedy.Kernel(x, _greedy.cosine01), lam=lam), 6)
    assert _greedy.greedy_maximize(_greedy.GraphCut(uncached, lam=lam), 6) == gc_order


def test_submodular_methods_differ_and_cover_the_kernel():
    view = make_selection_view(n=80, num_classes=2, budget=10, seed=3)
    picks = {n: set(METHODS[n].select(view).indices.tolist()) for n in ("submodular-graphcut", "submodular-facility-location", "submodular-logdet")}
    assert len({frozenset(p) for p in picks.values()}) >= 2
    naive = METHODS["submodular-facility-location"].with_params(greedy="naive").select(view)
    assert set(naive.indices.tolist()) == picks["submodular-facility-location"]


# --------------------------------------------------------------------------------------------
# CRAIG
# --------------------------------------------------------------------------------------------


def test_craig_weights_are_cluster_sizes_summing_to_class_size():
    rng = np.random.default_rng(8)
    labels = np.repeat([0, 1], 30)
    # two gradient clusters per class, of sizes 20 and 10: embeddings around two centres
    centre = np.where((np.arange(60) % 30) < 20, 0.0, 6.0)
    emb = np.stack([centre, -centre], 1) + 0.05 * rng.standard_normal((60, 2))
    logits = np.zeros((60, 2))
    view = _view(emb, labels, budget=4, logits=logits)
    sel = validate_selection(METHODS["craig"].select(view), view, METHODS["craig"])
    for c in (0, 1):
        mask = labels[sel.indices] == c
        assert np.isclose(sel.weights[mask].sum(), 30)
        assert sorted(sel.weights[mask].tolist()) == [10.0, 20.0]
        # one pick per cluster
        assert sorted(centre[sel.indices[mask]].tolist()) == [0.0, 6.0]
    dc = METHODS["craig"].with_params(weights="deepcore").select(view)
    assert np.isclose(np.sum(dc.weights), 60 + 4)


def test_craig_weights_sum_to_class_sizes_on_random_view():
    view = make_selection_view(n=90, num_classes=3, budget=15, seed=2)
    sel = validate_selection(METHODS["craig"].select(view), view, METHODS["craig"])
    labels = view.labels
    for c in range(3):
        assert np.isclose(sel.weights[labels[sel.indices] == c].sum(), (labels == c).sum())
    assert np.all(sel.weights >= 1)
    lazy, naive = METHODS["craig"].select(view), METHODS["craig"].with_params(greedy="naive").select(view)
    assert np.array_equal(lazy.indices, naive.indices)


# --------------------------------------------------------------------------------------------
# GradMatch
# --------------------------------------------------------------------------------------------


def test_omp_recovers_an_exact_nonnegative_combination():
    from coreset_bench.plugins.selection.gradmatch import omp_nonneg

    rng = np.random.default_rng(9)
    g = torch.tensor(rng.standard_normal((40, 200)) * 10.0, dtype=torch.float32)
    support, coef = [3, 17, 25], np.array([2.0, 1.0, 0.5])
    b = (torch.tensor(coef, dtype=torch.float32)[:, None] * g[support]).sum(0)
    pos, w, rel = omp_nonneg(g, b, budget=8, lam=1.0)
    assert set(pos[w > 0].tolist()) == set(support)
    assert rel < 1e-3
    got = dict(zip(pos.tolist(), w.tolist()))
    assert np.allclose([got[i] for i in support], coef, rtol=1e-2)
    # the early stop ends the pursuit once the target is matched (fewer than the budget)
    pos0, w0, rel0 = omp_nonneg(g, b, budget=8, lam=0.0)
    assert sorted(pos0.tolist()) == sorted(support) and rel0 < 1e-5
    assert np.allclose(np.sort(w0), np.sort(coef), rtol=1e-4)


def test_gradmatch_method_weights_and_partial_budget():
    view = make_selection_view(n=120, num_classes=4, budget=40, seed=4)
    sel = validate_selection(METHODS["gradmatch"].select(view), view, METHODS["gradmatch"])
    assert 1 <= len(sel.indices) <= 40 and np.all(sel.weights > 0) and np.all(np.isfinite(sel.weights))
    # weights are on the class-total scale: the weighted coreset gradient approximates the
    # class's summed gradient, with the relative residual the method reports
    g = last_layer_grads(view.signals["embeddings"][-1], view.signals["logits"][-1], view.labels)
    labels = view.labels
    for c in range(4):
        m = labels[sel.indices] == c
        target = g[labels == c].sum(0)
        approx = (sel.weights[m, None] * g[sel.indices[m]]).sum(0)
        rel = np.linalg.norm(approx - target) / np.linalg.norm(target)
        assert rel < 0.5 and np.isclose(rel, sel.info["relative_residuals"][c], rtol=1e-4)
    val = METHODS["gradmatch"].with_params(target="val").select(view)
    validate_selection(val, view, METHODS["gradmatch"])


# --------------------------------------------------------------------------------------------
# GLISTER
# --------------------------------------------------------------------------------------------


def test_glister_update_is_one_sgd_step_of_the_head():
    from coreset_bench.plugins.selection.glister import GlisterGain

    torch.manual_seed(0)
    c, d = 3, 4
    head = torch.nn.Linear(d, c).double()
    e_tr, y_tr = torch.randn(10, d, dtype=torch.float64), torch.randint(0, c, (10,))
    e_va, y_va = torch.randn(6, d, dtype=torch.float64), torch.randint(0, c, (6,))

    def head_grad(w, b, e, y):
        w = w.clone().requires_grad_(True)
        b = b.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(e @ w.T + b, y)
        gw, gb = torch.autograd.grad(loss, (w, b))
        return torch.cat([gb, gw.flatten()])

    w0, b0 = head.weight.detach(), head.bias.detach()
    g = last_layer_grads(e_tr, e_tr @ w0.T + b0, y_tr).double()
    # the layout of last_layer_grads is [bias, weight (class-major)], as the head's own gradient
    assert torch.allclose(g[2], head_grad(w0, b0, e_tr[2:3], y_tr[2:3]), atol=1e-5)
    eta = 0.5
    fn = GlisterGain(g, e_va, e_va @ w0.T + b0, y_va, eta)
    assert torch.allclose(fn.val_grad, head_grad(w0, b0, e_va, y_va), atol=1e-5)
    first = int(torch.argmax(fn.gains_all()))
    assert first == int(torch.argmax(g @ head_grad(w0, b0, e_va, y_va)))
    fn.update(first)
    fn.update(5)
    step = (g[first] + g[5]) / 2
    w1, b1 = w0 - eta * step[c:].view(c, d), b0 - eta * step[:c]
    assert torch.allclose(fn.val_grad, head_grad(w1, b1, e_va, y_va), atol=1e-5)


def test_glister_validation_source_changes_the_target():
    view = make_selection_view(n=80, num_classes=2, budget=10, seed=5)
    a = METHODS["glister"].select(view)
    b = METHODS["glister"].with_params(validation="train").select(view)
    assert a.info["validation_per_group"] == ["val", "val"] and b.info["validation_per_group"] == ["train", "train"]
    assert set(a.indices.tolist()) != set(b.indices.tolist())


# --------------------------------------------------------------------------------------------
# CAL
# --------------------------------------------------------------------------------------------


def test_cal_scores_contrastive_points_high_and_keep_switches_direction():
    labels = np.zeros(12, dtype=np.int64)
    emb = np.arange(12, dtype=np.float64)[:, None]  # points on a line
    logits = np.tile([4.0, 0.0], (12, 1))
    logits[6] = [0.0, 4.0]  # predicted differently from its neighbours
    view = _view(emb, labels, budget=1, logits=logits)
    cal = METHODS["cal"].with_params(neighbors=2)
    sel = cal.select(view)
    assert sel.indices.tolist() == [6]
    p = _softmax(logits.astype(np.float32).astype(np.float64))
    assert np.isclose(sel.scores[6], _sym_kl_np(p[6:7], p[5:6])[0, 0], rtol=1e-5)
    assert np.isclose(sel.scores[5], 0.5 * _sym_kl_np(p[5:6], p[6:7])[0, 0], rtol=1e-5)
    assert sel.scores[0] == 0.0
    low = cal.with_params(keep="low").select(view)
    assert low.indices.tolist() == [0]  # score 0, lowest index


# --------------------------------------------------------------------------------------------
# DeepFool
# --------------------------------------------------------------------------------------------


class _Linear2(torch.nn.Module):
    """logit_1 - logit_0 = 2 (x_0 - 0.5): the boundary is the plane x_0 = 0.5."""

    def __init__(self, f: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(f, 2)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[0, 0], self.head.weight[1, 0] = -1.0, 1.0
            self.head.bias.copy_(torch.tensor([0.5, -0.5]))

    def embed(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.head(self.embed(x))


def test_deepfool_perturbation_is_the_distance_to_a_linear_boundary():
    from coreset_bench.plugins.selection.deepfool import deepfool_scores

    labels = np.repeat([0, 1], 10)
    view = make_selection_view(labels=labels, budget=4, image_shape=(1, 2, 2), signals={"proxy_model": lambda: _Linear2(4).eval()})
    x0 = view.x.flatten(1)[:, 0].numpy()
    dist = np.abs(x0 - 0.5)
    scores = deepfool_scores(_Linear2(4).eval(), view.x, overshoot=0.0, batch_size=7)
    assert np.allclose(scores, (dist + 1e-4) ** 2, rtol=1e-4, atol=1e-8)
    # with overshoot the perturbation flips the prediction and scales by (1 + overshoot)
    sc = deepfool_scores(_Linear2(4).eval(), view.x, overshoot=0.02)
    assert np.allclose(sc, (1.02 * (dist + 1e-4)) ** 2, rtol=1e-4)
    sel = METHODS["deepfool"].select(view)
    for c in (0, 1):
        members = np.flatnonzero(labels == c)
        expect = members[np.argsort(dist[members], kind="stable")[:2]]
        assert sorted(sel.indices[labels[sel.indices] == c].tolist()) == sorted(expect.tolist())
    assert np.allclose(sel.scores, sc, rtol=1e-5)


def test_deepfool_multiclass_perturbation_crosses_the_boundary():
    from coreset_bench.plugins.selection.deepfool import deepfool_scores

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)).eval()
    x = torch.rand(16, 6)
    s = deepfool_scores(model, x, max_iter=50, overshoot=0.02, batch_size=5)
    assert np.all(np.isfinite(s)) and np.all(s > 0)
    # a point pushed towards the boundary of its own prediction needs a smaller perturbation
    with torch.no_grad():
        k0 = model(x).argmax(1)
    x_req = x.clone().requires_grad_(True)
    logits = model(x_req)
    top2 = logits.topk(2, dim=1).indices[:, 1]
    margin = logits.gather(1, k0[:, None]) - logits.gather(1, top2[:, None])
    (grad,) = torch.autograd.grad(margin.sum(), x_req)
    closer = (x - 0.5 * margin.detach() * grad / grad.pow(2).sum(1, keepdim=True)).detach()
    with torch.no_grad():
        same = model(closer).argmax(1) == k0
    s2 = deepfool_scores(model, closer, max_iter=50, overshoot=0.02)
    assert same.any() and np.all(s2[same.numpy()] < s[same.numpy()])
