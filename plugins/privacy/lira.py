"""``lira``: the online Likelihood Ratio Attack of Carlini, Chien, Nasr, Song, Terzis & Tramer
(IEEE S&P 2022), as in their ``plot.py`` (``generate_ours``).

Per model and input view a, the statistic is the logit-scaled true-class confidence

    phi = log( p_y / (1 - p_y) ) = z_y - logsumexp_{j != y} z_j

Per query and view, over the shadow models that trained on it ("in") and those that did not
("out"): mu_in, mu_out (medians, as the reference code) and sigma_in, sigma_out (standard
deviations; with ``fix_variance`` one global sigma per side and view, the reference's choice for
few shadows). The score is the mean over views of the Gaussian log-likelihood ratio

    score = mean_a [ log N(phi_a; mu_in, sigma_in^2) - log N(phi_a; mu_out, sigma_out^2) ]

``confidence="max"`` reproduces the Curvature Clues notebooks' "Carlini" baseline, which scales
the *max* softmax probability instead of the true class's. Views: every view the track offers
(identity, and horizontal flip where the dataset allows it).
"""

from __future__ import annotations

import numpy as np

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, PrivacyMethod
from coreset_bench.plugins.privacy import _mia


class LiRA(PrivacyMethod):
    name = "lira"
    version = "1"
    role = "attack"
    tracks = ("privacy",)
    params = {"confidence": "true_class", "fix_variance": False, "center": "median"}
    param_specs = {
        "confidence": Param(str, choices=("true_class", "max"), help="logit-scaled confidence of the true class (Carlini et al.) or the max probability"),
        "fix_variance": Param(bool, help="one pooled variance for all samples (the paper's fixed-variance variant)"),
        "center": Param(str, choices=("mean", "median"), help="center of the in/out Gaussians"),
    }
    summary = "Carlini et al.'s online LiRA: per-example Gaussian likelihood ratio of the logit-scaled confidence."
    citation = "Carlini, Chien, Nasr, Song, Terzis, Tramer. Membership Inference Attacks From First Principles. IEEE S&P 2022."

    def score(self, view) -> np.ndarray:
        mode = str(self.params["confidence"])
        target, shadows = _mia.collect(view, lambda z, y: _mia.logit_confidence(z, y, mode), key=("confidence", mode))
        fit = _mia.fit_in_out(shadows, view.shadow_in, center=str(self.params["center"]))
        if self.params["fix_variance"]:
            s_in = np.sqrt(_pooled(shadows, view.shadow_in, True))
            s_out = np.sqrt(_pooled(shadows, view.shadow_in, False))
        else:
            s_in, s_out = np.sqrt(fit["var_in"]), np.sqrt(fit["var_out"])
        # the reference adds 1e-30 to sigma
        llr = _mia.gaussian_logpdf(target, fit["mean_in"], s_in + 1e-30) - _mia.gaussian_logpdf(target, fit["mean_out"], s_out + 1e-30)
        return _mia.finite(llr.mean(0))


def _pooled(shadows: np.ndarray, shadow_in: np.ndarray, member: bool) -> np.ndarray:
    """One variance per view over all (shadow, query) pairs of one side: (A, 1)."""
    m = np.asarray(shadow_in, dtype=bool)
    m = m if member else ~m
    vals = np.where(m[:, None, :], shadows, np.nan)
    with _mia._quiet():
        v = np.nanvar(vals, axis=(0, 2))[:, None]
    return np.where(np.isfinite(v), v, 1.0)


@hookimpl
def register_methods(register):
    register(LiRA())
