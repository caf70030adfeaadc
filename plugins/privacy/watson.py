"""``watson``: offline difficulty calibration of Watson, Guo, Cormode & Sablayrolles (ICLR 2022),
as the Curvature Clues notebooks implement it:

    score(x, y) = -( l_target(x) - mu_out(x) )

mu_out is the mean cross-entropy of the query over the shadow models that did not train on it
(identity view; "out" shadows only, hence offline).
"""

from __future__ import annotations

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import PrivacyMethod
from coreset_bench.plugins.privacy import _mia


class Watson(PrivacyMethod):
    name = "watson"
    version = "1"
    role = "attack"
    tracks = ("privacy",)
    summary = "Watson et al.: target loss calibrated by the query's mean loss on non-member shadows."
    citation = "Watson, Guo, Cormode, Sablayrolles. On the Importance of Difficulty Calibration in Membership Inference Attacks. ICLR 2022."

    def score(self, view) -> np.ndarray:
        target, shadows = _mia.collect(view, _mia.ce_loss, n_views=1, key="loss")
        fit = _mia.fit_in_out(shadows, view.shadow_in)
        return -(target[0] - fit["mean_out"][0])


@hookimpl
def register_methods(register):
    register(Watson())
