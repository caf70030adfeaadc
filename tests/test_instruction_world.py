"""The instruction world and the language models of the instruction track (tracks-phase2.md §2.3, §2.4, §2.9 1-2, 6)."""

import numpy as np
import pytest
import torch

from coreset_bench.tracks.instruction import world as W
from coreset_bench.tracks.instruction import lm as L
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


# ---- world versions (issue 36) ---------------------------------------------------------------------


def _digest(w):
    import hashlib
    import json

    blob = json.dumps([[e.text, e.task, e.noisy] for e in w.pool] + [[k, [e.text for e in v]] for d in (w.targets, w.test, w.general) for k, v in sorted(d.items())]
                      + [sorted(w.kb_capital.items()), sorted(w.kb_color.items())])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_world_v1_is_the_published_one_byte_for_byte():
    """The worlds of instruction/quick@1 (published) and tiny@1, pinned by digest: world v2 must
    not change a byte of v1 (seed derivation of quick@1: profile id, "world", dataset, repeat)."""
    want = {("quick", 0): "9228bb8d145fc742", ("quick", 1): "13e30d28ea98defc", ("tiny", 0): "f3ddd3c4620b0c18"}
    for (name, repeat), digest in want.items():
        pid = f"instruction/{name}@1"
        kw = dict(pool_size=600, n_test=60, n_general=20) if name == "tiny" else {}
        w = W.make_world(W.seed_of(pid, "world", "synth-instruct", repeat), **kw)
        assert _digest(w) == digest, (pid, repeat)
        assert w.version == 1 and W.vocab(1) is W.VOCAB and len(W.VOCAB) == 170


@pytest.fixture(scope="module")
def world2():
    return W.make_world(3, version=2, min_test=120)


def test_world_v2_answers_held_out_sizes_and_disjointness(world2):
    w = world2
    assert W.check_answers(w) == [] and w.version == 2
    assert {t: len(v) for t, v in w.test.items()} == {"last": 300, "add": 300, "capital": 120}
    pool = {e.prompt for e in w.pool}
    held = [e.prompt for v in (*w.targets.values(), *w.test.values()) for e in v]
    assert len(held) == len(set(held)) and not set(held) & pool
    assert all(t in W.TOK_V2 for e in w.pool for t in (*e.prompt, *e.response))
    # operands reach 19, entities 127, and every country's capital/colour is a v2 city/colour
    ops = {int(t) for e in w.pool if e.task == "add" for t in e.prompt if t.isdigit()}
    assert max(ops) == 19 and min(ops) == 0
    assert set(w.kb_capital) == set(W.COUNTRIES_V2) and set(w.kb_capital.values()) == set(W.CITIES_V2)
    assert set(w.kb_color) == set(W.COUNTRIES_V2)
    # the held-out items of capital are all 128 countries, each asked in the phrasing the pool did not use for it
    asked = {e.prompt[-1] if e.prompt[0] == "capital" else e.prompt[0] for e in w.targets["capital"] + w.test["capital"]}
    assert asked == set(W.COUNTRIES_V2)
    with pytest.raises(W.WorldError, match="min_test 121: capital 120"):
        W.make_world(3, version=2, min_test=121)
    with pytest.raises(W.WorldError, match="unknown instruction world_version 3"):
        W.make_world(3, version=3)


def test_world_v2_targets_share_a_phrasing_with_their_twins_up_to_order(world2):
    """Lexical matching cannot tell a target's shared phrasing from its twin's: the same words,
    another order (and the twin rule on a target example is the twin task's answer)."""
    import collections

    def words(e):  # the prompt without its argument (letters, numbers, entities)
        return collections.Counter(w for w in e.prompt if w not in W.LETTERS and not w.isdigit() and w not in W.COUNTRIES_V2)

    def shared(task, k=None):
        return [e for e in world2.pool if e.task == task and "not" in e.prompt and (k is None or len([w for w in e.prompt if w.isdigit()]) == k)]

    for t in W.TARGETS:
        tw = W.TWIN[t]
        a, b = shared(t), shared(tw, 2 if tw == "count" else None)
        assert a and b and all(words(e) == words(a[0]) for e in a) and all(words(e) == words(a[0]) for e in b), t
        assert W.PHRASINGS_V2[t][W.SHARED_PHRASING] != W.PHRASINGS_V2[tw][W.SHARED_PHRASING]
        assert words(a[0]) != words(next(e for e in world2.pool if e.task == t and "not" not in e.prompt))
        in_shared = [e for e in world2.test[t] if "not" in e.prompt]
        assert 0.3 < len(in_shared) / len(world2.test[t]) < 0.7, t
    ex = W.Example(("letter", "of", ":", "a", "b", "c", ",", "last", "not", "first"), ("c",), "last")
    assert world2.twin_answer(ex) == ("a",)
    assert world2.twin_answer(W.Example(("12", "and", "7", ",", "sum", "not", "count"), ("1", "9"), "add")) == ("2",)
    cap = W.Example(("C5", ",", "capital", "not", "color"), (world2.kb_capital["C5"],), "capital")
    assert world2.twin_answer(cap) == (world2.kb_color["C5"],)
    counts = [e for e in world2.pool if e.task == "count" and "not" in e.prompt and not e.noisy]
    assert counts and all(e.response == (str(len([t for t in e.prompt if t.isdigit()])),) for e in counts)


def test_pretraining_corpus_has_no_target_task_and_free_text_avoids_the_target_words():
    c = W.pretrain_corpus(0, n_worlds=2, pool_size=800)
    tasks = {e.task for e in c}
    assert tasks == (set(W.TASKS) - set(W.TARGETS)) | {W.FREE} and not any(e.noisy for e in c)
    free = [e for e in c if e.task == W.FREE]
    assert 0.2 < len(free) / len(c) < 0.3
    assert all(not set(e.prompt) & set(W.FREE_TEXT_EXCLUDED) and e.prompt[: len(e.prompt) // 2] == e.prompt[len(e.prompt) // 2 :] for e in free)
    assert W.check_answers(W.World([e for e in c if e.task != W.FREE], {}, {}, {}, *_pretrain_kb(), {"world_version": 2})) == []
    # both phrasings of one fact: the corpus asks colours in either phrasing for the same country
    col = {}
    for e in c:
        if e.task == "color":
            col.setdefault(W.parse_arg("color", e.prompt), set()).add(e.prompt[0] == "color")
    assert sum(len(v) == 2 for v in col.values()) > 20
    assert [e.text for e in W.pretrain_corpus(0, n_worlds=2, pool_size=800)] == [e.text for e in c]
    ids, mask = W.encode_lm(c[:50], 24, W.TOK_V2)
    assert ids.shape == (50, 24) and all(mask[i].sum() == (ids[i] != W.PAD).sum() - 1 for i in range(50))
    with pytest.raises(W.WorldError, match="world_version 2"):
        W.pretrain_corpus(0, version=1)
    with contestant_guard("sneaky"), pytest.raises(LeakageError, match="sneaky"):
        W.pretrain_corpus(0, n_worlds=1, pool_size=10)


def _pretrain_kb():
    w = W.make_world(W.seed_of("instruction-pretrain-world", 2, 0, 0), pool_size=10, n_targets=1, n_test=1, n_general=0, targets=(), version=2,
                     kb_seed=W.seed_of("instruction-pretrain-kb", 2, 0))
    return w.kb_capital, w.kb_color
