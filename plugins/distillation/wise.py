"""``wise``: Weighted Inference with Scaled Ensemble on cross-entropy-trained exits.

The ICs are trained as ``ce-exits``; then for every exit e (in the exit order) the ensemble
``z~_e = sum_{j<=e} beta_e[j] z_j`` replaces exit e's logits, with beta_e fitted on the training
set's segment-averaged logits by full-batch SGD (``wise_lr`` 0.1, ``wise_iters`` 500) on
``CE(z~_e, y) + wise_l1 * ||beta_e||_1`` (0.01, TEAM-Net), negative weights clipped to 0.
``wise_init``: ``last`` (one-hot on e, TEAM-Net) or ``ones`` (CoViAR-HMDB).

Reference: Zhang et al., arXiv 2407.02713 (WISE, its ``WISE*.py`` scripts).
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class WISE(EarlyExitMethod):
    name = "wise"
    summary = "Cross-entropy exits combined by WISE: learned non-negative weights over all exits so far."
    params = {"order": "ce", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": True, **EarlyExitMethod.WISE_PARAMS}


@hookimpl
def register_methods(register):
    register(WISE())
