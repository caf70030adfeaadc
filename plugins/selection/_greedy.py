"""Shared machinery of the geometric and submodular selection methods.

Used by ``herding``, ``kcenter``, ``contextual-diversity``, ``cal``, ``deepfool``, ``craig``,
``gradmatch``, ``glister`` and the ``submodular-*`` methods. Everything here is vectorized torch
on the view's device; pairwise work is done in row blocks of at most ``CHUNK_ELEMS`` elements so
that a class of 5,000 samples (CIFAR-10 scale) never needs more than a few hundred MB at once.
Greedy loops run over *selection steps* only; each step is one vectorized operation over all
candidates.

Contents
--------
- grouping: ``groups`` (per class with ``view.class_budgets()`` or one global group),
  ``select_groups`` (runs a per-group selector and maps positions back to pool indices),
  ``rank_groups`` (keep the highest/lowest scores per group);
- inputs: ``device_of``, ``final_embeddings``, ``final_probs``, ``final_grads``;
- pairwise: ``sq_euclidean``, ``euclidean``, ``cosine01``, ``sym_kl``, ``knn``, the
  last-layer-gradient kernels ``ll_cosine01`` / ``ll_euclidean`` (on ``final_packed`` rows, see
  below),
  ``pairwise_max``, ``Kernel`` (a symmetric similarity matrix cached whole when it fits in
  ``MAX_CACHE_ELEMS`` elements, else recomputed block by block);
- greedy algorithms: ``herding``, ``kcenter_greedy``, ``greedy_maximize`` (naive, batched lazy
  greedy of Minoux 1978, or stochastic greedy of Mirzasoleiman et al. 2015, over any object with
  ``gains``/``gains_all``/``update``), and the set functions ``FacilityLocation``, ``GraphCut``
  and ``LogDeterminant``.

Last-layer gradient kernels. The gradient ``g_i = [p_i - y_i, (p_i - y_i) (x) e_i]`` has
``C (D + 1)`` entries, but its inner products factor::

    <g_i, g_j> = <p_i - y_i, p_j - y_j> (1 + <e_i, e_j>)

so a block of the Gram matrix costs ``C + D`` multiply-adds per pair instead of ``C (D + 1)``
(74 against 650 for C = 10, D = 64) and the ``N x C(D+1)`` matrix is never
built. ``final_packed`` returns the rows ``[p - y, e]``; ``ll_cosine01`` and ``ll_euclidean``
compute DeepCore's cosine kernel and the Euclidean distance of the full gradients from them (same
values as ``cosine01`` / ``euclidean`` on ``final_grads`` up to float32 rounding).

Ties are broken by the lowest position (``torch.argmax`` returns the first maximum), so every
routine is deterministic given its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from coreset_bench.kinds import Param

from ._lastlayer import _as_tensor, last_layer_grads, prob_minus_onehot
from ._lastlayer import softmax as _softmax

#: largest number of elements of one pairwise block (64 MiB in float32)
CHUNK_ELEMS = 1 << 24
#: largest similarity matrix kept in memory whole (n * n elements; 1 GiB in float32)
MAX_CACHE_ELEMS = 1 << 28
#: smallest probability used inside logarithms (symmetric KL)
PROB_EPS = 1e-12

__all__ = [
    "CHUNK_ELEMS",
    "MAX_CACHE_ELEMS",
    "device_of",
    "groups",
    "select_groups",
    "rank_groups",
    "final_embeddings",
    "final_probs",
    "final_grads",
    "final_packed",
    "final_arrays",
    "mean_last_layer_grad",
    "sq_euclidean",
    "euclidean",
    "cosine01",
    "ll_cosine01",
    "ll_euclidean",
    "sym_kl",
    "sym_kl_to",
    "knn",
    "pairwise_max",
    "Kernel",
    "herding",
    "kcenter_greedy",
    "greedy_maximize",
    "parse_greedy",
    "FacilityLocation",
    "GraphCut",
    "LogDeterminant",
    "check_choice",
]


# ---------------------------------------------------------------------------------------------
# grouping and inputs
# ---------------------------------------------------------------------------------------------


def check_choice(method: str, param: str, value: Any, choices: Sequence[str]) -> str:
    """Validate a string parameter; raise a ``ValueError`` naming the method and the choices."""
    if value not in choices:
        raise ValueError(f"{method}: parameter {param}={value!r}; expected one of {', '.join(map(repr, choices))}")
    return str(value)


def device_of(view: Any) -> torch.device:
    return torch.device(view.device if view.device is not None else "cpu")


def groups(view: Any, class_balanced: bool) -> list[tuple[np.ndarray, int]]:
    """``(pool indices, budget)`` per group: one per class (``view.class_budgets()``) when
    ``class_balanced``, else the whole pool with ``view.budget``. Groups with budget 0 are
    dropped."""
    if not class_balanced:
        return [(np.arange(view.n, dtype=np.int64), int(view.budget))] if view.budget > 0 else []
    labels = view.labels
    budgets = view.class_budgets()
    out = []
    for c in range(view.num_classes):
        b = int(budgets[c])
        if b > 0:
            out.append((np.flatnonzero(labels == c).astype(np.int64), b))
    return out


def select_groups(
    view: Any,
    class_balanced: bool,
    select_group: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray | None]],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run ``select_group(members, budget) -> (positions within members, weights or None)`` on
    every group and return the pool indices (and weights, when any group returned them)."""
    idx: list[np.ndarray] = []
    wts: list[np.ndarray | None] = []
    for members, budget in groups(view, class_balanced):
        pos, w = select_group(members, budget)
        pos = np.asarray(pos, dtype=np.int64)
        idx.append(members[pos])
        wts.append(None if w is None else np.asarray(w, dtype=np.float64))
    indices = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
    if any(w is not None for w in wts):
        weights = np.concatenate([np.ones(len(i)) if w is None else w for i, w in zip(idx, wts)])
        return indices, weights
    return indices, None


