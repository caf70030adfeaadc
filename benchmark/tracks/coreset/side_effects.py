"""What else a coreset does (issue 40): membership leakage of the trained subset, the class that
pays for the selection, calibration, and the share of mislabelled samples a selection keeps.

A coreset profile turns these on with ``settings["side_effects"]`` (``settings`` below fills in
the defaults; absent or None: off, and the cell's numbers are exactly those of a profile without
them). Each is computed by the harness on the cell's final model, never by the method:

* **Membership leakage** (threshold attacks, no shadow models): the model is queried on ``n``
  members drawn from its own training subset and ``n`` points of the profile's *held-out split*
  (carved per class from the training data before the pool, never trained on or evaluated in
  any cell of the profile), ``n = min(|subset|, |held-out|, max_points)``. Scores, higher =
  "member", each from the privacy track's plugin:

  - ``loss``: Yeom et al.'s LOSS attack, minus the cross-entropy (``loss`` plugin);
  - ``mentr``: Song & Mittal's modified entropy, minus Mentr (``mentr`` plugin);
  - ``curvature``: minus the log of the zero-order input-loss curvature of Curvature Clues
    (``zero-order-curvature`` plugin: the privacy track's black-box estimator, ``h``, ``n_iter``
    from the setting, identity view, final model): training points sit in flatter regions.

  Each gives the ROC AUC and the TPR at 1 % FPR (``metrics.membership_metrics``; the
  interpolated TPR, as the privacy track reports it), as ``mia_<score>_auc`` and
  ``mia_<score>_tpr_at_1pct_fpr``. The members are the method's choice: a selection of easy
  samples has low-loss members *and* would have low-loss non-members of its kind, while the
  held-out points are a random draw of the data; the AUC therefore measures how well the
  subset can be told from fresh data through the model, which is the question of issue 40
  (does an easy-sample coreset expose its samples more or less than a random one?), not a
  per-sample privacy guarantee.
  On a noisy pool (``settings["label_noise"]``) the held-out points carry flipped labels at the
  pool's rate while a selection that avoids flipped labels trains on none, so part of such a
  subset's AUC is the attack telling a correct label from a flipped one. With
  ``side_effects["mia_clean_labels"]`` True the cell also reports ``mia_clean_<score>_auc`` and
  ``mia_clean_<score>_tpr_at_1pct_fpr``: the same attacks on members and held-out points whose
  labels were *not* flipped (equal numbers, drawn as above from those two sets), membership
  without the label confound. Off unless set (``coreset/quick-noisy@1`` predates it).
* **Worst class**: ``worst_class_acc`` and ``worst_class_<attack>_acc``, the lowest per-class
  clean and robust test accuracy (classes with no attacked point are skipped).
* **Calibration**: ``ece``, the expected calibration error of the clean test predictions with
  ``ece_bins`` equal-width bins of the top-class probability (Guo et al., 2017; 15 bins by
  default): ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``, bin b = ((b-1)/B, b/B], the first
  bin closed at 0.
* **Label-noise exposure** (profiles with ``settings["label_noise"]``): ``noise_kept_share``,
  the share of the subset whose pool label was flipped (the pool's flipped share is the random
  expectation, stored as ``info["noise_pool_share"]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..privacy.metrics import membership_metrics

#: the threshold attacks a profile may name (``side_effects["mia"]``)
MIA_SCORES = ("loss", "mentr", "curvature")
#: the defaults of ``settings["side_effects"]``
DEFAULTS: dict[str, Any] = {
    # share of the training data left after validation, per class, held out for the attacks
    "heldout_fraction": 0.2,
    "ece_bins": 15,
    "mia": list(MIA_SCORES),
    # members and held-out points queried per cell (None: as many as the smaller side has)
    "max_points": None,
    # the zero-order estimator of Curvature Clues (normalized-input units, as the privacy track)
    "curvature": {"h": 1e-3, "n_iter": 10, "estimator": "zo"},
}
#: the defaults of ``settings["label_noise"]``: the label-noise track's exact-count injector
#: settings a profile may add that are absent (and off) unless given, so that the recorded
#: settings of the profiles defined before them stay as they were
OPTIONAL = ("mia_clean_labels",)

NOISE_DEFAULTS: dict[str, Any] = {"kind": "symmetric", "rate": 0.2, "flip_validation": False}


def settings(st: Mapping[str, Any]) -> dict[str, Any] | None:
    """The profile's side-effect settings with the defaults filled in; None when off. A malformed
    setting raises ``ValueError`` naming it and the fix."""
    raw = st.get("side_effects")
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"settings['side_effects'] = {raw!r}: use a mapping of {', '.join(DEFAULTS)} (or True for the defaults)")
    known = (*DEFAULTS, *OPTIONAL)
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"settings['side_effects'] has unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    out = {**DEFAULTS, **dict(raw)}
    if "mia_clean_labels" in out and not isinstance(out["mia_clean_labels"], bool):
        raise ValueError(f"side_effects mia_clean_labels {out['mia_clean_labels']!r} must be true or false")
    out["curvature"] = {**DEFAULTS["curvature"], **dict(out["curvature"])}
    if not 0.0 < float(out["heldout_fraction"]) < 1.0:
        raise ValueError(f"side_effects heldout_fraction {out['heldout_fraction']!r} must be in (0, 1)")
    if int(out["ece_bins"]) < 1:
        raise ValueError(f"side_effects ece_bins {out['ece_bins']!r} must be a positive integer")
    bad = [m for m in out["mia"] if m not in MIA_SCORES]
    if bad:
        raise ValueError(f"side_effects mia names unknown score(s) {', '.join(map(str, bad))}; use some of {', '.join(MIA_SCORES)}")
    if out["max_points"] is not None and int(out["max_points"]) < 2:
        raise ValueError(f"side_effects max_points {out['max_points']!r} must be at least 2 (or None)")
    return out


def noise_settings(st: Mapping[str, Any]) -> dict[str, Any] | None:
    """The profile's pool label noise (``settings["label_noise"]``) with defaults; None when off."""
    raw = st.get("label_noise")
    if raw is None or raw is False:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError(f"settings['label_noise'] = {raw!r}: use a mapping of {', '.join(NOISE_DEFAULTS)}")
    unknown = sorted(set(raw) - set(NOISE_DEFAULTS))
    if unknown:
        raise ValueError(f"settings['label_noise'] has unknown key(s) {', '.join(unknown)}; known: {', '.join(NOISE_DEFAULTS)}")
    out = {**NOISE_DEFAULTS, **dict(raw)}
    if out["kind"] not in ("symmetric", "asymmetric"):
        raise ValueError(f"label_noise kind {out['kind']!r}: use symmetric or asymmetric")
    if not 0.0 < float(out["rate"]) < 1.0:
        raise ValueError(f"label_noise rate {out['rate']!r} must be in (0, 1)")
    return out


