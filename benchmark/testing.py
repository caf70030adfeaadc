"""Testing kit for plugin authors (registered as a pytest plugin through ``pytest11``).

In your own test suite::

    from coreset_bench.testing import check_selection_method, make_selection_view

    def test_my_method_conforms():
        check_selection_method(MyMethod())

or use the fixtures ``coreset_bench_selection_view`` (a small synthetic view with every signal)
and ``coreset_bench_register`` (registers a plugin module for the test and removes it after).

``check_selection_method`` runs the harness's own checks: valid, unique, in-range indices; the
exact budget (or at most the budget for methods with ``exact_budget = False``); finite,
non-negative weights and scores without NaN; determinism under a fixed seed; that the view holds
no test data; and a reasonable time on a small pool.

``check_no_test_access`` runs the method as the coreset track does: in the contestant worker
(``coreset_bench.contestant``), a separate process that never loaded a test split, whose audit
hook refuses opening the dataset files (scikit-learn's bundled data, ``--data-dir``), starting
processes and ctypes. ``check_in_worker`` does the same for a method of any kind on the pipeline
(selection, privacy, attack, noise correction) on views you build, with the kind's output check. It fails when the method trips the guard (even if the method catches the
error) or cannot be sent to the worker (its class must be importable). It does not stop a method
that escapes Python through native code already loaded; see docs/guarantees.md.

The phase-2 kinds have their own checks, with small synthetic fixtures built here so plugin
authors get them too (``coreset_bench.kit``): ``check_text_selection_method``,
``check_decentralized_method`` (with the isolation check), ``check_exit_method`` and
``check_provisioning_method``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from .kinds import SIGNALS, Selection, SelectionMethod, SelectionView, Signals, unknown_signals_error  # noqa: F401 - SIGNALS: part of the kit's API
from .validation import SelectionOutputError, validate_selection  # noqa: F401 - part of the kit's API


class _TinyNet:
    """Factory of a tiny linear classifier with ``embed`` and ``head`` (no torch import at module load)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        self.in_features = in_features
        self.num_classes = num_classes

    def __call__(self) -> Any:
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self, d: int, c: int) -> None:
                super().__init__()
                self.body = nn.Sequential(nn.Flatten(), nn.Linear(d, 16), nn.ReLU())
                self.head = nn.Linear(16, c)

            def embed(self, x: torch.Tensor) -> torch.Tensor:
                return self.body(x)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.head(self.embed(x))

        torch.manual_seed(0)
        return Net(self.in_features, self.num_classes).eval()


