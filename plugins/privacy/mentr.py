"""``mentr``: Song & Mittal's modified-entropy attack (USENIX Security 2021).

    Mentr(f(x), y) = -(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j),   score = -Mentr

with p = softmax of the target's logits (identity view). Song & Mittal pick class-conditional
thresholds from shadow models; the Curvature Clues notebooks compute per-class ROCs but report
one AUC over the whole set, which is what a single score ranks here (a threshold per class does
not change a within-class ranking; see the plugin docs). No shadow model is needed to rank.
"""

from __future__ import annotations

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import PrivacyMethod
from coreset_bench.plugins.privacy import _mia


class ModifiedEntropy(PrivacyMethod):
    name = "mentr"
    version = "1"
    role = "attack"
    tracks = ("privacy",)
    summary = "Song & Mittal's modified-entropy attack: minus Mentr of the target's prediction."
    citation = "Song, Mittal. Systematic Evaluation of Privacy Risks of Machine Learning Models. USENIX Security 2021."

    def score(self, view) -> np.ndarray:
        return -_mia.logit_statistic(view, view.target, _mia.modified_entropy, n_views=1)[0]


@hookimpl
def register_methods(register):
    register(ModifiedEntropy())
