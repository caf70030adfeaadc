"""``finetune-verified``: fine-tune the noisy-label model on the verified set.

    theta <- argmin_theta  sum_{(x, y) in R} CE(f_theta(x), y),   starting from theta_noisy

with the harness's standard training fixture for ``epochs`` passes over R, a learning rate of
``lr_scale`` times the profile's recipe and mini-batches of ``batch_size`` (cosine schedule, weight
decay and augmentation as in the recipe). This is the "Finetune" baseline of Verifix's compute
comparison (arXiv 2403.08618, ``images/plot_compute.py``: 1,000 verified samples, 50 epochs).
"""

import copy

from coreset_bench import hookimpl
from coreset_bench.kinds import NoiseCorrectionMethod, Param


class FinetuneVerified(NoiseCorrectionMethod):
    name = "finetune-verified"
    version = "1"
    summary = "Fine-tune the noisy-label model on the verified set (standard fixture, reduced learning rate)."
    citation = "Verifix (arXiv 2403.08618) compute comparison, 'Finetune' baseline"
    params = {"epochs": 50, "lr_scale": 0.1, "batch_size": 32}
    param_specs = {
        "epochs": Param(int, min=1, help="fine-tuning epochs on the verified set"),
        "lr_scale": Param(float, min=0, min_open=True, help="learning rate = recipe lr x lr_scale"),
        "batch_size": Param(int, min=1, help="batch size (capped at the verified set's size)"),
    }

    def correct(self, view):
        p = self.params
        model = copy.deepcopy(view.model)
        lr = float(view.recipe.get("lr", 0.1)) * float(p["lr_scale"])
        bs = max(1, min(int(p["batch_size"]), len(view.y_verified)))
        return view.train(model, view.x_verified, view.y_verified, epochs=int(p["epochs"]), lr=lr, batch_size=bs)


@hookimpl
def register_methods(register):
    register(FinetuneVerified())
