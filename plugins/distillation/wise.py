"""``wise``: Weighted Inference with Scaled Ensemble on cross-entropy-trained exits.

The ICs are trained as ``ce-exits``; then for every exit e (in the exit order) the ensemble
``z~_e = sum_{j<=e} beta_e[j] z_j`` replaces exit e's logits, with beta_e fitted on
segment-averaged logits by full-batch SGD (``wise_lr`` 0.1, ``wise_iters`` 500) on
``CE(z~_e, y) + wise_l1 * ||beta_e||_1`` (0.01, TEAM-Net), negative weights clipped to 0.
``wise_init``: ``last`` (one-hot on e, TEAM-Net) or ``ones`` (CoViAR-HMDB).

``wise_fit``: ``heldout`` (default) fits beta on the training clips the profile holds out of the
backbones and the ICs (video/quick@3: 20 %), so that beta is not learned on logits that
from-scratch backbones have memorised (100 % training accuracy); on a profile without held-out
clips it uses the training clips. ``train`` always uses the training clips, as the reference
(which fits on the training logits of Kinetics-pretrained networks). Version 2 (issue 35) adds
``wise_fit``; version 1 always fitted on the training clips.

Reference: Soufleri et al., arXiv 2407.02713 (WISE, its ``WISE*.py`` scripts).
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class WISE(EarlyExitMethod):
    name = "wise"
    version = "2"
    summary = "Cross-entropy exits combined by WISE: learned non-negative weights over all exits so far (fitted on held-out clips where the profile has them)."
    params = {"order": "ce", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": True, **EarlyExitMethod.WISE_PARAMS}


@hookimpl
def register_methods(register):
    register(WISE())
