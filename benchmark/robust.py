"""Adversarial robustness: the shared attack primitives and the harness's robustness evaluation.

Primitives (used by the ``fgsm``, ``pgd``, ``pgd-at`` and ``trades`` plugins, so that the step and
the projection exist in one place):

* ``project(x_adv, x, threat)``: onto the threat's norm ball around ``x`` intersected with the box
  ``[lower, upper]``. For l-inf this is the exact Euclidean projection (clip to
  ``[x - eps, x + eps]``, then to the box). For l2 it scales the perturbation to norm ``<= eps`` and
  then clips to the box; the result is feasible (clipping towards a box that contains ``x`` only
  shrinks every coordinate of the perturbation) though not the exact projection onto the
  intersection, as in the reference implementations (Madry et al.'s robustness library, torchattacks).
* ``ascent_direction(grad, norm)``: ``sign(grad)`` for l-inf, ``grad / ||grad||_2`` for l2.
* ``random_start(x, threat, generator)``: uniform in the l-inf ball; for l2 a uniformly random
  direction at radius ``eps * U`` with U ~ Uniform(0, 1) (as torchattacks' PGDL2; a point uniform
  in the high-dimensional l2 ball would sit on its surface, which weakens a short attack), then
  clipped to the box.
* ``projected_gradient_ascent(loss_fn, x, x_init, threat)``: ``threat.steps`` iterations of
  ``x_{t+1} = Proj(x_t + step_size * ascent_direction(grad_x sum(loss_fn(x_t))))``.
* ``pgd_attack(model, x, y, threat, generator, restarts=...)``: PGD on the cross-entropy with
  restarts, keeping per sample the first successful (misclassified) iterate, else the one of
  highest loss; the clean input is the starting candidate, so a sample that is already
  misclassified is returned unchanged.

Gradients are taken with ``torch.autograd.grad`` with respect to the input only: parameter
``.grad`` buffers are never touched, so training plugins can craft inputs inside ``batch_loss``.

Evaluation: ``evaluate_robustness(model, x, y, attacks, threat, seed)`` runs every attack plugin
batch by batch, checks each output against the threat model (``AttackOutputError`` names the
plugin that broke it) and returns the accuracy metrics and the sanity checks described there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .kinds import AttackMethod, ThreatModel
# the threat-model check is the attack kind's output check (coreset_bench.validation); re-exported
from .validation import BALL_TOL, NORMS, AttackOutputError, _ball_problems, _norm_name, check_attack_output, perturbation_norm  # noqa: F401

__all__ = [
    "NORMS",
    "AttackOutputError",
    "ascent_direction",
    "check_attack_output",
    "eval_mode",
    "evaluate_robustness",
    "noise_like",
    "perturbation_norm",
    "pgd_attack",
    "project",
    "projected_gradient_ascent",
    "random_start",
    "threat_from_recipe",
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put every submodule in eval mode; restore each one's own ``training`` flag on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in modes:
            m.training = was_training


def _per_sample_shape(x: torch.Tensor) -> tuple[int, ...]:
    return (x.shape[0],) + (1,) * (x.dim() - 1)


def noise_like(like: torch.Tensor, generator: torch.Generator | None, kind: str = "randn") -> torch.Tensor:
    """Standard normal (``kind='randn'``) or uniform [0, 1) (``kind='rand'``) noise shaped like
    ``like``, drawn from ``generator`` on the generator's own device (the global RNG when None),
    then moved to ``like``'s device and dtype."""
    device = generator.device if generator is not None else like.device
    fn = torch.rand if kind == "rand" else torch.randn
    out = fn(like.shape, generator=generator, device=device, dtype=torch.float32)
    return out.to(device=like.device, dtype=like.dtype)


def threat_from_recipe(recipe: Mapping[str, Any]) -> ThreatModel:
    """The training-time threat model of a recipe: ``eps``, ``step_size``, ``attack_steps``
    (required), ``norm`` (default ``linf``), ``lower``/``upper`` (default 0/1)."""
    missing = [k for k in ("eps", "step_size", "attack_steps") if k not in recipe]
    if missing:
        raise KeyError(
            f"the training recipe lacks {', '.join(missing)} (adversarial training needs eps, "
            f"step_size and attack_steps); recipe keys: {', '.join(sorted(recipe)) or '(none)'}"
        )
    return ThreatModel(
        norm=_norm_name(recipe.get("norm", "linf")),
        eps=float(recipe["eps"]),
        step_size=float(recipe["step_size"]),
        steps=int(recipe["attack_steps"]),
        lower=float(recipe.get("lower", 0.0)),
        upper=float(recipe.get("upper", 1.0)),
    )


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------


