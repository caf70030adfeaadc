"""``sablayrolles``: per-example threshold attack of Sablayrolles, Douze, Schmid, Ollivier & Jegou
(ICML 2019), as the Curvature Clues notebooks implement it:

    score(x, y) = -( l_target(x) - (mu_in(x) + mu_out(x)) / 2 )

where mu_in / mu_out are the mean cross-entropies of the query over the shadow models that did /
did not train on it (identity view only).
"""

from __future__ import annotations

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import PrivacyMethod
from coreset_bench.plugins.privacy import _mia


class Sablayrolles(PrivacyMethod):
    name = "sablayrolles"
    version = "1"
    role = "attack"
    tracks = ("privacy",)
    summary = "Sablayrolles et al.: target loss against the midpoint of the per-example in/out shadow losses."
    citation = "Sablayrolles, Douze, Schmid, Ollivier, Jegou. White-box vs Black-box: Bayes Optimal Strategies for Membership Inference. ICML 2019."

    def score(self, view) -> np.ndarray:
        target, shadows = _mia.collect(view, _mia.ce_loss, n_views=1, key="loss")
        fit = _mia.fit_in_out(shadows, view.shadow_in)
        return -(target[0] - (fit["mean_in"][0] + fit["mean_out"][0]) / 2.0)


@hookimpl
def register_methods(register):
    register(Sablayrolles())
