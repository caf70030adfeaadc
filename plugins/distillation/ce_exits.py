"""``ce-exits``: internal classifiers trained with cross-entropy on the hard labels (the video
track's reference and baseline; the reference's ``train_freeze_backbone_IC_CE.py``).

Each IC head h_{m,k} on the frozen backbone's stage-k features minimises
``CE(h_{m,k}(f_{m,k}(x)), y)`` with its own Adam; plain cascade (each exit decides alone, the
final decision is the mean of the three networks' final logits).

Reference: Soufleri et al., arXiv 2407.02713 (PKD + WISE), the CE baseline of its code.
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class CEExits(EarlyExitMethod):
    name = "ce-exits"
    summary = "Early exits trained with cross-entropy on the labels (the reference; no distillation, no combiner)."
    params = {"order": "ce", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": False}


@hookimpl
def register_methods(register):
    register(CEExits())
