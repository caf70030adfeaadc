"""``dp-sgd``: differentially private SGD (Abadi et al., CCS 2016) with the settings of the
Curvature Clues / Privacy-Memorization-Curvature DP targets (``train/train_dp.py``: Opacus
``make_private_with_epsilon``, delta = 1e-5, max grad norm 1.0, RMSprop lr 1e-3, 20 epochs,
MultiStepLR x0.1 at 60 % and 80 %, batch 128, no augmentation, BatchNorm -> GroupNorm).

Each step, with Poisson sampling at rate q = 1 / ceil(N / batch_size) (Opacus's ``DPDataLoader``):

    g_i = d l(f(x_i), y_i) / d theta                       (per-sample, ``torch.func.vmap``)
    g   = ( sum_i g_i * min(1, C / ||g_i||) + N(0, sigma^2 C^2 I) ) / (q N)

and RMSprop steps on g. sigma is calibrated so that ``epochs / q`` steps reach the target
(epsilon, delta) with ``opacus.accountants.utils.get_noise_multiplier`` (binary search, stopping
within ``epsilon_tolerance`` 0.01 below the target), the calibration ``make_private_with_epsilon``
performs. The ``accountant`` parameter names the calibrating accountant:

- ``"prv"`` (default): Opacus's PRV accountant (Gopi, Lee & Wutschitz, NeurIPS 2021), the default
  of the reference's ``PrivacyEngine()`` in the Opacus this project pins (>= 1.5; checked on 1.6).
  It composes the privacy-loss distribution numerically and returns an upper bound within
  ``eps_error`` 0.01 of it: tight. Checked against an independent privacy-loss-distribution
  composition (both neighbouring directions) and Google's ``dp_accounting`` PLD accountant in
  ``tests/test_dp_accounting.py``: at the profiles' rates its sigma is 0.07-1.4 % above the sigma
  ``dp_accounting`` gives (the realized epsilon 0.1-1.6 % below the target), never below it.
- ``"rdp"``: Rényi DP (Mironov 2017), what version 1 of this plugin used: a valid but loose
  bound, 5-8 % more noise than PRV at the same target (at the profiles' rates), so the realized
  epsilon lies 8-9 % below the target.
- ``"gdp"`` is refused: Opacus's GDP accountant is the central-limit approximation of
  Bu, Dong, Long & Su (2020), not a bound, and under-noises: at q = 1/6, 120 steps, delta 1e-5
  its sigma for epsilon 1 / 4 / 8 / 16 realizes 1.02 / 4.25 / 8.64 / 16.32 under a tight
  accountant. Version 2 accepted it and reported epsilon with the same approximation, so the
  overshoot never showed.

Whatever the calibrator, the run reports the **realized** epsilon of the steps taken under the
tight PRV accountant (``epsilon``, with ``epsilon_accountant = "prv"``), sigma
(``noise_multiplier``) and the calibrator (``accountant``); an RDP-calibrated run also reports
RDP's own bound as ``epsilon_rdp``. ``realized_epsilon`` gives the PRV epsilon of a run's info,
also for runs stored by version 2 (which reported an RDP run's epsilon with RDP).
``epsilon = inf`` is the non-private reference of an epsilon sweep: the same loop (Poisson
sampling, RMSprop, schedule) with sigma = 0 and no clipping.
The per-sample gradients are computed with ``torch.func`` rather than Opacus's hooks (same
clipping and noise as Opacus's flat clipping with ``loss_reduction="mean"``);
``prepare_model`` swaps every BatchNorm for GroupNorm(min(32, C), C) as Opacus's
``ModuleValidator.fix`` does.

Settings come from the training recipe (``epsilon``, ``delta``, ``max_grad_norm``, ``epochs``,
``batch_size``, ``lr``, ``milestones``, ``gamma``), else from the parameters. The harness calls
``fit`` (its own loop: Poisson sampling and the accountant need it). Used inside the shared
training loop instead, ``batch_loss`` returns a surrogate whose gradient is the clipped, noised
mini-batch gradient with ``noise_multiplier`` from the recipe (no accounting: the shared loop
samples by shuffling, not Poisson).

Versions: 1 RDP calibration; 2 PRV by default (``accountant`` a parameter, ``gdp`` allowed, epsilon
reported by the calibrator); 3 ``gdp`` refused, epsilon always reported with PRV. Sigma of a
``prv`` or ``rdp`` run is the same in 2 and 3.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from coreset_bench import hookimpl
from coreset_bench.kinds import Param, TrainingMethod


def batchnorm_to_groupnorm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm{1,2,3}d in place by GroupNorm(min(32, C), C) (Opacus's rule)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            c = child.num_features
            setattr(model, name, nn.GroupNorm(math.gcd(min(32, c), c), c, affine=child.affine).to(next(child.buffers(), torch.zeros(0)).device))
        else:
            batchnorm_to_groupnorm(child)
    return model


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def clipped_grad_sum(model: nn.Module, x: torch.Tensor, y: torch.Tensor, max_norm: float, chunk: int = 64) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Sum over the batch of per-sample gradients clipped to L2 norm ``max_norm`` (all
    parameters together), and the per-sample norms before clipping."""
    from torch.func import functional_call, grad, vmap

    if _has_batchnorm(model):
        raise ValueError("dp-sgd needs per-sample gradients, which BatchNorm mixes across the batch; build the model through dp-sgd's prepare_model (GroupNorm)")
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss_fn(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_sample = vmap(grad(loss_fn), in_dims=(None, 0, 0))
    total = [torch.zeros_like(params[n]) for n in names]
    norms = []
    for i in range(0, len(x), chunk):
        g = per_sample(params, x[i : i + chunk], y[i : i + chunk])
        flat = torch.cat([g[n].flatten(1) for n in names], dim=1)
        norm = flat.norm(dim=1)
        factor = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        for j, n in enumerate(names):
            total[j] += torch.einsum("b,b...->...", factor, g[n])
        norms.append(norm)
    return total, (torch.cat(norms) if norms else torch.zeros(0))


def _noise(like: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.randn(like.shape, generator=generator, device="cpu") * std).to(like.device, like.dtype)


#: accountants that calibrate sigma (Opacus's names)
ACCOUNTANTS = ("prv", "rdp")
#: the accountant every run's realized epsilon is reported with
REPORTING_ACCOUNTANT = "prv"
#: why ``gdp`` is refused (realized epsilon of its sigma under PRV / PLD at q = 1/6, 120 steps)
GDP_REFUSED = (
    "'gdp' is refused: Opacus's GDP accountant is a central-limit approximation that under-noises "
    "(at q = 1/6, 120 steps, delta 1e-5 its sigma for epsilon 1/4/8/16 realizes 1.02/4.25/8.64/16.32); use 'prv' (the default) or 'rdp'"
)


def _accountant_problem(name: object) -> str | None:
    """What is wrong with ``name`` as dp-sgd's calibrating accountant (one phrase), or None."""
    if name == "gdp":
        return GDP_REFUSED
    if name not in ACCOUNTANTS:
        return f"expected one of {', '.join(map(repr, ACCOUNTANTS))}, got {name!r}"
    return None


def _accountant(name: str) -> str:
    problem = _accountant_problem(name)
    if problem is not None:
        raise ValueError(f"dp-sgd: accountant {problem}" if name == "gdp" else f"unknown DP accountant {name!r}; use one of {', '.join(ACCOUNTANTS)} (Opacus's accountants; 'gdp' is refused)")
    return name


@functools.lru_cache(maxsize=256)
def noise_multiplier_for(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str = "prv") -> float:
    """sigma reaching (epsilon, delta) after ``steps`` Poisson-subsampled Gaussian steps under
    ``accountant`` (Opacus's ``get_noise_multiplier``, as ``make_private_with_epsilon``)."""
    try:
        from opacus.accountants.utils import get_noise_multiplier
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("dp-sgd calibrates its noise with Opacus's accountants: pip install opacus") from exc
    with warnings.catch_warnings():  # Opacus's RDP "optimal order is the largest alpha" notice
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=float(epsilon), target_delta=float(delta), sample_rate=float(sample_rate), steps=int(steps), accountant=_accountant(accountant)))


