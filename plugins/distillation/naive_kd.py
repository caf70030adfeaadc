"""``naive-kd``: IDKD without the out-of-distribution filter (vanilla knowledge distillation).

Exactly ``idkd`` with τ = 0: every node labels *every* public sample (max_c p_c > 0 always
holds), so out-of-distribution public images are labelled and exchanged too; same QGM training,
exchange schedule and aggregation. The comparison the IDKD paper reports as "vanilla KD" (claim
D1 of the track: IDKD beats it by 2-13 %).

D. Ravikumar, G. Saha, S. A. Aketi, K. Roy. TMLR 2024 (arXiv 2304.04326), the KD baseline
(``conf_threshold = 0`` of ``train_idkd.py``).
"""

from coreset_bench import hookimpl

from .idkd import IDKD


class NaiveKD(IDKD):
    name = "naive-kd"
    version = "1"
    summary = "IDKD without the OOD filter (tau = 0): every public sample is labelled and exchanged."
    citation = "Ravikumar, Saha, Aketi, Roy. TMLR 2024 (arXiv 2304.04326): the vanilla-KD baseline (no OOD filter)."
    params = {k: v for k, v in IDKD.params.items() if k != "tau"}
    param_specs = {k: v for k, v in IDKD.param_specs.items() if k != "tau"}

    def _tau(self) -> float:
        return 0.0


@hookimpl
def register_methods(register):
    register(NaiveKD())
