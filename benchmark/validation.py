"""The harness's checks of what a contestant returns, one per kind (the contest
``coreset_bench.contest`` runs them on every output; the tracks, the kit and
``coreset_bench.testing`` use the same functions). Each raises an ``OutputError`` (a
``CellFailure`` and a ``ValueError``) whose message is one line naming the plugin.

* selection (``validate_selection``): see below;
* privacy (``validate_scores``): one finite float per query;
* attack (``check_attack_output``): the adversarial inputs have the inputs' shape, are finite,
  lie in the threat model's eps-ball and in its value range;
* noise correction (``check_corrected_model``): a ``torch.nn.Module`` with finite parameters
  and buffers that gives one finite logit per class on a batch of inputs;
* provisioning (``check_plan``): every plan is numeric, 1-D, of the view's ``horizon``, finite
  and >= 0 (the harness rounds it and clips it to ``max_pool``).
* decentralized distillation (``check_node_models``): exactly one model per node, each passing
  the noise-correction model check.
* early-exit distillation (``check_exit_model``): one head of the harness's architecture per
  (modality, k) with finite weights and logits, and a combiner of e + 1 finite weights per exit.

A selection is valid when its indices form a 1-D array of unique integers in ``[0, n)`` with
exactly the budget of them (at most the budget, and at least one, for methods with
``exact_budget = False``), its optional weights are finite, non-negative, one per index and
not all zero, and its optional scores are numbers without NaN, one per pool sample (``inf`` is
allowed: e.g. forgetting scores never-learned samples as infinitely forgotten).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cells import CellFailure
from .kinds import Method, Selection, SelectionMethod, SelectionView


class OutputError(CellFailure, ValueError):
    """A contestant's output fails its kind's check (the message is the cell's one-line error)."""


class SelectionOutputError(OutputError):
    """A selection method returned an invalid subset."""


class AttackOutputError(OutputError):
    """An attack's output left the threat model or is malformed."""


class PlanOutputError(OutputError):
    """A provisioning method returned an invalid plan (or planned too slowly); the message names
    it (``coreset_bench.tracks.pooling.sim.PlanError`` is this class)."""


def check_plan(plan: Any, horizon: int, method_name: str, t: int) -> np.ndarray:
    """A provisioning plan as float64 of shape (``horizon``,), else ``PlanOutputError``: numeric,
    1-D, ``horizon`` long, finite and >= 0 (``t``: the step it was made at, for the message)."""
    name = method_name
    try:
        arr = np.asarray(plan.detach().cpu().numpy() if hasattr(plan, "detach") else plan, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PlanOutputError(f"plugin {name!r}: plan at step {t} is not numeric ({exc})") from None
    if arr.ndim != 1 or arr.shape[0] != horizon:
        raise PlanOutputError(f"plugin {name!r}: plan has shape {arr.shape}, expected ({horizon},) (the view's horizon), at step {t}")
    if not np.isfinite(arr).all():
        raise PlanOutputError(f"plugin {name!r}: plan at step {t} is not finite (NaN or inf)")
    if (arr < 0).any():
        raise PlanOutputError(f"plugin {name!r}: plan at step {t} has negative pool sizes")
    return arr


def validate_selection(out: Any, view: SelectionView, method: SelectionMethod) -> Selection:
    """The harness's check of a selection output; returns a normalized ``Selection``.

    Raises ``SelectionOutputError`` with a one-line message naming the method.
    """
    name = method.name or type(method).__name__
    if not isinstance(out, Selection):
        out = Selection(indices=out)
    try:
        idx = np.asarray(out.indices.detach().cpu() if hasattr(out.indices, "detach") else out.indices)
    except Exception as exc:  # pragma: no cover - defensive
        raise SelectionOutputError(f"{name}: selection indices are not an array ({exc})") from exc
    if idx.ndim != 1:
        raise SelectionOutputError(f"{name}: returned indices of shape {idx.shape}; expected a 1-D array of pool indices")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        if np.issubdtype(idx.dtype, np.floating) and np.all(np.isfinite(idx)) and np.all(idx == np.round(idx)):
            idx = idx.astype(np.int64)
        else:
            raise SelectionOutputError(f"{name}: returned indices of dtype {idx.dtype}; expected integers")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= view.n):
        raise SelectionOutputError(f"{name}: returned index out of range [0, {view.n}) (min {idx.min()}, max {idx.max()})")
    if len(np.unique(idx)) != len(idx):
        raise SelectionOutputError(f"{name}: returned {len(idx) - len(np.unique(idx))} duplicate indices; each pool sample may be selected once")
    if method.exact_budget and len(idx) != view.budget:
        raise SelectionOutputError(f"{name}: returned {len(idx)} indices for a budget of {view.budget}; return exactly the budget")
    if not method.exact_budget and not (1 <= len(idx) <= view.budget):
        raise SelectionOutputError(f"{name}: returned {len(idx)} indices; expected between 1 and the budget {view.budget}")
    w = out.weights
    if w is not None:
        w = np.asarray(w.detach().cpu() if hasattr(w, "detach") else w, dtype=np.float64)
        if w.shape != idx.shape:
            raise SelectionOutputError(f"{name}: returned {w.shape} weights for {idx.shape} indices; one weight per index")
        if not np.all(np.isfinite(w)):
            raise SelectionOutputError(f"{name}: returned non-finite weights (NaN or inf)")
        if np.any(w < 0):
            raise SelectionOutputError(f"{name}: returned negative weights")
        if w.sum() <= 0:
            raise SelectionOutputError(f"{name}: returned weights that sum to zero")
    scores = out.scores
    if scores is not None:
        try:
            scores = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise SelectionOutputError(f"{name}: returned scores that are not numbers ({exc}); return one float per pool sample") from None
        if scores.shape != (view.n,):
            raise SelectionOutputError(f"{name}: returned scores of shape {scores.shape}; expected one score per pool sample, shape ({view.n},)")
        if np.isnan(scores).any():
            raise SelectionOutputError(f"{name}: returned NaN in its scores ({int(np.isnan(scores).sum())} of {scores.size}); return numbers (or no scores)")
    return Selection(indices=idx, weights=w, scores=scores, info=dict(out.info))


def validate_scores(out: Any, n: int, method: Method) -> np.ndarray:
    """A privacy method's scores: one finite float per query (float64), else ``OutputError``."""
    try:
        a = np.asarray(out.detach().cpu() if hasattr(out, "detach") else out, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise OutputError(f"invalid output of plugin {method.name!r}: scores are not numeric ({exc})") from None
    if a.ndim != 1 or a.shape[0] != n:
        raise OutputError(f"invalid output of plugin {method.name!r}: returned scores of shape {a.shape}; expected one score per query, shape ({n},)")
    bad = ~np.isfinite(a)
    if bad.any():
        raise OutputError(f"invalid output of plugin {method.name!r}: {int(bad.sum())} of {n} scores are not finite (NaN or inf)")
    return a


#: the threat norms attacks may use
NORMS: tuple[str, ...] = ("linf", "l2")

#: absolute tolerance of the ball and range checks (float32 rounding of ``x + eps``)
BALL_TOL: float = 1e-6


def _norm_name(norm: str) -> str:
    key = str(norm).lower().replace("-", "").replace("_", "")
    if key in {"linf", "inf", "l∞"}:
        return "linf"
    if key in {"l2", "2"}:
        return "l2"
    raise ValueError(f"unsupported threat norm {norm!r}; supported: {', '.join(NORMS)}")


def perturbation_norm(delta: Any, norm: str) -> Any:
    """Per-sample norm of ``delta`` (shape (B,)): max-abs for l-inf, Euclidean for l2."""
    flat = delta.reshape(delta.shape[0], -1)
    if _norm_name(norm) == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    return flat.norm(p=2, dim=1)


def _ball_problems(x_adv: Any, x: Any, threat: Any) -> str | None:
    """A description of how ``x_adv`` violates the threat model, or None when it satisfies it."""
    import torch

    if not isinstance(x_adv, torch.Tensor):
        return f"returned {type(x_adv).__name__}, expected a torch.Tensor"
    if tuple(x_adv.shape) != tuple(x.shape):
        return f"returned shape {tuple(x_adv.shape)}, expected {tuple(x.shape)}"
    x_adv = x_adv.detach().to(device=x.device, dtype=torch.float32)
    x = x.detach().to(torch.float32)
    if not torch.isfinite(x_adv).all():
        return f"returned {int((~torch.isfinite(x_adv)).sum())} non-finite values"
    dist = perturbation_norm(x_adv - x, threat.norm)
    eps = float(threat.eps)
    limit = eps + BALL_TOL + (1e-6 * eps if _norm_name(threat.norm) == "l2" else 0.0)
    bad = dist > limit
    if bad.any():
        return (
            f"{int(bad.sum())} of {len(dist)} perturbations exceed eps={eps:g} in the "
            f"{_norm_name(threat.norm)} norm (largest {float(dist.max()):.6g})"
        )
    lo, hi = float(threat.lower), float(threat.upper)
    below = x_adv < lo - BALL_TOL
    above = x_adv > hi + BALL_TOL
    if below.any() or above.any():
        return (
            f"{int(below.sum() + above.sum())} values leave the range [{lo:g}, {hi:g}] "
            f"(min {float(x_adv.min()):.6g}, max {float(x_adv.max()):.6g})"
        )
    return None


def check_attack_output(name: str, x_adv: Any, x: Any, threat: Any) -> None:
    """Raise ``AttackOutputError`` naming the attack when ``x_adv`` is not a tensor of ``x``'s
    shape, is not finite, leaves the eps-ball of ``threat`` around ``x`` (its norm, with a
    tolerance of ``BALL_TOL``) or the range [``threat.lower``, ``threat.upper``]."""
    problem = _ball_problems(x_adv, x, threat)
    if problem is not None:
        raise AttackOutputError(f"attack plugin {name!r} violated the threat model: {problem}")


def check_corrected_model(out: Any, method_name: str, x_probe: Any, num_classes: int, device: Any) -> Any:
    """A noise correction's model (returned, in eval mode on ``device``) or ``OutputError``: a
    ``torch.nn.Module`` with finite floating parameters and buffers whose logits on ``x_probe``
    have shape (len(x_probe), ``num_classes``) and are finite."""
    import torch

    from .training import predict

    prefix = f"invalid output of plugin {method_name!r}"
    if not isinstance(out, torch.nn.Module):
        raise OutputError(f"{prefix}: correct() returned {type(out).__name__}, not a torch.nn.Module")
    bad = [n for n, t in list(out.named_parameters()) + list(out.named_buffers()) if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise OutputError(f"{prefix}: the returned model has non-finite (NaN or inf) values in {', '.join(bad[:5])}")
    try:
        model = out.to(device).eval()
        logits = predict(model, x_probe)
    except Exception as exc:  # noqa: BLE001 - any failure of the returned model is the plugin's
        raise OutputError(f"{prefix}: the returned model fails on a batch of inputs ({type(exc).__name__}: {exc})") from None
    if logits.shape != (len(x_probe), num_classes):
        raise OutputError(f"{prefix}: the returned model gives outputs of shape {tuple(logits.shape)} for {len(x_probe)} inputs; expected ({len(x_probe)}, {num_classes}) logits")
    if not bool(torch.isfinite(logits).all()):
        raise OutputError(f"{prefix}: the returned model gives non-finite logits")
    return model


def check_node_models(out: Any, method_name: str, n: int, x_probe: Any, num_classes: int, device: Any) -> list[Any]:
    """A decentralized method's models (in eval mode on ``device``) or ``OutputError``: a list of
    exactly ``n`` models, node i's passing ``check_corrected_model`` (message naming node i)."""
    prefix = f"invalid output of plugin {method_name!r}"
    if not isinstance(out, (list, tuple)):
        raise OutputError(f"{prefix}: distill() returned {type(out).__name__}, not a list of one model per node")
    if len(out) != n:
        raise OutputError(f"{prefix}: distill() returned {len(out)} models for {n} nodes; return exactly one per node")
    models = []
    for i, m in enumerate(out):
        try:
            models.append(check_corrected_model(m, method_name, x_probe, num_classes, device))
        except OutputError as exc:
            raise OutputError(str(exc).replace("correct() returned", f"node {i}'s model is").replace("the returned model", f"node {i}'s model")) from None
    return models
def check_exit_model(out: Any, view: Any, method_name: str) -> Any:
    """An early-exit method's ``ExitModel``, checked against its ``ExitView`` and returned with
    the harness's own heads, or ``OutputError``:

    * ``heads``: exactly one head per (modality, k) for the view's modalities and k = 1..3, each
      of the harness's architecture: its weights (a ``torch.nn.Module`` of the same layers as
      ``view.head_factory(m, k)``'s, or, from the contestant worker, that head's ``state_dict``
      as arrays) are loaded into a fresh ``view.head_factory(m, k)`` head (strictly: the same
      names and shapes), which is what the harness evaluates, so an exit's cost is the harness's;
      its parameters and buffers finite; its logits on a few training clips' stage features of
      shape (clips x segments, classes) and finite;
    * ``combiner``: None, or one weight vector per exit of ``view.exit_order`` with e + 1 finite
      numbers for exit e (float64; negative weights clipped to 0, as WISE's).
    """
    from collections.abc import Mapping

    import torch

    from .kinds import ExitModel

    prefix = f"invalid output of plugin {method_name!r}"
    if not isinstance(out, ExitModel):
        raise OutputError(f"{prefix}: distill returned a {type(out).__name__}; return an ExitModel(heads=..., combiner=...)")
    heads = dict(out.heads) if isinstance(out.heads, Mapping) else None
    want = {(m, k) for m in view.modalities for k in (1, 2, 3)}
    if heads is None or set(heads) != want:
        got = sorted(heads, key=str) if heads is not None else type(out.heads).__name__
        raise OutputError(f"{prefix}: ExitModel.heads has {got}; it needs exactly one head per (modality, k) for {', '.join(view.modalities)} and k = 1..3")
    checked: dict[tuple[str, int], Any] = {}
    for m, k in sorted(want, key=lambda mk: (list(view.modalities).index(mk[0]), mk[1])):
        h = heads[(m, k)]
        fresh = view.head_factory(m, k)
        if isinstance(h, torch.nn.Module):
            if _layers(h) != _layers(fresh):
                raise OutputError(f"{prefix}: head {(m, k)} is not of the harness's architecture; train the head view.head_factory({m!r}, {k}) returns (exit costs are counted for it)")
            state = h.state_dict()
        elif isinstance(h, Mapping):
            state = dict(h)
        else:
            raise OutputError(f"{prefix}: head {(m, k)} is a {type(h).__name__}, not a torch.nn.Module")
        problem = _state_mismatch(fresh.state_dict(), state)
        if problem is None:
            try:
                fresh.load_state_dict(state)
            except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
                problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if problem is not None:
            raise OutputError(f"{prefix}: head {(m, k)} is not of the harness's architecture ({problem}); train the head view.head_factory({m!r}, {k}) returns")
        bad = [n for n, t in list(fresh.named_parameters()) + list(fresh.named_buffers()) if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise OutputError(f"{prefix}: head {(m, k)} has non-finite (NaN or inf) values in {', '.join(bad[:5])}")
        fresh = fresh.to(getattr(view, "device", "cpu")).eval()
        f = view.feats_train[m][k - 1][:4]
        with torch.no_grad():
            try:
                logits = fresh(f.reshape(-1, *f.shape[2:]))
            except Exception as exc:  # noqa: BLE001 - a head that fails is the plugin's
                raise OutputError(f"{prefix}: head {(m, k)} fails on its stage's features ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        if tuple(logits.shape) != (f.shape[0] * f.shape[1], int(view.num_classes)):
            raise OutputError(f"{prefix}: head {(m, k)} gives logits of shape {tuple(logits.shape)}; expected (batch, {int(view.num_classes)})")
        if not bool(torch.isfinite(logits).all()):
            raise OutputError(f"{prefix}: head {(m, k)} gives non-finite logits")
        checked[(m, k)] = fresh
    combiner = None
    if out.combiner is not None:
        e_n = len(view.exit_order)
        try:
            vectors = list(out.combiner)
        except TypeError:
            raise OutputError(f"{prefix}: ExitModel.combiner is a {type(out.combiner).__name__}; return one weight vector per exit (or None)") from None
        if len(vectors) != e_n:
            raise OutputError(f"{prefix}: the combiner has {len(vectors)} weight vectors; it needs one per exit ({e_n})")
        combiner = []
        for e, b in enumerate(vectors):
            try:
                arr = np.asarray(b.detach().cpu() if hasattr(b, "detach") else b, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise OutputError(f"{prefix}: combiner weights of exit {e} are not numeric") from None
            if arr.shape != (e + 1,):
                raise OutputError(f"{prefix}: combiner weights of exit {e} have {arr.size} entries; exit e weighs exits 0..e (e + 1 = {e + 1})")
            if not np.isfinite(arr).all():
                raise OutputError(f"{prefix}: combiner weights of exit {e} are not finite")
            combiner.append(np.clip(arr, 0.0, None))
    return ExitModel(heads=checked, combiner=combiner)


def _layers(module: Any) -> list[tuple[str, str, str]]:
    """A module's layers (name, class, configuration): equal for two modules of one architecture."""
    return [(n, f"{type(m).__module__}.{type(m).__qualname__}", m.extra_repr()) for n, m in module.named_modules()]


def _state_mismatch(want: Any, got: Any) -> str | None:
    """What keeps weights ``got`` from fitting a module whose state is ``want`` (None: they fit)."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want), key=str)
    if missing or extra:
        return "; ".join(([f"missing {', '.join(missing[:3])}"] if missing else []) + ([f"unexpected {', '.join(map(str, extra[:3]))}"] if extra else []))
    for name, t in want.items():
        shape = tuple(getattr(got[name], "shape", ()))
        if shape != tuple(t.shape):
            return f"{name} has shape {shape}, expected {tuple(t.shape)}"
    return None
