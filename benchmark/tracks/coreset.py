"""The ``coreset`` track: which subset of the training pool should a model be trained on?

Contestants are ``selection`` plugins; fixtures are ``training`` plugins (standard, TRADES,
PGD-AT) and, for robust metrics, ``attack`` plugins. For every cell the harness:

1. builds the profile's fixed, seeded splits (validation carved per class from training data;
   the test split is the dataset's own, or a fixed held-out split for digits);
2. computes (or reads from the cache) the training signals the method declared, from one
   standard-training proxy run on the full pool;
3. hands the method a ``SelectionView`` (pool, validation split, signals, budget, seeded
   generators, a model factory; nothing of the test split) and validates its output;
4. trains a fresh model of the cell's architecture on the subset with the cell's training plugin
   (weighted when the method returned weights);
5. evaluates the final model (never a best epoch) on the test split: clean accuracy, per-class
   accuracy and, where the profile names attacks, adversarial accuracy.

Conventions (stored with each profile's settings, see ``methods-selection.md`` section 1):
the budget is the *kept* fraction of the pool (validation excluded), rounded to a count; class
balance is the method's own choice; the training budget on the subset is a fixed number of
optimizer steps (``budget_mode = iterations``, the CCS/D2 convention) so every subset gets the
same compute, unless a profile says ``epochs``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .. import data as D
from .. import models as M
from .. import signals as S
from .. import training as T
from ..kinds import Method, Selection, SelectionMethod, SelectionView, Signals, ThreatModel
from ..validation import validate_selection
from .base import ArtifactOut, Cell, CellContext, CellFailure, CellResult, Profile, Track, canonical_json

CONVENTIONS = {
    "budget_semantics": "kept fraction of the training pool (validation split excluded), rounded to a count",
    "class_balance": "method's choice (random: global uniform unless class_balanced=true)",
    "proxy_convention": "one standard-training run on the full pool per (dataset, arch, repeat); shared by all methods",
}

QUICK_PROXY = {"epochs": 12, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4}
QUICK_TRAIN = {"budget_mode": "iterations", "steps": 200, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4}
# digits: eps 0.1 in [0, 1] pixel units (about 1.6 of the 16 grey levels); TRADES/PGD-AT inner
# maximization of 5 steps of 0.025 (CPU budget), evaluation PGD of 20 steps
ROBUST_DIGITS = {"eps": 0.1, "step_size": 0.025, "attack_steps": 5, "beta": 6.0, "eval_steps": 20}
CIFAR_RECIPE = {"budget_mode": "iterations", "steps": 15000, "batch_size": 256, "lr": 0.1, "schedule": "cosine", "weight_decay": 5e-4}
CIFAR_PROXY = {"epochs": 40, "batch_size": 256, "lr": 0.1, "schedule": "cosine", "weight_decay": 5e-4}
CIFAR_ROBUST = {"eps": 8 / 255, "step_size": 2 / 255, "attack_steps": 10, "beta": 6.0}


def _profiles() -> list[Profile]:
    out = [
        Profile(
            "coreset",
            "tiny",
            1,
            {"dataset": ["digits"], "arch": ["mlp"], "budget": [0.2, 0.5], "training": ["standard"]},
            seeds=(0,),
            settings={
                "val_fraction": 0.1,
                "max_train_per_class": 40,
                "max_test": 200,
                "proxy": {"epochs": 3, "batch_size": 64, "lr": 0.05},
                "checkpoints": "all",
                "train": {"budget_mode": "iterations", "steps": 40, "batch_size": 32, "lr": 0.05},
                "robust": ROBUST_DIGITS,
                "attacks": [],
                "eval_subset": 100,
                **CONVENTIONS,
            },
            description="A seconds-long profile for tests: digits, MLP, two budgets, one seed.",
        ),
        Profile(
            "coreset",
            "quick",
            1,
            {"dataset": ["digits"], "arch": ["cnn-small"], "budget": [0.1, 0.3, 0.5], "training": ["standard", "trades"]},
            seeds=(0, 1),
            settings={
                "val_fraction": 0.1,
                "proxy": QUICK_PROXY,
                "checkpoints": "all",
                "train": QUICK_TRAIN,
                "robust": ROBUST_DIGITS,
                "attacks": ["pgd", "autoattack"],
                "attack_params": {"autoattack": {"attacks": "apgd-ce,apgd-t"}},
                "eval_subset": 100,
                **CONVENTIONS,
            },
            description="Embedded digits on the CPU (about 2 minutes for a method with its references on 2 cores, one cell per core): cnn-small, standard and TRADES training, PGD-20 and AutoAttack (APGD-CE + APGD-T) at eps=0.1.",
        ),
    ]
    out.append(
        Profile(
            "coreset",
            "cifar10-cpu",
            1,
            {"dataset": ["cifar10"], "arch": ["cnn-small"], "budget": [0.1, 0.3], "training": ["standard"]},
            seeds=(0,),
            settings={
                "val_fraction": 0.1,
                "max_train_per_class": 200,
                "max_test": 1000,
                "proxy": {"epochs": 10, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4},
                "checkpoints": "all",
                "train": {"budget_mode": "iterations", "steps": 300, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4},
                "robust": {"eps": 8 / 255, "step_size": 2 / 255, "attack_steps": 5, "beta": 6.0, "eval_steps": 10},
                "attacks": ["pgd"],
                "eval_subset": 500,
                **CONVENTIONS,
            },
            description="A CPU-sized CIFAR-10 check on real images (200 per class, cnn-small, PGD-10 at 8/255); use --dataset imagefolder:PATH for the JPEG copy.",
        )
    )
    for ds in ("cifar10", "cifar100"):
        out.append(
            Profile(
                "coreset",
                ds,
                1,
                {
                    "dataset": [ds],
                    "arch": ["resnet18", "fastnet"],
                    "budget": [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7],
                    "training": ["standard", "trades"],
                },
                seeds=(0, 1, 2),
                settings={
                    "val_fraction": 0.02,
                    "proxy": CIFAR_PROXY,
                    "checkpoints": [10, 20, 30, 40],
                    "train": CIFAR_RECIPE,
                    "robust": CIFAR_ROBUST,
                    "attacks": ["pgd", "autoattack"],
                    "eval_subset": 1000,
                    **CONVENTIONS,
                },
                description=f"{ds.upper()} on a GPU: ResNet-18 and fastnet, seven budgets, three seeds, standard and TRADES training.",
                device="cuda",
            )
        )
    out.extend(_signal_keeping_profiles())
    return out


def threat_from_dataset(dataset: str, **steps: Any) -> dict[str, Any]:
    """A profile's ``robust`` settings: the ``eps`` and ``step_size`` the built-in ``dataset``
    declares (``data.builtin_threat_model``, not the plugin registry, so a profile's settings
    never depend on what is installed), plus the profile's step counts and TRADES ``beta``."""
    return {**D.builtin_threat_model(dataset), **steps}


