"""``instruction/quick@2`` (issue 36): the pretrained base is disjoint from the targets' data and
cached by its settings and code; no budget reaches a target's share of the pool."""

import numpy as np
import pytest
import torch

from coreset_bench.tracks.instruction import world as W
from coreset_bench.tracks.base import CellContext, Profile
from coreset_bench.tracks.instruction import InstructionTrack, pretrain_key


def _ctx(tmp_path):
    return CellContext(results_dir=tmp_path, cache_dir=tmp_path / "cache", data_dir=tmp_path)


def _runs(seq, lengths):
    """Every contiguous run of ``seq`` whose length is in ``lengths``."""
    return {tuple(seq[i : i + k]) for k in lengths for i in range(len(seq) - k + 1)}


def _leaks(corpus, world_data):
    """The corpus sequences that hold a target task's example, prompt or held-out item."""
    targets = set(W.TARGETS)
    prompts = {tuple(t.split(" ||| ")[0].split()) for t, k in zip(world_data.pool_texts, world_data.pool_task) if k in targets}
    items = set()
    for part in (world_data.test, world_data.general):
        for t in targets:
            enc = part.get(t)
            for row, n in zip(enc.ids, enc.lengths):
                toks = [world_data.vocab[i] for i in row[1 : n - 1]]
                sep = toks.index("<sep>")
                prompts.add(tuple(toks[:sep]))
                items.add((tuple(toks[:sep]), tuple(toks[sep + 1 :])))
    lengths = {len(p) for p in prompts}
    bad = []
    for e in corpus:
        seq = list(e.prompt) + (["<sep>", *e.response] if e.task != W.FREE else [])
        if e.task in targets or (e.prompt, e.response) in items or _runs(seq, lengths) & prompts:
            bad.append(e.text)
    return bad, prompts


def test_the_pretraining_corpus_of_quick2_is_disjoint_from_the_targets_data(tmp_path):
    """No target-task example, no held-out item and no target prompt (pool or held-out, as a run
    of tokens anywhere in a sequence) is in the corpus the base of quick@2 is pretrained on; and
    the check finds one that is planted."""
    t = InstructionTrack()
    prof = t.profile("quick@2")
    pt = prof.settings["pretrain"]
    corpus = W.pretrain_corpus(0, version=2, n_worlds=int(pt["n_worlds"]), pool_size=int(pt["pool_size"]), free_fraction=float(pt["free_fraction"]))
    data = t.data(prof, "synth-instruct", 0, _ctx(tmp_path))
    bad, prompts = _leaks(corpus, data)
    assert bad == [] and len(prompts) > 600
    # the check can fail: a held-out test item, a target prompt inside free text, a target-task example
    te = data.test["add"]
    toks = [data.vocab[i] for i in te.ids[0][1 : te.lengths[0] - 1]]
    sep = toks.index("<sep>")
    planted = [W.Example(tuple(toks[:sep]), tuple(toks[sep + 1 :]), "copy"), W.Example(("x", *toks[:sep], "y"), (), W.FREE),
               W.Example(("last", "letter", "of", ":", "q"), ("q",), "last")]
    assert len(_leaks(corpus[:100] + planted, data)[0]) == 3


@pytest.mark.parametrize("profile", ["quick@2", "smollm2@2"])
def test_no_budget_of_a_v2_profile_reaches_a_targets_share_of_the_pool(tmp_path, profile):
    """Every seed's world (with the held-out sets of at least 120 items) and every target: the
    largest budget is below the target task's share of the pool (world v2 draws exact shares)."""
    t = InstructionTrack()
    prof = t.profile(profile)
    st = prof.settings
    if profile == "quick@2":
        assert list(prof.axes["budget"]) == [0.01, 0.025] and len(prof.seeds) == 5 and st["world_version"] == 2
    biggest = max(int(round(b * st["pool_size"])) for b in prof.axes["budget"])
    shares = {}
    for r in prof.seeds:
        w = W.make_world(W.seed_of(prof.id, "world", "synth-instruct", r), pool_size=int(st["pool_size"]), n_targets=int(st["n_targets"]), n_test=int(st["n_test"]),
                         n_general=int(st["n_general"]), version=2, min_test=int(st["min_test"]))
        for target in W.TARGETS:
            shares[(target, r)] = int((w.pool_task == target).sum())
            assert len(w.test[target]) >= 120, (target, r)
    assert min(shares.values()) > biggest, (biggest, shares)
    if profile == "quick@2":  # the track builds the same world
        data = t.data(prof, "synth-instruct", 0, _ctx(tmp_path))
        assert int((data.pool_task == "last").sum()) == shares[("last", 0)]


def _small_track(**pretrain):
    class T(InstructionTrack):
        def profiles(self):
            profs = super().profiles()
            q = next(p for p in profs if p.id == "instruction/quick@2")
            st = {**q.settings, "pool_size": 300, "n_test": 130, "n_general": 5, "model_args": {"d": 16, "layers": 1, "heads": 2},
                  "pretrain": {**q.settings["pretrain"], "n_worlds": 1, "pool_size": 200, "steps": 6, "batch_size": 16, **pretrain},
                  "finetune": {**q.settings["finetune"], "steps": 3}, "warmup": {**q.settings["warmup"], "steps": 2, "checkpoints": [1, 2]}}
            return [*profs, Profile("instruction", "ptest", 1, {"dataset": ["synth-instruct"], "target": ["add"], "budget": [0.1]}, seeds=(0,), settings=st)]

    return T()


