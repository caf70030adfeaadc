"""The instruction world and the language models of the instruction track (tracks-phase2.md §2.3, §2.4, §2.9 1-2, 6)."""

import numpy as np
import pytest
import torch

from coreset_bench import instruction_world as W
from coreset_bench import lm as L
from coreset_bench.data import LeakageError, contestant_guard


@pytest.fixture(scope="module")
def world():
    return W.make_world(3, pool_size=1500, n_test=100)


def test_same_seed_gives_identical_world_and_other_seed_differs():
    a, b, c = (W.make_world(s, pool_size=300, n_test=20) for s in (5, 5, 6))
    assert [e.text for e in a.pool] == [e.text for e in b.pool]
    assert np.array_equal(W.encode(a.pool, 24).ids, W.encode(b.pool, 24).ids)
    assert [e.text for e in a.pool] != [e.text for e in c.pool]


def test_every_clean_answer_is_right_and_every_noisy_one_wrong(world):
    assert W.check_answers(world) == []
    adds = [e for e in world.pool if e.task == "add" and not e.noisy]
    for e in adds:
        a, b = (int(t) for t in e.prompt if t in W.DIGITS)
        assert "".join(e.response) == str(a + b)
    for e in (x for x in world.pool if x.task == "capital" and not x.noisy):
        assert e.response == (world.kb_capital[e.prompt[-1]],)
    sample = W.Example(("last", "letter", "of", ":", "a", "b", "c"), ("c",), "last")
    assert W.answer("shift", list("xyz"), {}, {}) == list("yza") and W.answer("shift2", list("yz"), {}, {}) == list("ab")
    assert W.twin_answer(sample, world.kb_color) == ("a",)


def test_noise_count_per_task_is_exact(world):
    tasks, noisy = world.pool_task, world.pool_noisy
    for t in W.TASKS:
        assert noisy[tasks == t].sum() == int(round(W.NOISE.get(t, 0.0) * (tasks == t).sum())), t


def test_pool_targets_test_and_general_are_disjoint_and_twins_share_wording(world):
    pool = {e.prompt for e in world.pool}
    seen = set(pool)
    for t in W.TARGETS:
        tg, ts = {e.prompt for e in world.targets[t]}, {e.prompt for e in world.test[t]}
        assert not tg & pool and not ts & pool and not tg & ts
        assert len(world.targets[t]) == 8 and all(e.task == t and not e.noisy for e in world.targets[t] + world.test[t])
        seen |= tg | ts
    for t in W.TASKS:
        if t not in W.TARGETS:
            g = {e.prompt for e in world.general[t]}
            assert not g & seen
    # the near-twin shares almost all prompt words of its target (the point of the design)
    for t in W.TARGETS:
        a = set(" ".join(W.PHRASINGS[t]).split())
        b = set(" ".join(W.PHRASINGS[W.TWIN[t]]).split())
        assert len(a & b) >= 3, (t, a & b)


def test_encoding_masks_mark_response_positions():
    ex = W.Example(("add", "3", "and", "4"), ("7",), "add")
    e = W.encode([ex], 12)
    ids = e.ids[0].tolist()
    assert ids[:8] == [W.BOS, W.TOK["add"], W.TOK["3"], W.TOK["and"], W.TOK["4"], W.SEP, W.TOK["7"], W.EOS] and e.lengths[0] == 8
    assert e.prompt_mask[0].tolist()[:6] == [False, True, True, True, True, False]
    assert np.flatnonzero(e.response_mask[0]).tolist() == [5, 6]  # next tokens: '7' and <eos>
    with pytest.raises(W.WorldError, match="ctx"):
        W.encode([ex], 4)


def test_generator_refuses_to_run_inside_a_contestant():
    with contestant_guard("sneaky"), pytest.raises(LeakageError, match="sneaky"):
        W.make_world(0, pool_size=10)