#: the GPU @2 proxy records logits and embeddings after each of the first 30 epochs and the last:
#: TDDS's trajectory (T = 30 epochs, windows of 10), EL2N/GraNd's epochs 1-10 (CCS's ``max_epoch``)
#: and the final model; epochs 31-39 are used by no method
GPU_CHECKPOINTS_V2 = [*range(1, 31), int(CIFAR_PROXY["epochs"])]


def _signal_keeping_profiles() -> list[Profile]:
    """Version 2 of the CIFAR profiles: each method gets the signal its paper uses (issue 20, item 5).

    * per-epoch checkpoints: TDDS sees 30 consecutive epochs (window 10), EL2N and GraNd epochs
      1-10; version 1 recorded only epochs 10/20/30/40;
    * validation of 10 % of the training data per class: 500 images per class on CIFAR-10 and 50
      on CIFAR-100 (CLD's split; version 1 had 10 per class on CIFAR-100), 50 per class on the CPU
      profile;
    * CCS's beta and D2-pruning's mislabel ratio follow the budget (the methods' ``"auto"``
      default, read from the kept fraction);
    * the threat model is the dataset's (``threat_from_dataset``).
    """
    keeps = "per-epoch logits and embeddings (epochs 1-30 and 40: TDDS's 30-epoch window, EL2N/GraNd's epochs 1-10), {val} validation images per class (CLD/LTC/GLISTER's class reference), CCS beta and D2 mislabel ratio by budget"
    out = [
        Profile(
            "coreset",
            "cifar10-cpu",
            2,
            {"dataset": ["cifar10"], "arch": ["cnn-small"], "budget": [0.1, 0.3], "training": ["standard"]},
            seeds=(0, 1, 2),
            settings={
                "val_fraction": 0.2,
                "max_train_per_class": 250,
                "max_test": 1000,
                "proxy": {"epochs": 30, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4},
                "checkpoints": "all",
                "train": {"budget_mode": "iterations", "steps": 300, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4},
                "robust": threat_from_dataset("cifar10", attack_steps=5, beta=6.0, eval_steps=10),
                "attacks": ["pgd"],
                "eval_subset": 500,
                **CONVENTIONS,
            },
            description=(
                "A CPU-sized CIFAR-10 check on real images (250 per class: 200 pool, 50 validation; cnn-small, three seeds, PGD-10), "
                "threat model L∞ 8/255 with 2/255 steps (from the dataset). Keeps each method's signal: a 30-epoch proxy with "
                "logits and embeddings every epoch (TDDS's 30-epoch window, EL2N/GraNd's epochs 1-10), 50 validation images per "
                "class, CCS beta and D2 mislabel ratio by budget. For the JPEG copy: --profile cifar10-cpu --dataset imagefolder:PATH."
            ),
        )
    ]
    for ds, per_class in (("cifar10", 500), ("cifar100", 50)):
        out.append(
            Profile(
                "coreset",
                ds,
                2,
                {
                    "dataset": [ds],
                    "arch": ["resnet18", "fastnet"],
                    "budget": [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7],
                    "training": ["standard", "trades"],
                },
                seeds=(0, 1, 2),
                settings={
                    "val_fraction": 0.1,
                    "proxy": CIFAR_PROXY,
                    "checkpoints": GPU_CHECKPOINTS_V2,
                    "train": CIFAR_RECIPE,
                    "robust": threat_from_dataset(ds, attack_steps=10, beta=6.0),
                    "attacks": ["pgd", "autoattack"],
                    "eval_subset": 1000,
                    **CONVENTIONS,
                },
                description=(
                    f"{ds.upper()} on a GPU: ResNet-18 and fastnet, seven budgets, three seeds, standard and TRADES training, "
                    f"threat model L∞ 8/255 with 2/255 steps (from the dataset). Keeps {keeps.format(val=per_class)}."
                ),
                device="cuda",
            )
        )
    return out



