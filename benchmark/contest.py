"""The contest: one way to call a contestant, for every kind ported to the cell pipeline.

``contest(method, views, kind=..., ...)`` runs the kind's protocol function on each view in the
contestant worker (``coreset_bench.contestant``: a separate process that holds only what the
views hold), in order and in one message, so objects the views of a cell share stay shared there
(a privacy method's per-cell shadow statistics). It then turns what came back, numbers only,
into the kind's output and runs the kind's output check (``coreset_bench.validation``). Any
failure is a ``CellFailure`` with a one-line message naming the plugin: an exception of the
plugin, a refusal of the worker's guard, a crash of the worker, an invalid output.

What travels:

* to the worker: the method (pickled by reference to its class) and the views (pickled; every
  ``torch.nn.Module`` in them as its registered architecture and weights, ``models.BuildSpec``;
  a track object is refused, so no track memo goes along);
* back: per view, the output as numbers (arrays, a model as its architecture and weights, JSON
  text), what the view gathered (``view.info``, forward counts, training-fixture use) as JSON,
  and the contestant's seconds; and the random generators' states, from which the harness goes on.

Seeding: the pipeline seeds the global torch generator with the cell's seed before the fixture;
the contestant starts from the harness's generator states at the call (Python, numpy, torch) and
the harness continues from the contestant's, so a cell gives the same numbers wherever it runs.
Every view carries its own generators seeded from the cell.

Timing: ``ContestResult.seconds`` is the harness's clock around the whole contest (the worker's
start-up excluded, the transfers included); the worker's per-view seconds are in ``call_seconds``
(a plugin could tamper with the clock inside its worker, not with the harness's).

Kinds (``KINDS``): ``selection`` (``select``; also the instruction track's text selection, whose
view reports its counted work through ``contest_report``), ``privacy`` (``score``), ``attack`` (``perturb``,
its arguments in an ``AttackView``), ``noise-correction`` (``correct``). The distillation and
provisioning kinds still run in their tracks' own code (those tracks are not on the pipeline yet).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import validation as V
from .cells import CellFailure
from .kinds import AttackMethod, Method, NoiseCorrectionMethod, PrivacyMethod, Selection, SelectionMethod

__all__ = ["KINDS", "ContestResult", "Kind", "contest", "tenant"]


@dataclass
class ContestResult:
    """What a contest hands the track's ``evaluate``: one checked output per view."""

    outputs: list[Any]
    #: the harness's clock around the contest (transfers included, worker start-up excluded)
    seconds: float
    #: the contestant's own seconds per view, measured in the worker
    call_seconds: list[float] = field(default_factory=list)
    #: per view, what it gathered while the contestant ran (JSON values)
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def output(self) -> Any:
        """The output of a one-view contest."""
        if len(self.outputs) != 1:
            raise ValueError(f"this contest had {len(self.outputs)} views; read .outputs")
        return self.outputs[0]


@dataclass(frozen=True)
class Kind:
    """How the contest calls one kind: the protocol function, the method class, how the
    harness reads the numbers that come back, and the kind's output check."""

    name: str
    call: str
    method_class: type
    #: (numbers from the worker, the view) -> the output the check receives
    unplain: Callable[[Any, Any], Any]
    #: (output, view, method) -> the checked output; raises ``validation.OutputError``
    check: Callable[[Any, Any, Method], Any]


def _selection_unplain(plain: Any, view: Any) -> Selection:
    from .contestant import _from_plain

    return _from_plain("select", plain)


def _selection_check(out: Any, view: Any, method: Method) -> Selection:
    try:
        return V.validate_selection(out, view, method)  # type: ignore[arg-type]
    except V.SelectionOutputError as exc:
        raise V.OutputError(f"invalid output of plugin {method.name!r}: {exc}") from None


def _scores_check(out: Any, view: Any, method: Method) -> np.ndarray:
    return V.validate_scores(out, len(view.y), method)


def _tensor_unplain(plain: Any, view: Any) -> Any:
    import torch

    return torch.from_numpy(plain).to(view.x.device) if isinstance(plain, np.ndarray) else plain


