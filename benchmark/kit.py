"""Conformance checks and small synthetic fixtures for the phase-2 kinds (re-exported by
``coreset_bench.testing``).

In a plugin's own tests::

    from coreset_bench.testing import check_decentralized_method

    def test_my_method_conforms():
        check_decentralized_method(MyMethod())

Each check raises ``AssertionError`` naming the problem. The methods run under the harness's
contestant guard, so a method that regenerates the fixture's data (to read what the view hides)
fails. What each check enforces:

* ``check_text_selection_method``: a ``SelectionMethod`` with ``"text"`` in ``modalities``;
  exactly ``budget`` unique in-range indices (at most, with ``exact_budget = False``); finite,
  non-negative weights; determinism under a fixed seed; no access to the world generator.
* ``check_decentralized_method``: role ``"decentralized"``; exactly one finite model per node,
  each giving C logits on its node's inputs; determinism; the *isolation check*: with no edges
  between the nodes, changing one node's data leaves every other node's model bit-identical (so
  nothing crosses between nodes outside ``view.net``).
* ``check_exit_method``: role ``"early-exit"``; the frozen backbones' cached features and
  logits are left bit-unchanged; the harness's output check (``validation.check_exit_model``):
  all heads (every modality, stages 1..3) present, of the architecture ``view.head_factory``
  builds, finite and giving (B, C) on their stage's features; a combiner of one finite weight
  vector of length e + 1 per exit e (or None); determinism.
* ``check_provisioning_method``: driven through a 2-day minute trace by the pool simulator:
  every plan is 1-D, of length ``horizon``, finite and >= 0; ``history`` is read-only and
  ``future`` is absent for methods that are not ``privileged``; deterministic; the whole trace
  within ``max_seconds`` (30 s).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .tracks.decentralized.network import Network, Topology, ViewSpec
from .kinds import (
    DecentralizedView,
    DistillationMethod,
    ExitModel,
    ExitView,
    InstructionView,
    ProvisioningMethod,
    ProvisioningView,
    SelectionMethod,
    WarmupRun,
)
from .validation import OutputError, SelectionOutputError, check_exit_model, validate_selection


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16) % (2**31 - 1)


# the harness's contestant guard lives in coreset_bench.data, which imports torch: imported
# lazily, so that loading the pytest plugin (coreset_bench.testing) does not import torch


def _check_not_contestant(what: str) -> None:
    from .data import _check_not_contestant as check

    check(what)


def _run_guarded(name: str, fn: Callable[[], Any]) -> Any:
    """Run a method's function under the contestant guard; a leak becomes an AssertionError."""
    from .data import LeakageError, contestant_guard

    try:
        with contestant_guard(name):
            return fn()
    except LeakageError as exc:
        raise AssertionError(f"{name}: {exc}") from None


