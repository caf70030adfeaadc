"""PGD adversarial training (Madry, Makelov, Schmidt, Tsipras, Vladu, ICLR 2018).

Per sample, loss = CE(f(x_adv), y) with

    x_adv = PGD_k(x):  x_0 uniform in B(x, eps) ∩ [lower, upper],
                       x_{t+1} = Proj(x_t + step_size * sign(grad_x CE(f(x_t), y))),  k = attack_steps

(normalized-gradient steps for an l2 recipe). As in MadryLab's ``robustness`` library, x_adv is
crafted with the model in eval mode and the modes are restored before the loss is computed; the
final iterate is used (no restarts, no early stop). The random start is drawn from the run's
generator. Settings come from the training recipe: ``eps``, ``step_size``, ``attack_steps``
(CIFAR convention 8/255, 2/255, 7 or 10), optional ``norm``, ``lower``, ``upper``. No parameters.
The step and projection are shared with the ``pgd`` attack (``coreset_bench.robust``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coreset_bench import hookimpl
from coreset_bench.kinds import TrainingMethod
from coreset_bench.robust import eval_mode, projected_gradient_ascent, random_start, threat_from_recipe


class PGDAT(TrainingMethod):
    name = "pgd-at"
    version = "1.0"
    summary = "Madry PGD adversarial training: cross-entropy on PGD examples from a random start."
    citation = (
        "Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to "
        "Adversarial Attacks. ICLR 2018."
    )
    params: dict = {}

    def adversarial(self, model, x, y, ctx) -> torch.Tensor:
        """The PGD examples used for training (model in eval mode, modes restored on return)."""
        threat = threat_from_recipe(ctx.recipe)
        x = x.detach()
        with eval_mode(model):
            start = random_start(x, threat, ctx.generator)
            return projected_gradient_ascent(
                lambda z: F.cross_entropy(model(z), y, reduction="none"), x, start, threat
            )

    def batch_loss(self, model, x, y, ctx):
        return F.cross_entropy(model(self.adversarial(model, x, y, ctx)), y, reduction="none")


@hookimpl
def register_methods(register):
    register(PGDAT())