def project(x_adv: torch.Tensor, x: torch.Tensor, threat: ThreatModel) -> torch.Tensor:
    """Project ``x_adv`` onto {z : ||z - x|| <= eps} ∩ [lower, upper] (see the module docstring)."""
    norm = _norm_name(threat.norm)
    eps = float(threat.eps)
    if norm == "linf":
        out = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
    else:
        delta = x_adv - x
        n = perturbation_norm(delta, "l2")
        factor = torch.clamp(eps / (n + 1e-12), max=1.0).reshape(_per_sample_shape(x))
        out = x + delta * factor
    return out.clamp(float(threat.lower), float(threat.upper))


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit norm: ``sign(g)`` (l-inf) or ``g / ||g||_2`` (l2)."""
    if _norm_name(norm) == "linf":
        return grad.sign()
    n = perturbation_norm(grad, "l2").reshape(_per_sample_shape(grad))
    return grad / (n + 1e-12)


def random_start(x: torch.Tensor, threat: ThreatModel, generator: torch.Generator | None) -> torch.Tensor:
    """A random start in the threat's ball around ``x`` (see the module docstring), clipped to
    [lower, upper]."""
    eps = float(threat.eps)
    if _norm_name(threat.norm) == "linf":
        delta = (2.0 * noise_like(x, generator, "rand") - 1.0) * eps
    else:
        direction = ascent_direction(noise_like(x, generator, "randn"), "l2")
        u = noise_like(x.new_empty(x.shape[0]), generator, "rand")
        delta = direction * (eps * u).reshape(_per_sample_shape(x))
    return (x + delta).clamp(float(threat.lower), float(threat.upper))


def projected_gradient_ascent(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    x_init: torch.Tensor,
    threat: ThreatModel,
) -> torch.Tensor:
    """Maximize ``loss_fn`` (per-sample losses, shape (B,)) over the threat's ball around ``x``.

    ``threat.steps`` iterations of ``z <- Proj(z + step_size * ascent_direction(grad))`` from
    ``x_init``; the gradient is that of ``loss_fn(z).sum()`` with respect to ``z`` only (per-sample
    gradients, independent of the batch size). The result is always projected, also for 0 steps.
    Runs under ``torch.enable_grad()`` so callers may hold ``torch.no_grad``.
    """
    x = x.detach()
    z = x_init.detach().clone()
    step = float(threat.step_size)
    with torch.enable_grad():
        for _ in range(int(threat.steps)):
            z.requires_grad_(True)
            loss = loss_fn(z)
            (grad,) = torch.autograd.grad(loss.sum(), [z])
            z = project(z.detach() + step * ascent_direction(grad, threat.norm), x, threat)
    return project(z.detach(), x, threat)


def pgd_attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    generator: torch.Generator | None,
    *,
    restarts: int = 1,
    random_init: bool = True,
) -> torch.Tensor:
    """PGD on the cross-entropy (Madry et al., ICLR 2018) with ``restarts`` random starts.

    The model is used as it is (callers put it in eval mode). The clean input is the first
    candidate; each restart attacks only the samples not yet misclassified and, per sample, keeps
    the first misclassified iterate, else the one of highest cross-entropy.
    """
    x = x.detach()
    with torch.no_grad():
        logits = model(x)
        best_loss = F.cross_entropy(logits, y, reduction="none")
        best_fooled = logits.argmax(dim=1) != y
    best = x.clone()
    for _ in range(max(1, int(restarts))):
        idx = (~best_fooled).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xs, ys = x[idx], y[idx]
        start = random_start(xs, threat, generator) if random_init else xs
        adv = projected_gradient_ascent(
            lambda z: F.cross_entropy(model(z), ys, reduction="none"), xs, start, threat
        )
        with torch.no_grad():
            logits = model(adv)
            loss = F.cross_entropy(logits, ys, reduction="none")
            fooled = logits.argmax(dim=1) != ys
        take = fooled | (loss > best_loss[idx])
        sel = idx[take]
        best[sel] = adv[take]
        best_loss[sel] = loss[take]
        best_fooled[sel] = fooled[take]
    return best


# --------------------------------------------------------------------------------------------
# output checks
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


def _correct_mask(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample correctness (bool, on the CPU)."""
    with torch.no_grad():
        return (model(x).argmax(dim=1) == y).cpu()



def _attack_label(key: str, method: AttackMethod) -> str:
    name = getattr(method, "name", "") or type(method).__name__
    package = getattr(method, "package", "")
    label = name if name == key else f"{name} (as {key!r})"
    return f"{label} from {package}" if package else label


