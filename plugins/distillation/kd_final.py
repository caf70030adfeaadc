"""``kd-final``: self-distillation ablation of PKD (no curriculum, no other network): every IC
distils for all epochs from its **own** network's final classifier (loss as ``pkd``). PKD's last
phase alone. It is not the reference's one-teacher control, which distils every network's ICs
from the I-frame network: that is ``iframe-kd``.

Reference: Soufleri et al., arXiv 2407.02713 (ablation of PKD's teacher sequence).
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class KDFinal(EarlyExitMethod):
    name = "kd-final"
    summary = "Ablation (self-distillation): each network's exits distil only from their own final classifier (no curriculum)."
    params = {"order": "own", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": False}


@hookimpl
def register_methods(register):
    register(KDFinal())
