"""Method kinds: the protocols a plugin implements, one per kind.

A *method* is an object with a ``name``, ``version``, one-line ``summary``, its default
``params`` and the function(s) of its kind. Subclass the base class of the kind and register an
instance through the ``register_methods`` hook::

    from coreset_bench import hookimpl
    from coreset_bench.kinds import SelectionMethod, Selection

    class MyMethod(SelectionMethod):
        name = "mymethod"
        summary = "Keep the samples with the lowest final loss."
        signals = frozenset({"loss"})

        def select(self, view):
            return view.signals["loss"][-1].argsort()[: view.budget]

    @hookimpl
    def register_methods(register):
        register(MyMethod())

A method never sees a track's private state: it receives a *view* built by the track
(``SelectionView``, ``PrivacyView``, ...), which holds only what the protocol allows. Test inputs
and labels never appear in a contestant's view. Views are read-only: every numpy array in a view
(and in ``Signals``) is a non-writable view of the track's array, every tensor is the view's own
copy, so a method that writes into them cannot change what later cells see. (Models handed out,
e.g. ``NoiseView.model``, are the view's own copies where the track says so.)

Kinds and the function each must implement:

================  ==========================  ===========================================================
kind              base class                  function (and the attribute that picks the track)
================  ==========================  ===========================================================
selection         ``SelectionMethod``         ``select(view: SelectionView) -> Selection``
                                              (``modalities`` has ``"image"``: coreset track)
                                              ``select(view: InstructionView) -> Selection``
                                              (``modalities`` has ``"text"``: instruction track)
training          ``TrainingMethod``          ``batch_loss(model, x, y, ctx) -> per-sample loss``
attack            ``AttackMethod``            ``perturb(model, x, y, threat, generator) -> x_adv``
privacy           ``PrivacyMethod``           ``score(view: PrivacyView) -> scores``
                                              (``role`` ``"attack"``: privacy; ``"proxy"``: memorization)
noise-correction  ``NoiseCorrectionMethod``   ``correct(view: NoiseView) -> model``
distillation      ``DistillationMethod``      ``distill(view: DecentralizedView) -> one model per node``
                                              (``role = "decentralized"``: decentralized track)
                                              ``distill(view: ExitView) -> ExitModel``
                                              (``role = "early-exit"``: video track)
provisioning      ``ProvisioningMethod``      ``plan(view: ProvisioningView) -> pool sizes``
                                              (optional ``fit(view)``; ``privileged``: a bound)
================  ==========================  ===========================================================

A track takes a method only when ``Track.accepts(method)`` is None: the kind matches, a
non-empty ``tracks`` names the track, and the modality or role the track needs is declared.

Every view carries ``seed``, a seeded ``generator`` (torch) and/or ``rng`` (numpy) for the
method's own randomness. The views of the phase-2 kinds (``InstructionView``,
``DecentralizedView``, ``ExitView``, ``ProvisioningView``) also carry an ``info`` dict the method
may fill with JSON-serialisable facts, stored with the cell. No view holds hidden truth: no task
ids or noise flags of an instruction pool, no out-of-distribution flags of a public set, no
future demand (except ``ProvisioningView.future``, given only to ``privileged`` methods).
"""

from __future__ import annotations

import copy
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

KINDS: tuple[str, ...] = (
    "selection",
    "training",
    "attack",
    "privacy",
    "noise-correction",
    "distillation",
    "provisioning",
)


def readonly(value: Any) -> Any:
    """What a view hands out for ``value``: numpy arrays as non-writable views (no copy), tensors
    as detached copies, tuples and lists element-wise (a new container); anything else as is.

    A tensor that is already such a copy is handed out as is, so a track can build the views of
    one cell from one copy (``x = readonly(track_x)`` once; per-cell plugin caches keyed by the
    tensor keep working) while its own tensors stay untouched."""
    if isinstance(value, np.ndarray):
        out = value.view()
        out.setflags(write=False)
        return out
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        if getattr(value, "_coreset_bench_view_copy", False):  # already a view's own copy
            return value
        out = value.detach().clone()
        out._coreset_bench_view_copy = True  # a track may share it between the views of one cell
        return out
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(readonly(v) for v in value)
    if isinstance(value, list):
        return [readonly(v) for v in value]
    return value


