"""``random``: a uniform random subset of the budget (the reference every method must beat).

Global uniform sampling without replacement by default; ``class_balanced=true`` samples each
class's share of the budget (largest-remainder rounding, DeepCore's ``--balance`` behaviour).
The draw uses the cell's seeded generator, so the same cell gives the same subset.

Reference: C. Guo, B. Zhao, Y. Bai, "DeepCore: A Comprehensive Library for Coreset Selection in
Deep Learning", DEXA 2022 (random remains a strong baseline).
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, Selection, SelectionMethod


class RandomSelection(SelectionMethod):
    name = "random"
    version = "1"
    summary = "Uniform random subset of the budget (optionally class-balanced)."
    citation = "Guo, Zhao, Bai. DeepCore: A Comprehensive Library for Coreset Selection in Deep Learning. DEXA 2022."
    params = {"class_balanced": False}
    param_specs = {"class_balanced": Param(bool, help="pick per class in proportion to class sizes")}
    #: needs only ``view.n``, ``budget`` and ``rng``: a reference of the image and instruction tracks
    modalities = frozenset({"image", "text"})

    def select(self, view):
        rng = view.rng
        if not self.params["class_balanced"]:
            return Selection(np.sort(rng.choice(view.n, size=view.budget, replace=False)))
        if not hasattr(view, "class_budgets"):
            raise ValueError("random: class_balanced=true needs class labels, which this view has none of; use class_balanced=false")
        labels = view.labels
        parts = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in enumerate(view.class_budgets()) if k]
        return Selection(np.sort(np.concatenate(parts)))


@hookimpl
def register_methods(register):
    register(RandomSelection())