@functools.lru_cache(maxsize=256)
def epsilon_spent(noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "prv") -> float:
    """The epsilon ``accountant`` (``prv``, tight, or ``rdp``, a looser bound) reports after
    ``steps`` steps at (sigma, q), for ``delta``."""
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=_accountant(accountant))
    acc.history.append((float(noise_multiplier), float(sample_rate), int(steps)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(acc.get_epsilon(float(delta)))


def realized_epsilon(info: Mapping[str, Any]) -> float | None:
    """The PRV (tight) epsilon of a ``fit`` run's info; None for a non-private run. A run that
    reported its epsilon with another accountant (an RDP run stored by version 2) is re-accounted
    from its sigma, sample rate, steps and delta."""
    if not float(info.get("private", 1.0)) or float(info.get("noise_multiplier", 0.0)) <= 0:
        return None
    if info.get("epsilon_accountant", info.get("accountant")) == REPORTING_ACCOUNTANT and info.get("epsilon") is not None:
        return float(info["epsilon"])
    return epsilon_spent(float(info["noise_multiplier"]), float(info["sample_rate"]), int(info["steps"]), float(info["delta"]), REPORTING_ACCOUNTANT)


class DPSGD(TrainingMethod):
    name = "dp-sgd"
    version = "3"
    summary = "DP-SGD: Poisson sampling, per-sample clipping (C=1), Gaussian noise calibrated to (epsilon, 1e-5) by Opacus's PRV accountant (or RDP; GDP refused), realized epsilon reported with PRV; RMSprop."
    citation = "Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang. Deep Learning with Differential Privacy. CCS 2016."
    params = {"epsilon": 8.0, "delta": 1e-5, "max_grad_norm": 1.0, "noise_multiplier": 1.0, "accountant": "prv", "epochs": 20, "batch_size": 128, "lr": 1e-3, "chunk": 64}
    param_specs = {
        "epsilon": Param(float, min=0, min_open=True, infinite=True, help="privacy budget; inf: the same loop without noise (the sweep's non-private reference)"),
        "delta": Param(float, min=0, max=1, min_open=True, max_open=True, help="privacy delta of the accountant"),
        "max_grad_norm": Param(float, min=0, min_open=True, help="per-sample clipping norm C"),
        "noise_multiplier": Param(float, min=0, help="sigma when a recipe fixes it instead of epsilon"),
        "accountant": Param(str, check=_accountant_problem, rule="one of 'prv', 'rdp' ('gdp' refused: it under-noises)", help="Opacus accountant calibrating sigma to (epsilon, delta); the realized epsilon is always reported with PRV"),
        "epochs": Param(int, min=1, help="training epochs (a recipe's value wins)"),
        "batch_size": Param(int, min=1, help="expected Poisson batch size (sample rate = batch_size / N)"),
        "lr": Param(float, min=0, min_open=True, help="RMSprop learning rate"),
        "chunk": Param(int, min=1, help="samples per per-sample-gradient chunk (memory only; results do not change)"),
    }
    #: the harness runs ``fit`` (this method's own loop) instead of the shared loop
    own_loop = True

    def _get(self, recipe: Mapping[str, Any], key: str) -> Any:
        v = recipe.get(key)
        return self.params[key] if v is None else v

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """The model DP-SGD trains: BatchNorm replaced by GroupNorm (in place; returned)."""
        return batchnorm_to_groupnorm(model)

    def fit(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, recipe: Mapping[str, Any], num_classes: int, seed: int, progress: Callable[[str, float], None] | None = None) -> dict[str, Any]:
        """Train ``model`` (already through ``prepare_model``) in place with DP-SGD; returns the
        run's info: sigma (``noise_multiplier``), the realized ``epsilon`` under PRV
        (``epsilon_accountant``), the calibrating ``accountant`` (and its own bound
        ``epsilon_<accountant>`` when it is not PRV), steps, q."""
        n = len(y)
        if n == 0:
            raise ValueError("cannot train on an empty set")
        if not float(self._get(recipe, "epsilon")) > 0:
            raise ValueError(f"dp-sgd: epsilon must be > 0 (or inf for the non-private reference), got {self._get(recipe, 'epsilon')!r}")
        bs = int(self._get(recipe, "batch_size"))
        epochs = int(self._get(recipe, "epochs"))
        eps, delta = float(self._get(recipe, "epsilon")), float(self._get(recipe, "delta"))
        clip = float(self._get(recipe, "max_grad_norm"))
        n_batches = max(1, math.ceil(n / bs))
        q = 1.0 / n_batches
        steps = epochs * n_batches
        accountant = _accountant(str(self._get(recipe, "accountant")))
        private = math.isfinite(eps)
        if not private:
            sigma, clip = 0.0, math.inf
        else:
            sigma = noise_multiplier_for(eps, delta, q, steps, accountant)
        gen = torch.Generator().manual_seed(int(seed))
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.RMSprop(params, lr=float(self._get(recipe, "lr")))
        milestones = [int(round(m * epochs)) for m in recipe.get("milestones", (0.6, 0.8))]
        gamma = float(recipe.get("gamma", 0.1))
        model.train()
        t0 = time.perf_counter()
        expected = q * n
        chunk = int(self.params["chunk"])
        for step in range(steps):
            epoch = step // n_batches
            lr = float(self._get(recipe, "lr")) * gamma ** sum(epoch >= m for m in milestones)
            for g in opt.param_groups:
                g["lr"] = lr
            take = (torch.rand(n, generator=gen) < q).to(x.device)
            xb, yb = x[take], y[take]
            if len(yb):
                sums, _ = clipped_grad_sum(model, xb, yb, clip, chunk)
            else:
                sums = [torch.zeros_like(p) for p in params]
            for p, s in zip(params, sums):
                p.grad = (s + _noise(p, sigma * clip, gen)) / expected if private else s / expected
            opt.step()
            opt.zero_grad(set_to_none=True)
            if progress is not None and step % 10 == 0:
                progress("train", step / steps)
        model.eval()
        return {
            "train_s": time.perf_counter() - t0,
            "steps": float(steps),
            "epochs": float(epochs),
            "noise_multiplier": sigma,
            "sample_rate": q,
            "delta": delta,
            "private": float(private),
            # non-private: no epsilon, no clipping (JSON has no infinity)
            **(self._privacy_info(sigma, q, steps, delta, eps, clip, accountant) if private else {"accountant": "none"}),
        }

    @staticmethod
    def realized_epsilon(info: Mapping[str, Any]) -> float | None:
        """The PRV epsilon of one model's ``fit`` info (``realized_epsilon``); the privacy track
        reports it."""
        return realized_epsilon(info)

    @staticmethod
    def _privacy_info(sigma: float, q: float, steps: int, delta: float, target: float, clip: float, accountant: str) -> dict[str, Any]:
        """Realized epsilon under PRV whatever the calibrator, and the calibrator's own bound."""
        out: dict[str, Any] = {
            "epsilon": epsilon_spent(sigma, q, steps, delta, REPORTING_ACCOUNTANT),
            "epsilon_accountant": REPORTING_ACCOUNTANT,
            "target_epsilon": target,
            "max_grad_norm": clip,
            "accountant": accountant,
        }
        if accountant != REPORTING_ACCOUNTANT:
            out[f"epsilon_{accountant}"] = epsilon_spent(sigma, q, steps, delta, accountant)
        return out

    def batch_loss(self, model, x, y, ctx):
        """Surrogate per-sample loss whose mean has the clipped, noised gradient (shared loop)."""
        clip = float(self._get(ctx.recipe, "max_grad_norm"))
        sigma = float(self._get(ctx.recipe, "noise_multiplier"))
        params = [p for p in model.parameters() if p.requires_grad]
        sums, _ = clipped_grad_sum(model, x, y, clip, int(self.params["chunk"]))
        g = [(s + _noise(p, sigma * clip, ctx.generator)) / len(y) for p, s in zip(params, sums)]
        surrogate = sum((p * gi.detach()).sum() for p, gi in zip(params, g))
        return surrogate.expand(len(y))


@hookimpl
def register_methods(register):
    register(DPSGD())
