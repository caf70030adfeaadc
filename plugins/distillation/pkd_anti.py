"""``pkd-anti``: PKD's control with the curriculum reversed, as released (the reference's
``train_freeze_backbone_IC_KD_anticurriculum.py`` with ``run_training_KD_anticurriculum.sh``).

The ICs of every network distil, for a third of the IC epochs each, from their **own**
network's final classifier, then the residual network's, then the motion-vector network's
(loss as ``pkd``: ``mean_b -sum_c softmax(t_b/T)_c log softmax(s_b/T)_c``, no label term). The
learning rate drops x0.1 at 1/3 and 2/3 of the epochs (the script: 150 epochs, ``--lr-steps 50
100``), so the MV phase runs at 1 % of the initial rate. The reference ran its controls for 150
epochs where PKD ran 300; here every method gets the profile's IC epochs (equal budgets).

Version 2 (issue 35). Version 1 was a harsher ablation: I-frame network, residual, then MV for
the remaining 2/3 of the epochs at PKD's lr steps (50/67/83 %); it is
``--param order=iframe,res,mv --param phase_fraction=0.1667 --param lr_steps=recipe`` now.

Reference: Soufleri et al., arXiv 2407.02713 (anti-curriculum control), and its code
(github.com/Efstathia-Soufleri/PKD, ``COVIAR_backbone``).
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class PKDAnti(EarlyExitMethod):
    name = "pkd-anti"
    version = "2"
    summary = "Control: PKD's curriculum reversed as released (own final classifier, residual, then MV network, in thirds; lr x0.1 at 1/3 and 2/3)."
    params = {"order": "own,res,mv", "phase_fraction": 1 / 3, "temperature": 1.0, "wise": False, "lr_steps": "1/3,2/3"}


@hookimpl
def register_methods(register):
    register(PKDAnti())