def rank_groups(view: Any, scores: np.ndarray, class_balanced: bool, keep: str) -> np.ndarray:
    """Keep, per group, the ``budget`` samples with the highest (``keep="high"``) or lowest
    (``"low"``) score; ties go to the lower pool index (stable sort)."""
    scores = np.asarray(scores, dtype=np.float64)

    def pick(members: np.ndarray, budget: int) -> tuple[np.ndarray, None]:
        s = scores[members]
        order = np.argsort(-s if keep == "high" else s, kind="stable")
        return order[:budget], None

    return select_groups(view, class_balanced, pick)[0]


def final_embeddings(view: Any, device: torch.device | None = None) -> torch.Tensor:
    """Penultimate embeddings of the final checkpoint, (N, D) float32 on the view's device."""
    emb = np.asarray(view.signals["embeddings"])[-1]
    return _as_tensor(emb, torch.float32, device or device_of(view))


def final_probs(view: Any, device: torch.device | None = None, *, validation: bool = False) -> torch.Tensor:
    """Softmax of the final checkpoint's logits, (N, C) float32."""
    logits = np.asarray(view.signals["val_logits" if validation else "logits"])[-1]
    return torch.as_tensor(_softmax(logits, axis=1), dtype=torch.float32, device=device or device_of(view))