def test_tinygpt_contract_attentions_and_sdpa_agree():
    m = L.tiny_gpt(len(W.VOCAB), 0, d=32, layers=2, heads=4, ctx=24).eval()
    ids = torch.from_numpy(W.encode(W.make_world(0, pool_size=20, n_test=5).pool, 24).ids)
    lo0, h0, a0 = m(ids, 0)
    lo2, h2, a2 = m(ids, 2)
    assert a0 == [] and len(a2) == 2 and a2[0].shape == (20, 4, 24, 24)
    assert torch.allclose(lo0, lo2, atol=1e-5) and torch.allclose(h0, h2, atol=1e-5)
    assert torch.allclose(a2[0].sum(-1), torch.ones(20, 4, 24), atol=1e-5)
    assert torch.all(a2[0].triu(1) == 0)  # causal
    assert h0.shape == (20, 24, 32) and lo0.shape == (20, 24, len(W.VOCAB))


def test_counter_counts_one_forward_and_one_backward_pass():
    lm = L.LM(lambda: L.tiny_gpt(len(W.VOCAB), 0, d=16, layers=1, heads=2), W.PAD)
    e = W.encode(W.make_world(1, pool_size=7, n_test=5).pool, 24)
    ids, mask = torch.from_numpy(e.ids), torch.from_numpy(e.response_mask)
    m = lm.base()
    logits, hidden, _ = lm.forward(m, ids)
    assert lm.counter.fwd_examples == 7 and lm.counter.fwd_tokens == int(e.lengths.sum()) and lm.counter.bwd_examples == 0
    (L.response_loss(logits, ids, mask).mean() + hidden.sum() * 0).backward()
    assert lm.counter.bwd_examples == 7 and lm.counter.bwd_tokens == int(e.lengths.sum())
    assert lm.counter.fwd_equiv == 7 + 2 * 7
    with torch.no_grad():
        lm.forward(m, ids[:3])
    assert lm.counter.fwd_examples == 10 and lm.counter.bwd_examples == 7


def test_vmapped_per_example_grads_equal_a_loop_and_are_counted():
    lm = L.LM(lambda: L.tiny_gpt(len(W.VOCAB), 0, d=16, layers=2, heads=2), W.PAD)
    e = W.encode(W.make_world(1, pool_size=6, n_test=5).pool, 24)
    ids, mask = torch.from_numpy(e.ids), torch.from_numpy(e.response_mask)
    m = lm.base()
    names = [k for k, _ in m.named_parameters() if k.endswith(("qkv.weight", ".o.weight"))]
    g = lm.per_example_grads(m, ids, mask, names, chunk=4)
    for i in range(6):
        m.zero_grad()
        logits, _, _ = m(ids[i : i + 1], 0)
        L.response_loss(logits, ids[i : i + 1], mask[i : i + 1])[0].backward()
        ref = torch.cat([dict(m.named_parameters())[k].grad.reshape(-1) for k in names])
        assert torch.allclose(g[i], ref, atol=1e-5)
    assert lm.counter.fwd_examples == 6 and lm.counter.bwd_examples == 6


def test_teacher_forced_em_equals_greedy_em():
    w = W.make_world(2, pool_size=400, n_test=50)
    e = W.encode(w.pool, 24)
    m = L.tiny_gpt(len(W.VOCAB), 0, d=32, layers=2, heads=4)
    L.finetune(m, torch.from_numpy(e.ids), torch.from_numpy(e.response_mask), steps=30, seed=0, lr=1e-2)
    exs = w.test["last"] + w.general["copy"]
    te = W.encode(exs, 24)
    em, nll = L.evaluate(m, torch.from_numpy(te.ids), torch.from_numpy(te.response_mask))
    greedy = L.greedy_em(m, torch.from_numpy(te.ids), torch.from_numpy(te.response_mask), W.EOS)
    assert np.array_equal(em, greedy) and np.isfinite(nll).all()


def test_finetune_is_deterministic_and_lowers_the_loss():
    w = W.make_world(2, pool_size=200, n_test=5)
    e = W.encode(w.pool, 24)
    ids, mask = torch.from_numpy(e.ids), torch.from_numpy(e.response_mask)
    logs = []
    for _ in range(2):
        m = L.tiny_gpt(len(W.VOCAB), 0, d=16, layers=1, heads=2)
        logs.append(L.finetune(m, ids, mask, steps=15, seed=3, lr=1e-2, snapshot_at=(5, 15)))
    assert logs[0].losses == logs[1].losses and logs[0].losses[-1] < logs[0].losses[0]
    assert len(logs[0].snapshots) == 2 and logs[0].snapshots[0][1] > logs[0].snapshots[1][1]  # cosine: mean lr decreases
