"""``standard``: empirical risk minimization with cross-entropy (optionally label-smoothed).

    loss_i = CE(f(x_i), y_i)

The harness's loop supplies SGD with momentum and Nesterov, weight decay, the schedule and the
training budget fixed by the profile (see ``coreset_bench.training``).
"""

import torch.nn.functional as F

from coreset_bench import hookimpl
from coreset_bench.kinds import TrainingMethod


class Standard(TrainingMethod):
    name = "standard"
    version = "1"
    summary = "Cross-entropy training (SGD, momentum, Nesterov, weight decay; schedule from the profile)."

    def batch_loss(self, model, x, y, ctx):
        ls = float(ctx.recipe.get("label_smoothing", 0.0))
        return F.cross_entropy(model(x), y, reduction="none", label_smoothing=ls)


@hookimpl
def register_methods(register):
    register(Standard())
