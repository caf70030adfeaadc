"""Shared machinery of the early-exit (``role = "early-exit"``) plugins of the video track.

* ``train_ics``: trains the 9 internal-classifier heads (3 modalities x stages 1..3) on the frozen
  backbones' cached stage features, one random segment per clip per epoch, one Adam per head
  (``recipe``: eps, weight decay, per-modality lr, x0.1 at the ``milestones`` epochs), with a
  per-epoch target: the hard labels (cross-entropy) or a teacher network's final logits on the
  same segment (soft cross-entropy, PKD's loss, no hard-label term, no T^2 factor):
  ``L = mean_b -sum_c softmax(t_b / T)_c log softmax(s_b / T)_c``.
* ``teacher_schedule``: the teacher per epoch for an ordered list of teachers, each but the last
  lasting ``phase_fraction`` of the epochs (PKD: 50 of 300 epochs each, then the own IC4).
* ``fit_wise``: WISE's exit ensembles, ``z~_e = sum_{j<=e} beta_e[j] z_j``, fitted on training
  logits (segment-averaged) by full-batch SGD on ``CE(z~_e, y) + l1 * ||beta_e||_1``, then
  negative weights clipped to 0.

Reference: Y. Zhang et al., "Early-Exit Compressed Video Recognition with Progressive Knowledge
Distillation and Weighted Inference with Scaled Ensemble" (PKD + WISE), arXiv 2407.02713, and its
code (``train_freeze_backbone_IC_*.py``, ``WISE*.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from coreset_bench.kinds import DistillationMethod, ExitModel, Param

OWN = "own"


def teacher_schedule(order: Sequence[str], epochs: int, phase_fraction: float) -> list[str]:
    """Teacher name per epoch: each teacher of ``order`` but the last for
    ``round(phase_fraction * epochs)`` epochs, the last for the rest. ``["ce"]``: labels."""
    order = [o.strip() for o in order if o.strip()]
    if not order:
        raise ValueError("the teacher order is empty; give e.g. 'mv,res,own' or 'ce'")
    span = int(round(float(phase_fraction) * epochs))
    out: list[str] = []
    for t in order[:-1]:
        out += [t] * span
    out += [order[-1]] * max(0, epochs - len(out))
    return out[:epochs]


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``mean_b -sum_c softmax(t/T)_c log softmax(s/T)_c`` (PKD's loss)."""
    t = F.softmax(teacher / temperature, dim=1)
    return -(t * F.log_softmax(student / temperature, dim=1)).sum(1).mean()


def _milestones(recipe: Any, epochs: int) -> list[int]:
    ms = list(recipe.get("milestones", []) or [])
    return sorted(int(round(m * epochs)) if isinstance(m, float) and m < 1 else int(m) for m in ms)


def train_ics(view: Any, schedule: Sequence[str], *, temperature: float = 1.0, epochs: int | None = None) -> dict[tuple[str, int], torch.nn.Module]:
    """The 9 IC heads trained with ``schedule[epoch]`` as target: ``"ce"`` (hard labels), ``"own"``
    (the head's network's final logits) or a modality (that network's final logits)."""
    recipe = view.recipe
    epochs = int(recipe.get("ic_epochs", 1) if epochs is None else epochs)
    if len(schedule) != epochs:
        raise ValueError(f"the schedule has {len(schedule)} entries for {epochs} epochs")
    for t in set(schedule):
        if t not in ("ce", OWN) and t not in view.modalities:
            raise ValueError(f"unknown teacher {t!r}; use 'ce', 'own' or one of {', '.join(view.modalities)}")
    lrs = recipe.get("lr", {})
    bs = int(recipe.get("batch_size", 32))
    eps, wd = float(recipe.get("adam_eps", 1e-3)), float(recipe.get("weight_decay", 1e-4))
    miles = _milestones(recipe, epochs)
    heads: dict[tuple[str, int], torch.nn.Module] = {}
    opts, scheds = [], []
    for m in view.modalities:
        for k in (1, 2, 3):
            h = view.head_factory(m, k).to(view.device)
            heads[(m, k)] = h
            lr = float(lrs[m] if isinstance(lrs, dict) or hasattr(lrs, "get") else lrs)
            opt = torch.optim.Adam(h.parameters(), lr=lr, eps=eps, weight_decay=wd)
            opts.append(opt)
            scheds.append(torch.optim.lr_scheduler.MultiStepLR(opt, miles, gamma=0.1))
    y = view.y_train
    n = view.n
    kseg = int(view.final_logits_train[view.modalities[0]].shape[1])
    g = view.generator
    for ep in range(epochs):
        target = schedule[ep]
        for h in heads.values():
            h.train()
        seg = torch.randint(0, kseg, (n,), generator=g)
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i: i + bs]
            sidx = seg[idx]
            loss = 0.0
            for (m, k), h in heads.items():
                out = h(view.feats_train[m][k - 1][idx, sidx])
                if target == "ce":
                    loss = loss + F.cross_entropy(out, y[idx])
                else:
                    tm = m if target == OWN else target
                    loss = loss + soft_cross_entropy(out, view.final_logits_train[tm][idx, sidx], temperature)
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()  # the heads' graphs are disjoint: each gets its own loss's gradient
            for o in opts:
                o.step()
        for s in scheds:
            s.step()
    for h in heads.values():
        h.eval()
    return heads