def _fingerprint(tensors: Sequence[Any]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        a = t.detach().cpu().contiguous().numpy() if hasattr(t, "detach") else np.ascontiguousarray(t)
        h.update(str(a.shape).encode() + str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _state_equal(a: Any, b: Any) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _check_module(model: Any, who: str) -> None:
    import torch

    assert isinstance(model, torch.nn.Module), f"{who} is a {type(model).__name__}, not a torch.nn.Module"
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point():
            assert bool(torch.isfinite(t).all()), f"{who}: {name} is not finite"


# ============================================================================================
# text selection (instruction track)
# ============================================================================================

#: special tokens of the tiny instruction world
PAD, BOS, SEP, EOS = 0, 1, 2, 3
_TASKS = ("copy", "reverse", "sort", "first")
_VOCAB = ("<pad>", "<bos>", "<sep>", "<eos>", *_TASKS, *(str(d) for d in range(10)))


@dataclass(frozen=True)
class InstructionWorld:
    """A tiny instruction pool with its hidden truth (``task`` of each example, ``noisy`` flags).
    The view built from it holds neither."""

    ids: np.ndarray  # (N, T) int64
    response_mask: np.ndarray
    prompt_mask: np.ndarray
    lengths: np.ndarray
    texts: list[str]
    task: np.ndarray  # hidden
    noisy: np.ndarray  # hidden


def make_instruction_world(n: int = 48, seq_len: int = 16, *, seed: int = 0, noise: float = 0.2, tasks: Sequence[str] = _TASKS) -> InstructionWorld:
    """Generate the kit's instruction world: ``<bos> TASK digits <sep> answer <eos>`` examples
    of the tasks copy, reverse, sort and first, a ``noise`` share with a corrupted answer.
    Guarded: a method that calls it while being evaluated fails (it would read the hidden truth)."""
    _check_not_contestant("generate the instruction world")
    rng = np.random.default_rng(_seed("instruction-world", n, seq_len, seed, noise, tuple(tasks)))
    tok = {s: i for i, s in enumerate(_VOCAB)}
    ids = np.full((n, seq_len), PAD, dtype=np.int64)
    resp = np.zeros((n, seq_len), dtype=bool)
    prompt = np.zeros((n, seq_len), dtype=bool)
    lengths = np.zeros(n, dtype=np.int64)
    task = rng.integers(0, len(tasks), n)
    noisy = rng.random(n) < noise
    texts = []
    max_digits = (seq_len - 4) // 2
    for i in range(n):
        k = int(rng.integers(2, max_digits + 1))
        digits = [int(d) for d in rng.integers(0, 10, k)]
        name = tasks[task[i]]
        answer = {"copy": digits, "reverse": digits[::-1], "sort": sorted(digits), "first": digits[:1]}[name]
        if noisy[i]:
            answer = [int(d) for d in rng.integers(0, 10, len(answer))]
        seq = [BOS, tok[name], *(tok[str(d)] for d in digits), SEP, *(tok[str(d)] for d in answer), EOS]
        ids[i, : len(seq)] = seq
        lengths[i] = len(seq)
        prompt[i, 1 : 2 + k] = True
        sep = 2 + k
        resp[i, sep : len(seq) - 1] = True  # positions whose next token is a response token
        texts.append(f"{name} {' '.join(map(str, digits))} ||| {' '.join(map(str, answer))}")
    return InstructionWorld(ids, resp, prompt, lengths, texts, task, noisy)


@dataclass(frozen=True)
class LMOutput:
    logits: Any  # (B, T, V)
    hidden: Any  # (B, T, D) last hidden states
    attentions: tuple[Any, ...] = ()


class TinyLM:
    """The kit's stand-in for the instruction track's ``lm`` handle: ``base()`` returns a fresh
    copy of a tiny seeded causal LM (embedding + GRU + linear head); ``forward(model, ids,
    attn_layers=())`` runs it and counts the tokens (``tokens``). The GRU has no attention, so
    ``attentions`` is empty."""

    def __init__(self, vocab_size: int, dim: int = 16, seed: int = 0) -> None:
        self.vocab_size, self.dim, self.seed = vocab_size, dim, seed
        self.tokens = 0

    def base(self) -> Any:
        import torch
        from torch import nn

        class GRULM(nn.Module):
            def __init__(self, v: int, d: int) -> None:
                super().__init__()
                self.embed = nn.Embedding(v, d)
                self.rnn = nn.GRU(d, d, batch_first=True)
                self.head = nn.Linear(d, v)

            def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                h, _ = self.rnn(self.embed(ids))
                return self.head(h), h

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return GRULM(self.vocab_size, self.dim).eval()

    def forward(self, model: Any, ids: Any, attn_layers: Sequence[int] = ()) -> LMOutput:
        self.tokens += int(ids.numel())
        logits, hidden = model(ids)
        return LMOutput(logits, hidden, ())


def _lm_loss(logits: Any, ids: Any, mask: Any) -> Any:
    """Mean next-token cross-entropy over the positions of ``mask`` (per example)."""
    import torch.nn.functional as F

    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none").view(ids.shape[0], -1)
    m = mask[:, :-1].float()
    return (ce * m).sum(1) / m.sum(1).clamp_min(1)


def make_instruction_view(*, n: int = 48, seq_len: int = 16, n_target: int = 4, target_task: str = "reverse", fraction: float = 0.25, budget: int | None = None, seed: int = 0) -> InstructionView:
    """A small ``InstructionView`` on the kit's instruction world: the pool (no task ids, no noise
    flags), ``n_target`` clean examples of ``target_task``, the track's counting ``lm`` handle over
    a tiny seeded TinyGPT (d 16, 2 layers, 2 heads: it has attention, hidden states and input
    embeddings, as the track's models) and a warm-up with two checkpoints (trained with the view;
    ``warmup()`` builds its run once). It is picklable as the track's view is, so it runs in the
    contestant worker too (``coreset_bench.testing.check_in_worker``)."""
    import torch

    from .tracks.instruction.lm import LM, TinyGPTSource, WarmupSource, finetune

    world = make_instruction_world(n, seq_len, seed=seed)
    targets = make_instruction_world(n_target, seq_len, seed=seed + 10_000, noise=0.0, tasks=(target_task,))
    # picklable, as the track's: the view can go to the contestant worker (``testing.check_in_worker``)
    base = TinyGPTSource(len(_VOCAB), 16, 2, 2, seq_len, seed=_seed("kit-base", seed))
    lm = LM(base, PAD)
    ids = torch.from_numpy(world.ids)
    resp = torch.from_numpy(world.response_mask)
    rng = np.random.default_rng(_seed("warmup", seed))
    idx = np.sort(rng.choice(n, size=max(2, int(round(0.25 * n))), replace=False))
    model = base()
    log = finetune(model, ids[idx], resp[idx], steps=12, seed=seed, lr=1e-2, snapshot_at=(6, 12))
    # LESS's gradient features: the attention projections (its LoRA modules); the Adam moments
    # handed over are those of the same parameters
    grad_params = [k for k, _ in model.named_parameters() if k.endswith(("qkv.weight", ".o.weight"))]
    blobs = [{"state": {k: v.detach().clone() for k, v in m.state_dict().items()}, "adam": {k: list(v) for k, v in st.items() if k in grad_params}} for m, _, st in log.snapshots]
    warmup = WarmupSource(base, "cpu", indices=idx, lrs=[lr for _, lr, _ in log.snapshots], grad_params=grad_params, blobs=blobs)

    if budget is None:
        budget = max(1, int(round(fraction * n)))
    return InstructionView(
        ids=ids,
        response_mask=resp,
        prompt_mask=torch.from_numpy(world.prompt_mask),
        lengths=torch.from_numpy(world.lengths),
        texts=tuple(world.texts),
        target_ids=torch.from_numpy(targets.ids),
        target_response_mask=torch.from_numpy(targets.response_mask),
        target_prompt_mask=torch.from_numpy(targets.prompt_mask),
        target_task=(target_task,) * n_target,
        vocab=_VOCAB,
        budget=int(budget),
        fraction=budget / n,
        lm=lm,
        warmup=warmup,
        seed=seed,
        generator=torch.Generator().manual_seed(seed),
        rng=np.random.default_rng(seed),
    )


_HIDDEN_TRUTH = ("task", "tasks", "task_ids", "noisy", "noise_flags", "is_noisy", "ood", "is_ood", "future")


def check_text_selection_method(method: SelectionMethod, view_factory: Callable[[int], InstructionView] | None = None, *, max_seconds: float = 60.0) -> Any:
    """Conformance of a text selection method on ``make_instruction_view`` (raises AssertionError).
    Returns the validated ``Selection``."""
    assert isinstance(method, SelectionMethod), f"{method!r} is not a SelectionMethod"
    assert method.name, "a method needs a name"
    assert "text" in getattr(method, "modalities", ()), f"{method.name}: modalities {sorted(method.modalities)} lack 'text'; the instruction track would refuse it"
    factory = view_factory or (lambda seed: make_instruction_view(seed=seed))
    view = factory(0)
    assert not any(hasattr(view, a) for a in _HIDDEN_TRUTH), "the view must not hold the world's hidden truth"
    def select(v: InstructionView) -> Any:
        try:
            return validate_selection(_run_guarded(method.name, lambda: method.select(v)), v, method)
        except SelectionOutputError as exc:
            raise AssertionError(str(exc)) from None

    t0 = time.perf_counter()
    first = select(view)
    elapsed = time.perf_counter() - t0
    assert elapsed < max_seconds, f"{method.name}: selection took {elapsed:.1f}s on a {view.n}-example pool"
    second = select(factory(0))
    assert np.array_equal(np.sort(first.indices), np.sort(second.indices)), f"{method.name}: not deterministic under a fixed seed"
    if first.weights is not None:
        o1, o2 = np.argsort(first.indices), np.argsort(second.indices)
        assert np.allclose(first.weights[o1], second.weights[o2]), f"{method.name}: weights not deterministic"
    return first


# ============================================================================================
# decentralized distillation
# ============================================================================================


class _NodeMLP:
    """Picklable factory of the kit's node model: the same seeded MLP on every call."""

    def __init__(self, in_features: int, num_classes: int, seed: int) -> None:
        self.in_features, self.num_classes, self.seed = in_features, num_classes, seed

    def __call__(self) -> Any:
        import torch
        from torch import nn

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return nn.Sequential(nn.Linear(self.in_features, 16), nn.ReLU(), nn.Linear(16, self.num_classes))


def make_decentralized_view(*, n_nodes: int = 3, topology: str = "isolated", per_node: int = 24, num_classes: int = 3, dim: int = 8, n_public: int = 16, seed: int = 0, perturb_node: int | None = None) -> DecentralizedView:
    """``make_decentralized_spec(...)`` opened on a fresh byte-counting ``Network`` (see there)."""
    spec = make_decentralized_spec(n_nodes=n_nodes, topology=topology, per_node=per_node, num_classes=num_classes, dim=dim, n_public=n_public, seed=seed, perturb_node=perturb_node)
    return spec.open(Network(spec.topology))


def make_decentralized_spec(*, n_nodes: int = 3, topology: str = "isolated", per_node: int = 24, num_classes: int = 3, dim: int = 8, n_public: int = 16, seed: int = 0, perturb_node: int | None = None) -> ViewSpec:
    """A small decentralized view's ``ViewSpec`` (its network not yet attached: ``spec.open(net)``
    here, or, as the track runs it, ``testing.check_in_worker(method, spec, kind="node-models",
    service=NetworkService(Network(spec.topology)))``): label-skewed Gaussian blobs at ``n_nodes`` nodes on the
    ``isolated``, ``ring`` or ``complete`` topology, an unlabelled public set (part of it
    out-of-distribution, unflagged) and a seeded MLP factory. ``perturb_node=k`` changes node k's
    inputs and labels (same sizes) and nothing else: the isolation check's second world. As in
    the track, node i's ``nodes`` and ``own_label_counts`` rows are readable only inside
    ``with view.net.node(i):``."""
    import torch

    _check_not_contestant("generate the decentralized data")
    rng = np.random.default_rng(_seed("decentralized", n_nodes, per_node, num_classes, dim, seed))
    centers = rng.normal(0, 1.0, (num_classes, dim))
    nodes = []
    counts = np.zeros((n_nodes, num_classes), dtype=np.int64)
    for i in range(n_nodes):
        p = rng.dirichlet(np.full(num_classes, 0.5))
        y = rng.choice(num_classes, size=per_node, p=p)
        x = centers[y] + 0.6 * rng.normal(size=(per_node, dim))
        if perturb_node == i:
            prng = np.random.default_rng(_seed("perturb", seed, i))
            x = x + prng.normal(0, 1.0, x.shape)
            y = prng.integers(0, num_classes, per_node)
        x = 1 / (1 + np.exp(-x))  # inputs in [0, 1]
        nodes.append((torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))))
        counts[i] = np.bincount(y, minlength=num_classes)
    ood = rng.random(n_public) < 0.25
    pub = np.where(ood[:, None], rng.uniform(-3, 3, (n_public, dim)), centers[rng.integers(0, num_classes, n_public)] + 0.6 * rng.normal(size=(n_public, dim)))
    public_x = torch.from_numpy((1 / (1 + np.exp(-pub))).astype(np.float32))
    topo = {"isolated": Topology.isolated, "ring": Topology.ring, "complete": Topology.complete}[topology](n_nodes)
    recipe = {"epochs": 2, "batch_size": 8, "momentum": 0.9, "weight_decay": 5e-4, "milestones": [], "gamma": 0.1}
    # the track's rules: node i's rows are readable only inside `with view.net.node(i):`
    spec = ViewSpec(nodes=nodes, counts=counts, num_classes=num_classes, public_x=public_x, topology=topo, model_factory=_NodeMLP(dim, num_classes, seed),
                    recipe=recipe, steps_per_epoch=max(1, per_node // recipe["batch_size"]), seed=seed)
    return spec


def _distill_nodes(method: DistillationMethod, view: DecentralizedView) -> list[Any]:
    import torch

    from .validation import OutputError, check_node_models

    out = _run_guarded(method.name, lambda: method.distill(view))
    try:  # the track's check (the contest's, kind node-models), on a batch of the public set
        models = check_node_models(out, method.name, view.n, view.public_x[: min(8, len(view.public_x))], view.num_classes, "cpu")
    except OutputError as exc:
        raise AssertionError(f"{method.name}: {exc}") from None
    for i, model in enumerate(models):  # and on each node's own inputs
        with view.net.node(view.net.local_nodes[i]):
            x, _ = view.nodes[i]
        with torch.no_grad():
            logits = model.eval()(x)
        assert tuple(logits.shape) == (len(x), view.num_classes), f"{method.name}: node {i}'s model gives shape {tuple(logits.shape)} on its inputs, expected ({len(x)}, {view.num_classes})"
        assert bool(torch.isfinite(logits).all()), f"{method.name}: node {i}'s model gives non-finite logits"
    return models


def check_decentralized_method(method: DistillationMethod, *, n_nodes: int = 3, max_seconds: float = 120.0) -> dict[str, int]:
    """Conformance of a decentralized method (raises AssertionError), including the isolation
    check. Returns the bytes it sent on a ring (``Network.bytes``)."""
    assert isinstance(method, DistillationMethod), f"{method!r} is not a DistillationMethod"
    assert method.role == "decentralized", f"{method.name}: role is {method.role!r}; set role = 'decentralized'"
    t0 = time.perf_counter()
    ring = make_decentralized_view(n_nodes=n_nodes, topology="ring")
    _distill_nodes(method, ring)
    elapsed = time.perf_counter() - t0
    assert elapsed < max_seconds, f"{method.name}: took {elapsed:.1f}s on {n_nodes} tiny nodes"
    base = _distill_nodes(method, make_decentralized_view(n_nodes=n_nodes, topology="isolated"))
    again = _distill_nodes(method, make_decentralized_view(n_nodes=n_nodes, topology="isolated"))
    for i, (a, b) in enumerate(zip(base, again)):
        assert _state_equal(a, b), f"{method.name}: node {i}'s model differs between two runs with the same seed (not deterministic)"
    for k in range(n_nodes):
        other = _distill_nodes(method, make_decentralized_view(n_nodes=n_nodes, topology="isolated", perturb_node=k))
        for i in range(n_nodes):
            if i != k:
                assert _state_equal(base[i], other[i]), (
                    f"{method.name}: isolation check failed: with no edges between nodes, changing node {k}'s data changed node {i}'s model; "
                    "node i may use only nodes[i], public_x, own_label_counts[i], the recipe and what it receives through view.net"
                )
    return dict(ring.net.bytes)


# ============================================================================================
# early-exit distillation
# ============================================================================================

EXIT_MODALITIES = ("res", "mv", "iframe")
#: (channels, height/width) of the kit's stage 1..3 features
_STAGES = ((4, 8), (8, 4), (8, 2))


class _HeadFactory:
    """Picklable factory of the harness's internal-classifier head for (modality, stage k):
    Conv3x3 + BN, adaptive average pool (4 if the map is at least 4 wide, else 1), linear."""

    def __init__(self, num_classes: int, seed: int, stages: Sequence[tuple[int, int]] = _STAGES) -> None:
        self.num_classes, self.seed, self.stages = num_classes, seed, tuple(stages)

    def __call__(self, modality: str, k: int) -> Any:
        import torch
        from torch import nn

        if not 1 <= k <= len(self.stages):
            raise ValueError(f"stage k must be in 1..{len(self.stages)}, got {k}")
        ch, hw = self.stages[k - 1]
        pool = 4 if hw >= 4 else 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed("head", self.seed, modality, k))
            return nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(ch * pool * pool, self.num_classes))


