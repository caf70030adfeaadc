"""``attack-r``: Attack R (reference-model, per-example threshold) of Ye, Maddikayala, Sheth,
Shokri et al. (CCS 2022), as the Curvature Clues notebooks implement it:

    score(x, y) = -( l_target(x) - Q_alpha(x) ),   Q_alpha(x) = alpha-quantile of the query's
                                                    losses on the non-member shadows

with alpha = 1e-4 (the reference value: essentially the smallest out-loss). The quantile is
``np.quantile`` with linear interpolation over the "out" shadows (identity view).
"""

from __future__ import annotations

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, PrivacyMethod
from coreset_bench.plugins.privacy import _mia


class AttackR(PrivacyMethod):
    name = "attack-r"
    version = "1"
    role = "attack"
    tracks = ("privacy",)
    params = {"alpha": 1e-4}
    param_specs = {"alpha": Param(float, min=0, max=1, min_open=True, max_open=True, help="per-sample threshold = the alpha-quantile of the reference models' losses")}
    summary = "Ye et al.'s Attack R: target loss against a low quantile of the query's non-member shadow losses."
    citation = "Ye, Maddikayala, Sheth, Shokri et al. Enhanced Membership Inference Attacks against Machine Learning Models. CCS 2022."

    def score(self, view) -> np.ndarray:
        target, shadows = _mia.collect(view, _mia.ce_loss, n_views=1, key="loss")
        out = np.where(~np.asarray(view.shadow_in, dtype=bool), shadows[:, 0, :], np.nan)  # (S, N)
        with _mia._quiet():
            q = np.nanquantile(out, float(self.params["alpha"]), axis=0)
        q = np.where(np.isfinite(q), q, np.nanmean(out) if np.isfinite(out).any() else 0.0)
        return -(target[0] - q)


@hookimpl
def register_methods(register):
    register(AttackR())
