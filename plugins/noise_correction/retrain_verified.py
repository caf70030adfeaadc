"""``retrain-verified``: train a fresh model from scratch on the verified set only.

    theta <- argmin_theta  sum_{(x, y) in R} CE(f_theta(x), y),   theta from a fresh initialisation

with the harness's standard training fixture for ``epochs`` passes over R in mini-batches of
``batch_size`` (learning rate, schedule, weight decay and augmentation from the profile's recipe).
The noisy labels are ignored altogether: this is the "clean data only" reference, the cheap
counterpart of Verifix's "Retrain" baseline (arXiv 2403.08618, ``images/plot_compute.py``).
"""

from coreset_bench import hookimpl
from coreset_bench.kinds import NoiseCorrectionMethod, Param


class RetrainVerified(NoiseCorrectionMethod):
    name = "retrain-verified"
    version = "1"
    summary = "Train a fresh model on the verified set only (noisy labels ignored)."
    citation = "Verifix (arXiv 2403.08618) compute comparison, 'Retrain' baseline"
    params = {"epochs": 100, "batch_size": 32}
    param_specs = {
        "epochs": Param(int, min=1, help="training epochs on the verified set"),
        "batch_size": Param(int, min=1, help="batch size (capped at the verified set's size)"),
    }

    def correct(self, view):
        p = self.params
        model = view.model_factory()
        bs = max(1, min(int(p["batch_size"]), len(view.y_verified)))
        return view.train(model, view.x_verified, view.y_verified, epochs=int(p["epochs"]), batch_size=bs)


@hookimpl
def register_methods(register):
    register(RetrainVerified())