def make_exit_view(*, n: int = 24, segments: int = 2, num_classes: int = 3, seed: int = 0, heldout: int = 0, aug_views: int = 0,
                   train_segments: str | None = None) -> ExitView:
    """A small ``ExitView``: class-dependent synthetic stage features of three frozen backbones
    (``res``, ``mv``, ``iframe``), their final classifiers' logits, the exit order (12 backbone
    exits, then the fused one) and cumulative costs. The shape of video/quick@3's views:
    ``heldout`` clips in ``feats_heldout``/``final_logits_heldout``/``y_heldout``, ``aug_views``
    augmented copies of every training clip in ``feats_train_aug``/``final_logits_train_aug``,
    ``train_segments`` in the recipe ("average" or "random")."""
    import torch

    _check_not_contestant("generate the early-exit features")
    rng = np.random.default_rng(_seed("exit", n, segments, num_classes, seed))

    def draw(count: int, copies: int = 0) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
        y = np.arange(count) % num_classes
        lead = (copies, count) if copies else (count,)
        feats, finals = {}, {}
        for mi, m in enumerate(EXIT_MODALITIES):
            stage_feats = []
            for ch, hw in _STAGES:
                proto = rng.normal(0, 1, (num_classes, ch, hw, hw))
                f = proto[y][:, None] * (0.5 + 0.5 * mi) + rng.normal(0, 1, (*lead, segments, ch, hw, hw))
                stage_feats.append(torch.from_numpy(np.maximum(f, 0).astype(np.float32)))
            feats[m] = tuple(stage_feats)
            logits = 2.0 * np.eye(num_classes)[y][:, None] + rng.normal(0, 1, (*lead, segments, num_classes))
            finals[m] = torch.from_numpy(logits.astype(np.float32))
        return feats, finals, y

    feats, finals, y = draw(n)
    extra: dict[str, Any] = {}
    if heldout:
        fh, lh, yh = draw(int(heldout))
        extra.update(feats_heldout=fh, final_logits_heldout=lh, y_heldout=torch.from_numpy(yh.astype(np.int64)))
    if aug_views:
        fa, la, _ = draw(n, int(aug_views))
        extra.update(feats_train_aug=fa, final_logits_train_aug=la)
    recipe: dict[str, Any] = {"ic_epochs": 3, "lr": {m: 1e-2 for m in EXIT_MODALITIES}, "batch_size": 16, "milestones": [], "adam_eps": 1e-8, "weight_decay": 0.0}
    if train_segments is not None:
        recipe["train_segments"] = train_segments
    if aug_views:
        recipe["augment_views"] = int(aug_views)
    order = [(m, k) for m in EXIT_MODALITIES for k in (1, 2, 3, 4)] + [("fused", 4)]
    stage_cost = np.array([4.0, 3.0, 2.0, 1.0])
    costs = [stage_cost[k - 1] + 0.5 for m, k in order[:-1]] + [0.5]
    return ExitView(
        modalities=EXIT_MODALITIES,
        feats_train=feats,
        final_logits_train=finals,
        y_train=torch.from_numpy(y.astype(np.int64)),
        num_classes=num_classes,
        head_factory=_HeadFactory(num_classes, seed),
        exit_order=tuple(order),
        exit_macs=np.cumsum(costs),
        recipe=recipe,
        seed=seed,
        generator=torch.Generator().manual_seed(seed),
        rng=np.random.default_rng(seed),
        **extra,
    )