class _ReadOnlyView:
    """Mixin of the frozen view dataclasses: ``__post_init__`` protects every field (``readonly``)."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:  # type: ignore[attr-defined]
            object.__setattr__(self, name, readonly(getattr(self, name)))


_TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class Param:
    """The declared type and range of one method parameter (``Method.param_specs``).

    ``run`` and ``run --dry-run`` check every ``--param`` against it before any cell exists, and
    ``plugins show NAME`` prints it. ``type``: ``bool``, ``int``, ``float`` or ``str`` (an ``int``
    is accepted for a ``float``); ``min``/``max``: bounds, inclusive unless ``min_open`` /
    ``max_open``; ``choices``: the allowed values; ``nullable``: ``None`` (``--param k=none``)
    is allowed; ``infinite``: ``inf`` is allowed (e.g. DP-SGD's non-private epsilon); ``help``:
    one line on what it does; ``check``: a further rule the fields above cannot say (e.g. a value
    with a suffix like ``'stochastic:0.01'``), a callable returning what is wrong (one phrase) or
    None, with ``rule`` its words for ``describe``. Undeclared parameters are checked only
    against the type of their default."""

    type: type | None = None
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    min_open: bool = False
    max_open: bool = False
    nullable: bool = False
    infinite: bool = False
    help: str = ""
    check: Callable[[Any], str | None] | None = None
    rule: str = ""

    def describe(self) -> str:
        """``float in (0, 1]``, ``int >= 1``, ``str one of 'a', 'b'``: the rule in words."""
        out = _TYPE_NAMES.get(self.type, getattr(self.type, "__name__", "any")) if self.type else "any"
        if self.choices is not None:
            out += " one of " + ", ".join(map(repr, self.choices))
        if self.min is not None and self.max is not None:
            out += f" in {'(' if self.min_open else '['}{self.min:g}, {self.max:g}{')' if self.max_open else ']'}"
        elif self.min is not None:
            out += f" {'>' if self.min_open else '>='} {self.min:g}"
        elif self.max is not None:
            out += f" {'<' if self.max_open else '<='} {self.max:g}"
        if self.rule:
            out += " " + self.rule
        if self.infinite:
            out += " or inf"
        if self.nullable:
            out += " or none"
        return out

    def problem(self, value: Any) -> str | None:
        """None when ``value`` satisfies the declaration, else what is wrong (one phrase)."""
        import math

        if value is None:
            return None if self.nullable else f"expected {self.describe()}, got none"
        t = self.type
        if t is not None:
            ok = isinstance(value, t) and not (t is int and isinstance(value, bool))
            if t is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                return f"expected {self.describe()}, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value) and not (self.infinite and value == math.inf):
            return f"expected a finite number, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"expected one of {', '.join(map(repr, self.choices))}, got {value!r}"
        if self.min is not None or self.max is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return f"expected a number ({self.describe()}), got {value!r}"
            lo_bad = self.min is not None and (value <= self.min if self.min_open else value < self.min)
            hi_bad = self.max is not None and (value >= self.max if self.max_open else value > self.max)
            if lo_bad or hi_bad:
                return f"expected {self.describe()}, got {value!r}"
        if self.check is not None:
            return self.check(value)
        return None


def _as_param(spec: Any) -> Param:
    """A ``Param`` from a ``Param`` or a plain mapping (``{"type": float, "min": 0}``)."""
    if isinstance(spec, Param):
        return spec
    if isinstance(spec, Mapping):
        d = dict(spec)
        if "choices" in d and d["choices"] is not None:
            d["choices"] = tuple(d["choices"])
        return Param(**d)
    raise TypeError(f"a parameter declaration is a Param or a mapping, not {type(spec).__name__}")


class Method(ABC):
    """Base of every method plugin.

    Class attributes describe the method; ``params`` holds its default parameters, which a user
    overrides with ``--param key=value`` (the values become part of the cell key). Instances are
    cheap: ``with_params`` returns a copy with overridden parameters.
    """

    kind: ClassVar[str] = ""
    name: str = ""
    version: str = "0.1"
    summary: str = ""
    citation: str = ""
    #: default parameters; JSON-serialisable scalars (str, int, float, bool, None)
    params: dict[str, Any] = {}
    #: declared types and ranges of parameters (name -> ``Param`` or a mapping of its fields);
    #: ``--param`` values are checked against them before any cell exists
    param_specs: Mapping[str, Any] = {}
    #: tracks this method takes part in; empty means every track that ranks its kind
    tracks: tuple[str, ...] = ()
    #: filled in by the plugin facade: the distribution that registered the method
    package: str = ""

    def __init__(self, **params: Any) -> None:
        merged = dict(type(self).params)
        unknown = sorted(set(params) - set(merged))
        if unknown:
            raise ValueError(
                f"method {self.name!r} has no parameter {', '.join(unknown)}; "
                f"known parameters: {', '.join(sorted(merged)) or '(none)'}"
            )
        merged.update(params)
        self.params = merged

    def with_params(self, **params: Any) -> Method:
        """A copy of this method whose parameters are updated with ``params`` (type-coerced)."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise ValueError(
                f"method {self.name!r} has no parameter {', '.join(unknown)}; "
                f"known parameters: {', '.join(sorted(self.params)) or '(none)'}"
            )
        clone = copy.copy(self)
        new = dict(self.params)
        specs = self.param_spec_map()
        for k, v in params.items():
            try:
                new[k] = _coerce(v, self.params[k], specs.get(k))
            except ValueError as exc:
                raise ValueError(f"method {self.name!r}, parameter {k!r}: {exc}") from None
            spec = specs.get(k)
            problem = spec.problem(new[k]) if spec is not None else None
            if problem:
                raise ValueError(f"method {self.name!r}, parameter {k!r}: {problem}")
        clone.params = new
        return clone

    def param_spec_map(self) -> dict[str, Param]:
        """``param_specs`` as ``Param`` objects (mappings converted)."""
        return {k: _as_param(v) for k, v in dict(self.param_specs).items()}

    def param_table(self) -> list[dict[str, Any]]:
        """One row per parameter: name, default, declared rule (or the default's type), help."""
        specs = self.param_spec_map()
        rows = []
        for k in sorted(self.params):
            spec = specs.get(k)
            default = self.params[k]
            rule = spec.describe() if spec is not None else (_TYPE_NAMES.get(type(default), type(default).__name__) if default is not None else "any")
            rows.append({"name": k, "default": default, "rule": rule, "declared": spec is not None, "help": spec.help if spec else ""})
        return rows

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "summary": self.summary,
            "citation": self.citation,
            "params": dict(self.params),
            "param_specs": {r["name"]: r["rule"] for r in self.param_table()},
            "tracks": list(self.tracks),
            "package": self.package,
        }

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{type(self).__name__} {self.name}@{self.version} {self.params}>"


