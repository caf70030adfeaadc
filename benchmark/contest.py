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

Kinds (``KINDS``): ``selection`` (``select``), ``privacy`` (``score``), ``attack`` (``perturb``,
its arguments in an ``AttackView``), ``noise-correction`` (``correct``), ``provisioning``
(``fit`` and ``plan``, driven: the harness runs the pool simulation, and the method lives in a
session of the worker for the cell, which receives the history up to the evaluation start and
then, call by call, only the demand already simulated; see ``_provisioning_drive``),
``node-models`` (``distill`` of a decentralized method: one model per node, its view *served*,
see below) and ``node-models-gloo`` (the same, one process per node that the track starts
instead of the worker). A track names the entry its contest runs with ``Track.contest_kind``
(default: its ``contestant_kind``); ``distillation`` with role ``early-exit`` (``distill`` on an
``ExitView``; the heads come back as weights and are loaded into heads of the harness's
architecture). A kind whose roles take different views and outputs has one entry per role,
``"kind:role"`` (``kind_for``).

Served views: a kind may declare ``served``: its views hold live parts that talk to the harness
while the contestant runs (the decentralized view's network). The track then supplies the
harness's side (``Track.service``: a callable answering each request in numbers; the byte
counting network), the worker opens each view with ``view.open_in_worker(rpc)``, and the
harness answers the requests while it waits. A kind may also be ``external``: its contestant runs
in processes the track starts (``Track.runner``: e.g. one per node, each under the worker's
guard) instead of the contestant worker; what comes back is numbers all the same and goes
through the kind's check. A *driven* kind (``drive``) is called step by step by a process of the
harness (``Track.service``, the pool simulation).
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
from .kinds import AttackMethod, DistillationMethod, Method, NoiseCorrectionMethod, PrivacyMethod, ProvisioningMethod, Selection, SelectionMethod

__all__ = ["KINDS", "ContestResult", "Kind", "contest", "kind_for", "tenant"]


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
    #: a kind whose contestant takes part in a process the harness runs (a provisioning method in
    #: the pool simulation): ``drive(worker, method, views, service, threads, flags)`` runs it,
    #: calling the contestant through a session in the worker, and returns (outputs, the
    #: contestant's seconds, reports); ``service`` is the harness's side (``Track.service``)
    drive: Callable[..., tuple[list[Any], list[float], list[dict[str, Any]]]] | None = None
    #: how the output travels back when it is not the protocol function's own (``"node-models"``)
    output: str = ""
    #: the views talk to the harness while the contestant runs: the track's ``service`` answers
    served: bool = False
    #: the contestant runs outside the contestant worker, in the track's ``runner``: (method,
    #: views, device=, protected=) -> (numbers per view, reports per view, seconds per view)
    external: bool = False


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


class _NodeMismatch(_Mismatch):
    pass


def _model_check(out: Any, view: Any, method: Method) -> Any:
    probe = view.x_pool[: min(8, len(view.x_pool))]
    return V.check_corrected_model(out, method.name, probe, view.num_classes, probe.device)


class RemoteAgent:
    """A provisioning method called through a session in the contestant worker (the pool
    simulation's ``agent``, ``pooling.run_method``): each call sends the demand of the steps
    simulated since the previous one and the pool's state (and, for a method the track decided
    is privileged, the next ``horizon`` steps); ``fit`` returns what the method wrote to
    ``view.info`` (a dict of JSON values), ``plan`` its plan as numbers, which
    ``run_method`` checks (``validation.check_plan``)."""

    def __init__(self, session: Any, name: str) -> None:
        self.session, self.name = session, name
        self.seconds: list[float] = []
        #: the contestant's own seconds in the last call (the worker's clock: ``fit_s``/``plan_s``)
        self.last_seconds = 0.0

    def fit(self, new: np.ndarray, t: int, ready: int, in_flight: int, calib: Any) -> dict[str, Any]:
        text, secs = self.session.call("fit", np.asarray(new, dtype=np.int64), int(t), int(ready), int(in_flight), None if calib is None else tuple(int(d) for d in calib))
        self.seconds.append(secs)
        self.last_seconds = secs
        try:
            info = json.loads(text)
            if not isinstance(info, dict):
                raise ValueError(f"a {type(info).__name__}")
        except (TypeError, ValueError) as exc:
            raise V.OutputError(f"invalid output of plugin {self.name!r}: what fit() wrote to view.info did not come back as a dict ({exc})") from None
        return info

    def plan(self, new: np.ndarray, t: int, ready: int, in_flight: int, future: Any) -> Any:
        plan, secs = self.session.call("plan", np.asarray(new, dtype=np.int64), int(t), int(ready), int(in_flight), future)
        self.seconds.append(secs)
        self.last_seconds = secs
        return plan