def _distill_exits(method: DistillationMethod, view: ExitView) -> ExitModel:
    import torch

    frozen = [t for m in view.modalities for t in view.feats_train[m]] + [view.final_logits_train[m] for m in view.modalities] + [view.y_train]
    for fs, ls in ((view.feats_heldout, view.final_logits_heldout), (view.feats_train_aug, view.final_logits_train_aug)):
        if fs is not None:
            frozen += [t for m in view.modalities for t in fs[m]] + [ls[m] for m in view.modalities]
    before = _fingerprint(frozen)
    out = _run_guarded(method.name, lambda: method.distill(view))
    assert _fingerprint(frozen) == before, f"{method.name}: changed the frozen backbones' cached features, logits or labels in place; copy them before modifying"
    try:  # the harness's own check (``validation.check_exit_model``): heads of its architecture, finite, a valid combiner
        return check_exit_model(out, view, method.name)
    except OutputError as exc:
        raise AssertionError(str(exc)) from None


def check_exit_method(method: DistillationMethod, *, max_seconds: float = 120.0) -> ExitModel:
    """Conformance of an early-exit method on ``make_exit_view`` (raises AssertionError): valid
    heads and combiner, frozen inputs untouched, deterministic; then valid output on a view
    shaped as video/quick@3's (held-out clips, augmented copies, segment-averaged recipe)."""
    assert isinstance(method, DistillationMethod), f"{method!r} is not a DistillationMethod"
    assert method.role == "early-exit", f"{method.name}: role is {method.role!r}; set role = 'early-exit'"
    t0 = time.perf_counter()
    first = _distill_exits(method, make_exit_view())
    elapsed = time.perf_counter() - t0
    assert elapsed < max_seconds, f"{method.name}: took {elapsed:.1f}s on the kit's tiny features"
    view = make_exit_view()
    assert not any(hasattr(view, a) for a in ("x_test", "y_test", "test", "feats_test")), "the view must not expose test data"
    second = _distill_exits(method, view)
    for key in first.heads:
        assert _state_equal(first.heads[key], second.heads[key]), f"{method.name}: head {key} differs between two runs with the same seed (not deterministic)"
    if first.combiner is not None:
        assert second.combiner is not None and all(np.array_equal(a, b) for a, b in zip(first.combiner, second.combiner)), f"{method.name}: combiner not deterministic"
    # a view shaped as video/quick@3's: held-out clips, augmented copies, segment-averaged training
    _distill_exits(method, make_exit_view(heldout=6, aug_views=2, train_segments="average"))
    return first


