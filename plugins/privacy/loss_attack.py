"""``loss``: the LOSS attack of Yeom, Giacomelli, Fredrikson & Jha (CSF 2018).

    score(x, y) = -l(f_target(x), y)          (cross-entropy of the target, identity view)

A member tends to have a lower loss than a non-member. No shadow models are used. As in the
Curvature Clues notebooks' "Yeom et al." baseline, only view 0 (the identity) is queried.
"""

from __future__ import annotations

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import PrivacyMethod
from coreset_bench.plugins.privacy import _mia


class LossAttack(PrivacyMethod):
    name = "loss"
    version = "1"
    role = "attack"
    tracks = ("privacy",)
    summary = "Yeom et al.'s LOSS attack: minus the target's cross-entropy on the query."
    citation = "Yeom, Giacomelli, Fredrikson, Jha. Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting. CSF 2018."

    def score(self, view) -> np.ndarray:
        return -_mia.logit_statistic(view, view.target, _mia.ce_loss, n_views=1)[0]


@hookimpl
def register_methods(register):
    register(LossAttack())
