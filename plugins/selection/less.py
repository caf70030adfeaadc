"""``less``: LESS, optimizer-aware gradient similarity to the target examples (Xia et al. 2024).

For every checkpoint k of the shared warm-up (trained with AdamW on a random part of the pool),
per-example gradients ``g`` of the mean response-token loss w.r.t. the warm-up's ``grad_params``
(TinyGPT: the qkv and o weights of every block; HF models: the warm-up's named parameters) are
turned into features::

    pool example z:   Gamma = m' / sqrt(v' + eps),  m' = b1 m_k + (1 - b1) g,  v' = b2 v_k + (1 - b2) g^2
    target example v: g (plain SGD gradient)

(no bias correction; ``b1 = 0.9``, ``b2 = 0.999``, ``eps = 1e-8`` as princeton-nlp/LESS
``obtain_gradients_with_adam``), projected to ``proj_dim`` dimensions by a seeded CountSketch
(or a Rademacher matrix / sqrt(d)), L2-normalized, and scored::

    infl(z) = sum_k w_k * max_task mean_{v in task} <Gamma^_k(z), g^_k(v)>,   w_k = lr_k / sum lr

with lr_k the mean learning rate of the warm-up segment ending at checkpoint k. Keep the top
budget. The reference trains LoRA adapters on a pretrained LM; the quick profile's base is a
random TinyGPT, so its warm-up is full-parameter and the gradients are those of the attention
weights (a LoRA-free reading, documented in docs/tracks/instruction.md).

Citation: M. Xia, S. Malladi, S. Gururangan, S. Arora, D. Chen. "LESS: Selecting Influential Data
for Targeted Instruction Tuning." ICML 2024 (github.com/princeton-nlp/LESS).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod

from ._text import task_groups


def adam_feature(g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> torch.Tensor:
    """LESS's Adam feature of per-example gradients ``g`` (N, P) given the optimizer moments (P,)."""
    m2 = beta1 * m + (1 - beta1) * g
    v2 = beta2 * v + (1 - beta2) * g * g
    return m2 / torch.sqrt(v2 + eps)


class CountSketch:
    """Seeded CountSketch R^P -> R^D: coordinate i goes to bucket h(i) with sign s(i)."""

    def __init__(self, p: int, d: int, seed: int) -> None:
        g = torch.Generator().manual_seed(int(seed))
        self.bucket = torch.randint(0, d, (p,), generator=g)
        self.sign = torch.randint(0, 2, (p,), generator=g).float() * 2 - 1
        self.d = d

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.bucket.device != x.device:  # projected where the gradients are (GPU profiles)
            self.bucket, self.sign = self.bucket.to(x.device), self.sign.to(x.device)
        out = torch.zeros(x.shape[0], self.d, dtype=x.dtype, device=x.device)
        out.index_add_(1, self.bucket, x * self.sign.to(x.dtype))
        return out


class Rademacher:
    """Seeded dense +-1/sqrt(D) projection R^P -> R^D, applied in column chunks."""

    def __init__(self, p: int, d: int, seed: int, chunk: int = 4096) -> None:
        self.p, self.d, self.seed, self.chunk = p, d, int(seed), chunk

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        out = torch.zeros(x.shape[0], self.d, dtype=x.dtype, device=x.device)
        for s in range(0, self.p, self.chunk):
            e = min(self.p, s + self.chunk)
            R = ((torch.randint(0, 2, (e - s, self.d), generator=g).to(x.dtype) * 2 - 1) / self.d**0.5).to(x.device)
            out += x[:, s:e] @ R
        return out


class LESS(SelectionMethod):
    name = "less"
    version = "1"
    summary = "Adam-preconditioned gradient similarity to the target examples over warm-up checkpoints, randomly projected (LESS)."
    citation = "Xia, Malladi, Gururangan, Arora, Chen. LESS: Selecting Influential Data for Targeted Instruction Tuning. ICML 2024."
    modalities = frozenset({"text"})
    params = {"proj_dim": 8192, "projection": "countsketch", "checkpoints": "all", "chunk": 256, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    param_specs = {
        "proj_dim": Param(int, min=1, help="dimension of the projected gradient features"),
        "projection": Param(str, choices=("countsketch", "rademacher"), help="random projection of the gradients"),
        "checkpoints": Param(str, help="all, or comma-separated warm-up checkpoint indices"),
        "chunk": Param(int, min=1, help="examples per gradient batch (memory only)"),
        "beta1": Param(float, min=0, max=1, max_open=True, help="Adam beta1 of the gradient feature"),
        "beta2": Param(float, min=0, max=1, max_open=True, help="Adam beta2 of the gradient feature"),
        "eps": Param(float, min=0, min_open=True, help="Adam epsilon of the gradient feature"),
    }
    notes = "Quick profile: full-parameter warm-up of a random-init TinyGPT and gradients of the attention weights (no LoRA: a random base cannot be LoRA-tuned)."

    def select(self, view):
        p = self.params
        if p["projection"] not in ("countsketch", "rademacher"):
            raise ValueError(f"less: projection must be countsketch or rademacher, got {p['projection']!r}")
        run = view.warmup()
        ks = list(range(len(run.checkpoints))) if p["checkpoints"] == "all" else [int(k) for k in str(p["checkpoints"]).split(",")]
        lrs = np.array([run.lrs[k] for k in ks], dtype=float)
        w = lrs / lrs.sum() if lrs.sum() > 0 else np.full(len(ks), 1 / len(ks))
        names = list(run.grad_params)
        groups = task_groups(view)
        total = torch.zeros(view.n, dtype=torch.float64)
        chunk = int(p["chunk"])
        for wk, k in zip(w, ks):
            model = run.checkpoints[k]()
            moments = run.adam_states[k]
            m = torch.cat([moments[n][0].reshape(-1) for n in names]).float()
            v = torch.cat([moments[n][1].reshape(-1) for n in names]).float()
            P = int(m.numel())
            seed = int(view.seed) + 7919 * k
            proj = CountSketch(P, int(p["proj_dim"]), seed) if p["projection"] == "countsketch" else Rademacher(P, int(p["proj_dim"]), seed)
            tg = view.lm.per_example_grads(model, view.target_ids, view.target_response_mask, names, chunk=chunk)
            m, v = m.to(tg.device), v.to(tg.device)  # the moments are stored on the CPU
            tfeat = F.normalize(proj(tg.float()), dim=1)
            del tg
            per_task = [tfeat[torch.tensor(rows)] for rows in groups.values()]
            for s in range(0, view.n, chunk):
                g = view.lm.per_example_grads(model, view.ids[s : s + chunk], view.response_mask[s : s + chunk], names, chunk=chunk)
                feat = F.normalize(proj(adam_feature(g.float(), m, v, float(p["beta1"]), float(p["beta2"]), float(p["eps"]))), dim=1)
                sims = torch.stack([(feat @ t.T).mean(1) for t in per_task]).max(0).values
                total[s : s + len(sims)] += float(wk) * sims.double().cpu()
        S = total.numpy()
        order = np.argsort(-S, kind="stable")
        view.info["less_checkpoints"] = len(ks)
        return Selection(np.sort(order[: view.budget]), scores=S)


@hookimpl
def register_methods(register):
    register(LESS())
