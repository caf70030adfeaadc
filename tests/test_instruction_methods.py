"""The text selection methods of the instruction track: TRIM and LESS formulas on hand-made
cases, planted cases, cost accounting, determinism and the kit's conformance check
(tracks-phase2.md §2.7, §2.9 4-7)."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch

from coreset_bench import registry
from coreset_bench.plugins.selection import less as LESSmod
from coreset_bench.plugins.selection import trim as T
from coreset_bench.plugins.selection.bm25 import bm25_scores
from coreset_bench.testing import check_text_selection_method, make_instruction_view

TEXT = ("trim", "less", "rds", "embed-sim", "bm25")


def test_hand_made_attention_gives_the_hand_computed_saliency():
    A = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [0, 0, 1.0]])
    Q, K, alpha = T.saliency(A, 3, mix=0.5)
    # Q: row 0 is 0 by definition; row 1 uniform over 2 -> 1 - log2/log2 = 0; row 2 one-hot -> 1
    assert Q.tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-6)
    # K_i = mean_{j>=i} (j+1) A[j,i]: [(1+1+0)/3, (1+0)/2, 3/1] = [2/3, 1/2, 3], max-scaled
    assert K.tolist() == pytest.approx([2 / 9, 1 / 6, 1.0], abs=1e-6)
    assert alpha.tolist() == pytest.approx([1 / 9, 1 / 12, 1.0], abs=1e-6)


def test_uniform_alpha_fingerprint_is_the_normalized_mean_and_a_copy_scores_one():
    torch.manual_seed(0)
    h = torch.randn(1, 5, 8)
    ids = torch.tensor([[10, 11, 10, 12, 13]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    fp, has = T.fingerprints(h, ids, torch.ones(1, 5), mask, 20)
    hn = torch.nn.functional.normalize(h[0], dim=-1)
    want = torch.nn.functional.normalize(hn[0] + hn[2], dim=0)
    assert torch.allclose(fp[10], want, atol=1e-6) and has.sum() == 4
    # a candidate identical to a target whose tokens each occur once scores exactly 1
    ids1 = torch.tensor([[10, 11, 12, 13]])
    h1 = torch.randn(1, 4, 8)
    m1 = torch.ones(1, 4, dtype=torch.bool)
    fp1, has1 = T.fingerprints(h1, ids1, torch.rand(1, 4) + 0.1, m1, 20)
    near = T.nearest_fingerprinted(torch.randn(20, 6), has1)
    S = T.score_examples(h1, ids1, m1, fp1, has1, near, unseen_penalty=0.5, pool_mix=0.5)
    assert S.item() == pytest.approx(1.0, abs=1e-6)


def test_unseen_token_uses_the_nearest_fingerprint_times_lambda_and_scores_ignore_pool_order():
    torch.manual_seed(1)
    emb = torch.randn(20, 6)
    emb[15] = emb[11] * 2 + 0.01  # token 15 (unseen) is nearest to 11 by cosine
    h = torch.randn(1, 3, 8)
    ids = torch.tensor([[10, 11, 12]])
    fp, has = T.fingerprints(h, ids, torch.ones(1, 3), torch.ones(1, 3, dtype=torch.bool), 20)
    near = T.nearest_fingerprinted(emb, has)
    assert near[15] == 11 and near[10] == 10
    hc = torch.randn(1, 1, 8)
    s = T.score_examples(hc, torch.tensor([[15]]), torch.ones(1, 1, dtype=torch.bool), fp, has, near, unseen_penalty=0.3, pool_mix=0.5)
    cos = torch.nn.functional.cosine_similarity(hc[0, 0], fp[11], dim=0)
    assert s.item() == pytest.approx(0.3 * cos.item(), abs=1e-6)
    # pool order: scores of a permuted batch are the permuted scores
    hp, idp = torch.randn(6, 3, 8), torch.randint(10, 13, (6, 3))
    mp = torch.ones(6, 3, dtype=torch.bool)
    perm = torch.randperm(6)
    a = T.score_examples(hp, idp, mp, fp, has, near, unseen_penalty=0.5, pool_mix=0.5)
    b = T.score_examples(hp[perm], idp[perm], mp[perm], fp, has, near, unseen_penalty=0.5, pool_mix=0.5)
    assert torch.allclose(a[perm], b)


def test_less_adam_feature_matches_the_formula_and_countsketch_keeps_inner_products():
    g, m, v = torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([0.1, 0.0, -0.2]), torch.tensor([0.01, 0.04, 0.0])
    got = LESSmod.adam_feature(g, m, v)
    want = [(0.9 * mm + 0.1 * gg) / math.sqrt(0.999 * vv + 0.001 * gg * gg + 1e-8) for gg, mm, vv in zip(g[0].tolist(), m.tolist(), v.tolist())]
    assert got[0].tolist() == pytest.approx(want, rel=1e-5)
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(20, 32768, generator=gen), dim=1)
    cs = LESSmod.CountSketch(32768, 8192, seed=3)
    px = cs(x)
    assert torch.allclose(px @ px.T, x @ x.T, atol=0.05)


def _planted(view, k=3):
    """The view with its first k pool examples replaced by copies of the first target example."""
    ids = view.ids.clone()
    rm, pm = view.response_mask.clone(), view.prompt_mask.clone()
    ids[:k], rm[:k], pm[:k] = view.target_ids[0], view.target_response_mask[0], view.target_prompt_mask[0]
    return dataclasses.replace(view, ids=ids, response_mask=rm, prompt_mask=pm)


def test_less_ranks_a_pool_copy_of_a_target_example_first():
    view = _planted(make_instruction_view(n=48, n_target=1, fraction=0.1), k=1)
    sel = registry.method("less").with_params(proj_dim=4096).select(view)
    assert int(np.argmax(sel.scores)) == 0


def test_selection_cost_is_counted_trim_forward_only_less_three_per_checkpoint():
    view = make_instruction_view(n=48, n_target=4)
    registry.method("trim").select(view)
    c = view.lm.counter
    assert c.bwd_examples == 0 and c.fwd_equiv == 48 + 4
    view2 = make_instruction_view(n=48, n_target=4)
    registry.method("less").with_params(proj_dim=1024).select(view2)
    K = len(view2.warmup().checkpoints)
    assert view2.lm.counter.fwd_equiv == K * 3 * (48 + 4)
    view3 = make_instruction_view(n=48, n_target=4)
    registry.method("bm25").select(view3)
    assert view3.lm.counter.fwd_equiv == 0


@pytest.mark.parametrize("name", TEXT)
def test_text_methods_pass_the_kit_and_are_deterministic(name):
    m = registry.method(name)
    if name == "less":
        m = m.with_params(proj_dim=1024)
    sel = check_text_selection_method(m, max_seconds=600)
    assert sel.scores is not None and np.isfinite(sel.scores).all()
    assert registry.track("instruction").accepts(m) is None


def test_trim_prefers_target_task_examples_over_random_on_the_kit_world():
    from coreset_bench.kit import make_instruction_world

    view = make_instruction_view(n=48, n_target=4, target_task="reverse", fraction=0.25)
    sel = registry.method("trim").select(view)
    world = make_instruction_world(48, 16, seed=0)
    frac = np.mean(world.task[sel.indices] == 1)  # 'reverse' is task 1 of the kit world
    assert frac > np.mean(world.task == 1)


def test_bm25_matches_the_textbook_formula():
    docs = [["a", "b", "a"], ["b", "c"], ["d"]]
    s = bm25_scores(docs, {"a": 1}, k1=1.5, b=0.75)
    idf = math.log((3 - 1 + 0.5) / (1 + 0.5) + 1)
    avg = 2.0
    assert s[0] == pytest.approx(idf * 2 * 2.5 / (2 + 1.5 * (1 - 0.75 + 0.75 * 3 / avg)))
    assert s[1] == 0 and s[2] == 0


def test_bad_parameters_give_one_line_errors():
    view = make_instruction_view()
    # the declared choices stop a bad --param before any cell (kinds.Param) ...
    for name, k, v in (("trim", "aggregate", "median"), ("less", "projection", "gaussian"), ("embed-sim", "reduce", "sum"), ("rds", "model", "pool")):
        with pytest.raises(ValueError, match=f"method '{name}', parameter '{k}': expected one of"):
            registry.method(name).with_params(**{k: v})
    # ... and the method checks them itself when its parameters are set around with_params
    def bypass(name, **kw):
        m = copy.copy(registry.method(name))
        m.params = {**m.params, **kw}
        return m

    with pytest.raises(ValueError, match="trim: aggregate must be max or mean"):
        bypass("trim", aggregate="median").select(view)
    with pytest.raises(ValueError, match="less: projection must be"):
        bypass("less", projection="gaussian").select(view)
    with pytest.raises(ValueError, match="embed-sim: reduce must be"):
        bypass("embed-sim", reduce="sum").select(view)
    with pytest.raises(ValueError, match="rds: model must be warmup or base"):
        bypass("rds", model="pool").select(view)


class _OneHot(torch.nn.Module):
    """A stand-in model: the hidden state at position j is (j+1) x one-hot(token), so the
    normalized state of a row's last token is the one-hot of that token."""

    n_layers = 1

    def __init__(self, vocab=12):
        super().__init__()
        self.vocab = vocab
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids, attn_layers=0):
        pos = torch.arange(1, ids.shape[1] + 1, dtype=torch.float32)[None, :, None]
        h = torch.nn.functional.one_hot(ids, self.vocab).float() * pos
        return h, h, []