def final_arrays(view: Any, members: np.ndarray | None = None, *, validation: bool = False, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(embeddings (n, D), logits (n, C), labels (n,))`` of the final checkpoint for
    ``members`` (all when None) of the pool, or of the validation split, on the view's device."""
    dev = device or device_of(view)
    emb = np.asarray(view.signals["val_embeddings" if validation else "embeddings"])[-1]
    logits = np.asarray(view.signals["val_logits" if validation else "logits"])[-1]
    labels = view.val_labels if validation else view.labels
    if members is not None:
        emb, logits, labels = emb[members], logits[members], labels[members]
    return (
        _as_tensor(emb, torch.float32, dev),
        _as_tensor(logits, torch.float32, dev),
        torch.as_tensor(np.asarray(labels, dtype=np.int64), device=dev),
    )


def final_grads(view: Any, members: np.ndarray | None = None, *, validation: bool = False, device: torch.device | None = None) -> torch.Tensor:
    """Last-layer gradients ``[p - y, (p - y) (x) e]`` of the final checkpoint for ``members``
    (all when None), (n, C (D + 1)) float32 on the view's device."""
    return last_layer_grads(*final_arrays(view, members, validation=validation, device=device))


def final_packed(view: Any, members: np.ndarray | None = None, *, validation: bool = False, device: torch.device | None = None) -> tuple[torch.Tensor, int]:
    """Rows ``[p - y, e]`` (n, C + D) float32 of the final checkpoint for ``members`` and ``C``:
    the factors of the last-layer gradients for ``ll_cosine01`` / ``ll_euclidean``."""
    emb, logits, labels = final_arrays(view, members, validation=validation, device=device)
    pmy = prob_minus_onehot(logits, labels).to(emb.dtype)
    return torch.cat([pmy, emb], dim=1), int(pmy.shape[1])


def mean_last_layer_grad(emb: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``[p - y, (p - y) (x) e]`` (C (D + 1),), without the per-sample matrix."""
    pmy = prob_minus_onehot(logits, labels).to(emb.dtype)
    return torch.cat([pmy.mean(0), (pmy.T @ emb / max(1, emb.shape[0])).flatten()])


# ---------------------------------------------------------------------------------------------
# pairwise quantities
# ---------------------------------------------------------------------------------------------


def block_rows(n_cols: int, max_elems: int | None = None) -> int:
    """Rows per block so that a (rows, n_cols) block has at most ``max_elems`` elements
    (default ``CHUNK_ELEMS``, read at call time)."""
    return max(1, (CHUNK_ELEMS if max_elems is None else max_elems) // max(1, n_cols))


def sq_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances (na, nb), clamped at 0."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return d.clamp_min_(0.0)


def euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances (na, nb)."""
    return sq_euclidean(a, b).sqrt_()


def _unit(a: torch.Tensor) -> torch.Tensor:
    norm = a.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, a / norm.clamp_min(1e-30), torch.zeros_like(a))


def cosine01(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DeepCore's cosine similarity kernel ``0.5 + 0.5 cos(a, b)`` in [0, 1] (a zero vector has
    cosine 0 with everything)."""
    return 0.5 + 0.5 * (_unit(a) @ _unit(b).T)


def _ll_gram(a: torch.Tensor, b: torch.Tensor, c: int) -> torch.Tensor:
    return (a[:, :c] @ b[:, :c].T) * (1.0 + a[:, c:] @ b[:, c:].T)


def _ll_sqnorm(a: torch.Tensor, c: int) -> torch.Tensor:
    return (a[:, :c] * a[:, :c]).sum(1) * (1.0 + (a[:, c:] * a[:, c:]).sum(1))


def ll_cosine01(a: torch.Tensor, b: torch.Tensor, c: int) -> torch.Tensor:
    """``cosine01`` of the last-layer gradients of packed rows ``[p - y, e]`` (``final_packed``,
    ``c`` classes), from the factored Gram matrix."""
    na = _ll_sqnorm(a, c).sqrt()
    nb = _ll_sqnorm(b, c).sqrt()
    inv_a = torch.where(na > 0, 1.0 / na.clamp_min(1e-30), torch.zeros_like(na))
    inv_b = torch.where(nb > 0, 1.0 / nb.clamp_min(1e-30), torch.zeros_like(nb))
    return 0.5 + 0.5 * (_ll_gram(a, b, c) * inv_a[:, None] * inv_b[None, :])


def ll_euclidean(a: torch.Tensor, b: torch.Tensor, c: int) -> torch.Tensor:
    """Euclidean distances of the last-layer gradients of packed rows (``final_packed``)."""
    d = _ll_sqnorm(a, c)[:, None] + _ll_sqnorm(b, c)[None, :] - 2.0 * _ll_gram(a, b, c)
    return d.clamp_min_(0.0).sqrt_()


def sym_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Pairwise symmetric KL divergence between rows of probability matrices (np, nq)::

        d(a, b) = 1/2 sum_k a_k log(a_k / b_k) + 1/2 sum_k b_k log(b_k / a_k)
                = 1/2 sum_k (a_k - b_k) (log a_k - log b_k)

    Probabilities are clamped at ``PROB_EPS`` inside the logarithms.
    """
    lp = p.clamp_min(PROB_EPS).log()
    lq = q.clamp_min(PROB_EPS).log()
    d = (p * lp).sum(1)[:, None] + (q * lq).sum(1)[None, :] - p @ lq.T - lp @ q.T
    return (0.5 * d).clamp_min_(0.0)


def sym_kl_to(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise symmetric KL between ``p`` (n, C) and ``q`` broadcastable to it (..., C)."""
    lp = p.clamp_min(PROB_EPS).log()
    lq = q.clamp_min(PROB_EPS).log()
    return (0.5 * (p - q) * (lp - lq)).sum(-1)


def knn(x: torch.Tensor, k: int, dist: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = sq_euclidean) -> torch.Tensor:
    """Indices (n, k) of each row's k nearest other rows (itself excluded), ascending distance."""
    n = x.shape[0]
    k = min(k, n - 1)
    out = torch.empty((n, max(k, 0)), dtype=torch.long, device=x.device)
    if k <= 0:
        return out
    step = block_rows(n)
    for s in range(0, n, step):
        e = min(n, s + step)
        d = dist(x[s:e], x)
        d[torch.arange(e - s, device=x.device), torch.arange(s, e, device=x.device)] = float("inf")
        # stable tie-break by index: sort is stable on CPU and CUDA for equal keys in torch >= 1.9
        out[s:e] = torch.sort(d, dim=1, stable=True).indices[:, :k]
    return out


def pairwise_max(x: torch.Tensor, dist: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> float:
    """Largest pairwise value of ``dist`` over all row pairs of ``x`` (blockwise)."""
    n = x.shape[0]
    step = block_rows(n)
    best = 0.0
    for s in range(0, n, step):
        best = max(best, float(dist(x[s : s + step], x).max()))
    return best


class Kernel:
    """A symmetric similarity matrix ``S[i, j] = sim(x_i, x_j)`` over the rows of ``x``.

    Held whole when ``n * n <= max_cache_elems`` (built block by block); otherwise every access
    recomputes the needed blocks from ``x``, so memory stays at one block.
    """

    def __init__(self, x: torch.Tensor, sim: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, max_cache_elems: int | None = None) -> None:
        if max_cache_elems is None:
            max_cache_elems = MAX_CACHE_ELEMS
        self.x = x
        self.sim = sim
        self.n = int(x.shape[0])
        self.step = block_rows(self.n)
        self.full: torch.Tensor | None = None
        if self.n * self.n <= max_cache_elems:
            self.full = torch.cat([sim(x[s : s + self.step], x) for s in range(0, self.n, self.step)], dim=0)

    def blocks(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Row blocks ``(start, stop, S[start:stop, :])``."""
        for s in range(0, self.n, self.step):
            e = min(self.n, s + self.step)
            yield s, e, (self.full[s:e] if self.full is not None else self.sim(self.x[s:e], self.x))

    def cols(self, idx: torch.Tensor) -> torch.Tensor:
        """Columns ``S[:, idx]``, shape (n, len(idx))."""
        if self.full is not None:
            return self.full[:, idx]
        return self.sim(self.x, self.x[idx])

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``S[idx, :]``, shape (len(idx), n): the columns of a symmetric kernel, read
        contiguously (a column gather from a row-major matrix touches one cache line per entry)."""
        if self.full is not None:
            return self.full[idx]
        return self.sim(self.x[idx], self.x)

    def map_(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace the similarity by ``fn(sim)`` (in place on the cached matrix, elementwise)."""
        sim = self.sim
        self.sim = lambda a, b: fn(sim(a, b))
        if self.full is not None:
            for s in range(0, self.n, self.step):
                self.full[s : s + self.step] = fn(self.full[s : s + self.step])

    def col(self, j: int) -> torch.Tensor:
        """Column j (= row j: the kernel is symmetric), read as a contiguous row."""
        if self.full is not None:
            return self.full[j]
        return self.sim(self.x[j : j + 1], self.x)[0]

    def col_sums(self) -> torch.Tensor:
        out = torch.zeros(self.n, dtype=self.x.dtype, device=self.x.device)
        for _, _, blk in self.blocks():
            out += blk.sum(0)
        return out

    def diagonal(self) -> torch.Tensor:
        if self.full is not None:
            return self.full.diagonal().clone()
        out = torch.empty(self.n, dtype=self.x.dtype, device=self.x.device)
        small = max(1, int(np.sqrt(CHUNK_ELEMS)))
        for s in range(0, self.n, small):
            e = min(self.n, s + small)
            out[s:e] = self.sim(self.x[s:e], self.x[s:e]).diagonal()
        return out


# ---------------------------------------------------------------------------------------------
# greedy algorithms
# ---------------------------------------------------------------------------------------------


def herding(x: torch.Tensor, budget: int, *, pick: str = "nearest") -> list[int]:
    """Kernel herding on features (Welling 2009; Chen, Welling & Smola 2010 with a linear kernel).

    Step t (0-based) picks the unselected row minimizing ``||(t + 1) mu - sum_{s in S} x_s - x||``,
    where ``mu`` is the mean row, so the running mean of the picks tracks ``mu``.
    ``pick="farthest"`` takes the argmax instead (what DeepCore's ``herding.py`` code does).
    """
    n = x.shape[0]
    budget = min(budget, n)
    x = x.to(torch.float64)
    mu = x.mean(0)
    sq = (x * x).sum(1)
    total = torch.zeros_like(mu)
    selected = torch.zeros(n, dtype=torch.bool, device=x.device)
    order: list[int] = []
    for t in range(budget):
        target = (t + 1) * mu - total
        d = (target @ target) - 2.0 * (x @ target) + sq
        if pick == "farthest":
            d = d.masked_fill(selected, -float("inf"))
            j = int(torch.argmax(d))
        else:
            d = d.masked_fill(selected, float("inf"))
            j = int(torch.argmin(d))
        selected[j] = True
        total += x[j]
        order.append(j)
    return order


def kcenter_greedy(n: int, budget: int, dist_to: Callable[[int], torch.Tensor], first: int, device: Any = "cpu") -> list[int]:
    """Greedy k-center (Gonzalez 1985; Sener & Savarese 2018): start from ``first``, then
    repeatedly add the point whose distance to its nearest selected center is largest.

    ``dist_to(j)`` returns the distances (n,) of all points to point j.
    """
    budget = min(budget, n)
    if budget <= 0:
        return []
    order = [int(first)]
    mins = dist_to(first).to(torch.float64).clone()
    selected = torch.zeros(n, dtype=torch.bool, device=mins.device)
    selected[first] = True
    for _ in range(budget - 1):
        j = int(torch.argmax(mins.masked_fill(selected, -float("inf"))))
        order.append(j)
        selected[j] = True
        mins = torch.minimum(mins, dist_to(j).to(torch.float64))
    return order


def parse_greedy(method: str, value: Any) -> tuple[str, float]:
    """``greedy`` parameter -> (mode, epsilon): ``"lazy"``, ``"naive"``, or ``"stochastic"`` /
    ``"stochastic:EPS"`` (stochastic greedy with ``epsilon = EPS``, default 0.01)."""
    v = str(value)
    if v in ("lazy", "naive"):
        return v, 0.0
    if v == "stochastic" or v.startswith("stochastic:"):
        try:
            eps = float(v.split(":", 1)[1]) if ":" in v else 0.01
        except ValueError:
            eps = -1.0
        if not 0.0 < eps < 1.0:
            raise ValueError(f"{method}: parameter greedy={value!r}; the stochastic greedy's epsilon must lie in (0, 1), e.g. 'stochastic:0.01'")
        return "stochastic", eps
    raise ValueError(f"{method}: parameter greedy={value!r}; expected one of 'lazy', 'naive', 'stochastic' or 'stochastic:EPS'")


def greedy_problem(value: Any) -> str | None:
    """What is wrong with a ``greedy`` parameter value (one phrase), or None (``parse_greedy``)."""
    try:
        parse_greedy("greedy", value)
    except ValueError as exc:
        return str(exc).split("; ", 1)[1]
    return None


GREEDY_PARAM = Param(
    str,
    check=greedy_problem,
    rule="'lazy', 'naive', 'stochastic' or 'stochastic:EPS' with 0 < EPS < 1",
    help="lazy/naive: the exact greedy's picks; stochastic[:EPS]: stochastic greedy (Mirzasoleiman et al. 2015), faster, not exact, seeded",
)


def stochastic_greedy(fn: Any, budget: int, *, epsilon: float, generator: torch.Generator) -> list[int]:
    """Stochastic greedy (Mirzasoleiman, Badanidiyuru, Karbasi, Vondrak & Krause, "Lazier Than
    Lazy Greedy", AAAI 2015): every step evaluates the gains of ``s = ceil(n / k ln(1 / eps))``
    elements drawn uniformly without replacement from the unpicked ones and adds the best, so the
    whole run costs O(n ln(1 / eps)) gain evaluations whatever the budget ``k``; for a monotone
    submodular function its value is ``>= 1 - 1/e - eps`` of the optimum in expectation. Not
    the plain greedy's picks: a speed-for-exactness trade the caller opts into. The draws come
    from ``generator`` (CPU), so a seed fixes the picks."""
    n = int(fn.n)
    budget = min(budget, n)
    order: list[int] = []
    if budget <= 0:
        return order
    s = max(1, int(np.ceil(n / budget * np.log(1.0 / epsilon))))
    remaining = torch.arange(n)
    dev = getattr(fn, "device", torch.device("cpu"))
    for _ in range(budget):
        m = int(remaining.numel())
        cand = remaining if s >= m else remaining[torch.randperm(m, generator=generator)[:s]]
        g = fn.gains(cand.to(dev)).to(torch.float64)
        j = int(cand[int(torch.argmax(g))])
        order.append(j)
        fn.update(j)
        remaining = remaining[remaining != j]
    return order


def greedy_maximize(fn: Any, budget: int, *, lazy: bool = True, batch: int = 64) -> list[int]:
    """Greedy maximization of a set function, one pick per step; returns positions in pick order.

    ``fn`` provides ``n``, ``gains_all()`` (marginal gains of every element, shape (n,)),
    ``gains(idx)`` (marginal gains of the elements ``idx``) and ``update(j)`` (add element j).

    ``lazy=False`` is the plain greedy: every step evaluates all gains at once.
    ``lazy=True`` is Minoux's lazy greedy, batched: stale gains are upper bounds for a
    submodular function, so each step re-evaluates the ``batch`` largest stale bounds together
    and accepts the best element as soon as its fresh gain is the overall maximum. For a
    submodular function both give the same picks (up to exact ties); for other functions the
    lazy variant is a heuristic (it is what DeepCore's ``LazyGreedy`` does).
    """
    n = int(fn.n)
    budget = min(budget, n)
    order: list[int] = []
    if budget <= 0:
        return order
    ninf = -float("inf")
    if not lazy:
        selected = None
        for _ in range(budget):
            g = fn.gains_all().to(torch.float64)
            if selected is None:
                selected = torch.zeros(n, dtype=torch.bool, device=g.device)
            j = int(torch.argmax(g.masked_fill(selected, ninf)))
            selected[j] = True
            order.append(j)
            fn.update(j)
        return order
    upper = fn.gains_all().to(torch.float64).clone()
    dev = upper.device
    for _ in range(budget):
        fresh = torch.zeros(n, dtype=torch.bool, device=dev)
        while True:
            j = int(torch.argmax(upper))
            if bool(fresh[j]):
                break
            stale = upper.masked_fill(fresh, ninf)
            k = min(batch, n - len(order) - int(fresh.sum()))
            cand = torch.topk(stale, max(k, 1)).indices
            cand = cand[stale[cand] > ninf]
            upper[cand] = fn.gains(cand).to(torch.float64)
            fresh[cand] = True
        upper[j] = ninf
        order.append(j)
        fn.update(j)
    return order


class FacilityLocation:
    """Facility location ``f(S) = sum_i max(0, max_{j in S} S_ij)`` on a ``Kernel``.

    With non-negative similarities this is monotone submodular (Nemhauser et al. 1978); the
    marginal gain of j is ``sum_i max(0, S_ij - cur_i)``, ``cur_i`` = best similarity of i to
    the picks so far (0 for none, as DeepCore).
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.n = kernel.n
        self.cur = torch.zeros(self.n, dtype=kernel.x.dtype, device=kernel.x.device)

    @property
    def device(self) -> torch.device:
        return self.cur.device

    def gains(self, idx: torch.Tensor) -> torch.Tensor:
        # rows = columns of the symmetric kernel, contiguous
        return (self.kernel.rows(idx) - self.cur[None, :]).clamp_min_(0.0).sum(1)

    def gains_all(self) -> torch.Tensor:
        g = torch.empty(self.n, dtype=self.cur.dtype, device=self.cur.device)
        for s, e, blk in self.kernel.blocks():
            g[s:e] = (blk - self.cur[None, :]).clamp_min(0.0).sum(1)
        return g

    def update(self, j: int) -> None:
        self.cur = torch.maximum(self.cur, self.kernel.col(j))

    def value(self) -> float:
        return float(self.cur.clamp_min(0.0).sum())


class GraphCut:
    """Graph cut ``f(S) = lam sum_{i in V, j in S} S_ij - sum_{i, j in S} S_ij`` (Iyer et al.
    2021); marginal gain ``lam colsum_j - 2 sum_{i in S} S_ij - S_jj``. DeepCore drops the
    constant ``S_jj`` (1 on its cosine kernel), which does not change the picks."""

    def __init__(self, kernel: Kernel, lam: float = 1.0) -> None:
        self.kernel = kernel
        self.n = kernel.n
        self.lam = float(lam)
        self.colsum = kernel.col_sums()
        self.diag = kernel.diagonal()
        self.acc = torch.zeros_like(self.colsum)
        self.total = 0.0
        self.device = self.acc.device

    def gains(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lam * self.colsum[idx] - 2.0 * self.acc[idx] - self.diag[idx]

    def gains_all(self) -> torch.Tensor:
        return self.lam * self.colsum - 2.0 * self.acc - self.diag

    def update(self, j: int) -> None:
        self.total += float(self.gains(torch.tensor([j], device=self.acc.device))[0])
        self.acc += self.kernel.col(j)

    def value(self) -> float:
        return self.total


class LogDeterminant:
    """Log-determinant ``f(S) = log det(S_SS + ridge I)`` (Iyer et al. 2021).

    The marginal gain of j is ``log(S_jj + ridge - S_jA S_AA^{-1} S_Aj)``, the log of the
    squared residual of j after projecting on the picks. It is kept for every element through
    incremental Cholesky updates (Chen, Zhang & Zhou 2018, fast greedy MAP inference), so a step
    costs O(n k). DeepCore's ``LogDeterminant.calc_gain`` returns ``S_jA S_AA^+ S_Aj`` and
    maximizes it, which favours points *similar* to the picks; this class follows the definition.
    """

    def __init__(self, kernel: Kernel, budget: int, ridge: float = 1e-6) -> None:
        self.kernel = kernel
        self.n = kernel.n
        self.ridge = float(ridge)
        self.d2 = kernel.diagonal().to(torch.float64) + self.ridge
        self.c = torch.zeros((max(budget, 1), self.n), dtype=torch.float64, device=self.d2.device)
        self.k = 0
        self.total = 0.0
        self.device = self.d2.device

    def gains(self, idx: torch.Tensor) -> torch.Tensor:
        return self.d2[idx].clamp_min(1e-300).log()

    def gains_all(self) -> torch.Tensor:
        return self.d2.clamp_min(1e-300).log()

    def update(self, j: int) -> None:
        dj = float(self.d2[j].clamp_min(1e-300))
        self.total += float(np.log(dj))
        col = self.kernel.col(j).to(torch.float64, copy=True)  # a row of the cached kernel otherwise
        col[j] += self.ridge
        k = self.k
        e = (col - self.c[:k].T @ self.c[:k, j]) / np.sqrt(dj)
        if k < self.c.shape[0]:
            self.c[k] = e
        self.k += 1
        self.d2 = self.d2 - e * e

    def value(self) -> float:
        return self.total