# ============================================================================================
# provisioning
# ============================================================================================


def make_demand_trace(days: int = 2, *, seed: int = 0, step_seconds: float = 60.0) -> np.ndarray:
    """Requests per minute over ``days`` days: Poisson counts of a diurnal, weekday-weighted rate
    with scheduled jobs on the hour. Guarded: a non-privileged method must not regenerate it."""
    _check_not_contestant("generate the demand trace")
    rng = np.random.default_rng(_seed("demand", days, seed, step_seconds))
    steps = int(days * 86400 / step_seconds)
    t = np.arange(steps) * step_seconds / 86400.0
    tod = t % 1.0
    rate = 0.6 * (0.2 + 2 * np.maximum(0, np.sin(np.pi * (tod - 0.3) / 0.5)) ** 2)
    on_hour = (np.arange(steps) * step_seconds % 3600 == 0) & (tod > 9 / 24) & (tod < 18 / 24)
    rate = rate + 3.0 * on_hour
    return rng.poisson(rate).astype(np.int64)


@dataclass
class PoolSimResult:
    hits: int = 0
    misses: int = 0
    idle_steps: float = 0.0
    pool_creations: int = 0
    clipped: int = 0
    plans: list[np.ndarray] = field(default_factory=list)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 1.0


def simulate_pool(method: ProvisioningMethod, demand: np.ndarray, *, start_step: int, lead: int = 5, decision_every: int = 5, max_pool: int = 200, step_seconds: float = 60.0, seed: int = 0, start: str = "2026-01-05T00:00:00") -> PoolSimResult:
    """Drive ``method`` over ``demand[start_step:]`` with the pooling track's own simulator
    (``coreset_bench.tracks.pooling.sim.run_method``): in-flight creations join the pool after ``lead``
    steps, requests take ready clusters (the rest are misses), ``plan`` is called every
    ``decision_every`` steps for ``lead + decision_every`` targets (checked, rounded, clipped to
    ``max_pool``), and the pool is replenished or trimmed towards the current target each step.
    ``fit`` is called once at ``start_step``. A bad plan raises AssertionError naming the method."""
    from .tracks.pooling.sim import PlanError, run_method

    try:
        run = run_method(method, demand, start_step=start_step, lead=lead, decision_every=decision_every, max_pool=max_pool, step_seconds=step_seconds, seed=seed, start=start, guard=_run_guarded)
    except PlanError as exc:
        raise AssertionError(str(exc)) from None
    sim = run.sim
    return PoolSimResult(int(sim.hits[0]), int(sim.misses[0]), float(sim.idle_steps[0]), int(sim.pool_creations[0]), run.clipped, run.plans)


