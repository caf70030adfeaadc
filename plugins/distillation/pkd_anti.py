"""``pkd-anti``: ablation of PKD with the reverse curriculum (the reference's
``..._KD_anticurriculum.py``): teachers I-frame network, then residual network, then the
motion-vector network, each but the last for ``phase_fraction`` of the epochs (loss as ``pkd``).

Reference: Zhang et al., arXiv 2407.02713 (anti-curriculum control).
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class PKDAnti(EarlyExitMethod):
    name = "pkd-anti"
    summary = "Ablation: PKD with the reverse teacher order (I-frame, then residual, then MV network)."
    params = {"order": "iframe,res,mv", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": False}


@hookimpl
def register_methods(register):
    register(PKDAnti())