def test_rds_is_the_last_token_state_mean_over_targets_unlike_embed_sim():
    """LESS's RDS on a hand-made model: targets ending in tokens 5, 5, 6 give the mean direction
    (2/3 e5 + 1/3 e6); pool rows ending in 5, 6, 7 score 2/3, 1/3, 0 (padding after the last
    token is skipped). embed-sim's max over targets would score 5 and 6 alike."""
    from coreset_bench.tracks.instruction import lm as L
    from coreset_bench.plugins.selection.rds import last_token_states

    base = make_instruction_view(n=48, n_target=4)
    pad = 0
    tg = torch.tensor([[1, 8, 9, 5, pad], [1, 9, 5, pad, pad], [1, 6, pad, pad, pad]])
    pool = torch.tensor([[1, 9, 9, 5, pad], [1, 6, pad, pad, pad], [1, 8, 8, 8, 7], [1, 5, 6, 7, 5]])
    lm = L.LM(lambda: _OneHot(), pad)
    view = dataclasses.replace(base, ids=pool, target_ids=tg, target_task=("t",) * 3, lm=lm, budget=1, fraction=0.25)
    r = last_token_states(view, _OneHot(), tg)
    assert r.argmax(1).tolist() == [5, 5, 6] and torch.allclose(r.norm(dim=1), torch.ones(3))
    lm.counter = L.Counter()
    sel = registry.method("rds").with_params(model="base").select(view)
    assert sel.scores.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0, 2 / 3], abs=1e-6)
    assert sel.indices.tolist() == [0]
    assert lm.counter.fwd_examples == 3 + 4 and lm.counter.bwd_examples == 0  # forward-only


def test_rds_ranks_a_pool_copy_of_a_target_example_among_the_first_and_is_forward_only():
    view = _planted(make_instruction_view(n=48, n_target=1, fraction=0.1), k=1)
    sel = registry.method("rds").select(view)
    assert sel.scores[0] == pytest.approx(float(np.max(sel.scores)), abs=1e-6)  # cos = 1: the maximum
    c = view.lm.counter
    assert c.bwd_examples == 0 and c.fwd_equiv == 48 + 1


def test_length_within_tasks_takes_the_task_mix_out():
    from coreset_bench.tracks.instruction import length_within_tasks

    lengths = np.array([4, 6, 10, 10])
    tasks = np.array(["a", "a", "b", "b"])
    within, by_task = length_within_tasks(lengths, tasks, np.array([1, 2]))
    # selected mean 8; the mix (one a, one b) predicts (5 + 10) / 2 = 7.5; pool mean 7.5
    assert within == pytest.approx(0.5 / 7.5) and by_task == pytest.approx({"a": 6 / 5, "b": 1.0})
    # a selection of the shortest task alone is short overall but not within its task
    within, by_task = length_within_tasks(lengths, tasks, np.array([0, 1]))
    assert within == pytest.approx(0.0) and by_task == {"a": 1.0}
