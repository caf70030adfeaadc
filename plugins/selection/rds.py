"""``rds``: representation-based data selection as the LESS paper's RDS baseline defines it.

Each example is represented by the final-layer hidden state of its **last token** (the last
non-padding position: the ``<eos>`` that ends the response), L2-normalized, ``r = h_last / ||h_last||``.
A pool example z scores the **mean** cosine similarity to the target examples of a task, and the
max over target tasks::

    RDS(z) = max_task mean_{v in task} <r_z, r_v>

(princeton-nlp/LESS: ``collect_reps`` keeps the last token's last-layer state and normalizes it;
``matching.py`` averages the similarities over a sub-task's validation examples, then takes the
max over sub-tasks). The model is the shared warm-up's last checkpoint (``model = "warmup"``, as
LESS scores RDS with its warmed-up model) or the base (``"base"``). Keep the top budget. One
forward pass per pool and target example, no backward pass.

``embed-sim`` is the other reading (mean-pooled content tokens, max over target examples); it is
kept as its own row and is not LESS's baseline.

Citation: M. Xia, S. Malladi, S. Gururangan, S. Arora, D. Chen. "LESS: Selecting Influential Data
for Targeted Instruction Tuning." ICML 2024, baseline RDS; after Hanawa et al., "Evaluation of
Similarity-based Explanations", ICLR 2021.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod

from ._text import forward_batches, task_groups


def last_token_states(view, model, ids: torch.Tensor) -> torch.Tensor:
    """(N, d) final hidden state at each row's last non-padding position, L2-normalized."""
    pad = int(view.lm.pad_id)
    nonpad = ids != pad
    # the last non-padding position (position 0 when a row is all padding)
    last = torch.where(nonpad.any(1), ids.shape[1] - 1 - nonpad.flip(1).float().argmax(1), torch.zeros(ids.shape[0], dtype=torch.long))
    out = []
    for s, _, h, _ in forward_batches(view, model, ids):
        rows = torch.arange(h.shape[0])
        out.append(h.float()[rows, last[s : s + h.shape[0]]])
    return F.normalize(torch.cat(out), dim=1)


class RDS(SelectionMethod):
    name = "rds"
    version = "1"
    summary = "LESS's RDS baseline: cosine of last-token final hidden states, mean over the target examples, max over target tasks."
    citation = "Xia, Malladi, Gururangan, Arora, Chen. LESS (ICML 2024), baseline RDS; Hanawa et al. ICLR 2021."
    modalities = frozenset({"text"})
    params = {"model": "warmup", "checkpoint": -1}
    param_specs = {
        "model": Param(str, choices=("warmup", "base"), help="represent with the warmed-up model or the base model"),
        "checkpoint": Param(int, help="warm-up checkpoint index (negative from the end)"),
    }
    notes = "LESS's definition (last token, normalized, mean over a task's target examples); `embed-sim` is the mean-pooled, max-over-targets reading."

    def select(self, view):
        p = self.params
        if p["model"] not in ("warmup", "base"):
            raise ValueError(f"rds: model must be warmup or base, got {p['model']!r}")
        model = view.warmup().checkpoints[int(p["checkpoint"])]() if p["model"] == "warmup" else view.lm.base()
        model.eval()
        t = last_token_states(view, model, view.target_ids)
        z = last_token_states(view, model, view.ids)
        per = [(z @ t[torch.tensor(rows)].T).mean(1) for rows in task_groups(view).values()]
        S = torch.stack(per).max(0).values.double().numpy()
        return Selection(np.sort(np.argsort(-S, kind="stable")[: view.budget]), scores=S)


@hookimpl
def register_methods(register):
    register(RDS())