def _coerce(value: Any, default: Any, spec: Param | None = None) -> Any:
    """Coerce a CLI string to the declared type (``spec``), else to the type of the default."""
    if spec is not None and isinstance(value, str):
        if spec.nullable and value.strip().lower() in {"none", "null"}:
            return None
        if spec.type is not None and spec.type is not str:
            default = spec.type(0) if spec.type in (int, float, bool) else default
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    if isinstance(default, bool):
        low = value.lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected a boolean (true/false), got {value!r}")
    try:
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise ValueError(f"expected {'an integer' if isinstance(default, int) else 'a number'}, got {value!r}") from None
    return value


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------

#: Signal names a selection method may ask for (``SelectionMethod.signals``). Arrays are CPU
#: ``numpy`` arrays; E = proxy epochs, K = embedding checkpoints, N = pool size,
#: Nv = validation size, C = classes, D = embedding width.
SIGNALS: dict[str, str] = {
    "loss": "(E, N) float32: cross-entropy of each pool sample after each proxy epoch (eval mode, no augmentation)",
    "prob_true": "(E, N) float32: softmax probability of the true class after each epoch",
    "prob_other_max": "(E, N) float32: largest softmax probability among the other classes",
    "correct": "(E, N) bool: eval-mode prediction equals the label, after each epoch",
    "train_correct": "(E, N) bool: prediction on the sample's training mini-batch (train mode, augmented) in epoch e",
    "val_loss": "(E, Nv) float32: cross-entropy of each validation sample after each epoch",
    "input_grad_norm": "(E, N) float32: L2 norm of d loss / d x for the [0, 1] input, eval mode, true label",
    "logits": "(K, N, C) float32: logits at the embedding checkpoints",
    "embeddings": "(K, N, D) float32: penultimate features at the embedding checkpoints",
    "val_logits": "(K, Nv, C) float32: validation logits at the embedding checkpoints",
    "val_embeddings": "(K, Nv, D) float32: validation penultimate features at the checkpoints",
    "checkpoint_epochs": "(K,) int64: the epochs (1-based) at which logits/embeddings were taken",
    "proxy_model": "callable () -> torch.nn.Module: the final proxy model, eval mode, on the view's device",
}