def check_provisioning_method(method: ProvisioningMethod, *, days: int = 2, max_seconds: float = 30.0) -> PoolSimResult:
    """Conformance of a provisioning method on a ``days``-day minute trace (the first day is
    history, the rest is planned); raises AssertionError. Returns the first run's simulation."""
    assert isinstance(method, ProvisioningMethod), f"{method!r} is not a ProvisioningMethod"
    assert method.name, "a method needs a name"
    demand = make_demand_trace(days)
    start_step = len(demand) // days
    t0 = time.perf_counter()
    first = simulate_pool(method.with_params(), demand, start_step=start_step)  # a fresh copy per run, as per cell
    elapsed = time.perf_counter() - t0
    assert elapsed < max_seconds, f"{method.name}: planning a {days}-day trace took {elapsed:.1f}s (limit {max_seconds:g}s)"
    second = simulate_pool(method.with_params(), demand, start_step=start_step)
    assert len(first.plans) == len(second.plans) and all(np.array_equal(a, b) for a, b in zip(first.plans, second.plans)), f"{method.name}: plans differ between two runs with the same seed (not deterministic)"
    return first


__all__ = [
    "InstructionWorld",
    "LMOutput",
    "PoolSimResult",
    "TinyLM",
    "check_decentralized_method",
    "check_exit_method",
    "check_provisioning_method",
    "check_text_selection_method",
    "make_decentralized_spec",
    "make_decentralized_view",
    "make_demand_trace",
    "make_exit_view",
    "make_instruction_view",
    "make_instruction_world",
    "simulate_pool",
]

