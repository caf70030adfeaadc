"""``pkd``: Progressive Knowledge Distillation of the internal classifiers (PKD, §5.4 of the spec).

For the ICs of every network the teacher changes with the epoch: the motion-vector network's
final logits for the first ``phase_fraction`` of the epochs (reference: 50 of 300), then the
residual network's, then the IC's own network's final classifier. Loss per IC (no hard-label
term, no T^2): ``L = mean_b -sum_c softmax(t_b/T)_c log softmax(s_b/T)_c`` with T =
``temperature`` (1). ``order`` is the teacher sequence (``own`` = the network's own IC4).
Plain cascade (no combiner).

Reference: E. Soufleri, D. Ravikumar, K. Roy, "Advancing Compressed Video Action Recognition through Progressive
Knowledge Distillation", arXiv 2407.02713, 2024.
"""

from coreset_bench import hookimpl

from ._exits import EarlyExitMethod


class PKD(EarlyExitMethod):
    name = "pkd"
    summary = "Progressive KD of the early exits: MV teacher, then residual teacher, then the own final classifier."
    params = {"order": "mv,res,own", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": False}


@hookimpl
def register_methods(register):
    register(PKD())
