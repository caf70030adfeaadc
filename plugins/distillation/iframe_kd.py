"""``iframe-kd``: the reference's one-teacher control of PKD (its
``train_freeze_backbone_IC_KD_iframe.py`` with ``run_training_KD_iframe.sh``).

Every IC of every network (residual, MV and I-frame) distils for all epochs from the frozen
**I-frame network's** final logits, the strongest single teacher:
``L = mean_b -sum_c softmax(t_b/T)_c log softmax(s_b/T)_c`` with t the I-frame network's logits
on the same clip (segment-averaged as the student's where the recipe averages segments), no
label term, no T^2. The learning rate drops x0.1 at 1/3 and 2/3 of the epochs (the script:
150 epochs, ``--lr-steps 50 100``); here every method gets the profile's IC epochs. It asks
whether PKD's gain comes from its curriculum or from distilling at all from a strong teacher.

Reference: Soufleri et al., arXiv 2407.02713, and its code (github.com/Efstathia-Soufleri/PKD,
``COVIAR_backbone``).
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class IFrameKD(EarlyExitMethod):
    name = "iframe-kd"
    summary = "Control: every network's exits distil from the I-frame network for all epochs (the reference's one-teacher control; lr x0.1 at 1/3 and 2/3)."
    params = {"order": "iframe", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": False, "lr_steps": "1/3,2/3"}


@hookimpl
def register_methods(register):
    register(IFrameKD())
