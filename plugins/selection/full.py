"""``full``: the whole training pool (the reference ceiling).

Runs once per (dataset, architecture, training recipe, repeat) at budget 1.0, whatever budgets
the profile lists; its subset-trained model is the full-data model.
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Selection, SelectionMethod


class FullData(SelectionMethod):
    name = "full"
    version = "1"
    summary = "The whole training pool: the full-data reference."
    fixed_fraction = 1.0
    #: needs only ``view.n``: a reference of the image tracks and of the instruction track
    modalities = frozenset({"image", "text"})

    def select(self, view):
        return Selection(np.arange(view.n))


@hookimpl
def register_methods(register):
    register(FullData())
