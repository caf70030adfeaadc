"""``kd-final``: ablation of PKD without a curriculum: every IC distils only from its own
network's final classifier for all epochs (loss as ``pkd``). The self-teacher control of the
reference's ``..._KD_iframe.py`` family.

Reference: Zhang et al., arXiv 2407.02713 (ablation of PKD's teacher sequence).
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class KDFinal(EarlyExitMethod):
    name = "kd-final"
    summary = "Ablation: each network's exits distil only from their own final classifier (no curriculum)."
    params = {"order": "own", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": False}


@hookimpl
def register_methods(register):
    register(KDFinal())