# ---- calibration and the worst class ------------------------------------------------------------


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE of top-class predictions with ``bins`` equal-width confidence bins (see module doc).

    ``probs`` (N, C) rows summing to 1; ``labels`` (N,) true classes."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64).ravel()
    if p.ndim != 2 or len(p) != len(y) or not len(y):
        raise ValueError(f"ECE needs (N, C) probabilities and N labels with N > 0; got {p.shape} and {y.shape}")
    if bins < 1:
        raise ValueError(f"ECE needs at least one bin; got {bins}")
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    # bin b holds confidences in ((b-1)/B, b/B]; confidence 0 goes to the first bin
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.sum() / len(y) * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def worst_class(metrics: Mapping[str, float], prefix: str, num_classes: int) -> float | None:
    """The lowest finite ``{prefix}{c}`` over the classes; None when no class has a value."""
    vals = [float(metrics[f"{prefix}{c}"]) for c in range(num_classes) if f"{prefix}{c}" in metrics]
    vals = [v for v in vals if np.isfinite(v)]
    return min(vals) if vals else None


# ---- membership leakage -------------------------------------------------------------------------


def paired_draw(n_members: int, n_heldout: int, max_points: int | None, member_seed: int, heldout_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (sorted) of ``n`` members and ``n`` held-out points, n = min of the three sizes.

    The held-out draw depends only on ``heldout_seed`` and ``n`` (the same points for every method
    whose subset is at least as large), the members' on ``member_seed``."""
    n = min(int(n_members), int(n_heldout), int(max_points) if max_points is not None else int(n_heldout))
    if n < 1:
        raise ValueError(f"membership leakage needs members and held-out points; got {n_members} and {n_heldout}")
    mem = np.sort(np.random.default_rng(member_seed).permutation(int(n_members))[:n])
    out = np.sort(np.random.default_rng(heldout_seed).permutation(int(n_heldout))[:n])
    return mem, out


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def membership_scores(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    *,
    which: Sequence[str] = MIA_SCORES,
    seed: int = 0,
    input_std: Sequence[float] | None = None,
    curvature: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Score -> per-query membership score (higher = "member") of ``model`` on (x, y), each from
    the privacy track's plugin (``loss``, ``mentr``, ``zero-order-curvature``) through a
    shadow-free ``PrivacyView`` of the model as a black box."""
    from ... import registry
    from ...kinds import PrivacyView

    model.eval()

    @torch.no_grad()
    def box(xb: torch.Tensor) -> torch.Tensor:
        return model(xb)

    view = PrivacyView(
        x=x, y=y, num_classes=int(num_classes), target=box, shadows=[], shadow_in=np.zeros((0, len(y)), dtype=bool),
        views=[_identity], seed=int(seed), generator=torch.Generator().manual_seed(int(seed)), input_std=list(input_std) if input_std is not None else None,
    )
    out: dict[str, np.ndarray] = {}
    for name in which:
        if name == "loss":
            out[name] = np.asarray(registry.method("loss").score(view), dtype=np.float64)
        elif name == "mentr":
            out[name] = np.asarray(registry.method("mentr").score(view), dtype=np.float64)
        elif name == "curvature":
            cv = dict(curvature or DEFAULTS["curvature"])
            zo = registry.method("zero-order-curvature").with_params(checkpoints="final", views="identity", h=float(cv["h"]), n_iter=int(cv["n_iter"]), estimator=str(cv["estimator"]))
            out[name] = -np.log(np.asarray(zo.score(view), dtype=np.float64) + 1e-22)
        else:
            raise ValueError(f"unknown membership score {name!r}; use some of {', '.join(MIA_SCORES)}")
    return out


def leakage(
    model: torch.nn.Module,
    x_members: torch.Tensor,
    y_members: torch.Tensor,
    x_heldout: torch.Tensor,
    y_heldout: torch.Tensor,
    num_classes: int,
    *,
    which: Sequence[str] = MIA_SCORES,
    seed: int = 0,
    input_std: Sequence[float] | None = None,
    curvature: Mapping[str, Any] | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """``mia_<prefix><score>_auc`` and ``mia_<prefix><score>_tpr_at_1pct_fpr`` of ``model`` for
    members against held-out points (equal numbers are the caller's draw, ``paired_draw``)."""
    x = torch.cat([x_members, x_heldout])
    y = torch.cat([y_members, y_heldout])
    labels = np.concatenate([np.ones(len(y_members), dtype=bool), np.zeros(len(y_heldout), dtype=bool)])
    scores = membership_scores(model, x, y, num_classes, which=which, seed=seed, input_std=input_std, curvature=curvature)
    out: dict[str, float] = {}
    for name, s in scores.items():
        s = np.nan_to_num(s, nan=0.0, posinf=np.finfo(np.float64).max, neginf=-np.finfo(np.float64).max)
        mm = membership_metrics(labels, s, {"1pct": 1e-2})
        out[f"mia_{prefix}{name}_auc"] = mm["auc"]
        out[f"mia_{prefix}{name}_tpr_at_1pct_fpr"] = mm["tpr_at_1pct_fpr"]
    return out


def kept_noise_share(indices: np.ndarray, flipped: np.ndarray) -> float:
    """Share of the selected pool samples whose label was flipped."""
    idx = np.asarray(indices, dtype=np.int64)
    return float(np.asarray(flipped, dtype=bool)[idx].mean()) if len(idx) else 0.0
