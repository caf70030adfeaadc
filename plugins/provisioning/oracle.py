"""``oracle``: the hindsight bound (privileged: sees ``view.future``; drawn, never ranked).

For step t + j of the plan (j < decision_every), the target is the number of requests in
(t + j, t + j + lead]: exactly those that arrive before a creation started at t + j lands, so
every request after the first ``lead`` steps is a hit, with the least idle time a pool that
replenishes at once can have. (tracks-phase2.md §5.7 gives the coarser
sum over (t, t + lead + decision_every - 1] for the whole interval; ``per_step=false`` uses it.)
"""

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod


class OraclePool(ProvisioningMethod):
    name = "oracle"
    version = "1"
    summary = "Hindsight bound: the exact demand before a replacement lands (sees the future; never ranked)."
    citation = "Bound of the pooling track (tracks-phase2.md §5.7); not a method."
    privileged = True
    params = {"per_step": True}
    param_specs = {"per_step": Param(bool, help="the true demand per step (else the window maximum)")}

    def plan(self, view):
        f = np.asarray(view.future, dtype=np.float64)
        H, L = view.horizon, view.lead
        c = np.concatenate([[0.0], np.cumsum(f)])
        if not self.params["per_step"]:
            return np.full(H, c[min(H, len(f))] - c[1])
        j = np.arange(H)
        lo = np.minimum(j + 1, len(f))
        hi = np.minimum(j + 1 + L, len(f))
        return c[hi] - c[lo]


@hookimpl
def register_methods(register):
    register(OraclePool())
