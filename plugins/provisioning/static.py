"""``static``: the operator's constant pool (the pooling track's baseline).

P = the smallest constant pool whose hit rate on the history (the training days) reaches the
target + margin (the profile's ``view.tune_margin``, the margin every tuned method aims above
the target; 0 where the profile declares none), simulated on the track's own simulator; set
once at the first ``fit`` and kept (``recalibrate=true`` recomputes it at every refit on all
history so far). A constant pool serves every day of the evaluation, weekdays and weekends
alike, so it calibrates on all the history (a window that spans both day types), not on the
profile's per-fit calibration days. Without a declared margin (every profile before
pooling/quick@2) the pool is the one version 1 computed, so the version stays 1.

Reference: the static pooling baseline of D. Ravikumar et al., "Intelligent Pooling: Proactive
Resource Provisioning in Large-scale Cloud Service", PVLDB 17(7), 2024 (arXiv 2411.11326).
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod
from coreset_bench.tracks.pooling.sim import smallest_static_pool


class StaticPool(ProvisioningMethod):
    name = "static"
    version = "1"
    summary = "Constant pool: the smallest that met the hit-rate target on the history."
    citation = "Ravikumar et al. Intelligent Pooling: Proactive Resource Provisioning in Large-scale Cloud Service. PVLDB 17(7), 2024 (static baseline)."
    params = {"recalibrate": False}
    param_specs = {"recalibrate": Param(bool, help="recompute the pool at each fit (else keep the first)")}

    def fit(self, view):
        if getattr(self, "_pool", None) is not None and not self.params["recalibrate"]:
            return
        margin = float(view.tune_margin) if view.tune_margin is not None else 0.0
        self._pool = smallest_static_pool(np.asarray(view.history), view.target_hit_rate + margin, lead=view.lead, max_pool=view.max_pool, step_seconds=view.step_seconds)
        view.info["static_pool"] = self._pool

    def plan(self, view):
        return np.full(view.horizon, float(self._pool))


@hookimpl
def register_methods(register):
    register(StaticPool())
