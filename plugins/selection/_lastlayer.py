"""Last-layer (classifier head) gradients of the cross-entropy loss, shared by selection methods.

For a linear head ``logits = W e + b`` and cross-entropy on the label ``y``, the gradient of the
loss with respect to the head parameters is, per sample (DeepCore's "last-layer gradient")::

    g(x) = [ p - onehot(y) ,  (p - onehot(y)) (x) e ]  in R^{C (D + 1)}

where ``p = softmax(logits)`` and ``e`` is the penultimate embedding. The first ``C`` entries are
the bias gradient; the next ``C * D`` are the weight gradient flattened class-major (entry
``c * D + d`` is ``(p - y)_c * e_d``), the layout of DeepCore's ``weight_parameters_grads``.

Because the weight block is an outer product, ``||g||^2 = ||p - y||^2 (1 + ||e||^2)``, so
``last_layer_grad_norms`` never builds the ``N x C(D+1)`` matrix.

Functions accept numpy arrays or torch tensors. ``last_layer_grads`` returns the same kind as
its ``embeddings`` argument (a torch tensor stays on its device); results are float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["softmax", "prob_minus_onehot", "last_layer_grads", "last_layer_grad_norms"]


def _as_tensor(a: Any, dtype: torch.dtype, device: Any = None) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(dtype=dtype, device=device if device is not None else a.device)
    arr = np.asarray(a)
    if not arr.flags.writeable:  # read-only signal arrays (memory-mapped cache): a tensor must not alias them
        arr = arr.copy()
    return torch.as_tensor(arr, dtype=dtype, device=device)


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax of a numpy array (or tensor), as float64 numpy."""
    z = np.asarray(logits.detach().cpu() if isinstance(logits, torch.Tensor) else logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def prob_minus_onehot(logits: Any, labels: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``softmax(logits) - onehot(labels)`` as a tensor of shape (N, C) (float32 by default).

    This is the cross-entropy gradient with respect to the logits.
    """
    z = _as_tensor(logits, dtype)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(z.shape)}")
    y = _as_tensor(labels, torch.int64, device=z.device)
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must have shape ({z.shape[0]},), got {tuple(y.shape)}")
    g = torch.softmax(z, dim=1)
    g[torch.arange(z.shape[0], device=z.device), y] -= 1.0
    return g


def last_layer_grads(embeddings: Any, logits: Any, labels: Any) -> Any:
    """Per-sample last-layer gradients ``[p - y, (p - y) (x) e]``, shape (N, C * (D + 1)), float32.

    ``embeddings`` (N, D), ``logits`` (N, C), ``labels`` (N,). Returns a torch tensor (on the
    embeddings' device) when ``embeddings`` is a tensor, else a numpy array.
    """
    as_torch = isinstance(embeddings, torch.Tensor)
    e = _as_tensor(embeddings, torch.float32)
    if e.ndim != 2:
        raise ValueError(f"embeddings must have shape (N, D), got {tuple(e.shape)}")
    pmy = prob_minus_onehot(_as_tensor(logits, torch.float32, device=e.device), labels)
    if pmy.shape[0] != e.shape[0]:
        raise ValueError(f"{e.shape[0]} embeddings but {pmy.shape[0]} logit rows")
    n, c = pmy.shape
    weight = (pmy[:, :, None] * e[:, None, :]).reshape(n, c * e.shape[1])
    g = torch.cat([pmy, weight], dim=1)
    return g if as_torch else g.cpu().numpy()


def last_layer_grad_norms(embeddings: Any, logits: Any, labels: Any) -> np.ndarray:
    """L2 norms of the last-layer gradients without building them: ``||p - y|| sqrt(1 + ||e||^2)``.

    Returns a float64 numpy array of shape (N,).
    """
    e = _as_tensor(embeddings, torch.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must have shape (N, D), got {tuple(e.shape)}")
    pmy = prob_minus_onehot(_as_tensor(logits, torch.float64, device=e.device), labels, dtype=torch.float64)
    if pmy.shape[0] != e.shape[0]:
        raise ValueError(f"{e.shape[0]} embeddings but {pmy.shape[0]} logit rows")
    norms = pmy.norm(dim=1) * torch.sqrt(1.0 + (e * e).sum(dim=1))
    return norms.cpu().numpy()
