"""``confident-learning``: find label issues with confident learning, drop them, retrain.

Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) with the ``cleanlab`` library:

1. out-of-fold predicted probabilities p_hat(y | x_i) on the noisy pool: ``folds``-fold
   cross-validation, stratified by the noisy label, each fold's model trained from scratch with
   the harness's standard training fixture (``cv_epochs`` passes; 0 = the profile's recipe);
2. the confident joint C[i][j] = #{x with noisy label i : p_hat(j | x) >= t_j and j is the argmax
   of those above threshold}, thresholds t_j = mean p_hat(j | x) over samples labelled j;
   ``cleanlab.filter.find_label_issues(labels, pred_probs, filter_by=...)`` marks as issues the
   samples it estimates mislabeled (``prune_by_noise_rate``: in each noisy class i, the
   n * Q[i][j] samples with the largest margin p_hat(j|x) - p_hat(i|x), off-diagonal j);
3. retrain a fresh model on the pool minus the issues, plus the verified set with its labels
   (``use_verified``), with the same fixture and the profile's recipe.

Cost: ``folds`` + 1 full trainings.
"""

import numpy as np
import torch

from coreset_bench import hookimpl
from coreset_bench.kinds import NoiseCorrectionMethod, Param


def out_of_fold_probs(view, folds: int, epochs: int | None) -> np.ndarray:
    """(N, C) out-of-fold softmax probabilities on the noisy pool (stratified folds, seeded)."""
    from coreset_bench.training import predict

    y = view.y_pool_noisy.detach().cpu().numpy()
    rng = np.random.default_rng(view.seed)
    fold = np.zeros(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % folds
    probs = np.zeros((len(y), view.num_classes), dtype=np.float64)
    for f in range(folds):
        tr = torch.from_numpy(np.flatnonzero(fold != f)).to(view.x_pool.device)
        te = torch.from_numpy(np.flatnonzero(fold == f)).to(view.x_pool.device)
        model = view.model_factory()
        view.train(model, view.x_pool[tr], view.y_pool_noisy[tr], epochs=epochs)
        probs[te.cpu().numpy()] = predict(model, view.x_pool[te]).softmax(1).double().cpu().numpy()
    return probs


class ConfidentLearning(NoiseCorrectionMethod):
    name = "confident-learning"
    version = "1"
    summary = "cleanlab: out-of-fold probabilities, drop the found label issues, retrain on the rest (+ verified set)."
    citation = "Northcutt, Jiang & Chuang, Confident Learning: Estimating Uncertainty in Dataset Labels, JAIR 70 (2021); cleanlab"
    params = {"folds": 4, "cv_epochs": 0, "filter_by": "prune_by_noise_rate", "use_verified": True}
    param_specs = {
        "folds": Param(int, min=2, help="cross-validation folds of the out-of-fold probabilities"),
        "cv_epochs": Param(int, min=0, help="epochs per fold model; 0: the profile's recipe"),
        "filter_by": Param(str, choices=("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given", "low_normalized_margin", "low_self_confidence"), help="cleanlab.filter.find_label_issues' filter_by"),
        "use_verified": Param(bool, help="add the verified set to the retraining data"),
    }

    def correct(self, view):
        from cleanlab.filter import find_label_issues

        p = self.params
        folds = max(2, int(p["folds"]))
        epochs = int(p["cv_epochs"]) or None
        probs = out_of_fold_probs(view, folds, epochs)
        labels = view.y_pool_noisy.detach().cpu().numpy()
        issues = np.asarray(find_label_issues(labels, probs, filter_by=str(p["filter_by"]), n_jobs=1), dtype=bool)
        keep = torch.from_numpy(np.flatnonzero(~issues)).to(view.x_pool.device)
        x, y = view.x_pool[keep], view.y_pool_noisy[keep]
        if p["use_verified"] and len(view.y_verified):
            x = torch.cat([x, view.x_verified])
            y = torch.cat([y, view.y_verified.to(y.device)])
        model = view.model_factory()
        view.train(model, x, y)
        view.info.update({"issues_found": int(issues.sum()), "issue_fraction": float(issues.mean()), "train_size": int(len(y))})
        return model


@hookimpl
def register_methods(register):
    register(ConfidentLearning())
