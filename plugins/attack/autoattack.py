"""AutoAttack (Croce & Hein, ICML 2020) through the ``pyautoattack`` package.

``version="standard"`` (the default, RobustBench's setting) runs APGD-CE (100 iterations),
APGD-T (DLR loss, 9 target classes), FAB-T (9 target classes) and Square (5000 queries) in
sequence, each on the points the previous ones did not break; a point counts as robust only if
every attack fails. The threat model's ``eps`` and norm (l-inf -> ``Linf``, l2 -> ``L2``) are
passed through; ``steps``/``step_size`` are not used (the attacks are parameter-free). The seed is
drawn from the cell's generator, and the global torch RNG (which pyautoattack reseeds) is
restored afterwards.

Adaptations, all no-ops for 10-class image data in [0, 1]:

* fewer than 10 classes: the target-class counts become ``classes - 1``; with fewer than 4
  classes APGD-T (whose targeted DLR loss needs 4 logits) is left out;
* inputs that are not (N, C, H, W) are viewed as (N, 1, 1, D) for Square and reshaped back;
  Square's l2 version needs images of at least 5 x 5 pixels and is left out for smaller inputs;
* a box other than [0, 1] is mapped affinely onto [0, 1] (eps scaled alike), since pyautoattack
  clips to [0, 1].

The result is projected onto the eps-ball ∩ [lower, upper] to remove float rounding.
Parameters: ``version`` (``standard``, ``plus`` or ``rand``; default ``standard``) and
``attacks``: a comma-separated subset of the version's attacks to run (default empty: all of
them). CPU profiles use ``attacks="apgd-ce,apgd-t"`` (the two gradient-based components, which
break almost every point standard AutoAttack breaks) because FAB-T and Square cost minutes per
model on a CPU; the profile's settings record the choice and GPU profiles run the full ensemble.
``targets``: the number of target classes of APGD-T and FAB-T (default 9, the standard setting;
the CPU study profile ``coreset/cifar10-study@1`` uses 3, the most likely wrong classes, to fit
500 attacked points per cell in its time budget, and says so in its description).

``backend`` (optional: absent from ``params`` unless set, so the cells of profiles that never set
it keep their keys): ``pyautoattack`` (the default: every attack through the package, as above) or
``batched``: the APGD components (``apgd-ce``, ``apgd-dlr``, ``apgd-t``) run as
``coreset_bench.apgd`` (the same algorithm, its runs batched over the points: APGD-T's target
classes one after another on the CPU as pyautoattack orders them, all in one batch on
accelerators; a point's runs stopped once it is broken, BatchNorm folded for the attack; seeded
from the cell's generator too), and any other component of the version (FAB-T, Square) then runs through pyautoattack on the
points still robust, in the version's order. ``tests/test_apgd.py`` and
``benchmarks/bench_attacks.py`` check that the two backends agree on the verdicts.
"""

from __future__ import annotations

import torch

from coreset_bench import hookimpl
from coreset_bench.kinds import AttackMethod, Param
from coreset_bench.robust import eval_mode, project

_NORMS = {"linf": "Linf", "l2": "L2"}
_BACKENDS = ("pyautoattack", "batched")


def _backend(value) -> str:
    if str(value) not in _BACKENDS:
        raise ValueError(f"autoattack: backend must be pyautoattack or batched, not {value!r}")
    return str(value)


class _Adapter(torch.nn.Module):
    """Maps pyautoattack's (N, 1, 1, D) or (N, C, H, W) inputs in [0, 1] to the model's inputs."""

    def __init__(self, model: torch.nn.Module, shape: tuple[int, ...], lower: float, upper: float):
        super().__init__()
        self.model = model
        self.shape = shape
        self.lower = lower
        self.scale = upper - lower

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.lower + self.scale * z if (self.lower, self.scale) != (0.0, 1.0) else z
        return self.model(x.reshape((z.shape[0],) + self.shape))