def signal_shape(name: str) -> str:
    """The shape and dtype part of a signal's description, e.g. ``(E, N) float32``."""
    return SIGNALS[name].split(":", 1)[0]


def unknown_signals_error(method: str, names: Iterable[str]) -> str | None:
    """None when every name in ``names`` is in ``SIGNALS``; else a one-line error naming the
    unknown ones and listing every known signal with its shape (what a plugin author needs)."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = sorted({str(n) for n in names} - set(SIGNALS))
    if not unknown:
        return None
    known = "; ".join(f"{k} {signal_shape(k)}" for k in SIGNALS)
    return (
        f"method {method!r} asks for unknown signal(s) {', '.join(map(repr, unknown))} in its `signals`; "
        f"known signals (shapes: E proxy epochs, K checkpoints, N pool, Nv validation, C classes, D width): {known}"
    )


class Signals(Mapping[str, Any]):
    """Read-only mapping of training signals of one proxy run (see ``SIGNALS``).

    Only the signals a method declared are present; asking for another raises a ``KeyError``
    whose message says to declare it.
    """

    def __init__(self, data: Mapping[str, Any], *, method: str = "") -> None:
        self._data = {k: readonly(v) for k, v in data.items()}
        self._method = method

    def __getitem__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(
                f"signal {key!r} was not computed for {self._method or 'this method'}; "
                f"add it to the method's `signals` (known: {', '.join(f'{k} {signal_shape(k)}' for k in SIGNALS)})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True)
class SelectionView(_ReadOnlyView):
    """What a selection method sees: the training pool, the validation split, signals, budget.

    ``x`` is float32 in [0, 1], shape (N, C, H, W) (or (N, F) for tabular data), on ``device``.
    The test split is not reachable from here.
    """

    x: Any
    y: Any
    x_val: Any
    y_val: Any
    num_classes: int
    budget: int
    fraction: float
    signals: Signals
    seed: int
    generator: Any  # torch.Generator seeded from the cell key
    rng: np.random.Generator
    model_factory: Callable[[], Any]
    device: Any = "cpu"

    @property
    def n(self) -> int:
        return int(len(self.y))

    @property
    def labels(self) -> np.ndarray:
        """Pool labels as a numpy int64 array."""
        y = self.y
        return y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)

    @property
    def val_labels(self) -> np.ndarray:
        y = self.y_val
        return y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)

    def class_budgets(self) -> np.ndarray:
        """Per-class counts summing exactly to ``budget``, proportional to class sizes.

        Largest-remainder rounding of ``budget * n_c / N``; never more than a class holds.
        """
        return class_budgets(self.labels, self.budget, self.num_classes)


def class_budgets(labels: np.ndarray, budget: int, num_classes: int) -> np.ndarray:
    """Split ``budget`` over classes proportionally to their sizes (largest remainder)."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes).astype(np.int64)
    total = int(counts.sum())
    if budget > total:
        raise ValueError(f"budget {budget} exceeds the pool size {total}")
    exact = counts * (budget / max(total, 1))
    base = np.minimum(np.floor(exact).astype(np.int64), counts)
    rest = budget - int(base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    for c in order:
        if rest == 0:
            break
        if base[c] < counts[c]:
            base[c] += 1
            rest -= 1
    # if rounding left budget (classes full), fill wherever room remains
    for c in range(num_classes):
        while rest > 0 and base[c] < counts[c]:
            base[c] += 1
            rest -= 1
    return base


@dataclass
class Selection:
    """The output of a selection method: pool indices and, optionally, per-sample weights."""

    indices: np.ndarray
    weights: np.ndarray | None = None
    #: optional per-sample scores over the whole pool (stored as an artifact; higher = kept first
    #: is *not* implied, ``info`` may say)
    scores: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


class SelectionMethod(Method):
    """Chooses a subset of the training pool.

    ``signals``: names from ``SIGNALS`` this method reads; the harness computes only those,
    from one shared proxy run. ``exact_budget``: when False the method may return fewer samples
    than the budget (e.g. GradMatch); the realized size is recorded.
    """

    kind: ClassVar[str] = "selection"
    signals: frozenset[str] = frozenset()
    exact_budget: bool = True
    weighted: bool = False
    #: data the method can select from: "image" (``SelectionView``, the coreset track) and/or
    #: "text" (``InstructionView``, the instruction track); tracks refuse other methods
    modalities: frozenset[str] = frozenset({"image"})

    @abstractmethod
    def select(self, view: SelectionView | InstructionView) -> Selection | Sequence[int] | np.ndarray:
        ...


@dataclass(frozen=True)
class WarmupRun:
    """The shared warm-up run of the instruction track (LESS/TRIM), trained once per repeat on a
    random part of the pool. ``checkpoints[k]()`` returns model k in eval mode; ``lrs[k]`` is the
    mean learning rate of the segment ending at checkpoint k; ``adam_states[k]`` maps a parameter
    name to its Adam ``(exp_avg, exp_avg_sq)``; ``grad_params`` names the parameters whose
    gradients are gradient-based methods' features (the LoRA parameters on HF models)."""

    indices: np.ndarray
    checkpoints: Sequence[Callable[[], Any]]
    lrs: Sequence[float]
    adam_states: Sequence[Mapping[str, tuple[Any, Any]]]
    grad_params: Sequence[str]


@dataclass(frozen=True)
class InstructionView(_ReadOnlyView):
    """What a text selection method sees (instruction track): a tokenized pool of
    prompt/response examples and a handful of target examples.

    ``ids`` (N, T) int64, right-padded; ``response_mask`` marks positions whose *next* token is a
    response token (loss positions); ``prompt_mask`` marks prompt tokens; ``texts`` holds
    ``"prompt ||| response"`` for lexical methods. ``target_*`` are the target examples (the
    task to select for). ``lm.base()`` returns a fresh copy of the base model and
    ``lm.forward(model, ids, attn_layers)`` runs it, counted; ``warmup()`` returns the shared
    ``WarmupRun`` (lazy; its cost is charged to the method that calls it). The pool's task ids,
    noise flags and any other generator truth are not here.
    """

    ids: Any
    response_mask: Any
    prompt_mask: Any
    lengths: Any
    texts: Sequence[str]
    target_ids: Any
    target_response_mask: Any
    target_prompt_mask: Any
    target_task: Sequence[str]
    vocab: Sequence[str]
    budget: int
    fraction: float
    lm: Any
    warmup: Callable[[], WarmupRun]
    seed: int
    generator: Any  # torch.Generator seeded from the cell key
    rng: np.random.Generator
    device: Any = "cpu"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Pool size (``random`` and ``full`` need only ``n``, ``budget`` and ``rng``)."""
        return int(len(self.ids))


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainContext:
    """Per-run context handed to ``TrainingMethod.batch_loss``.

    ``recipe`` holds the profile's training settings (epochs, lr, eps, step_size, ...);
    ``generator`` is the training run's seeded torch generator (use it for random starts).
    """

    recipe: Mapping[str, Any]
    num_classes: int
    generator: Any
    epoch: int = 0


class TrainingMethod(Method):
    """A training recipe: how the loss of one mini-batch is computed.

    The harness owns the loop (optimizer, schedule, batching, augmentation, weighting); a
    training plugin supplies ``batch_loss``, returning one loss per sample (shape (B,)) so that
    weighted subsets work. Adversarial recipes (TRADES, PGD-AT) craft their inputs inside.
    """

    kind: ClassVar[str] = "training"

    @abstractmethod
    def batch_loss(self, model: Any, x: Any, y: Any, ctx: TrainContext) -> Any:
        ...


# --------------------------------------------------------------------------------------------
# attack
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreatModel:
    """An evaluation threat model: norm ball of radius ``eps`` in [0, 1] pixel units."""

    norm: str = "linf"
    eps: float = 8 / 255
    step_size: float = 2 / 255
    steps: int = 10
    lower: float = 0.0
    upper: float = 1.0


class AttackMethod(Method):
    """An evasion attack: returns adversarial inputs within the threat model's ball.

    The harness checks that ``x_adv`` lies in the ball and in [lower, upper] and measures the
    accuracy that remains.
    """

    kind: ClassVar[str] = "attack"

    @abstractmethod
    def perturb(self, model: Any, x: Any, y: Any, threat: ThreatModel, generator: Any) -> Any:
        ...


@dataclass(frozen=True)
class AttackView:
    """What the harness attacks with an attack contestant: ``perturb(model, x, y, threat,
    generator)`` is called with these fields (in the contestant worker, on its own copies: the
    model rebuilt from its architecture and weights, the attacked points and their labels)."""

    model: Any
    x: Any
    y: Any
    threat: ThreatModel
    generator: Any


# --------------------------------------------------------------------------------------------
# privacy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivacyView(_ReadOnlyView):
    """Membership-inference inputs.

    ``target`` and every entry of ``shadows`` are black boxes: callables mapping an input batch
    to logits (no gradients). ``shadow_in[s, i]`` is True when query i was in shadow s's training
    set. ``views`` are input transformations (identity first) the attack may query with.
    """

    x: Any
    y: Any
    num_classes: int
    target: Callable[[Any], Any]
    shadows: Sequence[Callable[[Any], Any]]
    shadow_in: np.ndarray
    views: Sequence[Callable[[Any], Any]]
    seed: int
    generator: Any
    #: white-box access for proxies that need gradients (memorization role only); None for MIA
    target_model: Any = None
    shadow_models: Sequence[Any] | None = None
    #: white-box target models at the training checkpoints (last = final; proxy role only)
    target_checkpoints: Sequence[Any] | None = None
    #: per-channel std of the normalization inside the models (inputs are in [0, 1]); methods
    #: whose reference perturbs normalized inputs scale their steps by it. None: unknown
    input_std: Sequence[float] | None = None


class PrivacyMethod(Method):
    """Scores each query: higher means more likely a member (or more memorized)."""

    kind: ClassVar[str] = "privacy"
    #: "attack" (membership inference, black box) or "proxy" (memorization proxy)
    role: str = "attack"

    @abstractmethod
    def score(self, view: PrivacyView) -> np.ndarray:
        ...


# --------------------------------------------------------------------------------------------
# noise correction
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseView(_ReadOnlyView):
    """Label-noise correction inputs: a model trained on noisy labels, a small verified clean
    set, and the noisy pool. ``train(model, x, y, epochs=None, **overrides)`` runs the harness's
    standard training fixture in place (``overrides``: keys of the training recipe, e.g. ``lr``
    or ``batch_size``) and returns the model; ``model_factory()`` returns a fresh model.
    ``recipe`` is the fixture's training recipe (read it, e.g. to scale the learning rate);
    ``info`` is a dict the method may fill with JSON-serialisable facts about its run (e.g. a
    chosen hyperparameter), stored with the cell."""

    model: Any
    x_verified: Any
    y_verified: Any
    x_pool: Any
    y_pool_noisy: Any
    num_classes: int
    model_factory: Callable[[], Any]
    train: Callable[..., Any]
    seed: int
    generator: Any
    recipe: Mapping[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    #: held-out pool samples with their noisy labels, never trained on (None where the profile
    #: holds none out); for model selection
    x_val: Any = None
    y_val_noisy: Any = None


class NoiseCorrectionMethod(Method):
    """Returns a corrected model; it may modify a copy of ``view.model`` or train a new one."""

    kind: ClassVar[str] = "noise-correction"

    @abstractmethod
    def correct(self, view: NoiseView) -> Any:
        ...


# --------------------------------------------------------------------------------------------
# distillation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecentralizedView(_ReadOnlyView):
    """Decentralized-learning inputs (role ``"decentralized"``): n nodes on a fixed topology.

    ``nodes[r]`` is node r's local ``(x, y)`` (x in [0, 1]); ``own_label_counts[r]`` its own label
    histogram (C,) (sharing it goes through ``net.allgather``); ``public_x`` is an unlabelled
    public set, the same at every node (no flag says which of it is out-of-distribution). ``net``
    is the only channel between nodes and counts every byte; ``topology`` has ``name``, ``n``,
    ``W`` and ``neighbours(i)``. ``model_factory()`` returns the same seeded initial model on
    every call. ``recipe``: epochs, batch_size, momentum, weight_decay, milestones, gamma.

    Contract: node i's update depends only on ``nodes[i]``, ``public_x``,
    ``own_label_counts[i]``, the recipe and what node i received through ``net``. Enforced:

    * ``nodes`` and ``own_label_counts`` are ``NodeLocal`` rows: row i is readable only inside
      ``with view.net.node(i):`` (the method acting as node i); any other row raises
      ``LeakageError`` and fails the cell;
    * in a track run the method runs in the contestant worker, a process without the test split
      or the public set's hidden flags; ``net`` there forwards every call to the harness, which
      mixes and counts the bytes itself;
    * the harness fails a cell whose nodes end with (nearly) the same parameters although less
      than one model's bytes passed between them through ``net`` ("models converged without
      communication");
    * the kit's isolation check perturbs one node's data and requires every other node's model
      to stay bit-identical on an edgeless topology.

    Return exactly n models of the view's architecture (built by ``model_factory``): the harness
    receives their parameters and loads them into its own copies.

    Row r of ``nodes`` and ``own_label_counts`` is the global node ``net.local_nodes[r]``: all
    n nodes (0..n-1) when the track simulates them in one process; only this process's node in a
    multi-process run (execution ``gloo``: one process per node, ``net`` a ``GlooNetwork``, which
    always acts as its own node), where ``n`` is 1 and ``topology.n`` the number of nodes. A
    method written against ``net.local_nodes`` (seeding each node by its global id) runs
    unchanged in both and declares ``multiprocess = True``. The recipe has no learning rate: it
    is each method's own ``lr`` parameter (the reference scripts differ: DSGDm 0.1, QGM and IDKD
    0.01).
    """

    nodes: Sequence[tuple[Any, Any]]
    num_classes: int
    own_label_counts: Sequence[np.ndarray]
    public_x: Any
    net: Any
    topology: Any
    model_factory: Callable[[], Any]
    recipe: Mapping[str, Any]
    steps_per_epoch: int
    seed: int
    generator: Any
    rng: np.random.Generator
    #: optional vmapped ensemble helper class (``NodeEnsemble``) where the track provides one
    ensemble: Any = None
    device: Any = "cpu"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.nodes)


@dataclass(frozen=True)
class ExitView(_ReadOnlyView):
    """Early-exit distillation inputs (role ``"early-exit"``): frozen backbones' cached features.

    ``feats_train[m][k-1]`` is stage k's output (N, K, ch, h, w) of modality m's frozen backbone
    (K segments per clip), ``final_logits_train[m]`` (N, K, C) its final classifier's logits
    (the teachers). ``head_factory(m, k)`` returns a fresh internal-classifier head of the
    harness's architecture for stage k in 1..3. ``exit_order`` lists the backbone exits in
    order, then ``("fused", 4)``; ``exit_macs`` their cumulative cost. No test data here.

    Profiles that hold training clips out (``heldout_fraction``, video/quick@3) also give
    ``feats_heldout`` / ``final_logits_heldout`` / ``y_heldout``: the same tensors for training
    clips that neither the backbones nor ``feats_train`` contain (for fitting combiners, e.g.
    WISE's weights, on logits the backbones have not memorised); None elsewhere. Profiles with a
    training augmentation (``ic_augment``) give ``feats_train_aug[m][k-1]`` (V, N, K, ch, h, w)
    and ``final_logits_train_aug[m]`` (V, N, K, C): the frozen backbones' features and logits of
    V augmented copies (fixed random multi-scale crops) of every ``feats_train`` clip.

    ``backbone_factory(m)`` (the video track; None in the kit's views) returns a fresh copy of
    modality m's frozen network (``video_models.TinyExitNet``, eval mode, ``requires_grad`` off):
    the frozen backbones travel to the contestant worker as their architecture and weights, and
    a method may run or change its copies without touching the networks the harness evaluates with.
    """

    modalities: Sequence[str]
    feats_train: Mapping[str, Sequence[Any]]
    final_logits_train: Mapping[str, Any]
    y_train: Any
    num_classes: int
    head_factory: Callable[[str, int], Any]
    exit_order: Sequence[tuple[str, int]]
    exit_macs: np.ndarray
    recipe: Mapping[str, Any]
    seed: int
    generator: Any
    rng: np.random.Generator
    device: Any = "cpu"
    info: dict[str, Any] = field(default_factory=dict)
    feats_heldout: Mapping[str, Sequence[Any]] | None = None
    final_logits_heldout: Mapping[str, Any] | None = None
    y_heldout: Any = None
    feats_train_aug: Mapping[str, Sequence[Any]] | None = None
    final_logits_train_aug: Mapping[str, Any] | None = None
    backbone_factory: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        # the mappings of features and teacher logits too: read-only, their tensors the view's own copies
        for name in ("feats_train", "final_logits_train", "feats_heldout", "final_logits_heldout", "feats_train_aug", "final_logits_train_aug"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, MappingProxyType({k: readonly(v) for k, v in getattr(self, name).items()}))

    @property
    def n(self) -> int:
        return int(len(self.y_train))

    @property
    def n_heldout(self) -> int:
        """Training clips held out of the backbones and of ``feats_train`` (0 when none)."""
        return 0 if self.y_heldout is None else int(len(self.y_heldout))


@dataclass
class ExitModel:
    """What an early-exit method returns: ``heads[(modality, k)]`` for every modality and
    k = 1..3, and optionally ``combiner[e]``, the weights over exits 0..e (length e + 1) for
    every exit e of ``exit_order`` (None: each exit decides alone)."""

    heads: Mapping[tuple[str, int], Any]
    combiner: Sequence[np.ndarray] | None = None


class DistillationMethod(Method):
    """Returns trained students: one model per node (role ``"decentralized"``) or an
    ``ExitModel`` (role ``"early-exit"``). ``role`` picks the track; a distillation method with
    no valid role is reported by ``registry.check_pending()`` and no track takes it."""

    kind: ClassVar[str] = "distillation"
    #: "decentralized" (``DecentralizedView``) or "early-exit" (``ExitView``)
    role: str = ""
    #: role "decentralized": the method also runs one node per process (``net.local_nodes``),
    #: so the track's multi-process execution (``gloo``) can run it
    multiprocess: ClassVar[bool] = False

    @abstractmethod
    def distill(self, view: DecentralizedView | ExitView) -> Sequence[Any] | ExitModel:
        ...


#: the roles a method of each kind may declare (``check_pending`` reports others)
ROLES: dict[str, tuple[str, ...]] = {
    "privacy": ("attack", "proxy"),
    "distillation": ("decentralized", "early-exit"),
}


# --------------------------------------------------------------------------------------------
# provisioning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisioningView(_ReadOnlyView):
    """Pool-sizing inputs at step ``t``: the demand observed so far and the pool's state.

    ``history`` (t,) requests per step so far (``history == demand[:t]``); ``horizon`` steps to
    plan (lead + decision_every); ``start`` the ISO timestamp of step 0 (time of day and day of
    week derive from it); ``lead`` the creation latency in steps; ``ready``/``in_flight`` the
    current idle and being-created clusters; ``cost_idle``/``cost_miss`` and
    ``target_hit_rate`` for methods that weigh them; ``max_pool`` the harness's upper clip.
    ``future`` (the demand to come) is None except for ``privileged`` methods (a bound, never
    ranked).

    Calibration, the same for every method of a profile that declares it (None: the method's
    own default): ``calib_days`` the whole days of ``history`` (day d = ``history[d * spd :
    (d + 1) * spd]``, ascending) a method that tunes itself on a back-test must back-test on at
    this fit, and ``tune_margin`` the margin above ``target_hit_rate`` its back-test aims at.
    """

    history: np.ndarray
    horizon: int
    step_seconds: float
    seed: int
    t: int = 0
    start: str = ""
    lead: int = 1
    decision_every: int = 1
    target_hit_rate: float = 0.99
    cost_idle: float = 1.0
    cost_miss: float = 100.0
    ready: int = 0
    in_flight: int = 0
    max_pool: int = 1000
    rng: np.random.Generator | None = None
    future: np.ndarray | None = None
    calib_days: tuple[int, ...] | None = None
    tune_margin: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


class ProvisioningMethod(Method):
    """Returns the pool size to keep warm for each of the next ``horizon`` steps (1-D, length
    ``horizon``, finite, >= 0; the harness rounds and clips to ``max_pool``). The track uses a
    fresh copy per cell, so state kept on ``self`` between calls lives for one cell."""

    kind: ClassVar[str] = "provisioning"
    #: True: receives ``view.future``; shown as a bound, never ranked as a contestant
    privileged: bool = False

    def fit(self, view: ProvisioningView) -> None:
        """Optional: called at the start of the evaluation (and every ``refit_every`` steps)."""

    @abstractmethod
    def plan(self, view: ProvisioningView) -> np.ndarray:
        ...


BASES: dict[str, type[Method]] = {
    "selection": SelectionMethod,
    "training": TrainingMethod,
    "attack": AttackMethod,
    "privacy": PrivacyMethod,
    "noise-correction": NoiseCorrectionMethod,
    "distillation": DistillationMethod,
    "provisioning": ProvisioningMethod,
}