class CoresetTrack(Track):
    name = "coreset"
    summary = "Train on a subset chosen by the method; report clean and adversarial test accuracy at each budget."
    contestant_kind = "selection"
    fixtures = ("training", "attack")
    primary_metric = "autoattack_acc"
    secondary_metrics = ("clean_acc", "pgd_acc")
    metric_directions = {"autoattack_acc": "max", "clean_acc": "max", "pgd_acc": "max", "fgsm_acc": "max"}
    baseline_method = "random"
    reference_methods = ("random", "full")

    def profiles(self) -> list[Profile]:
        return _profiles()

    def cost_hint(self, cell: Cell) -> float:
        """Adversarial training (an inner maximization per step) costs about three standard cells."""
        return 1.0 if cell.axes.get("training", "standard") == "standard" else 3.0

    def primary_for(self, profile: Profile) -> str:
        """AutoAttack accuracy where the profile attacks, clean accuracy where it does not."""
        return "autoattack_acc" if "autoattack" in profile.settings.get("attacks", []) else "clean_acc"

    def cells(self, profile: Profile, method: Method) -> list[Cell]:
        fixed = getattr(method, "fixed_fraction", None)
        if fixed is None:
            return super().cells(profile, method)
        prof = Profile(profile.track, profile.name, profile.version, {**profile.axes, "budget": [float(fixed)]}, profile.seeds, profile.settings)
        return [Cell(c.track, profile.id, c.method, c.method_version, c.params, c.axes, c.repeat) for c in super().cells(prof, method)]

    def run_cell(self, cell: Cell, method: Method, ctx: CellContext) -> CellResult:
        from .. import registry as plugins

        assert isinstance(method, SelectionMethod)
        profile = self.profile(cell.profile)
        st = profile.settings
        ax = cell.axes
        device = ctx.device
        torch.manual_seed(cell.seed)
        sp = self.splits(profile, str(ax["dataset"]), ctx)
        ds = sp.dataset
        n_pool = len(sp.y_pool)
        budget = min(n_pool, max(1, int(round(float(ax["budget"]) * n_pool))))
        arch = str(ax["arch"])
        repeat_seed = int(hashlib.sha256(canonical_json([profile.id, ax["dataset"], arch, cell.repeat]).encode()).hexdigest()[:8], 16) % (2**31)

        def factory(seed: int = repeat_seed) -> torch.nn.Module:
            return M.build(arch, ds.shape, ds.num_classes, ds.mean, ds.std, seed).to(device)

        standard = plugins.method("standard")
        # ---- signals (shared proxy run) -------------------------------------------------------
        wanted = set(method.signals)
        epochs = int(st["proxy"]["epochs"])
        ck = st.get("checkpoints", "all")
        ck_epochs = tuple(range(1, epochs + 1)) if ck == "all" else tuple(int(e) for e in ck)
        spec = S.ProxySpec(
            dataset=str(ax["dataset"]),
            split={"profile": profile.id, "val_fraction": st.get("val_fraction"), "max_train_per_class": st.get("max_train_per_class"), "n_pool": n_pool},
            arch=arch,
            recipe=dict(st["proxy"]),
            seed=repeat_seed,
            checkpoint_epochs=ck_epochs,
        )
        ctx.progress("signals", 0.0)
        bundle = S.compute_signals(
            spec,
            (wanted | set(ctx.prefetch_signals)) if wanted else wanted,
            x_pool=sp.x_pool,
            y_pool=sp.y_pool,
            x_val=sp.x_val,
            y_val=sp.y_val,
            num_classes=ds.num_classes,
            model_factory=factory,
            training=standard,
            pad=ds.crop_pad,
            hflip=ds.hflip,
            cache_dir=ctx.cache_dir,
            progress=lambda what, f: ctx.progress("proxy", f),
        )
        # ---- selection ----------------------------------------------------------------------
        gen = torch.Generator().manual_seed(cell.seed)
        view = SelectionView(
            x=sp.x_pool,
            y=sp.y_pool,
            x_val=sp.x_val,
            y_val=sp.y_val,
            num_classes=ds.num_classes,
            budget=budget,
            fraction=float(ax["budget"]),
            signals=Signals(S.restrict(bundle.arrays, wanted), method=method.name),
            seed=cell.seed,
            generator=gen,
            rng=np.random.default_rng(cell.seed),
            model_factory=lambda: factory(cell.seed),
            device=device,
        )
        ctx.progress("select", 0.0)
        t0 = time.perf_counter()
        with D.contestant_guard(method.name):
            raw = method.select(view)
        select_s = time.perf_counter() - t0
        try:
            sel: Selection = validate_selection(raw, view, method)
        except ValueError as exc:
            raise CellFailure(f"invalid output of plugin {method.name!r}: {exc}") from None
        # ---- training -----------------------------------------------------------------------
        training_name = str(ax.get("training", "standard"))
        trainer = plugins.method(training_name)
        recipe = {**dict(st["train"]), **dict(st.get("robust", {}))}
        idx_t = torch.from_numpy(sel.indices).to(device)
        model = factory(cell.seed + 1)
        weights = torch.from_numpy(sel.weights).float() if sel.weights is not None else None
        ctx.progress("train", 0.0)
        t1 = time.perf_counter()
        T.train(
            model,
            sp.x_pool[idx_t],
            sp.y_pool[idx_t],
            method=trainer,
            recipe=recipe,
            num_classes=ds.num_classes,
            seed=cell.seed,
            weights=weights,
            pad=ds.crop_pad,
            hflip=ds.hflip,
            progress=lambda what, f: ctx.progress("train", f),
        )
        training_s = time.perf_counter() - t1
        # ---- evaluation ---------------------------------------------------------------------
        ctx.progress("evaluate", 0.0)
        t2 = time.perf_counter()
        acc = T.accuracy(model, sp.x_test, sp.y_test, ds.num_classes)
        metrics: dict[str, float] = {"clean_acc": acc["acc"]}
        for c, a in enumerate(acc["per_class"]):
            metrics[f"class_acc_{c}"] = a
        attacks = list(st.get("attacks", []))
        if attacks:
            metrics.update(self._robust_metrics(model, sp, profile, attacks, cell.seed))
        evaluation_s = time.perf_counter() - t2
        hist = np.bincount(sp.y_pool.cpu().numpy()[sel.indices], minlength=ds.num_classes)
        artifacts = [ArtifactOut.npy("indices", "indices.npy", np.sort(sel.indices))]
        if sel.weights is not None:
            order = np.argsort(sel.indices)
            artifacts.append(ArtifactOut.npy("weights", "weights.npy", sel.weights[order].astype(np.float64)))
        if sel.scores is not None:
            artifacts.append(ArtifactOut.npy("scores", "scores.npy", np.asarray(sel.scores, dtype=np.float64)))
        metrics["subset_size"] = float(len(sel.indices))
        selection_s = bundle.proxy_s + select_s
        timings = {
            "proxy_s": bundle.proxy_s,
            "select_s": select_s,
            "selection_s": selection_s,
            "training_s": training_s,
            "evaluation_s": evaluation_s,
            "total_s": selection_s + training_s + evaluation_s,
        }
        info = {
            "budget": budget,
            "pool_size": n_pool,
            "realized_size": int(len(sel.indices)),
            "weighted": sel.weights is not None,
            "proxy_shared": bundle.shared,
            "proxy_key": spec.key if wanted else None,
            "signals": sorted(wanted),
            "class_histogram": hist.tolist(),
            "test_size": int(len(sp.y_test)),
            "subset_sha256": hashlib.sha256(np.sort(sel.indices).astype(np.int64).tobytes()).hexdigest(),
            "primary_metric": self.primary_for(profile),
            **{f"method_{k}": v for k, v in sel.info.items()},
        }
        return CellResult(metrics=metrics, timings=timings, artifacts=artifacts, info=info)

    def _robust_metrics(self, model: torch.nn.Module, sp: D.Splits, profile: Profile, attacks: Sequence[str], seed: int) -> dict[str, float]:
        from .. import registry as plugins
        from ..robust import evaluate_robustness

        st = profile.settings
        rb: Mapping[str, Any] = st.get("robust", {})
        n = min(int(st.get("eval_subset", 500)), len(sp.y_test))
        sub = D.stratified_subset(sp.y_test.cpu().numpy(), n, seed=0)  # fixed per profile, not per seed
        sub_t = torch.from_numpy(np.sort(sub)).to(sp.x_test.device)
        threat = ThreatModel(norm="linf", eps=float(rb["eps"]), step_size=float(rb["step_size"]), steps=int(rb.get("eval_steps", 20)))
        attack_params: Mapping[str, Mapping[str, Any]] = st.get("attack_params", {})
        atk = {a: plugins.method(a).with_params(**dict(attack_params.get(a, {}))) for a in attacks}
        res = evaluate_robustness(model, sp.x_test[sub_t], sp.y_test[sub_t], atk, threat, seed=seed, masking_check=True)
        return {k: float(v) for k, v in res.items() if k != "clean_acc"} | {"eval_subset_clean_acc": float(res.get("clean_acc", float("nan")))}
