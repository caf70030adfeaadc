"""Submodular selection on a cosine kernel of last-layer gradients: graph cut, facility location
and log-determinant (three methods).

Kernel (per class; ``g_i`` the last-layer gradient ``[p - y, (p - y) (x) e]`` of the final
proxy checkpoint)::

    s_ij = 1/2 + 1/2 cos(g_i, g_j)   in [0, 1]            (DeepCore's ``cossim_np``)

Functions, each maximized greedily to ``budget_c`` picks per class:

- ``submodular-graphcut``:  ``F(S) = lam sum_{i in V, j in S} s_ij - sum_{i, j in S} s_ij``
  (``lam=1`` as DeepCore); representative *and* diverse.
- ``submodular-facility-location``: ``F(S) = sum_{i in V} max_{j in S} s_ij``; representative.
- ``submodular-logdet``: ``F(S) = log det(S_SS + 1e-6 I)``; diverse.

What is kept: the greedy picks of each class, in pick order.

Citation: Rishabh Iyer, Ninad Khargonkar, Jeff Bilmes and Himanshu Asanani, "Submodular
Combinatorial Information Measures with Applications in Machine Learning", ALT 2021; DeepCore
``deepcore/methods/submodular.py`` and ``methods_utils/submodular_function.py``.

Choices where the spec leaves a detail open:

- **Greedy.** ``greedy="lazy"`` (DeepCore ``main.py``'s LazyGreedy, batched over the largest
  stale bounds) or ``"naive"``; both give the same picks for these submodular functions up to
  exact ties. ``greedy="stochastic"`` / ``"stochastic:EPS"`` is the stochastic greedy of
  Mirzasoleiman et al. (AAAI 2015; ``eps`` default 0.01): ``n / budget ln(1 / eps)`` random
  candidates per step, faster at large budgets, not the exact greedy's picks (seeded by the
  cell's seed).
- **Kernel arithmetic.** The cosine kernel comes from the factored Gram matrix of the
  last-layer gradients, ``<g_i, g_j> = <p_i - y_i, p_j - y_j> (1 + <e_i, e_j>)``
  (``_greedy.ll_cosine01``): ``C + D`` instead of ``C (D + 1)`` multiply-adds per pair, and the
  ``N x C (D + 1)`` gradient matrix is never built, and kernel columns are read as rows (the
  kernel is symmetric). Same kernel, float32 rounding aside.
  Version 0.2 (issue 26) changed only this arithmetic; since float32 rounding differs, a pick
  can differ from 0.1's where two candidates' gains tie to rounding, hence the bump. Exact ties
  go to the lowest index.
- **Log-determinant's first pick is decided by float32 rounding.** With nothing picked, the gain
  of j is ``log(s_jj + 1e-6)``, and ``s_jj = 1/2 + 1/2 cos(g_j, g_j)`` is 1 in exact arithmetic
  but comes out of the float32 kernel a few rounding steps (about 1e-7) above or below 1. The
  first pick is the sample whose diagonal happens to round highest (the lowest index among
  those), not the class's first sample; it is deterministic for given inputs and device, but
  arbitrary. Later gains are set by the picks' kernel columns; rounding matters there only for
  near ties.
- **Log-determinant gain.** We maximize ``log(s_jj + ridge - s_jA S_AA^{-1} s_Aj)``, the true
  marginal gain, with incremental Cholesky updates; we follow the definition of the function.
  DeepCore's ``calc_gain`` returns ``s_jA S_AA^+ s_Aj`` (the part of ``s_jj`` explained by the
  picks) and maximizes it. Its first step has no picks, so every gain is 0 and the argmax takes
  the class's first sample. After that, with its ``LazyGreedy`` (``main.py``'s default) or
  ``ApproximateLazyGreedy`` (the ``Submodular`` signature's default), the candidates not yet
  re-evaluated keep their stale gain 0 while a re-evaluated gain is >= 0, so each step accepts
  the first sample not yet picked: DeepCore's log-determinant returns the class's first
  ``budget_c`` samples in dataset order (checked by running its ``submodular_function.py`` and
  ``submodular_optimizer.py``). Only with ``NaiveGreedy`` does it pick, after the first sample,
  the samples most similar to the picks.
- **Graph cut** includes the constant ``s_jj`` in the gain (DeepCore drops it; no effect on the
  picks). Graph cut is not monotone: gains can turn negative, and the greedy still takes the
  budget.
- Class-balanced by default (``class_balanced=True``, as DeepCore ``main.py``).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod, SelectionView

import torch

from ._greedy import GREEDY_PARAM, FacilityLocation, GraphCut, Kernel, LogDeterminant, final_packed, greedy_maximize, ll_cosine01, parse_greedy, select_groups, stochastic_greedy


class _Submodular(SelectionMethod):
    """Greedy maximization of a submodular function on the gradient cosine kernel, per class."""

    version = "0.2"
    citation = "Iyer, Khargonkar, Bilmes & Asanani, Submodular Combinatorial Information Measures with Applications in Machine Learning, ALT 2021"
    signals = frozenset({"embeddings", "logits"})

    @abstractmethod
    def function(self, kernel: Kernel, budget: int) -> Any:
        """The set function to maximize on one group's kernel."""

    def select(self, view: SelectionView) -> Selection:
        greedy, eps = parse_greedy(self.name, self.params["greedy"])
        values: list[float] = []

        def one(members: np.ndarray, budget: int) -> tuple[np.ndarray, None]:
            x, c = final_packed(view, members)
            kernel = Kernel(x, lambda a, b: ll_cosine01(a, b, c))
            fn = self.function(kernel, budget)
            if greedy == "stochastic":
                order = stochastic_greedy(fn, budget, epsilon=eps, generator=torch.Generator().manual_seed(view.seed))
            else:
                order = greedy_maximize(fn, budget, lazy=greedy == "lazy")
            values.append(fn.value())
            return np.asarray(order, dtype=np.int64), None

        indices, _ = select_groups(view, bool(self.params["class_balanced"]), one)
        return Selection(indices=indices, info={"objective": float(np.sum(values))})


class GraphCutSelection(_Submodular):
    name = "submodular-graphcut"
    summary = "Greedy graph cut on a cosine kernel of last-layer gradients, per class."
    params = {"class_balanced": True, "greedy": "lazy", "lam": 1.0}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes"), "greedy": GREEDY_PARAM, "lam": Param(float, min=0)}

    def function(self, kernel: Kernel, budget: int) -> GraphCut:
        return GraphCut(kernel, lam=float(self.params["lam"]))


class FacilityLocationSelection(_Submodular):
    name = "submodular-facility-location"
    summary = "Greedy facility location on a cosine kernel of last-layer gradients, per class."
    params = {"class_balanced": True, "greedy": "lazy"}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes"), "greedy": GREEDY_PARAM}

    def function(self, kernel: Kernel, budget: int) -> FacilityLocation:
        return FacilityLocation(kernel)


class LogDeterminantSelection(_Submodular):
    name = "submodular-logdet"
    summary = "Greedy log-determinant on a cosine kernel of last-layer gradients, per class."
    params = {"class_balanced": True, "greedy": "lazy"}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes"), "greedy": GREEDY_PARAM}

    def function(self, kernel: Kernel, budget: int) -> LogDeterminant:
        return LogDeterminant(kernel, budget)


@hookimpl
def register_methods(register):
    register(GraphCutSelection())
    register(FacilityLocationSelection())
    register(LogDeterminantSelection())
