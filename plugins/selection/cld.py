"""CLD: Correlation of Loss Differences (``cld``).

Manish Nagaraj, Deepak Ravikumar, Kaushik Roy. "Coresets from Trajectories: Selecting Data via
Correlation of Loss Differences". Transactions on Machine Learning Research (TMLR), 2025.
arXiv:2508.20230. Official code: manishnagaraj/CLD_Coresets_from_Trajectories
(``Compute_CLD_scores.py``).

Formula. With per-epoch eval losses ``l(theta_t, z)`` of a proxy run (signals ``loss`` (E, N) and
``val_loss`` (E, Nv)):

* loss differences of a pool sample: ``D(z) = [l(theta_{t+1}, z) - l(theta_t, z)]_t`` (T = E - 1);
* class reference: ``D'_c = diff(mean_{v in V_c} l(theta_t, v))``, the differences of the class's
  mean validation loss (equal to the mean of the differences);
* score: ``CLD(z) = Pearson(D(z), D'_{y(z)})``, computed as ``mean_t(zscore(D(z)) * zscore(D'_c))``
  with population z-scores (ddof 0); a trajectory of zero variance gets std 1, so its r is 0.

Kept: per class, the ``k_c`` samples of **highest** CLD, ``k_c`` from ``view.class_budgets()``
(largest-remainder split of the budget proportional to class sizes). Ties are broken by index.

Choices where the paper/code is silent or where the benchmark differs:

* ``epochs_used`` (default 1.0) keeps the first ``ceil(epochs_used * E)`` epochs (the paper's
  "first 45 of 90 epochs" study); ``checkpoint_stride`` (default 1) then keeps every s-th epoch of
  that prefix counted back from its last epoch (so the last used epoch is always included).
  At least three checkpoints (two differences) must remain, otherwise ``select`` raises.
* As in the code there is no theta_0 entry: the first loss is after epoch 1.
* A class without validation samples is compared against the mean over the whole validation
  split (the code never meets this case; ``info["classes_without_val"]`` lists such classes).
* The budget counts pool samples; the validation split is carved by the harness and never selected.

The correlation helpers (``zscore``, ``class_mean_rows``, ``pearson_to_class_reference``) are
shared with LTC; the ranking and checkpoint helpers live in ``_ranking.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView
from coreset_bench.plugins.selection._ranking import checkpoint_rows, topk_per_class

__all__ = [
    "CLD",
    "zscore",
    "class_mean_rows",
    "pearson_to_class_reference",
]


# ---- correlation helpers (shared with LTC) ------------------------------------------------------


def zscore(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """Population z-scores along ``axis``; a zero-variance slice gets std 1 (so it becomes 0)."""
    a = np.asarray(a, dtype=np.float64)
    mu = a.mean(axis=axis, keepdims=True)
    sd = a.std(axis=axis, keepdims=True)
    sd = np.where(sd > 0, sd, 1.0)
    return (a - mu) / sd


def class_mean_rows(values: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Column means per class of a (T, Nv) array: returns ((T, C) means, classes lacking samples).

    A class without samples gets the mean over all columns.
    """
    v = np.asarray(values, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    if v.ndim != 2 or v.shape[1] != len(y):
        raise ValueError(f"expected a (T, {len(y)}) array, got shape {v.shape}")
    onehot = np.zeros((len(y), num_classes))
    onehot[np.arange(len(y)), y] = 1.0
    counts = onehot.sum(0)
    sums = v @ onehot
    missing = np.flatnonzero(counts == 0)
    means = sums / np.where(counts > 0, counts, 1.0)
    if len(missing):
        fallback = v.mean(axis=1) if v.shape[1] else np.zeros(v.shape[0])
        means[:, missing] = fallback[:, None]
    return means, missing


def pearson_to_class_reference(
    traj: np.ndarray, labels: np.ndarray, reference: np.ndarray, *, standardize_reference: bool = True
) -> np.ndarray:
    """Pearson correlation of each column of ``traj`` (T, N) with its class's column of
    ``reference`` (T, C): ``mean_t(zscore(traj) * zscore(reference)[:, labels])``.

    With ``standardize_reference=False`` the reference is used as given (it must already be a
    mean of z-scored trajectories, which gives the mean of pairwise correlations).
    """
    zt = zscore(traj, axis=0)
    ref = zscore(reference, axis=0) if standardize_reference else np.asarray(reference, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    return (zt * ref[:, y]).mean(axis=0)


def _losses(view: SelectionView) -> tuple[np.ndarray, np.ndarray]:
    loss = np.asarray(view.signals["loss"], dtype=np.float64)
    val = np.asarray(view.signals["val_loss"], dtype=np.float64)
    if loss.ndim != 2 or loss.shape[1] != view.n:
        raise ValueError(f"signal 'loss' must have shape (E, {view.n}), got {loss.shape}")
    if val.ndim != 2 or val.shape[0] != loss.shape[0]:
        raise ValueError(f"signal 'val_loss' must have shape ({loss.shape[0]}, Nv), got {val.shape}")
    return loss, val


# ---- the method --------------------------------------------------------------------------------


class CLD(SelectionMethod):
    name = "cld"
    version = "1.0"
    summary = "Correlation of loss differences with the class's validation loss differences; top-k per class."
    citation = (
        "Nagaraj, Ravikumar, Roy. Coresets from Trajectories: Selecting Data via Correlation of "
        "Loss Differences. TMLR 2025. arXiv:2508.20230."
    )
    params = {"epochs_used": 1.0, "checkpoint_stride": 1}
    param_specs = {"epochs_used": Param(float, min=0, max=1, min_open=True, help="fraction of the proxy epochs used"), "checkpoint_stride": Param(int, min=1, help="keep every s-th epoch")}
    signals = frozenset({"loss", "val_loss"})

    def scores(self, view: SelectionView) -> tuple[np.ndarray, dict[str, Any]]:
        loss, val = _losses(view)
        rows = checkpoint_rows(loss.shape[0], self.params["epochs_used"], self.params["checkpoint_stride"])
        if len(rows) < 3:
            raise ValueError(
                f"cld needs at least 3 loss checkpoints (2 differences); epochs_used="
                f"{self.params['epochs_used']} and checkpoint_stride={self.params['checkpoint_stride']} "
                f"leave {len(rows)} of {loss.shape[0]}"
            )
        d_train = np.diff(loss[rows], axis=0)
        d_val = np.diff(val[rows], axis=0)
        ref, missing = class_mean_rows(d_val, view.val_labels, view.num_classes)
        r = pearson_to_class_reference(d_train, view.labels, ref)
        info = {"checkpoints": (rows + 1).tolist(), "classes_without_val": missing.tolist()}
        return r, info

    def select(self, view: SelectionView) -> Selection:
        r, info = self.scores(view)
        idx = topk_per_class(r, view.labels, view.class_budgets(), descending=True)
        return Selection(indices=idx, scores=r, info={**info, "kept": "highest score per class"})


@hookimpl
def register_methods(register: Any) -> None:
    register(CLD())