@torch.no_grad()
def exit_logits(view: Any, heads: dict[tuple[str, int], torch.nn.Module]) -> torch.Tensor:
    """Segment-averaged training logits (N, E, C) of every exit of ``view.exit_order``; the fused
    exit's own logits are the mean of the three final classifiers'."""
    out = []
    for m, k in view.exit_order:
        if m == "fused":
            out.append(torch.stack([view.final_logits_train[mm].mean(1) for mm in view.modalities]).mean(0))
        elif k == 4:
            out.append(view.final_logits_train[m].mean(1))
        else:
            h = heads[(m, k)].eval()
            f = view.feats_train[m][k - 1]
            flat = f.reshape(-1, *f.shape[2:])
            out.append(torch.cat([h(flat[i: i + 512]) for i in range(0, len(flat), 512)]).reshape(f.shape[0], f.shape[1], -1).mean(1))
    return torch.stack(out, dim=1)


def fit_wise(z: torch.Tensor, y: torch.Tensor, *, init: str = "last", l1: float = 0.01, lr: float = 0.1, iters: int = 500, clip_negative: bool = True) -> list[np.ndarray]:
    """WISE weights beta_e (length e + 1) for every exit e, fitted on logits ``z`` (N, E, C).

    All exits are fitted at once: row e of a lower-triangular (E, E) matrix is beta_e; the rows'
    losses are independent, so one SGD on their sum equals E separate fits."""
    if init not in ("last", "ones"):
        raise ValueError(f"init must be 'last' (one-hot on the exit) or 'ones', got {init!r}")
    z = z.detach().double()
    n, e_n, c = z.shape
    mask = torch.tril(torch.ones(e_n, e_n, dtype=torch.float64))
    beta = (torch.eye(e_n, dtype=torch.float64) if init == "last" else mask.clone()).requires_grad_(True)
    opt = torch.optim.SGD([beta], lr=lr)
    yy = y.repeat(e_n)
    for _ in range(int(iters)):
        b = beta * mask
        zt = torch.einsum("ej,njc->enc", b, z)  # (E, N, C)
        loss = F.cross_entropy(zt.reshape(e_n * n, c), yy, reduction="none").reshape(e_n, n).mean(1).sum() + l1 * b.abs().sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    b = (beta * mask).detach()
    if clip_negative:
        b = b.clamp_min(0.0)
    return [b[e, : e + 1].numpy().astype(np.float64) for e in range(e_n)]


class EarlyExitMethod(DistillationMethod):
    """Base of the video track's contestants: heads from ``train_ics`` with the teacher order in
    ``params["order"]`` (``"ce"`` for labels), and a WISE combiner when ``params["wise"]``."""

    role = "early-exit"
    version = "1"
    citation = "Zhang et al. Early-Exit Compressed Video Recognition with PKD and WISE. arXiv 2407.02713, 2024."
    #: params shared by every contestant (subclasses extend them)
    BASE_PARAMS: dict[str, Any] = {"temperature": 1.0, "phase_fraction": 1 / 6}
    WISE_PARAMS: dict[str, Any] = {"wise_init": "last", "wise_l1": 0.01, "wise_lr": 0.1, "wise_iters": 500, "wise_clip_negative": True}
    #: declared ranges of every contestant's parameters; each declares those it has
    SPECS: dict[str, Param] = {
        "order": Param(str, help="comma-separated teacher order of the training phases (mv, res, iframe, own; ce: labels)"),
        "phase_fraction": Param(float, min=0, max=1, min_open=True, help="share of the IC epochs of each phase but the last"),
        "temperature": Param(float, min=0, min_open=True, help="distillation temperature"),
        "wise": Param(bool, help="combine the exits with WISE (else each exit alone)"),
        "wise_init": Param(str, choices=("last", "ones"), help="WISE weights start one-hot on the exit or all ones"),
        "wise_l1": Param(float, min=0, help="L1 penalty on the WISE weights"),
        "wise_lr": Param(float, min=0, min_open=True, help="learning rate of the WISE fit"),
        "wise_iters": Param(int, min=1, help="optimizer steps of the WISE fit"),
        "wise_clip_negative": Param(bool, help="clip negative WISE weights to zero"),
    }

    @property
    def param_specs(self) -> dict[str, Param]:  # type: ignore[override]
        return {k: v for k, v in self.SPECS.items() if k in self.params}

    def schedule(self, epochs: int) -> list[str]:
        return teacher_schedule(str(self.params["order"]).split(","), epochs, float(self.params["phase_fraction"]))

    def distill(self, view: Any) -> ExitModel:
        epochs = int(view.recipe.get("ic_epochs", 1))
        sched = self.schedule(epochs)
        view.info["teachers"] = {t: sched.count(t) for t in dict.fromkeys(sched)}
        heads = train_ics(view, sched, temperature=float(self.params["temperature"]), epochs=epochs)
        combiner = None
        if self.params.get("wise"):
            z = exit_logits(view, heads)
            combiner = fit_wise(z, view.y_train, init=str(self.params["wise_init"]), l1=float(self.params["wise_l1"]), lr=float(self.params["wise_lr"]),
                                iters=int(self.params["wise_iters"]), clip_negative=bool(self.params["wise_clip_negative"]))
        return ExitModel(heads=heads, combiner=combiner)
