"""FGSM: the fast gradient sign method (Goodfellow, Shlens, Szegedy, ICLR 2015).

One step of size eps from the clean input, then projection onto [lower, upper]:

    x_adv = clip_[lower, upper]( x + eps * sign(grad_x CE(f(x), y)) )          (l-inf)
    x_adv = clip_[lower, upper]( x + eps * grad / ||grad||_2 )                  (l2, "FGM")

No parameters; the threat model's ``steps`` and ``step_size`` are not used. It shares the step and
projection of ``coreset_bench.robust`` with PGD (it is one PGD step of size eps from x).
"""

from __future__ import annotations

import dataclasses

import torch.nn.functional as F

from coreset_bench import hookimpl
from coreset_bench.kinds import AttackMethod
from coreset_bench.robust import eval_mode, projected_gradient_ascent


class FGSM(AttackMethod):
    name = "fgsm"
    version = "1.0"
    summary = "Fast gradient sign method: one eps-sized signed-gradient step on the cross-entropy."
    citation = (
        "Goodfellow, Shlens, Szegedy. Explaining and Harnessing Adversarial Examples. ICLR 2015."
    )
    params: dict = {}

    def perturb(self, model, x, y, threat, generator):
        one_step = dataclasses.replace(threat, steps=1, step_size=float(threat.eps))
        with eval_mode(model):
            return projected_gradient_ascent(
                lambda z: F.cross_entropy(model(z), y, reduction="none"), x, x, one_step
            )


@hookimpl
def register_methods(register):
    register(FGSM())
