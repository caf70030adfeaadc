"""PGD: projected gradient descent on the cross-entropy (Madry et al., ICLR 2018).

From a uniformly random point of the eps-ball around x (``random_start``), ``steps`` iterations of

    x_{t+1} = Proj_{B(x, eps) ∩ [lower, upper]}( x_t + step_size * d_t ),
    d_t = sign(grad_x CE(f(x_t), y))            (l-inf)
    d_t = grad / ||grad||_2                     (l2)

With ``restarts > 1`` the attack is repeated on the samples still classified correctly, keeping per
sample the first misclassified iterate, else the one of highest loss (the clean input is the first
candidate, so an already misclassified sample is returned unchanged).

Defaults: ``steps=None`` and ``step_size=None`` take the threat model's values (the benchmark's
CIFAR default is PGD-20, step 2/255 at eps 8/255), ``restarts=1``, ``random_start=True``.
The step, the projection and the loop live in ``coreset_bench.robust`` and are shared with the
``fgsm``, ``pgd-at`` and ``trades`` plugins.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from coreset_bench import hookimpl
from coreset_bench.kinds import AttackMethod, Param, ThreatModel
from coreset_bench.robust import eval_mode, pgd_attack


class PGD(AttackMethod):
    name = "pgd"
    version = "1.0"
    summary = "Projected gradient descent on the cross-entropy, random start, optional restarts (l-inf or l2)."
    citation = (
        "Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to "
        "Adversarial Attacks. ICLR 2018."
    )
    params = {"steps": None, "step_size": None, "restarts": 1, "random_start": True}
    param_specs = {
        "steps": Param(int, min=1, nullable=True, help="PGD steps (none: the threat model's)"),
        "step_size": Param(float, min=0, min_open=True, nullable=True, help="step size in input units (none: the threat model's)"),
        "restarts": Param(int, min=1, help="random restarts; the worst case per sample counts"),
        "random_start": Param(bool, help="start from a uniform point in the ball (Madry et al.)"),
    }

    def effective_threat(self, threat: ThreatModel) -> ThreatModel:
        """The threat model with this attack's ``steps``/``step_size`` overrides applied."""
        changes: dict[str, Any] = {}
        if self.params.get("steps") is not None:
            changes["steps"] = int(self.params["steps"])
        if self.params.get("step_size") is not None:
            changes["step_size"] = float(self.params["step_size"])
        return dataclasses.replace(threat, **changes) if changes else threat

    def perturb(self, model, x, y, threat, generator):
        with eval_mode(model):
            return pgd_attack(
                model,
                x,
                y,
                self.effective_threat(threat),
                generator,
                restarts=int(self.params["restarts"]),
                random_init=bool(self.params["random_start"]),
            )


@hookimpl
def register_methods(register):
    register(PGD())