def _provisioning_drive(worker: Any, method: Method, views: Sequence[Any], service: Any, threads: int, flags: Any) -> tuple[list[Any], list[float], list[dict[str, Any]]]:
    """The provisioning contest: the harness's pool simulation (``service``, a
    ``pooling.Simulation`` holding the trace) drives the method, which runs in a session in the
    contestant worker that holds the view (``pooling.PlanningState``: the history up to the
    evaluation start and the public settings) and then only the demand already simulated."""
    if service is None or len(views) != 1:
        raise CellFailure(f"the provisioning contest needs one view and the track's simulation (got {len(views)} views, service {type(service).__name__})")
    name = method.name or type(method).__name__
    agents: list[RemoteAgent] = []

    def agent(state: Any) -> RemoteAgent:
        agents.append(RemoteAgent(worker.session(method, state, threads, flags), name))
        return agents[-1]

    run = None
    try:
        run = service.run(method, state=views[0], agent=agent)
        if agents:
            agents[0].session.end()
    finally:
        if run is None and agents:
            agents[0].session.abort()
    return [run], [float(sum(agents[0].seconds))] if agents else [0.0], [{}]


def _plan_check(out: Any, view: Any, method: Method) -> np.ndarray:
    return V.check_plan(out, int(view.settings["horizon"]), method.name, int(view.n))


@dataclass
class NodeModels:
    """A decentralized method's checked output: one model per node (the harness's own copies,
    built by the view's ``model_factory``), the view's ``info``, and, from a runner that counts
    in its own processes (``node-models-gloo``), the bytes sent by kind and the traffic matrix
    (``traffic[i, j]``: bytes node i received from node j); None where the harness counted."""

    models: list[Any]
    info: dict[str, Any]
    bytes: dict[str, int] | None = None
    traffic: np.ndarray | None = None


def _node_models_unplain(plain: Any, view: Any) -> NodeModels:
    """Each node's returned state loaded into the view's ``model_factory()`` model (strict: a
    model of another architecture fails the cell)."""
    import torch

    states = list(plain["states"])
    models = []
    for i, state in enumerate(states):
        m = view.model_factory()
        try:
            m.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise _NodeMismatch(f"node {i}'s model is not the view's architecture ({first}); return the models view.model_factory() builds") from None
        models.append(m)
    info = plain["info"]
    info = json.loads(info) if isinstance(info, str) else dict(info)
    traffic = plain.get("traffic")
    return NodeModels(models, info, {str(k): int(v) for k, v in plain["bytes"].items()} if plain.get("bytes") is not None else None,
                      np.asarray(traffic, dtype=np.int64) if traffic is not None else None)


def _node_models_check(out: NodeModels, view: Any, method: Method) -> NodeModels:
    probe = view.public_x[: min(8, len(view.public_x))]
    out.models = V.check_node_models(out.models, method.name, view.topology.n, probe, view.num_classes, probe.device)
    return out