def _attack_check(out: Any, view: Any, method: Method) -> Any:
    V.check_attack_output(method.name, out, view.x, view.threat)
    return out


def _model_unplain(plain: Any, view: Any) -> Any:
    """A returned model, rebuilt in the harness from its registered architecture and weights;
    it must be of the architecture of the view's model (a copy of it or one of its factory)."""
    import torch

    from .models import BuildSpec, build_spec, rebuild

    want = build_spec(view.model)
    try:
        spec = BuildSpec.from_dict(json.loads(plain["spec"]))
        if want is not None and (spec.arch, spec.shape, spec.num_classes) != (want.arch, want.shape, want.num_classes):
            raise ValueError(f"it is a {spec.arch} for {spec.num_classes} classes; the view's model is a {want.arch} for {want.num_classes}")
        if want is not None and (spec.mean, spec.std, spec.prepare) != (want.mean, want.std, want.prepare):
            raise ValueError("its input normalization differs from the view's model")
        state = {k: torch.from_numpy(np.asarray(v)).to(getattr(torch, str(plain["dtypes"][k]))) for k, v in plain["state"].items()}
        device = next(iter(view.model.parameters())).device if want is not None else "cpu"
        return rebuild(spec, state, bool(plain["training"]), device)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _Mismatch(str(exc)) from None


class _Mismatch(ValueError):
    pass


def _model_check(out: Any, view: Any, method: Method) -> Any:
    probe = view.x_pool[: min(8, len(view.x_pool))]
    return V.check_corrected_model(out, method.name, probe, view.num_classes, probe.device)


#: the kinds the contest calls (the distillation and provisioning kinds are added when their
#: tracks move onto the pipeline)
KINDS: dict[str, Kind] = {
    "selection": Kind("selection", "select", SelectionMethod, _selection_unplain, _selection_check),
    "privacy": Kind("privacy", "score", PrivacyMethod, lambda plain, view: plain, _scores_check),
    "attack": Kind("attack", "perturb", AttackMethod, _tensor_unplain, _attack_check),
    "noise-correction": Kind("noise-correction", "correct", NoiseCorrectionMethod, _model_unplain, _model_check),
}


def tenant(method: Method) -> str:
    """Who a contestant worker serves: a worker that ran another method is replaced."""
    return f"{getattr(method, 'package', '') or ''}:{method.name}@{method.version}:{type(method).__module__}.{type(method).__qualname__}"


def contest(method: Method, views: Sequence[Any], *, kind: str, device: str, protected: Sequence[str], preload: Sequence[str] = ()) -> ContestResult:
    """Run ``method``'s protocol function of ``kind`` on each of ``views`` in the contestant
    worker and check every output (see the module docstring). Raises ``CellFailure``."""
    from . import contestant as C
    from .data import LeakageError

    if kind not in KINDS:
        raise CellFailure(f"the contest does not know kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    k = KINDS[kind]
    views = list(views)
    import torch

    worker = C.prestart(device=str(device), protected=tuple(protected), tenant=tenant(method), preload=tuple(preload))
    flags = None
    if str(device).startswith("cuda"):
        flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    t0 = time.perf_counter()
    try:
        plain, reports, call_seconds = worker.run(method, k.call, views, torch.get_num_threads(), flags)
    except C.ContestantCrash as exc:
        C._WORKER.clear()
        raise CellFailure(str(exc)) from exc
    except (C.ContestantError, C.ViewShipError, LeakageError) as exc:
        raise CellFailure(str(exc)) from exc
    seconds = time.perf_counter() - t0
    outputs = []
    for p, view in zip(plain, views):
        try:
            out = k.unplain(p, view)
        except _Mismatch as exc:
            raise CellFailure(f"invalid output of plugin {method.name!r}: the returned model cannot be rebuilt as the view's model ({exc}); return view.model (or a copy) or a model from view.model_factory()") from None
        try:
            outputs.append(k.check(out, view, method))
        except V.OutputError as exc:
            raise CellFailure(str(exc)) from None
    return ContestResult(outputs, seconds, call_seconds, reports)
