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

Reference: E. Soufleri, D. Ravikumar, K. Roy, "Advancing Compressed Video Action Recognition through Progressive
Knowledge Distillation" (PKD + WISE), arXiv 2407.02713, and its
code (``train_freeze_backbone_IC_*.py``, ``WISE*.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
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


def _lr_steps_error(value: Any) -> str | None:
    if str(value) == "recipe":
        return None
    try:
        fr = [float(Fraction(x.strip())) for x in str(value).split(",")]
    except (ValueError, ZeroDivisionError):
        return "not 'recipe' nor comma-separated fractions such as '1/3,2/3'"
    return None if all(0 < f < 1 for f in fr) else "every step must be a fraction of the epochs in (0, 1)"


def _milestones(recipe: Any, epochs: int) -> list[int]:
    ms = list(recipe.get("milestones", []) or [])
    return sorted(int(round(m * epochs)) if isinstance(m, float) and m < 1 else int(m) for m in ms)


def train_ics(view: Any, schedule: Sequence[str], *, temperature: float = 1.0, epochs: int | None = None,
              milestones: Sequence[float] | None = None) -> dict[tuple[str, int], torch.nn.Module]:
    """The 9 IC heads trained with ``schedule[epoch]`` as target: ``"ce"`` (hard labels), ``"own"``
    (the head's network's final logits) or a modality (that network's final logits).

    ``view.recipe["train_segments"]``: ``"random"`` (the default, quick@1/@2) draws one segment per
    clip per epoch and pairs it with the teacher's logits on that segment; ``"average"`` (the
    reference scripts, quick@3) runs every segment and averages the student's logits over them,
    and the teacher's, before the loss. When the view has augmented copies
    (``feats_train_aug``), each epoch draws one of the V copies per clip and network, and a
    teacher's logits are those of its own network's drawn copy (as the reference, whose
    transforms crop each modality's input independently). ``milestones``: epochs (or fractions
    of them) of the x0.1 lr steps; None: the recipe's."""
    recipe = view.recipe
    epochs = int(recipe.get("ic_epochs", 1) if epochs is None else epochs)
    if len(schedule) != epochs:
        raise ValueError(f"the schedule has {len(schedule)} entries for {epochs} epochs")
    for t in set(schedule):
        if t not in ("ce", OWN) and t not in view.modalities:
            raise ValueError(f"unknown teacher {t!r}; use 'ce', 'own' or one of {', '.join(view.modalities)}")
    mode = str(recipe.get("train_segments", "random"))
    if mode not in ("random", "average"):
        raise ValueError(f"recipe train_segments must be 'random' or 'average', got {mode!r}")
    lrs = recipe.get("lr", {})
    bs = int(recipe.get("batch_size", 32))
    eps, wd = float(recipe.get("adam_eps", 1e-3)), float(recipe.get("weight_decay", 1e-4))
    miles = _milestones(recipe if milestones is None else {"milestones": list(milestones)}, epochs)
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
    mods = list(view.modalities)
    aug = getattr(view, "feats_train_aug", None) is not None
    if aug:  # (V, N, ...) -> (V * N, ...): row v * n + i is copy v of clip i (a view: the copies are stacked densely)
        n_views = int(view.final_logits_train_aug[mods[0]].shape[0])
        feats = {m: [f.reshape(-1, *f.shape[2:]) for f in view.feats_train_aug[m]] for m in mods}
        teachers = {m: view.final_logits_train_aug[m].reshape(-1, *view.final_logits_train_aug[m].shape[2:]) for m in mods}
    else:
        feats, teachers = view.feats_train, view.final_logits_train
    for ep in range(epochs):
        target = schedule[ep]
        for h in heads.values():
            h.train()
        if aug:
            copy = torch.randint(0, n_views, (len(mods), n), generator=g)
        if mode == "random":
            seg = torch.randint(0, kseg, (n,), generator=g)
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, bs):
            idx = perm[i: i + bs]
            loss = 0.0
            for (m, k), h in heads.items():
                f = feats[m][k - 1]
                tm = m if target == OWN else target
                rows = copy[mods.index(m), idx] * n + idx if aug else idx
                trows = (copy[mods.index(tm), idx] * n + idx if aug else idx) if target != "ce" else None
                if mode == "random":
                    sidx = seg[idx]
                    out = h(f[rows, sidx])
                    teach = teachers[tm][trows, sidx] if trows is not None else None
                else:
                    fb = f[rows]
                    out = h(fb.reshape(-1, *fb.shape[2:])).reshape(len(idx), kseg, -1).mean(1)
                    teach = teachers[tm][trows].mean(1) if trows is not None else None
                if teach is None:
                    loss = loss + F.cross_entropy(out, y[idx])
                else:
                    loss = loss + soft_cross_entropy(out, teach, temperature)
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
def exit_logits(view: Any, heads: dict[tuple[str, int], torch.nn.Module], split: str = "train") -> torch.Tensor:
    """Segment-averaged logits (N, E, C) of every exit of ``view.exit_order`` on the training
    clips (``split="train"``) or the held-out ones (``"heldout"``: ``view.feats_heldout``); the
    fused exit's own logits are the mean of the three final classifiers'."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if split == "heldout" and getattr(view, "feats_heldout", None) is None:
        raise ValueError("the view holds no clips out (feats_heldout is None); use split='train'")
    feats = view.feats_train if split == "train" else view.feats_heldout
    finals = view.final_logits_train if split == "train" else view.final_logits_heldout
    out = []
    for m, k in view.exit_order:
        if m == "fused":
            out.append(torch.stack([finals[mm].mean(1) for mm in view.modalities]).mean(0))
        elif k == 4:
            out.append(finals[m].mean(1))
        else:
            h = heads[(m, k)].eval()
            f = feats[m][k - 1]
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
    citation = "Soufleri, Ravikumar, Roy. Advancing Compressed Video Action Recognition through Progressive Knowledge Distillation. arXiv 2407.02713, 2024."
    #: params shared by every contestant (subclasses extend them)
    BASE_PARAMS: dict[str, Any] = {"temperature": 1.0, "phase_fraction": 1 / 6}
    WISE_PARAMS: dict[str, Any] = {"wise_init": "last", "wise_l1": 0.01, "wise_lr": 0.1, "wise_iters": 500, "wise_clip_negative": True, "wise_fit": "heldout"}
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
        "wise_fit": Param(str, choices=("heldout", "train"),
                          help="fit the WISE weights on the held-out training clips (where the profile holds some out, else the training clips) or on the training clips (the reference)"),
        "lr_steps": Param(str, check=_lr_steps_error, rule="'recipe' or comma-separated fractions in (0, 1), e.g. '1/3,2/3'",
                          help="the x0.1 learning-rate steps: the recipe's (50/67/83 % of the epochs) or fractions of the IC epochs"),
    }

    @property
    def param_specs(self) -> dict[str, Param]:  # type: ignore[override]
        return {k: v for k, v in self.SPECS.items() if k in self.params}

    def schedule(self, epochs: int) -> list[str]:
        return teacher_schedule(str(self.params["order"]).split(","), epochs, float(self.params["phase_fraction"]))

    def milestones(self, epochs: int, recipe: Any) -> list[int]:
        """The epochs at which every IC's lr drops x0.1: ``lr_steps`` fractions of ``epochs``
        (rounded), or the recipe's milestones when ``lr_steps`` is ``recipe`` or not a param."""
        spec = str(self.params.get("lr_steps", "recipe"))
        if spec == "recipe":
            return _milestones(recipe, epochs)
        return sorted(int(round(float(Fraction(x.strip())) * epochs)) for x in spec.split(","))

    def distill(self, view: Any) -> ExitModel:
        epochs = int(view.recipe.get("ic_epochs", 1))
        sched = self.schedule(epochs)
        miles = self.milestones(epochs, view.recipe)
        view.info["teachers"] = {t: sched.count(t) for t in dict.fromkeys(sched)}
        view.info["lr_steps"] = miles
        heads = train_ics(view, sched, temperature=float(self.params["temperature"]), epochs=epochs, milestones=miles)
        combiner = None
        if self.params.get("wise"):
            split = "heldout" if self.params.get("wise_fit", "train") == "heldout" and getattr(view, "n_heldout", 0) > 0 else "train"
            z = exit_logits(view, heads, split)
            y = view.y_heldout if split == "heldout" else view.y_train
            view.info["wise_fit"] = {"clips": split, "n": int(len(y))}
            combiner = fit_wise(z, y, init=str(self.params["wise_init"]), l1=float(self.params["wise_l1"]), lr=float(self.params["wise_lr"]),
                                iters=int(self.params["wise_iters"]), clip_negative=bool(self.params["wise_clip_negative"]))
        return ExitModel(heads=heads, combiner=combiner)
