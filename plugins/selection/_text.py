"""Helpers shared by the text selection methods (instruction track): which positions hold
content tokens, and batched forward passes through the view's counting ``lm`` handle."""

from __future__ import annotations

from typing import Any

import torch


def content_mask(ids: torch.Tensor, prompt_mask: torch.Tensor, response_mask: torch.Tensor, scope: str = "all") -> torch.Tensor:
    """(N, T) bool: prompt tokens (``scope`` prompt/all) and response tokens (``scope``
    response/all); never <bos>, <sep>, <eos> or padding. A response token is a position whose
    predecessor is a loss position, except the last such position of a row (<eos>)."""
    if scope not in ("all", "prompt", "response"):
        raise ValueError(f"scope must be all, prompt or response, got {scope!r}")
    nxt = torch.zeros_like(response_mask)
    nxt[:, 1:] = response_mask[:, :-1]
    # drop the last target position (<eos>) of each row
    last = torch.where(nxt.any(1), nxt.shape[1] - 1 - nxt.flip(1).float().argmax(1), torch.full((nxt.shape[0],), -1))
    rows = torch.nonzero(last >= 0).flatten()
    resp = nxt.clone()
    resp[rows, last[rows]] = False
    if scope == "prompt":
        return prompt_mask.clone()
    if scope == "response":
        return resp
    return prompt_mask | resp


def forward_batches(view: Any, model: torch.nn.Module, ids: torch.Tensor, attn_layers: int = 0, batch_size: int | None = None):
    """Yield (start, logits, hidden, attentions) over ``ids`` in batches, no gradients, counted.
    ``hidden`` and ``attentions`` come back as float32 on the CPU (where the methods score), whatever
    device the model runs on; ``logits`` stay where the model put them. The default batch keeps a
    batch's logits near 1 GB (256 examples for the tiny world, fewer for a 49k-token vocabulary)."""
    if batch_size is None:
        vocab = int(getattr(view.lm, "vocab_size", 0) or len(getattr(view, "vocab", ())) or 1)
        batch_size = max(8, min(256, int(2.5e8 // max(1, int(ids.shape[1]) * vocab))))
    with torch.no_grad():
        for s in range(0, int(ids.shape[0]), batch_size):
            logits, hidden, atts = view.lm.forward(model, ids[s : s + batch_size], attn_layers)
            yield s, logits, hidden.float().cpu(), [a.float().cpu() for a in atts]


def task_groups(view: Any) -> dict[str, list[int]]:
    """Target example indices grouped by ``view.target_task`` (in first-seen order)."""
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(view.target_task):
        groups.setdefault(str(t), []).append(i)
    return groups
