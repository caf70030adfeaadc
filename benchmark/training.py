"""The harness's training loop and evaluation helpers.

The loop is shared by every training plugin: the plugin supplies the per-sample loss of a
mini-batch (``TrainingMethod.batch_loss``), the harness owns the optimizer (SGD, momentum,
Nesterov, weight decay), the schedule, batching by index gathers on in-memory tensors, batched
augmentation, sample weights and the training budget. A recipe is a plain mapping:

=================  =========================================================================
``epochs``         passes over the (sub)set when ``budget_mode`` is ``epochs``
``steps``          optimizer steps when ``budget_mode`` is ``iterations`` (every subset gets
                   the same compute, the CCS/D2 convention); ``epochs`` is then ignored
``budget_mode``    ``epochs`` (DeepCore/CLD convention) or ``iterations``
``batch_size``     mini-batch size
``lr``             peak learning rate; ``momentum``, ``weight_decay``, ``nesterov``
``schedule``       ``cosine``, ``onecycle`` (linear warm-up over ``warmup`` of the run, then
                   linear decay) or ``multistep`` (``milestones`` as fractions, ``gamma``)
``label_smoothing`` for the standard cross-entropy
=================  =========================================================================
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import augment
from .kinds import TrainContext, TrainingMethod

DEFAULT_RECIPE: dict[str, Any] = {
    "epochs": 15,
    "steps": 0,
    "budget_mode": "epochs",
    "batch_size": 128,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "nesterov": True,
    "schedule": "cosine",
    "warmup": 0.15,
    "milestones": (0.5, 0.75),
    "gamma": 0.1,
    "label_smoothing": 0.0,
    "augment": True,
}


def total_steps(recipe: Mapping[str, Any], n: int) -> int:
    bs = min(int(recipe["batch_size"]), n)
    if recipe.get("budget_mode", "epochs") == "iterations":
        return max(1, int(recipe["steps"]))
    # full batches only (the last partial batch is dropped), so an epoch is n // bs steps
    return max(1, int(recipe["epochs"]) * max(1, n // bs))


def lr_at(recipe: Mapping[str, Any], step: int, total: int) -> float:
    base = float(recipe["lr"])
    frac = step / max(total, 1)
    sched = recipe.get("schedule", "cosine")
    if sched == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * frac))
    if sched == "onecycle":
        wu = float(recipe.get("warmup", 0.15))
        return base * (frac / wu if frac < wu else max(0.0, (1 - frac) / (1 - wu)))
    if sched == "multistep":
        k = sum(frac >= m for m in recipe.get("milestones", (0.5, 0.75)))
        return base * float(recipe.get("gamma", 0.1)) ** k
    if sched == "constant":
        return base
    raise ValueError(f"unknown schedule {sched!r}; use cosine, onecycle, multistep or constant")


def _optimizer(model: nn.Module, recipe: Mapping[str, Any]) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": float(recipe["weight_decay"])}, {"params": no_decay, "weight_decay": 0.0}],
        lr=float(recipe["lr"]),
        momentum=float(recipe["momentum"]),
        nesterov=bool(recipe["nesterov"]) and float(recipe["momentum"]) > 0,
    )


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: TrainingMethod,
    recipe: Mapping[str, Any],
    num_classes: int,
    seed: int,
    weights: torch.Tensor | None = None,
    pad: int = 0,
    hflip: bool = False,
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
    on_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, float]:
    """Train ``model`` in place on (x, y). Returns timing and step counts.

    ``on_batch(indices, logits)`` is called with each mini-batch's pool indices and the train-mode
    logits of the clean batch (only with the standard cross-entropy, which is how the proxy run
    records forgetting events). ``on_epoch_end(epoch, model)`` runs after each pass over the data.
    """
    rec = {**DEFAULT_RECIPE, **dict(recipe)}
    n = len(y)
    if n == 0:
        raise ValueError("cannot train on an empty subset")
    device = x.device
    gen = torch.Generator().manual_seed(int(seed))
    bs = min(int(rec["batch_size"]), n)
    total = total_steps(rec, n)
    opt = _optimizer(model, rec)
    w = None
    if weights is not None:
        w = weights.to(device=device, dtype=torch.float32)
        w = w / w.mean()
    model.train()
    t0 = time.perf_counter()
    step = 0
    epoch = 0
    use_aug = bool(rec.get("augment", True)) and (pad > 0 or hflip)
    ls = float(rec.get("label_smoothing", 0.0))
    while step < total:
        perm = torch.randperm(n, generator=gen).to(device)
        nb = n // bs if n >= bs else 1  # drop the last partial batch (full batches keep BN stable)
        ctx = TrainContext(recipe=rec, num_classes=num_classes, generator=gen, epoch=epoch)
        for b in range(nb):
            if step >= total:
                break
            idx = perm[b * bs : (b + 1) * bs]
            xb, yb = x[idx], y[idx]
            if use_aug:
                xb = augment(xb, pad=pad, hflip=hflip, generator=gen)
            for g in opt.param_groups:
                g["lr"] = lr_at(rec, step, total)
            if on_batch is not None:
                logits = model(xb)
                loss = F.cross_entropy(logits, yb, reduction="none", label_smoothing=ls)
                on_batch(idx, logits.detach())
            else:
                loss = method.batch_loss(model, xb, yb, ctx)
            if w is not None:
                loss = loss * w[idx]
            loss = loss.mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at step {step} (training plugin {method.name!r})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if progress is not None and step % 20 == 0:
                progress("train", step / total)
        epoch += 1
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
            model.train()
    model.eval()
    return {"train_s": time.perf_counter() - t0, "steps": float(step), "epochs": float(epoch)}


class TrainingFixture:
    """The harness's training fixture handed to a contestant (``NoiseView.train``): a picklable
    ``train(model, x, y, epochs=None, **overrides) -> model`` that trains ``model`` in place with
    the ``training`` plugin (``standard``) and the track's ``recipe`` (``overrides``: keys of the
    recipe; ``epochs`` sets ``budget_mode = "epochs"``). Call k (1, 2, ...) is seeded with
    ``seed + k``. ``calls`` and ``seconds`` count its use (recorded with the cell)."""

    def __init__(self, recipe: Mapping[str, Any], num_classes: int, seed: int, *, pad: int = 0, hflip: bool = False, training: str = "standard") -> None:
        self.recipe, self.num_classes, self.seed = dict(recipe), int(num_classes), int(seed)
        self.pad, self.hflip, self.training = int(pad), bool(hflip), str(training)
        self.calls, self.seconds = 0, 0.0

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int | None = None, **overrides: Any) -> nn.Module:
        from . import registry as plugins

        unknown = sorted(set(overrides) - set(DEFAULT_RECIPE))
        if unknown:
            raise ValueError(f"train(): unknown recipe keys {', '.join(unknown)}; known: {', '.join(sorted(DEFAULT_RECIPE))}")
        rec = {**self.recipe, **overrides}
        if epochs is not None:
            rec["epochs"] = int(epochs)
            rec["budget_mode"] = "epochs"
        self.calls += 1
        t0 = time.perf_counter()
        train(model, x, y.to(x.device), method=plugins.method(self.training), recipe=rec, num_classes=self.num_classes, seed=self.seed + self.calls, pad=self.pad, hflip=self.hflip)
        self.seconds += time.perf_counter() - t0
        return model


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode (float32)."""
    was = model.training
    model.eval()
    out = [model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Clean accuracy and per-class accuracy."""
    pred = predict(model, x).argmax(1)
    correct = (pred == y).float()
    per_class = []
    for c in range(num_classes):
        m = y == c
        per_class.append(float(correct[m].mean()) if m.any() else float("nan"))
    return {"acc": float(correct.mean()), "per_class": per_class}


def eval_batch_size(device: torch.device | str) -> int:
    """Batch size of the per-epoch eval pass (``eval_signals``): 64 on the CPU, 512 elsewhere.

    On the CPU, small batches keep a conv layer's activations in cache: cnn-small on 2,048
    CIFAR images (one thread) took 1.62 s at 512 and 0.85 s at 64 without input gradients, 4.0 s
    and 1.7 s with them (issue 26). Per-sample values do not depend on the batch size (bit for
    bit, ``tests/test_signals.py``), so stored signals and selections are unchanged."""
    return 64 if torch.device(device).type == "cpu" else 512


def eval_signals(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, input_grad: bool, features: bool = False, batch_size: int | None = None) -> dict[str, np.ndarray]:
    """Per-sample eval-mode loss, true-class and largest-other probability, correctness,
    (``input_grad``) the L2 norm of d loss / d x and (``features``) the penultimate embeddings
    and logits, all from ONE forward pass (+ one backward pass to the input for the gradients).

    The parameters are frozen for the pass, so the backward computes input gradients only (no
    weight gradients, no graph for the weights). The values equal those of a plain forward
    (``features``: ``embed`` then ``classify``, as ``forward``) and of ``features()`` bit for bit
    on the CPU (``tests/test_signals.py``). ``batch_size``: None = ``eval_batch_size`` of the
    device of ``x``."""
    model.eval()
    if batch_size is None:
        batch_size = eval_batch_size(x.device)
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("loss", "prob_true", "prob_other_max", "correct", "input_grad_norm", "embeddings", "logits")}
    with_embed = features and hasattr(model, "embed") and hasattr(model, "classify")
    frozen = [p for p in model.parameters() if p.requires_grad] if input_grad else []
    for p in frozen:
        p.requires_grad_(False)
    try:
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            with torch.enable_grad() if input_grad else torch.no_grad():
                if input_grad:
                    xb = xb.clone().requires_grad_(True)
                if with_embed:
                    e = model.embed(xb)  # type: ignore[operator]
                    logits = model.classify(e).float()  # type: ignore[operator]
                else:
                    logits = model(xb).float()
                loss = F.cross_entropy(logits, yb, reduction="none")
                if input_grad:
                    (g,) = torch.autograd.grad(loss.sum(), xb)
                    cols["input_grad_norm"].append(g.flatten(1).norm(dim=1).cpu())
            logits, loss = logits.detach(), loss.detach()
            p = logits.softmax(1)
            cols["prob_true"].append(p.gather(1, yb[:, None]).squeeze(1).cpu())
            cols["prob_other_max"].append(p.scatter(1, yb[:, None], -1.0).max(1).values.cpu())
            cols["loss"].append(loss.cpu())
            cols["correct"].append((logits.argmax(1) == yb).cpu())
            if features:
                cols["embeddings"].append((e.detach() if with_embed else model.embed(xb.detach())).float().cpu())  # type: ignore[operator]
                cols["logits"].append(logits.cpu())
    finally:
        for p in frozen:
            p.requires_grad_(True)
    out = {
        "loss": torch.cat(cols["loss"]).numpy().astype(np.float32),
        "prob_true": torch.cat(cols["prob_true"]).numpy().astype(np.float32),
        "prob_other_max": torch.cat(cols["prob_other_max"]).numpy().astype(np.float32),
        "correct": torch.cat(cols["correct"]).numpy(),
    }
    if input_grad:
        out["input_grad_norm"] = torch.cat(cols["input_grad_norm"]).numpy().astype(np.float32)
    if features:
        out["embeddings"] = torch.cat(cols["embeddings"]).numpy()
        out["logits"] = torch.cat(cols["logits"]).numpy()
    return out


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate embeddings and logits (eval mode)."""
    model.eval()
    embs, logits = [], []
    for i in range(0, len(x), batch_size):
        e = model.embed(x[i : i + batch_size])
        lg = model.classify(e) if hasattr(model, "classify") else model(x[i : i + batch_size])
        embs.append(e.float().cpu())
        logits.append(lg.float().cpu())
    return torch.cat(embs).numpy(), torch.cat(logits).numpy()