def test_the_pretrained_base_is_cached_by_settings_and_every_model_starts_from_it(tmp_path):
    from coreset_bench.tracks.instruction import lm as L
    t = _small_track()
    prof = t.profile("ptest")
    state, meta, shared = t.pretrained(prof, 0, 24, _ctx(tmp_path))
    view, data, *_ = t.build_view(prof, "synth-instruct", "add", 0.1, 0, 0, _ctx(tmp_path))
    assert not shared and meta["steps"] == 6 and meta["loss_first_last"][1] < meta["loss_first_last"][0]
    assert W.FREE in meta["tasks"] and not set(meta["tasks"]) & set(W.TARGETS)
    # the view's base is the pretrained model, not a random initialisation
    base = view.lm.base()
    assert all(torch.equal(base.state_dict()[k], v) for k, v in state.items())
    rand = L.tiny_gpt(len(W.VOCAB_V2), 0, d=16, layers=1, heads=2, ctx=24)
    assert not torch.equal(rand.state_dict()["tok.weight"], state["tok.weight"])
    # the warm-up starts from it (its first checkpoint is one step away from it)
    ck = view.warmup().checkpoints[0]()
    delta = (ck.state_dict()["tok.weight"] - state["tok.weight"]).abs().max()
    assert 0 < delta < 0.05
    # a fresh track (cold memo) is served from the disk cache: the same weights
    t2 = _small_track()
    state2, _, shared2 = t2.pretrained(t2.profile("ptest"), 0, 24, _ctx(tmp_path))
    assert shared2 and all(torch.equal(state2[k], v) for k, v in state.items())
    # other settings, another seed: another key (and other weights)
    st = t.profile("ptest").settings
    k0 = pretrain_key(st, 0, len(W.VOCAB_V2), 24)
    assert k0 != pretrain_key(st, 1, len(W.VOCAB_V2), 24)
    assert k0 != pretrain_key({**st, "pretrain": {**st["pretrain"], "steps": 7}}, 0, len(W.VOCAB_V2), 24)
    t3 = _small_track(steps=7)
    state3, _, shared3 = t3.pretrained(t3.profile("ptest"), 0, 24, _ctx(tmp_path))
    assert not shared3 and not torch.equal(state3["tok.weight"], state["tok.weight"])


def test_a_quick2_style_cell_reports_the_base_and_the_length_bias_within_tasks(tmp_path):
    from coreset_bench import registry

    t = _small_track()
    m = registry.method("trim")
    r = t.run_cell(t.cells(t.profile("ptest"), m)[0], m, _ctx(tmp_path))
    assert r.info["world_version"] == 2 and r.info["pretrain_s"] > 0 and r.metrics["subset_size"] == 30
    assert np.isfinite(r.metrics["sel_len_within"]) and set(r.info["sel_len_by_task"]) == set(r.info["sel_task_hist"])
    assert r.metrics["selection_fwd_equiv"] == 300 + 8


@pytest.mark.parametrize("bad, message", [({"steps": 0}, "pretrain.steps must be at least 1, got 0"), ({"n_worlds": 0}, "pretrain.n_worlds must be at least 1"),
                                          ({"free_fraction": 1.0}, "free_fraction in \\[0, 1\\)")])
def test_bad_pretrain_settings_fail_with_one_line(tmp_path, bad, message):
    from coreset_bench.tracks.base import CellFailure

    t = _small_track(**bad)
    with pytest.raises(CellFailure, match=message) as info:
        t.pretrained(t.profile("ptest"), 0, 24, _ctx(tmp_path))
    assert "\n" not in str(info.value)


def test_a_recipe_can_train_only_its_last_blocks():
    """``trainable_layers`` (smollm2@2 trains the last 4 of 30 blocks on a CPU): the frozen
    parameters do not move, the last block and the final norm do; the warm-up keeps only LESS's
    gradient parameters that it trains."""
    from coreset_bench.tracks.instruction import lm as L
    from coreset_bench.tracks.instruction import _is_grad_param, _trainable

    m = L.tiny_gpt(len(W.VOCAB_V2), 0, d=16, layers=2, heads=2)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    e = W.encode(W.make_world(1, pool_size=40, version=2, n_test=5).pool, 24, W.TOK_V2)
    keep = _trainable({"trainable_layers": 1}, m)
    L.finetune(m, torch.from_numpy(e.ids), torch.from_numpy(e.response_mask), steps=3, seed=0, lr=1e-2, trainable=keep)
    moved = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith(("blocks.1.", "ln_f.")) for k in moved) and "blocks.1.qkv.weight" in moved
    assert _trainable({}, m) is None and _trainable({"trainable_layers": 0}, m) is None
    assert [k for k, _ in m.named_parameters() if _is_grad_param(k, m) and keep(k)] == ["blocks.1.qkv.weight", "blocks.1.o.weight"]
    with pytest.raises(L.LMError, match="no trainable parameter"):
        L.finetune(m, torch.from_numpy(e.ids), torch.from_numpy(e.response_mask), steps=1, seed=0, trainable=lambda k: False)


def test_the_smollm2_cpu_profile_is_sized_for_two_cores_on_world_v2():
    t = InstructionTrack()
    p = t.profile("smollm2@2")
    st = p.settings
    assert st["model"] == "smollm2-135m" and st["world_version"] == 2 and st["render"] == "plain" and p.device == "cpu"
    assert "pretrain" not in st and st["finetune"]["trainable_layers"] == st["warmup"]["trainable_layers"] == 4
    assert p.n_cells() == 6 and t.profile("smollm2@1").device == "cuda"  # the GPU profile is unchanged