def synthetic_signals(n: int, n_val: int, num_classes: int, *, epochs: int = 6, dim: int = 8, seed: int = 0, labels: np.ndarray | None = None, val_labels: np.ndarray | None = None) -> dict[str, Any]:
    """Plausible random signals of every kind in ``SIGNALS`` (shapes as documented there)."""
    rng = np.random.default_rng(seed)
    y = labels if labels is not None else rng.integers(0, num_classes, n)
    yv = val_labels if val_labels is not None else rng.integers(0, num_classes, n_val)
    decay = np.linspace(2.0, 0.3, epochs)[:, None]
    loss = (decay * rng.uniform(0.5, 1.5, (1, n)) + 0.05 * rng.standard_normal((epochs, n))).clip(1e-4).astype(np.float32)
    val_loss = (decay * rng.uniform(0.5, 1.5, (1, n_val)) + 0.05 * rng.standard_normal((epochs, n_val))).clip(1e-4).astype(np.float32)
    k_epochs = np.array(sorted({max(1, epochs // 2), epochs}), dtype=np.int64)
    k = len(k_epochs)
    logits = rng.standard_normal((k, n, num_classes)).astype(np.float32)
    logits[:, np.arange(n), y] += 2.0
    probs = np.exp(logits[-1] - logits[-1].max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    p_true = np.exp(-loss)
    other = (1 - p_true) * rng.uniform(0.3, 1.0, (epochs, n))
    return {
        "loss": loss,
        "prob_true": p_true.astype(np.float32),
        "prob_other_max": other.astype(np.float32),
        "correct": p_true > other,
        "train_correct": rng.random((epochs, n)) < np.linspace(0.3, 0.95, epochs)[:, None],
        "val_loss": val_loss,
        "input_grad_norm": np.abs(rng.standard_normal((epochs, n))).astype(np.float32),
        "logits": logits,
        "embeddings": rng.standard_normal((k, n, dim)).astype(np.float32),
        "val_logits": rng.standard_normal((k, n_val, num_classes)).astype(np.float32),
        "val_embeddings": rng.standard_normal((k, n_val, dim)).astype(np.float32),
        "checkpoint_epochs": k_epochs,
    }


def make_selection_view(
    *,
    n: int = 120,
    n_val: int = 30,
    num_classes: int = 4,
    budget: int | None = None,
    fraction: float = 0.25,
    signals: Mapping[str, Any] | None = None,
    labels: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    seed: int = 0,
    image_shape: tuple[int, ...] = (1, 4, 4),
    method: str = "",
) -> SelectionView:
    """A small synthetic ``SelectionView``. ``signals`` overrides/extends the synthetic ones."""
    import torch

    rng = np.random.default_rng(seed)
    y = np.asarray(labels) if labels is not None else np.arange(n) % num_classes
    n = len(y)
    yv = np.asarray(val_labels) if val_labels is not None else np.arange(n_val) % num_classes
    n_val = len(yv)
    x = torch.from_numpy(rng.random((n, *image_shape)).astype(np.float32))
    xv = torch.from_numpy(rng.random((n_val, *image_shape)).astype(np.float32))
    sig = synthetic_signals(n, n_val, num_classes, seed=seed, labels=y, val_labels=yv)
    if signals:
        sig.update(signals)
    factory = _TinyNet(int(np.prod(image_shape)), num_classes)
    sig.setdefault("proxy_model", factory)
    if budget is None:
        budget = max(1, int(round(fraction * n)))
    gen = torch.Generator().manual_seed(seed)
    return SelectionView(
        x=x,
        y=torch.from_numpy(y.astype(np.int64)),
        x_val=xv,
        y_val=torch.from_numpy(yv.astype(np.int64)),
        num_classes=num_classes,
        budget=int(budget),
        fraction=budget / n,
        signals=Signals(sig, method=method),
        seed=seed,
        generator=gen,
        rng=np.random.default_rng(seed),
        model_factory=factory,
    )


def check_selection_method(
    method: SelectionMethod,
    view_factory: Callable[[int], SelectionView] | None = None,
    *,
    max_seconds: float = 60.0,
) -> Selection:
    """Conformance checks of a selection method on a small view (raises AssertionError).

    ``view_factory(seed)`` builds the view; the default is ``make_selection_view``.
    """
    factory = view_factory or (lambda seed: make_selection_view(seed=seed, method=method.name))
    assert isinstance(method, SelectionMethod), f"{method!r} is not a SelectionMethod"
    assert method.name, "a method needs a name"
    problem = unknown_signals_error(method.name, method.signals)
    assert problem is None, problem
    view = factory(0)
    # only the declared signals are visible, as in the harness
    restricted = SelectionView(**{**view.__dict__, "signals": Signals({k: v for k, v in view.signals.items() if k in method.signals}, method=method.name)})
    t0 = time.perf_counter()
    first = validate_selection(method.select(restricted), restricted, method)
    elapsed = time.perf_counter() - t0
    assert elapsed < max_seconds, f"{method.name}: selection took {elapsed:.1f}s on a {view.n}-sample pool"
    again = factory(0)
    again = SelectionView(**{**again.__dict__, "signals": Signals({k: v for k, v in again.signals.items() if k in method.signals}, method=method.name)})
    second = validate_selection(method.select(again), again, method)
    assert np.array_equal(np.sort(first.indices), np.sort(second.indices)), f"{method.name}: not deterministic under a fixed seed"
    if first.weights is not None:
        order1, order2 = np.argsort(first.indices), np.argsort(second.indices)
        assert np.allclose(first.weights[order1], second.weights[order2]), f"{method.name}: weights not deterministic"
    assert not any(hasattr(restricted, a) for a in ("x_test", "y_test", "test")), "the view must not expose test data"
    return first


def check_no_test_access(method: SelectionMethod, view: SelectionView | None = None, *, dataset: str = "digits", data_dir: Any = None) -> Selection:
    """Run ``method.select`` in the contestant worker, as the harness does, on ``view`` (default:
    ``make_selection_view``), with the files of ``dataset`` (and ``data_dir``) protected.

    Raises AssertionError with the guard's one-line message when the method reaches for the
    dataset registry or files, starts a process, uses ctypes, or crashes the worker; returns the
    validated selection otherwise.
    """
    view = view if view is not None else make_selection_view(method=method.name)
    return check_in_worker(method, [view], dataset=dataset, data_dir=data_dir).output


def check_in_worker(method: Any, views: Any, *, kind: str | None = None, dataset: str = "digits", data_dir: Any = None, protected: Any = (), serve: Any = None) -> Any:
    """Run ``method`` on ``views`` exactly as the cell pipeline does (``coreset_bench.contest``):
    in the contestant worker, models sent as their registered architecture and weights, outputs
    back as numbers and checked by the kind's output check (``coreset_bench.validation``).

    ``kind`` defaults to ``method.kind`` (``selection``, ``privacy``, ``attack``,
    ``noise-correction``, or ``distillation`` for a method with role ``early-exit``, on
    ``make_exit_view()`` views; an attack's views are ``kinds.AttackView``; a decentralized
    method's kind is ``node-models``, its view a ``decentralized.ViewSpec`` served by ``serve``,
    e.g. ``decentralized.NetworkService(Network(spec.topology))``). The files of ``dataset``
    and ``data_dir``, and the directories in ``protected``, are out of the method's reach.
    Returns the ``ContestResult`` (``.outputs``, ``.output`` for one view, ``.reports``); raises
    AssertionError with the cell's one-line error when the cell would fail.
    """
    import os

    from . import contestant as C
    from .cells import CellFailure
    from .contest import contest

    paths = tuple(sorted(set(C.protected_paths(dataset, data_dir, None)) | {os.path.realpath(str(p)) for p in protected}))
    try:
        return contest(method, list(views) if isinstance(views, (list, tuple)) else [views], kind=kind or method.kind, device="cpu", protected=paths, service=serve)
    except CellFailure as exc:
        raise AssertionError(f"{method.name}: {exc}") from None


# ---- the phase-2 kinds: text selection, decentralized, early-exit, provisioning (see .kit) ------

from .kit import (  # noqa: E402 - re-exported: part of the kit's API
    check_decentralized_method,
    check_exit_method,
    check_provisioning_method,
    check_text_selection_method,
    make_decentralized_spec,
    make_decentralized_view,
    make_demand_trace,
    make_exit_view,
    make_instruction_view,
    make_instruction_world,
    simulate_pool,
)


# ---- pytest fixtures ---------------------------------------------------------------------------


@pytest.fixture
def coreset_bench_selection_view() -> SelectionView:
    """A small synthetic selection view with every signal."""
    return make_selection_view()


@pytest.fixture
def coreset_bench_register() -> Iterator[Callable[..., Any]]:
    """Register plugin modules for one test; they are removed afterwards."""
    from . import registry as plugins

    names: list[str] = []

    def _register(module: Any, name: str | None = None) -> Any:
        rec = plugins.register(module, name=name)
        names.append(rec.name)
        return rec

    yield _register
    for n in names:
        plugins.unregister(n)
