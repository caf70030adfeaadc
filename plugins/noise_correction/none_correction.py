"""``none``: no correction; the model trained on the noisy labels is returned as it is.

    f_corrected = f_noisy

The reference point of the ``label-noise`` track: every method's gain is measured against it
(``acc_after`` of ``none`` equals ``acc_before``).
"""

import copy

from coreset_bench import hookimpl
from coreset_bench.kinds import NoiseCorrectionMethod


class NoCorrection(NoiseCorrectionMethod):
    name = "none"
    version = "1"
    summary = "No correction: the noisy-label model unchanged (the baseline)."

    def correct(self, view):
        return copy.deepcopy(view.model)


@hookimpl
def register_methods(register):
    register(NoCorrection())
