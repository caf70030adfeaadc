"""``embed-sim``: representation similarity with mean-pooled hidden states (a reading of RDS that is *not* LESS's).

LESS's RDS baseline represents an example by its last token's final hidden state and averages the
similarities over the target examples: that is the ``rds`` method. This module keeps the project's
earlier reading as a row of its own, labelled for what it is.

Each example is represented by the mean final hidden state over its content tokens (no <bos>,
<sep>, <eos> or padding), ``e = mean_j h_j``; a pool example scores ``max_v cos(e_z, e_v)`` over
the target examples (``reduce = "max"``) or ``cos(e_z, mean_v e_v)`` (``"mean"``); several target
tasks: the max over tasks. The model is the warm-up's last checkpoint (``model = "warmup"``) or the
base (``"base"``). Keep the top budget.

Citation: M. Xia et al., "LESS: Selecting Influential Data for Targeted Instruction Tuning",
ICML 2024, baseline RDS (representation-based data selection); Hanawa et al., "Evaluation of
Similarity-based Explanations", ICLR 2021.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod

from ._text import content_mask, forward_batches, task_groups


def mean_embeddings(view, model, ids, prompt_mask, response_mask) -> torch.Tensor:
    mask = content_mask(ids, prompt_mask, response_mask, "all")
    out = []
    for s, _, h, _ in forward_batches(view, model, ids):
        m = mask[s : s + h.shape[0]].float()[..., None]
        out.append((h.float() * m).sum(1) / m.sum(1).clamp_min(1))
    return torch.cat(out)


class EmbedSim(SelectionMethod):
    name = "embed-sim"
    version = "1"
    summary = "Representation similarity, mean-pooled: cosine of mean final hidden states, max over the target examples (not LESS's RDS: see rds)."
    citation = "Xia, Malladi, Gururangan, Arora, Chen. LESS (ICML 2024), baseline RDS; Hanawa et al. ICLR 2021."
    modalities = frozenset({"text"})
    params = {"model": "warmup", "reduce": "max"}
    param_specs = {
        "model": Param(str, choices=("warmup", "base"), help="embed with the warmed-up model or the base model"),
        "reduce": Param(str, choices=("max", "mean"), help="similarity to the nearest target example or to the targets' mean"),
    }
    notes = "Mean-pooled content tokens and, by default, the max over target examples: a reading of representation similarity kept as its own row; LESS's RDS (last token, mean over targets) is `rds`."

    def select(self, view):
        p = self.params
        if p["reduce"] not in ("max", "mean"):
            raise ValueError(f"embed-sim: reduce must be max or mean, got {p['reduce']!r}")
        if p["model"] not in ("warmup", "base"):
            raise ValueError(f"embed-sim: model must be warmup or base, got {p['model']!r}")
        model = view.warmup().checkpoints[-1]() if p["model"] == "warmup" else view.lm.base()
        model.eval()
        t = F.normalize(mean_embeddings(view, model, view.target_ids, view.target_prompt_mask, view.target_response_mask), dim=1)
        z = F.normalize(mean_embeddings(view, model, view.ids, view.prompt_mask, view.response_mask), dim=1)
        per = []
        for rows in task_groups(view).values():
            tt = t[torch.tensor(rows)]
            per.append((z @ tt.T).max(1).values if p["reduce"] == "max" else z @ F.normalize(tt.mean(0), dim=0))
        S = torch.stack(per).max(0).values.double().numpy()
        return Selection(np.sort(np.argsort(-S, kind="stable")[: view.budget]), scores=S)


@hookimpl
def register_methods(register):
    register(EmbedSim())
