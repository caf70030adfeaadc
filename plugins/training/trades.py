"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, ICML 2019), as in yaodongyu/TRADES ``trades.py``.

Per sample, with p = softmax(f(x)) and q = softmax(f(x_adv)):

    loss = CE(f(x), y) + beta * KL(p || q),      KL(p || q) = sum_k p_k (log p_k - log q_k)

(the reference's ``KLDivLoss(log_softmax(f(x_adv)), softmax(f(x)))``, i.e. the "robust KL" term
between the adversarial and the clean prediction; gradients flow through both terms, as there).
x_adv is crafted with the model in eval mode: start at x + 0.001 * N(0, I) (drawn from the run's
generator), then ``attack_steps`` steps of size ``step_size`` of sign-gradient ascent on the same
KL against the clean prediction, each projected onto the eps-ball ∩ [lower, upper]; the model's
modes are then restored (train mode) and the loss is computed.

Settings come from the training recipe: ``eps``, ``step_size``, ``attack_steps`` (reference CIFAR
values 0.031, 0.007, 10), optional ``norm`` (l-inf by default; l2 uses normalized-gradient steps
rather than the reference's inner SGD), and ``beta`` when the recipe sets it. The ``beta``
parameter (default 6.0, the value usually reported for CIFAR-10; the reference script's
``--beta`` defaults to 1.0) applies when the recipe has no ``beta``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, TrainingMethod
from coreset_bench.robust import eval_mode, noise_like, projected_gradient_ascent, threat_from_recipe


def _kl(logp_clean: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(p || q) from log-probabilities (finite where p underflows to 0)."""
    return (logp_clean.exp() * (logp_clean - logq)).sum(dim=1)


class TRADES(TrainingMethod):
    name = "trades"
    version = "1.0"
    summary = "TRADES: clean cross-entropy plus beta times the KL between clean and adversarial predictions."
    citation = (
        "Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan. Theoretically Principled Trade-off between "
        "Robustness and Accuracy. ICML 2019."
    )
    params = {"beta": 6.0}
    param_specs = {"beta": Param(float, min=0, help="weight of the KL robustness term (1/lambda in the paper)")}

    def beta(self, recipe) -> float:
        """The recipe's ``beta`` when it sets one, else this method's ``beta`` parameter."""
        value = recipe.get("beta")
        return float(self.params["beta"] if value is None else value)

    def adversarial(self, model, x, ctx) -> torch.Tensor:
        """The TRADES inner maximization (model in eval mode, modes restored on return)."""
        threat = threat_from_recipe(ctx.recipe)
        x = x.detach()
        with eval_mode(model):
            with torch.no_grad():
                logp_clean = F.log_softmax(model(x), dim=1)
            start = x + 0.001 * noise_like(x, ctx.generator)
            return projected_gradient_ascent(
                lambda z: _kl(logp_clean, F.log_softmax(model(z), dim=1)), x, start, threat
            )

    def batch_loss(self, model, x, y, ctx):
        x_adv = self.adversarial(model, x, ctx)
        logits = model(x)
        logits_adv = model(x_adv)
        natural = F.cross_entropy(logits, y, reduction="none")
        robust = _kl(F.log_softmax(logits, dim=1), F.log_softmax(logits_adv, dim=1))
        return natural + self.beta(ctx.recipe) * robust


@hookimpl
def register_methods(register):
    register(TRADES())