def _run_attack(
    key: str,
    method: AttackMethod,
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    seed: int,
    batch_size: int,
    strict: bool,
) -> tuple[torch.Tensor, bool]:
    """Per-sample correctness under ``method`` (bool, CPU) and whether every output was inside
    the threat model."""
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    masks: list[torch.Tensor] = []
    ball_ok = True
    label = _attack_label(key, method)
    for start in range(0, x.shape[0], batch_size):
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        x_adv = method.perturb(model, xb.clone(), yb.clone(), threat, generator)
        model.eval()  # an attack that left the model in train mode does not change the measure
        problem = _ball_problems(x_adv, xb, threat)
        if problem is not None:
            if strict:
                raise AttackOutputError(f"attack plugin {label} violated the threat model: {problem}")
            ball_ok = False
            if not isinstance(x_adv, torch.Tensor) or tuple(x_adv.shape) != tuple(xb.shape):
                raise AttackOutputError(f"attack plugin {label} returned unusable output: {problem}")
        masks.append(_correct_mask(model, x_adv.detach().to(device=xb.device, dtype=xb.dtype), yb))
    return torch.cat(masks), ball_ok


def evaluate_robustness(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Mapping[str, AttackMethod],
    threat: ThreatModel,
    seed: int,
    batch_size: int = 512,
    *,
    masking_check: bool = False,
    strict: bool = True,
    per_point: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Clean and adversarial accuracy of ``model`` on (x, y), with sanity checks.

    Each attack runs batch by batch (``batch_size``) with its own ``torch.Generator`` seeded with
    ``seed``, so results do not depend on the order of ``attacks``. Accuracy under an attack is
    the accuracy on the inputs it returned. Metrics (all floats):

    * ``clean_acc``; ``<key>_acc`` for each key of ``attacks`` (e.g. ``pgd_acc``, ``autoattack_acc``).
    * ``check_order_ok``: 1.0 when ``autoattack_acc <= pgd_acc <= clean_acc`` (the pairs present)
      and every attack's accuracy ``<= clean_acc``, each with a tolerance of one sample.
    * ``check_ball_ok``: 1.0 when every output lies in the eps-ball (+1e-6) and in
      [lower, upper]. With ``strict=True`` (the harness's setting) a violation raises
      ``AttackOutputError`` naming the plugin instead; ``strict=False`` records 0.0.
    * ``pgd_masking_flag`` (only with ``masking_check=True`` and a ``pgd`` attack): 1.0 when PGD
      with 5x the steps (same step size) leaves accuracy higher than the configured PGD by more
      than one sample, a sign of gradient masking; ``pgd_masking_acc`` is that accuracy.

    With ``per_point`` (a dict), each accuracy's per-sample correctness is stored in it as a bool
    array of length n under the metric's name (``clean_acc``, ``pgd_acc``, ...), in the order of
    ``x``: the leaderboard's paired bootstrap over test points reads them.

    The model is evaluated in eval mode; every module's mode is restored afterwards.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    n = int(x.shape[0])
    if n == 0:
        raise ValueError("evaluate_robustness needs at least one sample")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    _norm_name(threat.norm)
    x = x.detach()
    y = y.detach().long()
    metrics: dict[str, float] = {}
    counts: dict[str, int] = {}
    ball_ok = True
    with eval_mode(model):
        clean_mask = torch.cat([_correct_mask(model, x[s : s + batch_size], y[s : s + batch_size]) for s in range(0, n, batch_size)])
        clean = int(clean_mask.sum())
        metrics["clean_acc"] = clean / n
        if per_point is not None:
            per_point["clean_acc"] = clean_mask.numpy().astype(bool)
        for key, method in attacks.items():
            mask, ok = _run_attack(key, method, model, x, y, threat, seed, batch_size, strict)
            counts[key] = int(mask.sum())
            ball_ok = ball_ok and ok
            metrics[f"{key}_acc"] = counts[key] / n
            if per_point is not None:
                per_point[f"{key}_acc"] = mask.numpy().astype(bool)
        if masking_check and "pgd" in attacks:
            pgd = attacks["pgd"]
            longer = dataclasses.replace(threat, steps=5 * int(threat.steps))
            if pgd.params.get("steps") is not None:
                pgd = pgd.with_params(steps=5 * int(pgd.params["steps"]))
            long_mask, ok = _run_attack("pgd", pgd, model, x, y, longer, seed, batch_size, strict)
            long_count = int(long_mask.sum())
            ball_ok = ball_ok and ok
            metrics["pgd_masking_acc"] = long_count / n
            metrics["pgd_masking_flag"] = 1.0 if long_count > counts["pgd"] + 1 else 0.0
    order_ok = all(c <= clean + 1 for c in counts.values())
    if "pgd" in counts and "autoattack" in counts:
        order_ok = order_ok and counts["autoattack"] <= counts["pgd"] + 1
    metrics["check_order_ok"] = 1.0 if order_ok else 0.0
    metrics["check_ball_ok"] = 1.0 if ball_ok else 0.0
    return metrics