def _exit_unplain(plain: Any, view: Any) -> Any:
    """An early-exit method's heads as weights (tensors keyed by (modality, k)) and its combiner;
    ``validation.check_exit_model`` loads the weights into heads of the harness's architecture."""
    import torch

    from .kinds import ExitModel

    try:
        heads = {(str(m), int(k)): {str(n): torch.from_numpy(np.asarray(a)) for n, a in dict(state).items()} for m, k, state in plain["heads"]}
        if len(heads) != len(plain["heads"]):
            raise ValueError("a (modality, k) is given twice")
        combiner = None if plain["combiner"] is None else [np.asarray(b) for b in plain["combiner"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise V.OutputError(f"the contestant worker sent back an early-exit output that is not heads and a combiner ({type(exc).__name__}: {exc})") from None
    return ExitModel(heads=heads, combiner=combiner)


def _exit_check(out: Any, view: Any, method: Method) -> Any:
    return V.check_exit_model(out, view, method.name)


#: the kinds the contest calls. A kind whose roles take different views and outputs has one entry per role,
#: ``"kind:role"`` (``kind_for``): the video track's ``distillation:early-exit``.
KINDS: dict[str, Kind] = {
    "selection": Kind("selection", "select", SelectionMethod, _selection_unplain, _selection_check),
    "privacy": Kind("privacy", "score", PrivacyMethod, lambda plain, view: plain, _scores_check),
    "attack": Kind("attack", "perturb", AttackMethod, _tensor_unplain, _attack_check),
    "noise-correction": Kind("noise-correction", "correct", NoiseCorrectionMethod, _model_unplain, _model_check),
    "provisioning": Kind("provisioning", "plan", ProvisioningMethod, lambda plain, view: plain, _plan_check, drive=_provisioning_drive),
    "node-models": Kind("node-models", "distill", DistillationMethod, _node_models_unplain, _node_models_check, output="node-models", served=True),
    "node-models-gloo": Kind("node-models-gloo", "distill", DistillationMethod, _node_models_unplain, _node_models_check, external=True),
    "distillation:early-exit": Kind("distillation:early-exit", "distill", DistillationMethod, _exit_unplain, _exit_check),
}


def kind_for(kind: str, method: Method) -> Kind | None:
    """The contest's entry for a method of ``kind``: ``KINDS["kind:role"]`` when the method's
    role has its own entry, else ``KINDS[kind]`` (None: the contest does not know the kind)."""
    role = str(getattr(method, "role", "") or "")
    return (KINDS.get(f"{kind}:{role}") if role else None) or KINDS.get(kind)


def tenant(method: Method) -> str:
    """Who a contestant worker serves: a worker that ran another method is replaced."""
    return f"{getattr(method, 'package', '') or ''}:{method.name}@{method.version}:{type(method).__module__}.{type(method).__qualname__}"


def contest(method: Method, views: Sequence[Any], *, kind: str, device: str, protected: Sequence[str], service: Any = None,
            runner: Callable[..., tuple[list[Any], list[dict[str, Any]], list[float]]] | None = None, blas: int | None = None) -> ContestResult:
    """Run ``method``'s protocol function of ``kind`` on each of ``views`` in the contestant
    worker (an external kind: in ``runner``) and check every output (see the module docstring).
    Raises ``CellFailure``.

    ``service``: the harness's side (``Track.service``): for a served kind the callable that
    answers the views' requests, for a driven kind the process that drives the contestant (the
    pool simulation); ``blas``: the worker's BLAS threads (``Track.blas_threads``)."""
    from . import contestant as C
    from .data import LeakageError

    k = kind_for(kind, method)
    if k is None:
        raise CellFailure(f"the contest does not know kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    serve = service if k.served else None
    views = list(views)
    if k.served and serve is None:
        raise CellFailure(f"kind {kind!r} serves its views while the contestant runs, but the track gave no service (Track.service)")
    import torch

    if k.external:
        if runner is None:
            raise CellFailure(f"kind {kind!r} runs its contestant in the track's own processes, but the track gave no runner (Track.runner)")
        t0 = time.perf_counter()
        plain, reports, call_seconds = runner(method, views, device=str(device), protected=tuple(protected))
        return _checked(k, method, views, plain, reports, call_seconds, time.perf_counter() - t0)
    worker = C.prestart(device=str(device), protected=tuple(protected), tenant=tenant(method), blas=blas)
    flags = None
    if str(device).startswith("cuda"):
        flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    t0 = time.perf_counter()
    if k.drive is not None:
        try:
            outputs, call_seconds, reports = k.drive(worker, method, views, service, torch.get_num_threads(), flags)
        except C.ContestantCrash as exc:
            C._WORKER.clear()
            raise CellFailure(str(exc)) from exc
        except (C.ContestantError, C.ViewShipError, LeakageError) as exc:
            raise CellFailure(str(exc)) from exc
        return ContestResult(outputs, time.perf_counter() - t0, call_seconds, reports)
    try:
        plain, reports, call_seconds = worker.run(method, k.call, views, torch.get_num_threads(), flags, output=k.output or None, serve=serve)
    except C.ContestantCrash as exc:
        C._WORKER.clear()
        raise CellFailure(str(exc)) from exc
    except (C.ContestantError, C.ViewShipError, LeakageError) as exc:
        raise CellFailure(str(exc)) from exc
    return _checked(k, method, views, plain, reports, call_seconds, time.perf_counter() - t0)


def _checked(k: Kind, method: Method, views: Sequence[Any], plain: Sequence[Any], reports: list[dict[str, Any]], call_seconds: list[float], seconds: float) -> ContestResult:
    """The outputs read back (``Kind.unplain``) and checked (``Kind.check``), or ``CellFailure``."""
    outputs = []
    for p, view in zip(plain, views):
        try:
            out = k.unplain(p, view)
        except _Mismatch as exc:
            if isinstance(exc, _NodeMismatch):  # one model per node: the message names the node
                raise CellFailure(f"invalid output of plugin {method.name!r}: {exc}") from None
            raise CellFailure(f"invalid output of plugin {method.name!r}: the returned model cannot be rebuilt as the view's model ({exc}); return view.model (or a copy) or a model from view.model_factory()") from None
        try:
            outputs.append(k.check(out, view, method))
        except V.OutputError as exc:
            raise CellFailure(str(exc)) from None
    return ContestResult(outputs, seconds, call_seconds, reports)
