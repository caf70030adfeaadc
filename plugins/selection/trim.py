"""``trim``: Token Relevance via Interpretable Multi-layer attention (forward-only instruction-data selection).

From the warmed-up scoring model (``checkpoint`` of the shared warm-up), for each target
example, with ``A`` the causal attention over its n unpadded positions averaged over heads and
the last ``layers`` blocks::

    Q_i = 1 - H(A[i, :i+1]) / log(i+1)   (i >= 1; Q_0 = 0)        row saliency: sharp attention
    K_i = mean_{j >= i} (j+1) A[j, i] / max_i(...)                column saliency: attention received
                                                                  relative to uniform, scaled to [0, 1]
    alpha_i = mix * Q_i + (1 - mix) * K_i

Fingerprint of token id t over the target examples of a task: ``f_t = normalize(sum alpha * h^)``
with ``h^ = h / ||h||`` the final hidden state (special tokens excluded; ``scope`` picks prompt,
response or all tokens). A pool example c (one forward pass, no attention needed) scores
``s_j = cos(h^_j, f_{t_j})`` per token, or ``unseen_penalty * cos(h^_j, f_{t*})`` when t_j has no
fingerprint, t* being the fingerprinted token nearest to t_j by cosine of the input embeddings;
``S(c) = pool_mix * mean_j s_j + (1 - pool_mix) * max_j s_j``; several target tasks: the max
(``aggregate = "max"``) or mean over tasks. Keep the top budget by S.

The paper leaves the exact Q and K formulas, L, the warm-up recipe and the unseen-token rule open;
the readings above are ours (shared/reference/methods-selection.md §5, tracks-phase2.md §2.7), each
a parameter. No backward pass is made.

Citation: M. Nagaraj, S. Choudhary, U. Saxena, D. Ravikumar, K. Roy. "TRIM: Token-wise
Attention-Derived Saliency for Data-Efficient Instruction Tuning." arXiv:2510.07118, 2025.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod

from ._text import content_mask, forward_batches, task_groups


def saliency(A: torch.Tensor, length: int, mix: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q, K, alpha) for one example from its (T, T) head/layer-averaged attention ``A``, over the
    first ``length`` positions."""
    n = int(length)
    a = A[:n, :n].double()
    ent = -(a.clamp_min(1e-30).log() * a).sum(1)
    idx = torch.arange(n, dtype=torch.float64)
    Q = torch.zeros(n, dtype=torch.float64)
    if n > 1:
        Q[1:] = 1.0 - ent[1:] / torch.log(idx[1:] + 1.0)
    w = (idx + 1.0)[:, None] * a  # (j, i): (j+1) A[j, i]
    below = torch.ones(n, n, dtype=torch.bool).tril()  # j >= i
    K = (w * below).sum(0) / (n - idx)
    K = K / K.max().clamp_min(1e-30)
    alpha = mix * Q + (1.0 - mix) * K
    return Q.float(), K.float(), alpha.float()


