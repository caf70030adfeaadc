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

================  ==========================  ================================================
kind              base class                  function
================  ==========================  ================================================
selection         ``SelectionMethod``         ``select(view: SelectionView) -> Selection``
training          ``TrainingMethod``          ``batch_loss(model, x, y, ctx) -> per-sample loss``
attack            ``AttackMethod``            ``perturb(model, x, y, threat, generator) -> x_adv``
privacy           ``PrivacyMethod``           ``score(view: PrivacyView) -> scores``
noise-correction  ``NoiseCorrectionMethod``   ``correct(view: NoiseView) -> model``
distillation      ``DistillationMethod``      ``distill(view: DistillationView) -> models``
provisioning      ``ProvisioningMethod``      ``plan(view: ProvisioningView) -> pool sizes``
================  ==========================  ================================================
"""

from __future__ import annotations

import copy
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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
        for k, v in params.items():
            try:
                new[k] = _coerce(v, self.params[k])
            except ValueError as exc:
                raise ValueError(f"method {self.name!r}, parameter {k!r}: {exc}") from None
        clone.params = new
        return clone

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "summary": self.summary,
            "citation": self.citation,
            "params": dict(self.params),
            "tracks": list(self.tracks),
            "package": self.package,
        }

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<{type(self).__name__} {self.name}@{self.version} {self.params}>"


def _coerce(value: Any, default: Any) -> Any:
    """Coerce a CLI string to the type of the parameter's default."""
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    if isinstance(default, bool):
        low = value.lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected a boolean (true/false), got {value!r}")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
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

    @abstractmethod
    def select(self, view: SelectionView) -> Selection | Sequence[int] | np.ndarray:
        ...


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
class DistillationView(_ReadOnlyView):
    """Knowledge-distillation inputs: per-node (or per-modality) training data, teacher models,
    a communication graph where the track defines one, and the harness's training fixture."""

    node_data: Sequence[tuple[Any, Any]]
    num_classes: int
    model_factory: Callable[[], Any]
    teachers: Sequence[Any] = ()
    graph: Any = None
    public_x: Any = None
    train: Callable[..., Any] | None = None
    seed: int = 0
    generator: Any = None


class DistillationMethod(Method):
    """Returns the trained student model(s), one per node or exit."""

    kind: ClassVar[str] = "distillation"

    @abstractmethod
    def distill(self, view: DistillationView) -> Sequence[Any]:
        ...


# --------------------------------------------------------------------------------------------
# provisioning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvisioningView(_ReadOnlyView):
    """Pool-sizing inputs: the observed demand history (requests per time step) up to now and
    the horizon to plan for."""

    history: np.ndarray
    horizon: int
    step_seconds: float
    seed: int


class ProvisioningMethod(Method):
    """Returns the pool size to keep warm for each of the next ``horizon`` steps."""

    kind: ClassVar[str] = "provisioning"

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
