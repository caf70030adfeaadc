"""``d-psgd``: decentralized parallel SGD with heavy-ball momentum (DSGDm), the reference and
baseline of the ``decentralized`` track.

Per synchronous round each node i takes one local step on its own batch and then averages its
parameters with its neighbours through the mixing matrix W::

    m_i ← μ·m_i + g_i + wd·x_i;   x_i ← x_i − η·m_i;   x_i ← Σ_j W_ij x_j

X. Lian, C. Zhang, H. Zhang, C.-J. Hsieh, W. Zhang, J. Liu. "Can Decentralized Algorithms
Outperform Centralized Algorithms? A Case Study for Decentralized Parallel Stochastic Gradient
Descent." NeurIPS 2017. Defaults of ``train_dpsgd.py`` in the IDKD code (Ravikumar et al., TMLR
2024): η 0.1, μ 0.9 and weight decay 1e-4 (the recipe's), MultiStepLR ×0.1 at 60 % and 80 %.
``final_gossip`` adds one more mixing step after the last round (off: the last round already
ends with one).
"""

from coreset_bench import hookimpl
from coreset_bench.kinds import DistillationMethod

from . import _gossip


class DPSGD(DistillationMethod):
    name = "d-psgd"
    version = "1"
    role = "decentralized"
    multiprocess = True
    summary = "D-PSGD with momentum (DSGDm): local SGD step, then gossip-average with the neighbours."
    citation = "Lian et al. Can Decentralized Algorithms Outperform Centralized Algorithms? NeurIPS 2017 (DSGDm as in the IDKD code)."
    params = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "final_gossip": False, "vmap": True}
    param_specs = dict(_gossip.SPECS)

    def distill(self, view):
        p = self.params
        return _gossip.train(view, algo="dsgdm", lr=float(p["lr"]), momentum=float(p["momentum"]), weight_decay=float(p["weight_decay"]),
                             final_gossip=bool(p["final_gossip"]), vmap=bool(p["vmap"]))


@hookimpl
def register_methods(register):
    register(DPSGD())