def fingerprints(hidden: torch.Tensor, ids: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(F (V, d) unit fingerprints, has (V,) bool) from the targets' hidden states (Nt, T, d),
    token ids, saliencies alpha (Nt, T) and content ``mask``."""
    h = F.normalize(hidden.double(), dim=-1)
    m = mask & (alpha > 0)
    acc = torch.zeros(vocab_size, h.shape[-1], dtype=torch.float64)
    acc.index_add_(0, ids[m], alpha[m].double()[:, None] * h[m])
    norm = acc.norm(dim=1)
    has = norm > 1e-12
    fp = torch.zeros_like(acc)
    fp[has] = acc[has] / norm[has, None]
    return fp.float(), has


def score_examples(hidden: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, fp: torch.Tensor, has: torch.Tensor, nearest: torch.Tensor, *, unseen_penalty: float, pool_mix: float) -> torch.Tensor:
    """S per example (B,) from its hidden states (B, T, d), ids, content mask, the fingerprints
    and the nearest fingerprinted token of every vocabulary id (``nearest``, (V,))."""
    h = F.normalize(hidden.float(), dim=-1)
    seen = has[ids]
    use = torch.where(seen, ids, nearest[ids])
    s = (h * fp[use]).sum(-1)
    s = torch.where(seen, s, unseen_penalty * s)
    cnt = mask.sum(1).clamp_min(1)
    mean = (s * mask).sum(1) / cnt
    mx = s.masked_fill(~mask, float("-inf")).max(1).values
    mx = torch.where(mask.any(1), mx, torch.zeros_like(mx))
    return pool_mix * mean + (1 - pool_mix) * mx


def nearest_fingerprinted(emb: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """For every vocabulary id, the fingerprinted id nearest by cosine of the input embeddings."""
    e = F.normalize(emb.detach().float().cpu(), dim=-1)
    cand = torch.nonzero(has).flatten()
    if len(cand) == 0:
        return torch.zeros(len(e), dtype=torch.long)
    sim = e @ e[cand].T
    return cand[sim.argmax(1)]


class TRIM(SelectionMethod):
    name = "trim"
    version = "1"
    summary = "Forward-only: score pool examples by their match to attention-weighted token fingerprints of the target examples."
    citation = "Nagaraj, Choudhary, Saxena, Ravikumar, Roy. TRIM: Token-wise Attention-Derived Saliency for Data-Efficient Instruction Tuning. arXiv:2510.07118, 2025."
    modalities = frozenset({"text"})
    params = {"layers": 2, "mix": 0.5, "pool_mix": 0.5, "unseen_penalty": 0.5, "scope": "all", "aggregate": "max", "checkpoint": -1, "model": "warmup"}
    param_specs = {
        "layers": Param(int, min=1, help="last layers whose attention gives token saliency"),
        "mix": Param(float, min=0, max=1, help="saliency = mix x query part + (1 - mix) x key part"),
        "pool_mix": Param(float, min=0, max=1, help="score = pool_mix x mean + (1 - pool_mix) x max over tokens"),
        "unseen_penalty": Param(float, min=0, help="score of a target token no candidate token matches"),
        "scope": Param(str, choices=("all", "prompt", "response"), help="tokens that count"),
        "aggregate": Param(str, choices=("max", "mean"), help="over several target tasks"),
        "checkpoint": Param(int, help="warm-up checkpoint index (negative from the end)"),
        "model": Param(str, choices=("warmup", "base"), help="the warmed-up model or the base model"),
    }
    notes = (
        "Q (1 − normalized row entropy), K (attention received relative to uniform, max-scaled), L = `layers`, the warm-up and the "
        "unseen-token rule (nearest fingerprint by input-embedding cosine, times `unseen_penalty`) are our readings where the paper is silent. "
        "`model = base` scores with the base model instead of the warm-up checkpoint."
    )

    def select(self, view):
        p = self.params
        if p["aggregate"] not in ("max", "mean"):
            raise ValueError(f"trim: aggregate must be max or mean, got {p['aggregate']!r}")
        if p["model"] not in ("warmup", "base"):
            raise ValueError(f"trim: model must be warmup or base, got {p['model']!r}")
        if p["model"] == "warmup":
            run = view.warmup()
            model = run.checkpoints[int(p["checkpoint"])]()
        else:
            model = view.lm.base()
        model.eval()
        n_layers = int(getattr(model, "n_layers", p["layers"]))
        layers = max(1, min(int(p["layers"]), n_layers))
        # targets: one forward with attention
        t_ids = view.target_ids
        t_mask = content_mask(t_ids, view.target_prompt_mask, view.target_response_mask, p["scope"])
        hid, alph = [], []
        for s, _, h, atts in forward_batches(view, model, t_ids, attn_layers=layers):
            A = torch.stack([a.float().mean(1) for a in atts]).mean(0)  # (B, T, T)
            for b in range(A.shape[0]):
                n = int(_length(t_ids[s + b], view.lm.pad_id))
                al = torch.zeros(A.shape[-1])
                al[:n] = saliency(A[b], n, float(p["mix"]))[2]
                alph.append(al)
            hid.append(h.float())
        hidden_t = torch.cat(hid)
        alpha_t = torch.stack(alph)
        emb = model.input_embeddings()
        vsize = int(emb.shape[0])
        per_task = []
        for _, rows in task_groups(view).items():
            r = torch.tensor(rows)
            fp, has = fingerprints(hidden_t[r], t_ids[r], alpha_t[r], t_mask[r], vsize)
            per_task.append((fp, has, nearest_fingerprinted(emb, has)))
        # pool: one forward each, hidden states only
        mask = content_mask(view.ids, view.prompt_mask, view.response_mask, p["scope"])
        scores = torch.empty(view.n)
        for s, _, h, _ in forward_batches(view, model, view.ids):
            m = mask[s : s + h.shape[0]]
            ids = view.ids[s : s + h.shape[0]]
            per = torch.stack([score_examples(h, ids, m, fp, has, nr, unseen_penalty=float(p["unseen_penalty"]), pool_mix=float(p["pool_mix"])) for fp, has, nr in per_task])
            scores[s : s + h.shape[0]] = per.max(0).values if p["aggregate"] == "max" else per.mean(0)
        S = scores.double().numpy()
        order = np.argsort(-S, kind="stable")
        view.info["trim_tasks"] = len(per_task)
        return Selection(np.sort(order[: view.budget]), scores=S)


def _length(row: torch.Tensor, pad_id: int) -> int:
    """Tokens before the right padding (the first position is always counted)."""
    nz = torch.nonzero(row != pad_id).flatten()
    return max(1, int(nz[-1]) + 1) if len(nz) else 1


@hookimpl
def register_methods(register):
    register(TRIM())