class AutoAttackMethod(AttackMethod):
    name = "autoattack"
    version = "1.0"
    summary = "AutoAttack: parameter-free ensemble of APGD-CE, APGD-T, FAB-T and Square (pyautoattack)."
    citation = (
        "Croce, Hein. Reliable evaluation of adversarial robustness with an ensemble of diverse "
        "parameter-free attacks. ICML 2020."
    )
    params = {"version": "standard", "attacks": "", "targets": 9}
    param_specs = {
        "version": Param(str, choices=("standard", "plus", "rand"), help="pyautoattack's version: which attacks run"),
        "attacks": Param(str, help="comma-separated subset of the version's attacks (e.g. apgd-ce,apgd-t); empty: all"),
        "targets": Param(int, min=1, help="target classes of APGD-T and FAB-T (standard: 9; capped at classes - 1)"),
    }

    def __init__(self, **params):
        backend = params.pop("backend", None)
        super().__init__(**params)
        if backend is not None:
            self.params = {**self.params, "backend": _backend(backend)}

    def with_params(self, **params):
        """As ``Method.with_params``, plus the optional ``backend`` (see the module docstring)."""
        backend = params.pop("backend", None)
        clone = super().with_params(**params)
        if backend is not None:
            clone.params = {**clone.params, "backend": _backend(backend)}
        return clone

    def perturb(self, model, x, y, threat, generator):
        from pyautoattack import AutoAttack

        norm = str(threat.norm).lower()
        if norm not in _NORMS:
            raise ValueError(f"autoattack supports the norms {', '.join(_NORMS)}, not {threat.norm!r}")
        version = str(self.params["version"])
        if version not in {"standard", "plus", "rand"}:
            raise ValueError(f"autoattack version must be standard, plus or rand, not {version!r}")
        x = x.detach()
        y = y.detach().long()
        if x.shape[0] == 0:
            return x.clone()
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        lower, upper = float(threat.lower), float(threat.upper)
        if upper <= lower:
            raise ValueError(f"empty input range [{lower}, {upper}]")
        scale = upper - lower
        z = (x - lower) / scale if (lower, scale) != (0.0, 1.0) else x
        if z.dim() != 4:
            z = z.reshape(z.shape[0], 1, 1, -1)
        if x.device.type == "cpu":
            rng = torch.random.fork_rng(devices=[])
        else:
            rng = torch.random.fork_rng(devices=[x.device.index or 0], device_type=x.device.type)
        with eval_mode(model), rng:
            net = _Adapter(model, tuple(x.shape[1:]), lower, upper)
            with torch.no_grad():
                n_cls = int(net(z[:1]).shape[1])
            aa = AutoAttack(net, device=x.device, eps=float(threat.eps) / scale, norm=_NORMS[norm],
                            seed=seed, version=version)
            aa.verbose = False
            try:
                wanted = int(self.params["targets"])
            except (TypeError, ValueError):
                wanted = 0
            if wanted < 1:
                raise ValueError(f"autoattack: targets must be a positive whole number of target classes (standard: 9), not {self.params['targets']!r}")
            targets = min(wanted, n_cls - 1)
            aa.apgd_targeted.n_target_classes = targets
            aa.fab.n_target_classes = targets
            dropped = set()
            if n_cls < 4:
                dropped |= {"apgd-t", "apgd-dlr"}
            if norm == "l2" and min(z.shape[2], z.shape[3]) < 5:
                dropped.add("square")
            subset = [a.strip() for a in str(self.params["attacks"]).split(",") if a.strip()]
            unknown = sorted(set(subset) - set(aa.attacks_to_run))
            if unknown:
                raise ValueError(f"autoattack: attacks {unknown} are not part of version {version!r} ({', '.join(aa.attacks_to_run)})")
            aa.attacks_to_run = [a for a in aa.attacks_to_run if a not in dropped and (not subset or a in subset)]
            if _backend(self.params.get("backend", "pyautoattack")) == "batched":
                z_adv = self._batched(net, aa, z, y, norm, targets, seed)
            else:
                z_adv, _ = aa.run_standard_evaluation(z, y, batch_size=int(z.shape[0]))
        x_adv = lower + scale * z_adv if (lower, scale) != (0.0, 1.0) else z_adv
        return project(x_adv.reshape(x.shape).to(x.dtype), x, threat)


    @staticmethod
    def _batched(net, aa, z, y, norm, targets, seed):
        """The APGD components of ``aa.attacks_to_run`` batched (``coreset_bench.apgd``), the
        components after them through pyautoattack on the points still robust."""
        from coreset_bench.apgd import autoattack_apgd

        order = list(aa.attacks_to_run)
        apgd = [a for a in order if a in ("apgd-ce", "apgd-dlr", "apgd-t")]
        rest = [a for a in order if a not in apgd]
        if apgd and rest and order.index(rest[0]) < order.index(apgd[-1]):
            raise ValueError(f"autoattack: the batched backend runs the APGD components first, but this version runs {rest[0]} before {apgd[-1]}")
        z_adv, robust = z.clone(), None
        if apgd:
            z_adv, robust = autoattack_apgd(net, z, y, eps=float(aa.epsilon), norm=norm, attacks=apgd, n_target_classes=targets, seed=seed)
        if rest:
            idx = robust.nonzero().squeeze(1) if robust is not None else torch.arange(z.shape[0], device=z.device)
            if idx.numel():
                aa.attacks_to_run = rest
                sub, _ = aa.run_standard_evaluation(z[idx], y[idx], batch_size=int(idx.numel()))
                z_adv[idx] = sub
        return z_adv


@hookimpl
def register_methods(register):
    register(AutoAttackMethod())
