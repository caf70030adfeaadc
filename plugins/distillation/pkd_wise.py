"""``pkd-wise``: the paper's system, PKD-trained exits (see ``pkd``) combined by WISE (see
``wise``, whose ``wise_fit`` applies: held-out clips where the profile has them). Version 2
(issue 35): ``wise_fit`` added, as ``wise``.

Reference: Soufleri, Ravikumar, Roy, "Advancing Compressed Video Action Recognition through Progressive
Knowledge Distillation", arXiv 2407.02713, 2024.
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class PKDWISE(EarlyExitMethod):
    name = "pkd-wise"
    version = "2"
    summary = "PKD-trained early exits combined by WISE (the paper's full system)."
    params = {"order": "mv,res,own", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": True, **EarlyExitMethod.WISE_PARAMS}


@hookimpl
def register_methods(register):
    register(PKDWISE())
