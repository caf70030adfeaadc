"""The ``coreset`` track: which subset of the training pool should a model be trained on?

Contestants are ``selection`` plugins; fixtures are ``training`` plugins (standard, TRADES,
PGD-AT) and, for robust metrics, ``attack`` plugins. For every cell the harness:

1. builds the profile's fixed, seeded splits (validation carved per class from training data;
   the test split is the dataset's own, or a fixed held-out split for digits);
2. computes (or reads from the cache) the training signals the method declared, from one
   standard-training proxy run on the full pool;
3. hands the method a ``SelectionView`` (pool, validation split, signals, budget, seeded
   generators, a model factory; nothing of the test split) in the contestant worker, a separate
   process that never loaded the test split (``coreset_bench.contestant``), and validates the
   output it sends back;
4. trains a fresh model of the cell's architecture on the subset with the cell's training plugin
   (weighted when the method returned weights);
5. evaluates the final model (never a best epoch) on the test split: clean accuracy, per-class
   accuracy and, where the profile names attacks, adversarial accuracy.

Steps 1-2 are the track's ``fixture`` (the proxy run served on demand, for the signals the
method declared), 3 its ``view`` and the contest (``coreset_bench.contest``), 4-5 its
``evaluate``: the cell pipeline of ``Track.run_cell``.

Side effects (issue 40): a profile with ``settings["side_effects"]`` holds a per-class part of
the pool out of every cell and adds, per cell, the membership leakage of the trained model for
its own subset against that held-out split, the worst-class clean and robust accuracy and the
expected calibration error; one with ``settings["label_noise"]`` flips a seeded, hidden share
of the pool's labels (exact count per class) and records the share of flipped samples each
selection keeps. See ``coreset_bench.tracks.coreset.side_effects``. Published profiles have neither.

Conventions (stored with each profile's settings, see ``methods-selection.md`` section 1):
the budget is the *kept* fraction of the pool (validation excluded), rounded to a count; class
balance is the method's own choice; the training budget on the subset is a fixed number of
optimizer steps (``budget_mode = iterations``, the CCS/D2 convention) so every subset gets the
same compute, unless a profile says ``epochs``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ... import data as D
from ... import models as M
from . import side_effects as SE
from ... import signals as S
from ... import training as T
from ...claims import BEST_NON_SEED, NON_INFERIORITY, SUPERIORITY, Claim, Paper, Row
from ...contest import ContestResult
from ...kinds import Method, Selection, SelectionView, Signals, ThreatModel
from ..base import ArtifactOut, Cell, CellContext, CellResult, Profile, Track, canonical_json

#: ``info`` keys a coreset cell writes (plus ``method_<key>``, the method's own ``info``): the
#: entry validator rejects any other key (``Track.info_keys``)
CORESET_INFO_KEYS = frozenset({
    "budget", "pool_size", "realized_size", "weighted", "proxy_shared", "proxy_key", "signals", "class_histogram",
    "test_size", "subset_sha256", "primary_metric", "flags", "pred_histogram", "chance_floor", "per_point",
    "underrepresented_classes", "never_predicted_classes",
    # side effects of a subset (issue 40): the protocol of the leakage/calibration metrics, and a
    # noisy pool's declared noise and realised flipped share (never which samples were flipped)
    "side_effects", "label_noise", "noise_pool_share",
})

#: how the run's display names an attack step
_ATTACK_LABELS = {"pgd": "PGD", "autoattack": "AutoAttack", "fgsm": "FGSM"}

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
# quick@2 (issue 20): a threat model at which the undefended full-data model keeps a measurable
# robust accuracy (calibrated with benchmarks/calibrate_eps.py, see benchmarks/RESULTS.md), every
# one of the 539 held-out test points attacked with PGD-20, AutoAttack (and the PGD-100
# gradient-masking check) on a class-stratified 60 of them drawn per repeat, three seeds, two
# budgets, degenerate-model flags. Sized so the main job stays near 3 minutes on 2 idle cores
# (with 200 steps and 100 AutoAttack points it took 4.5 minutes): APGD-T on robust models and
# TRADES training dominate a cell.
ROBUST_DIGITS_2 = {"eps": 0.075, "step_size": 0.01875, "attack_steps": 5, "beta": 6.0, "eval_steps": 20}
QUICK2_SEEDS = (0, 1, 2)
QUICK2_AA_POINTS = 60
#: quick@2's training recipe: quick@1's with 120 optimizer steps instead of 200 (TRADES training and
#: AutoAttack on robust models dominate a cell; this keeps the main job near 3 minutes)
QUICK2_TRAIN = {**QUICK_TRAIN, "steps": 120}
#: a class whose share of the subset is below this fraction of its share of the pool is flagged
COVERAGE_FLAG_RATIO = 0.25
QUICK2_DESCRIPTION = (
    "Embedded digits on the CPU, version 2 (issue 20): cnn-small, budgets 0.1 and 0.3, standard and TRADES training, 3 seeds; "
    "threat model L-inf eps=0.075 in [0, 1] pixels (calibrated: the undefended full-data model keeps 34 % AutoAttack accuracy, TRADES 73 %; "
    "benchmarks/RESULTS.md); 120 training steps; PGD-20 on all 539 held-out test points, AutoAttack (APGD-CE + APGD-T) and the PGD-100 masking check on 60 of them drawn "
    "per repeat; cells whose subset starves a class or whose model never predicts a class are flagged and never lead."
)
#: quick@3 (issue 41): quick@2 with AutoAttack (APGD-CE + APGD-T, standard 9 target classes) on every
#: one of the 539 attacked test points of a repeat, by the batched attack (``coreset_bench.apgd``,
#: the autoattack plugin's ``backend="batched"``), all points in one batch
QUICK3_DESCRIPTION = (
    "Embedded digits on the CPU, version 3 (issue 41): quick@2's matrix, recipe and threat model (cnn-small, budgets 0.1 and 0.3, standard and TRADES "
    "training, 3 seeds, L-inf eps=0.075, 120 training steps) with PGD-20 and AutoAttack (APGD-CE + APGD-T, 9 target classes, the batched implementation "
    "checked against pyautoattack) on all 539 held-out test points, the PGD-100 masking check on 60 of them drawn per repeat; cells whose subset starves "
    "a class or whose model never predicts a class are flagged and never lead."
)
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
            "quick",
            2,
            {"dataset": ["digits"], "arch": ["cnn-small"], "budget": [0.1, 0.3], "training": ["standard", "trades"]},
            seeds=QUICK2_SEEDS,
            settings={
                "val_fraction": 0.1,
                "dataset_args": {"digits": "test=0.3"},
                "proxy": QUICK_PROXY,
                "checkpoints": "all",
                "train": QUICK2_TRAIN,
                "robust": ROBUST_DIGITS_2,
                "attacks": ["pgd", "autoattack"],
                "attack_params": {"autoattack": {"attacks": "apgd-ce,apgd-t"}},
                "eval_subset": "all",
                "attack_subsets": {"autoattack": QUICK2_AA_POINTS},
                "masking_subset": QUICK2_AA_POINTS,
                "eval_subset_per_repeat": True,
                "coverage_flag_ratio": COVERAGE_FLAG_RATIO,
                **CONVENTIONS,
            },
            description=QUICK2_DESCRIPTION,
        )
    )
    quick2 = out[-1]
    out.append(
        Profile(
            "coreset",
            "quick",
            3,
            dict(quick2.axes),
            seeds=quick2.seeds,
            # quick@2's settings, AutoAttack on every attacked point by the batched attack (issue
            # 41), and the side effects of each subset on the clean pool, a fifth held out (issue 40)
            settings={
                **{k: v for k, v in quick2.settings.items() if k != "attack_subsets"},
                "attack_params": {"autoattack": {"attacks": "apgd-ce,apgd-t", "backend": "batched"}},
                "attack_batch_size": 1024,
                "side_effects": SIDE_EFFECTS_DIGITS,
            },
            description=QUICK3_DESCRIPTION + SIDE_DESCRIPTION.format(heldout="a fifth of each class's pool"),
        )
    )
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
    out.extend(_study_profiles())
    out.extend(_side_effect_profiles(out))
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



#: ``coreset/cifar10-study@1`` (issue 21): the first real-image board that runs on a 2-core CPU.
#: Sizing (one torch thread per cell, two cells at once): a forward+backward of cnn-small on one
#: 32x32 image costs about 1 ms, a TRADES step (5 inner steps) about 6.7 standard ones, and
#: APGD-T about 100 passes per target class on every point still robust after APGD-CE.
STUDY_SEEDS = (0, 1, 2)
STUDY_TRAIN = {"budget_mode": "iterations", "steps": 200, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4}
STUDY_PROXY = {"epochs": 12, "batch_size": 128, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4}
STUDY_DESCRIPTION = (
    "CIFAR-10 on the CPU, a study of the seed methods on real images (issue 21): the CIFAR-10 JPEG copy (dataset cifar10-jpeg), "
    "a class-balanced pool of 10,000 training images (1,000 per class) plus 100 validation images per class, cnn-small, "
    "budgets 0.1 and 0.3, standard and TRADES training (5 inner steps), 3 seeds, 200 optimizer steps of 64 per model (every subset gets the same compute: "
    "13 epochs of a 10 % subset, 4 of a 30 % one, 1.3 of the full pool); a 12-epoch proxy with per-epoch signals; "
    "threat model L∞ 8/255 with 2/255 steps; clean accuracy on all 10,000 test images, PGD-20 and AutoAttack (APGD-CE + APGD-T with "
    "3 target classes, a CPU adaptation of the standard 9) on 500 class-stratified test points drawn per seed, the PGD-100 masking check on 100. "
    "Models this small and this briefly trained are far from the papers' ResNets: the board compares selections at a fixed small compute, "
    "it does not reproduce the papers' absolute numbers. Measured: the 11 methods of issue 21 (126 cells, three 12-epoch proxies) took "
    "2 h 05 min wall on 2 cores shared with other jobs, 12,347 CPU-seconds (about 1 h 45 min on 2 idle cores)."
)


def _study_profiles() -> list[Profile]:
    return [
        Profile(
            "coreset",
            "cifar10-study",
            1,
            {"dataset": ["cifar10-jpeg"], "arch": ["cnn-small"], "budget": [0.1, 0.3], "training": ["standard", "trades"]},
            seeds=STUDY_SEEDS,
            settings={
                # 1,100 images per class: 100 validation (1/11), 1,000 in the pool
                "max_train_per_class": 1100,
                "val_fraction": 1 / 11,
                "proxy": STUDY_PROXY,
                "checkpoints": "all",
                "train": STUDY_TRAIN,
                "robust": threat_from_dataset("cifar10-jpeg", attack_steps=5, beta=6.0, eval_steps=20),
                "attacks": ["pgd", "autoattack"],
                "attack_params": {"autoattack": {"attacks": "apgd-ce,apgd-t", "targets": 3}},
                "eval_subset": 500,
                "masking_subset": 100,
                "eval_subset_per_repeat": True,
                "coverage_flag_ratio": COVERAGE_FLAG_RATIO,
                **CONVENTIONS,
            },
            description=STUDY_DESCRIPTION,
        )
    ]


#: side effects (issue 40, ``coreset_bench.tracks.coreset.side_effects``) on a digits profile: a fifth of the pool
#: (per class) held out for the membership attacks, ECE with 15 equal-width bins, the LOSS,
#: m-entropy and zero-order curvature threshold attacks on every member (or as many members as
#: held-out points). Turning side effects on in a profile is the one line
#: ``"side_effects": SIDE_EFFECTS_DIGITS`` in its settings (a new profile version: the held-out
#: split leaves the pool).
SIDE_EFFECTS_DIGITS = {"heldout_fraction": 0.2, "ece_bins": 15, "mia": ["loss", "mentr", "curvature"], "max_points": None, "curvature": {"h": 1e-3, "n_iter": 10, "estimator": "zo"}}
#: the study's: 100 held-out images per class (1/11 of the 1,100 left after validation), at most
#: 300 members against 300 held-out images per cell: the curvature costs 41 forwards a query,
#: about 12 CPU-seconds per cell on an idle core for 600 CIFAR queries of cnn-small
SIDE_EFFECTS_STUDY = {**SIDE_EFFECTS_DIGITS, "heldout_fraction": 1 / 11, "max_points": 300}
#: quick-noisy's pool labels: 20 % symmetric noise with the label-noise track's exact-count injector
NOISE_QUICK = {"kind": "symmetric", "rate": 0.2, "flip_validation": False}
SIDE_DESCRIPTION = (
    " Side effects (issue 40): membership AUC and TPR at 1 % FPR of the cell's model for its own subset against as many points of a "
    "held-out split ({heldout}, never trained on or evaluated; LOSS, m-entropy and zero-order input-curvature threshold attacks, no shadows), "
    "worst-class clean and robust accuracy, ECE with 15 equal-width bins."
)


def _side_effect_profiles(published: Sequence[Profile]) -> list[Profile]:
    """quick-noisy@1: quick@2's matrix on a pool with 20 % of its labels flipped (exact count per
    class, seeded from the store's hidden salt), side effects on; cifar10-study@2: the study with
    side effects on (pool and validation as @1, 100 images per class more held out)."""
    quick2 = next(p for p in published if p.name == "quick" and p.version == 2)
    study1 = next(p for p in published if p.name == "cifar10-study" and p.version == 1)
    noisy = Profile(
        "coreset",
        "quick-noisy",
        1,
        dict(quick2.axes),
        seeds=quick2.seeds,
        settings={**quick2.settings, "side_effects": SIDE_EFFECTS_DIGITS, "label_noise": NOISE_QUICK},
        description=(
            "quick@2's matrix (digits, cnn-small, budgets 0.1 and 0.3, standard and TRADES training, 3 seeds, eps 0.075, PGD-20 on all held-out "
            "test points, AutoAttack on 60) on a noisy pool: 20 % of each class's pool labels flipped to the other classes (symmetric, exact count "
            "per class, the label-noise track's injector, seeded per repeat from the results store's hidden salt; the validation split keeps its labels). "
            "The selection sees only the noisy labels; noise_kept_share is the share of flipped samples a method keeps (20 % for random in expectation)."
            + SIDE_DESCRIPTION.format(heldout="a fifth of each class's pool, its labels flipped at the same rate")
        ),
    )
    st = dict(study1.settings)
    st.update({"max_train_per_class": 1200, "val_fraction": 1 / 12, "side_effects": SIDE_EFFECTS_STUDY})
    study2 = Profile(
        "coreset",
        "cifar10-study",
        2,
        dict(study1.axes),
        seeds=study1.seeds,
        settings=st,
        description=(
            "cifar10-study@1's protocol (CIFAR-10 JPEG copy, pool of 1,000 images per class, 100 validation images per class, cnn-small, budgets 0.1 "
            "and 0.3, standard and TRADES training, 3 seeds, 200 optimizer steps, L∞ 8/255, PGD-20 and AutoAttack on 500 test points per seed) with "
            "side effects: 1,200 training images per class are drawn, 100 for validation, 100 held out."
            + SIDE_DESCRIPTION.format(heldout="100 images per class; at most 300 members against 300 held-out images per cell")
        ),
        salted=False,
    )
    noisy2 = Profile(
        "coreset",
        "quick-noisy",
        2,
        dict(noisy.axes),
        seeds=noisy.seeds,
        settings={**noisy.settings, "side_effects": {**SIDE_EFFECTS_DIGITS, "mia_clean_labels": True}},
        description=noisy.description
        + " Version 2 adds the membership attacks on unflipped members against unflipped held-out points (mia_clean_*), which remove version 1's "
        "confound: its held-out points carry flipped labels while a subset that avoids them does not.",
    )
    return [noisy, study2, noisy2]


class CoresetTrack(Track):
    name = "coreset"
    summary = "Train on a subset chosen by the method; report clean and adversarial test accuracy at each budget."
    contestant_kind = "selection"
    #: image selection methods only (``SelectionMethod.modalities``); text ones go to the instruction track
    modality = "image"
    fixtures = ("training", "attack")
    primary_metric = "autoattack_acc"
    secondary_metrics = ("clean_acc", "pgd_acc")
    #: side effects (issue 40, ``coreset_bench.tracks.coreset.side_effects``): less membership leakage, a better
    #: worst class, a lower calibration error and fewer kept mislabelled samples are better
    metric_directions = {
        "autoattack_acc": "max", "clean_acc": "max", "pgd_acc": "max", "fgsm_acc": "max",
        "worst_class_acc": "max", "worst_class_pgd_acc": "max", "worst_class_autoattack_acc": "max",
        "mia_loss_auc": "min", "mia_mentr_auc": "min", "mia_curvature_auc": "min",
        "mia_loss_tpr_at_1pct_fpr": "min", "mia_mentr_tpr_at_1pct_fpr": "min", "mia_curvature_tpr_at_1pct_fpr": "min",
        # the same on a noisy pool's unflipped members and held-out points (``mia_clean_labels``)
        "mia_clean_loss_auc": "min", "mia_clean_mentr_auc": "min", "mia_clean_curvature_auc": "min",
        "mia_clean_loss_tpr_at_1pct_fpr": "min", "mia_clean_mentr_tpr_at_1pct_fpr": "min", "mia_clean_curvature_tpr_at_1pct_fpr": "min",
        "ece": "min", "noise_kept_share": "min",
    }
    #: every metric a cell emits: accuracies (``<attack>_acc`` of any attack plugin,
    #: ``class_acc_<c>`` and ``class_<attack>_acc_<c>`` per class, ``eval_subset_clean_acc[_<k>]``
    #: on the attacked points) in [0, 1], the subset's size, and the robustness sanity checks,
    #: one 0/1 outcome per cell
    metric_bounds = {
        **dict.fromkeys(("autoattack_acc", "clean_acc", "pgd_acc", "fgsm_acc"), (0.0, 1.0)),
        "subset_size": (0.0, None),
        **dict.fromkeys(("*_acc", "class_acc_*", "class_*_acc_*", "eval_subset_clean_acc_*"), (0.0, 1.0)),
        # side effects: AUCs, TPRs, an ECE (a weighted mean of |accuracy - confidence|) and a share
        **dict.fromkeys(("mia_*_auc", "mia_*_tpr_at_1pct_fpr", "ece", "noise_kept_share"), (0.0, 1.0)),
    }
    #: the units of the side-effect metrics (the board's side-effects panel names them)
    metric_units = {
        **dict.fromkeys(("mia_loss_auc", "mia_mentr_auc", "mia_curvature_auc", "mia_clean_loss_auc", "mia_clean_mentr_auc", "mia_clean_curvature_auc"), "ROC AUC, 0.5 = chance"),
        **dict.fromkeys(
            (f"mia_{c}{s}_tpr_at_1pct_fpr" for c in ("", "clean_") for s in ("loss", "mentr", "curvature")), "true-positive rate, 0.01 = chance"
        ),
        "ece": "mean |accuracy − confidence| over the bins, weighted by their share of the test points",
        "noise_kept_share": "fraction of the subset",
        **dict.fromkeys(("worst_class_acc", "worst_class_pgd_acc", "worst_class_autoattack_acc"), "accuracy of the worst class"),
    }
    proportion_metrics = ("check_order_ok", "check_ball_ok", "pgd_masking_flag")
    metric_units = {"*_acc": "%", "class_acc_*": "%", "class_*_acc_*": "%", "eval_subset_clean_acc*": "%", "subset_size": ""}
    info_keys = CORESET_INFO_KEYS
    baseline_method = "random"
    reference_methods = ("random", "full")
    #: the flipped labels of a ``label_noise`` profile's pool are hidden generated data (seeded
    #: through ``CellContext.hidden_seed``); the profiles without label noise generate none and
    #: are not salted
    hidden_data = True

    #: the profiles the seed papers' claims are read on (add a new profile version here)
    claim_profiles = ("coreset/quick@3", "coreset/quick@2", "coreset/cifar10-study@2", "coreset/cifar10-study@1")
    #: the version ``quick`` (and no profile) names: the main job's. quick@3 becomes it once its
    #: main job meets the 2-minute target on 2 idle cores (issue 41; benchmarks/RESULTS.md)
    default_version = 2

    def profile(self, ref: str | None) -> Profile:
        """As ``Track.profile``, except that ``quick`` without a version is ``quick@default_version``."""
        name = (ref or self.default_profile).removeprefix(self.name + "/")
        if "@" not in name and name.split(":", 1)[0] == self.default_profile:
            ref = f"{name}@{self.default_version}"
        return super().profile(ref)

    def claims(self) -> list[Claim]:
        """EasyCore's robustness claims (AutoAttack accuracy under standard training and under
        TRADES, over the best other coreset method) and CLD's and LTC's parity claims (clean
        accuracy within 1 point of the best other method, standard training)."""
        easycore = Paper("2510.11018", "The Easy Path to Robustness: Coreset Selection using Sample Hardness", 2025)
        quote = ("We show that EasyCore achieves up to 7% and 5% improvement in adversarial accuracy under standard "
                 "training and TRADES adversarial training, respectively, compared to existing coreset methods.")
        common = dict(system="EasyCore", paper=easycore, quote=quote, track=self.name, profiles=self.claim_profiles, metric="autoattack_acc",
                      seed=Row("easycore"), comparator=BEST_NON_SEED, kind=SUPERIORITY, system_methods=("easycore-balanced", "easycore-hard"))
        parity = dict(track=self.name, profiles=self.claim_profiles, metric="clean_acc", comparator=BEST_NON_SEED, kind=NON_INFERIORITY,
                      margin=0.01, where={"training": "standard"})
        return [
            Claim(id="easycore-autoattack-standard", effect=0.07, where={"training": "standard"},
                  paper_number="up to +7 points of adversarial accuracy, standard training (CIFAR-10/100, ImageNet-1K; abstract)", **common),
            Claim(id="easycore-autoattack-trades", effect=0.05, where={"training": "trades"},
                  paper_number="up to +5 points of adversarial accuracy, TRADES training (abstract)", **common),
            Claim(id="cld-clean-parity", system="CLD", seed=Row("cld"),
                  paper=Paper("2508.20230", "Coresets from Trajectories: Selecting Data via Correlation of Loss Differences", 2025, "TMLR"),
                  quote=("CLD-based coresets typically outperform or closely match state-of-the-art methods across subset sizes, "
                         "and remain within 1% of more computationally expensive baselines even when not leading."),
                  paper_number="within 1 point of the best baseline (CIFAR-100, ImageNet-1k; abstract)", **parity),
            Claim(id="ltc-clean-parity", system="LTC", seed=Row("ltc"),
                  paper=Paper("2503.09721", "Finding the Muses: Identifying Coresets through Loss Trajectories", 2025),
                  quote=("LTC consistently achieves accuracy on par with or surpassing state-of-the-art coreset selection methods, "
                         "with any differences remaining under 1%."),
                  paper_number="within 1 point of the best baseline (CIFAR-100, ImageNet-1k; abstract)", **parity),
        ]

    def profiles(self) -> list[Profile]:
        """Every profile; only those with ``label_noise`` generate hidden data (the flips), so only
        they are salted: the others record no salt (their published entries keep pairing)."""
        return [p if SE.noise_settings(p.settings) else dataclasses.replace(p, salted=False) for p in _profiles()]

    def check_inputs(self, profile: Profile, data_dir: Any) -> None:
        """A profile with side effects: its settings are well-formed and the privacy track's
        attack plugins it measures leakage with are installed."""
        from ...registry import UnknownNameError, method

        side = SE.settings(profile.settings)
        SE.noise_settings(profile.settings)
        if side is None:
            return
        need = {"loss": ("loss", "loss-attack"), "mentr": ("mentr", "mentr"), "curvature": ("zero-order-curvature", "curvature-mia")}
        for score in side["mia"]:
            name, entry = need[score]
            try:
                method(name)
            except UnknownNameError:
                raise ValueError(f"profile {profile.id} measures membership leakage with the {name!r} plugin, which is not loaded; enable its entry point {entry!r} (CORESET_BENCH_LOAD_PLUGINS / CORESET_BENCH_DISABLE_PLUGINS)") from None

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

    # ---- the pipeline's pieces -------------------------------------------------------------
    def fixture(self, profile: Profile, cell: Cell, ctx: CellContext) -> _Fixture:
        """The profile's fixed splits, the cell's model factory and budget, and the shared proxy
        run (computed or read from the cache when the view asks for signals)."""
        st = profile.settings
        ax = cell.axes
        sp = self.splits(profile, str(ax["dataset"]), ctx)
        side, noise = SE.settings(st), SE.noise_settings(st)
        world = self.side_world(profile, str(ax["dataset"]), cell.repeat, ctx, sp) if (side or noise) else None
        if world is not None:
            sp = world.sp
        ds = sp.dataset
        n_pool = len(sp.y_pool)
        budget = min(n_pool, max(1, int(round(float(ax["budget"]) * n_pool))))
        arch = str(ax["arch"])
        repeat_seed = int(hashlib.sha256(canonical_json([profile.id, ax["dataset"], arch, cell.repeat]).encode()).hexdigest()[:8], 16) % (2**31)
        # picklable: it travels to the contestant worker inside the view and the proxy-model signal
        factory = M.ModelFactory(arch, ds.shape, ds.num_classes, ds.mean, ds.std, repeat_seed, ctx.device)
        epochs = int(st["proxy"]["epochs"])
        ck = st.get("checkpoints", "all")
        ck_epochs = tuple(range(1, epochs + 1)) if ck == "all" else tuple(int(e) for e in ck)
        split: dict[str, Any] = {"profile": profile.id, "val_fraction": st.get("val_fraction"), "max_train_per_class": st.get("max_train_per_class"), "n_pool": n_pool}
        if world is not None:
            # the proxy trains on this pool: its labels (noisy ones depend on the store's salt)
            split["pool_labels_sha256"] = hashlib.sha256(sp.y_pool.cpu().numpy().astype(np.int64).tobytes()).hexdigest()
        spec = S.ProxySpec(
            dataset=str(ax["dataset"]),
            split=split,
            arch=arch,
            recipe=dict(st["proxy"]),
            seed=repeat_seed,
            checkpoint_epochs=ck_epochs,
        )
        return _Fixture(profile, sp, budget, factory, spec, ctx, side=side, world=world)

    def side_world(self, profile: Profile, dataset: str, repeat: int, ctx: CellContext, sp: D.Splits) -> _SideWorld:
        """The pool of a profile with side effects or label noise (memoized per repeat and salt):

        * ``side_effects``: ``heldout_fraction`` of each class of the pool is held out for the
          membership attacks (a fixed split per profile and dataset, the same for every method and
          repeat; never trained on, never evaluated);
        * ``label_noise``: the rest of the pool gets the label-noise track's exact-count noise
          (``inject_noise``: ``round(rate * n_c)`` flips per class), seeded per repeat from the
          store's hidden salt (``CellContext.hidden_seed``); the held-out points get their own
          draw at the same rate (members and non-members carry the same kind of labels), and the
          validation split only with ``flip_validation``.

        The flip flags and clean labels stay here, on the harness side: the selection's view holds
        the noisy labels only."""
        from ..label_noise.track import asymmetric_mapping, inject_noise

        st = profile.settings
        side, noise = SE.settings(st), SE.noise_settings(st)
        cache = self.__dict__.setdefault("_side_cache", {})
        key = f"{profile.id}|{dataset}|{repeat if noise else '-'}|{ctx.salt_id if noise else '-'}|{ctx.data_dir}|{ctx.device}"
        if key in cache:
            return cache[key]
        ds = sp.dataset
        C = ds.num_classes
        y_pool = sp.y_pool.cpu().numpy().astype(np.int64)
        if side:
            held = D.stratified_split(y_pool, float(side["heldout_fraction"]), _hash_seed(profile.id, dataset, "side-effects-heldout"))
        else:
            held = np.zeros(0, dtype=np.int64)
        keep = np.setdiff1d(np.arange(len(y_pool)), held)
        y_keep, y_held, y_val = y_pool[keep], y_pool[held], sp.y_val.cpu().numpy().astype(np.int64)
        flipped = np.zeros(len(keep), dtype=bool)
        held_flipped = np.zeros(len(held), dtype=bool)
        if noise:
            kind, rate = str(noise["kind"]), float(noise["rate"])
            mapping = asymmetric_mapping(ds.classes)[0] if kind == "asymmetric" else None
            seed = ctx.hidden_seed(_hash_seed(profile.id, dataset, "pool-label-noise", kind, rate, repeat))
            noisy = inject_noise(y_keep, C, kind, rate, seed, mapping)
            flipped = noisy != y_keep
            y_keep = noisy
            y_held_noisy = inject_noise(y_held, C, kind, rate, ctx.hidden_seed(_hash_seed(profile.id, dataset, "heldout-label-noise", kind, rate, repeat)), mapping)
            held_flipped = y_held_noisy != y_held
            y_held = y_held_noisy
            if noise["flip_validation"]:
                y_val = inject_noise(y_val, C, kind, rate, ctx.hidden_seed(_hash_seed(profile.id, dataset, "val-label-noise", kind, rate, repeat)), mapping)
        dev = sp.y_pool.device
        keep_t, held_t = torch.from_numpy(keep).to(dev), torch.from_numpy(held).to(dev)
        world_sp = dataclasses.replace(
            sp,
            x_pool=sp.x_pool[keep_t],
            y_pool=torch.from_numpy(y_keep).to(dev),
            y_val=torch.from_numpy(y_val).to(dev),
            pool_index=np.asarray(sp.pool_index)[keep],
        )
        world = _SideWorld(
            sp=world_sp,
            x_heldout=sp.x_pool[held_t],
            y_heldout=torch.from_numpy(y_held).to(dev),
            heldout_index=np.asarray(sp.pool_index)[held],
            flipped=flipped,
            noise=noise,
            heldout_flipped=held_flipped,
        )
        cache[key] = world
        return world

    def view(self, fixture: _Fixture, cell: Cell, method: Method) -> SelectionView:
        """Pool, validation split, the signals the method declared (from the shared proxy run),
        budget, seeded generators and a model factory; nothing of the test split."""
        f = fixture
        sp, ds = f.sp, f.sp.dataset
        wanted = set(getattr(method, "signals", ()))
        f.wanted = wanted
        f.ctx.progress("signals", 0.0)
        f.bundle = S.compute_signals(
            f.spec,
            (wanted | set(f.ctx.prefetch_signals)) if wanted else wanted,
            x_pool=sp.x_pool,
            y_pool=sp.y_pool,
            x_val=sp.x_val,
            y_val=sp.y_val,
            num_classes=ds.num_classes,
            model_factory=f.factory,
            training=_registry().method("standard"),
            pad=ds.crop_pad,
            hflip=ds.hflip,
            cache_dir=f.ctx.cache_dir,
            progress=lambda what, frac: f.ctx.progress("proxy", frac),
        )
        f.ctx.progress("select", 0.0)
        return SelectionView(
            x=sp.x_pool,
            y=sp.y_pool,
            x_val=sp.x_val,
            y_val=sp.y_val,
            num_classes=ds.num_classes,
            budget=f.budget,
            fraction=float(cell.axes["budget"]),
            signals=Signals(S.restrict(f.bundle.arrays, wanted), method=method.name),
            seed=cell.seed,
            generator=torch.Generator().manual_seed(cell.seed),
            rng=np.random.default_rng(cell.seed),
            model_factory=f.factory.with_seed(cell.seed),
            device=f.ctx.device,
        )

    def evaluate(self, fixture: _Fixture, cell: Cell, contest: ContestResult) -> CellResult:
        """Train a fresh model on the subset with the cell's training plugin, then evaluate the
        final model on the test split: clean, per-class and adversarial accuracy, flags."""
        f = fixture
        profile, sp, ctx = f.profile, f.sp, f.ctx
        st, ax, ds, device = profile.settings, cell.axes, f.sp.dataset, ctx.device
        sel: Selection = contest.output
        bundle, wanted, budget, n_pool = f.bundle, f.wanted, f.budget, len(f.sp.y_pool)
        select_s = contest.seconds
        # ---- training -----------------------------------------------------------------------
        training_name = str(ax.get("training", "standard"))
        trainer = _registry().method(training_name)
        recipe = {**dict(st["train"]), **dict(st.get("robust", {}))}
        idx_t = torch.from_numpy(sel.indices).to(device)
        model = f.factory(cell.seed + 1)
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
            progress=lambda what, frac: ctx.progress("train", frac),
        )
        training_s = time.perf_counter() - t1
        # ---- evaluation ---------------------------------------------------------------------
        ctx.progress("evaluate", 0.0)
        t2 = time.perf_counter()
        logits = T.predict(model, sp.x_test)
        pred = logits.argmax(1).cpu().numpy()
        y_test = sp.y_test.cpu().numpy()
        clean_correct = pred == y_test
        metrics: dict[str, float] = {"clean_acc": float(clean_correct.mean())}
        for c in range(ds.num_classes):
            m = y_test == c
            metrics[f"class_acc_{c}"] = float(clean_correct[m].mean()) if m.any() else float("nan")
        per_point: dict[str, np.ndarray] = {"clean_acc": clean_correct}
        points: dict[str, str] = {"clean_acc": hashlib.sha256(np.arange(len(y_test), dtype=np.int64).tobytes()).hexdigest()[:16]}
        attacks = list(st.get("attacks", []))
        if attacks:
            # the attacked points of a repeat: the same for every method, budget and recipe of that
            # repeat (paired everywhere), other points at another repeat
            subset_seed = int(hashlib.sha256(canonical_json([profile.id, ax["dataset"], "eval-points", cell.repeat]).encode()).hexdigest()[:8], 16) % (2**31)
            metrics.update(self._robust_metrics(model, sp, profile, attacks, cell.seed, per_point=per_point, num_classes=ds.num_classes, points=points, subset_seed=subset_seed, progress=ctx.progress))
        evaluation_s = time.perf_counter() - t2
        side_info: dict[str, Any] = {}
        timings_side = 0.0
        if f.side is not None or f.world is not None:
            t3 = time.perf_counter()
            ctx.progress("side effects", 0.0)
            side_info = self._side_effects(f, cell, sel, model, logits, metrics, attacks)
            timings_side = time.perf_counter() - t3
        hist = np.bincount(sp.y_pool.cpu().numpy()[sel.indices], minlength=ds.num_classes)
        pred_hist = np.bincount(pred, minlength=ds.num_classes)
        diag = degeneracy(hist, np.bincount(sp.y_pool.cpu().numpy(), minlength=ds.num_classes), pred_hist, float(st.get("coverage_flag_ratio", COVERAGE_FLAG_RATIO)))
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
        if side_info:
            # the side effects are measured after the cell's own evaluation, outside total_s (a
            # method's cost does not include the benchmark's extra measurements)
            timings["side_effects_s"] = timings_side
        info = {
            "budget": budget,
            "pool_size": n_pool,
            "realized_size": int(len(sel.indices)),
            "weighted": sel.weights is not None,
            "proxy_shared": bundle.shared,
            "proxy_key": f.spec.key if wanted else None,
            "signals": sorted(wanted),
            "class_histogram": hist.tolist(),
            "pred_histogram": pred_hist.tolist(),
            "chance_floor": 1.0 / ds.num_classes,
            **diag,
            "per_point": {k: {**pack_bits(v), "points_sha": points[k]} for k, v in per_point.items()},
            "test_size": int(len(sp.y_test)),
            "subset_sha256": hashlib.sha256(np.sort(sel.indices).astype(np.int64).tobytes()).hexdigest(),
            "primary_metric": self.primary_for(profile),
            **{f"method_{k}": v for k, v in sel.info.items()},
            **side_info,
        }
        return CellResult(metrics=metrics, timings=timings, artifacts=artifacts, info=info)

    def _side_effects(self, f: _Fixture, cell: Cell, sel: Selection, model: torch.nn.Module, logits: torch.Tensor, metrics: dict[str, float], attacks: Sequence[str]) -> dict[str, Any]:
        """Add the side-effect metrics of the cell's final model to ``metrics`` (see
        ``coreset_bench.tracks.coreset.side_effects``); returns what ``info`` records about them."""
        profile, sp, side, world = f.profile, f.sp, f.side, f.world
        ds = sp.dataset
        C = ds.num_classes
        info: dict[str, Any] = {}
        if side is not None:
            y_test = sp.y_test.cpu().numpy()
            probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
            metrics["ece"] = SE.expected_calibration_error(probs, y_test, int(side["ece_bins"]))
            worst = SE.worst_class(metrics, "class_acc_", C)
            if worst is not None:
                metrics["worst_class_acc"] = worst
            for a in attacks:
                w = SE.worst_class(metrics, f"class_{a}_acc_", C)
                if w is not None:
                    metrics[f"worst_class_{a}_acc"] = w
            assert world is not None
            n_held = len(world.y_heldout)
            mem_pos, held_pos = SE.paired_draw(
                len(sel.indices),
                n_held,
                side["max_points"],
                member_seed=_hash_seed(cell.seed, "mia-members"),
                heldout_seed=_hash_seed(profile.id, cell.axes["dataset"], "mia-heldout", cell.repeat),
            )
            dev = sp.x_pool.device
            members = torch.from_numpy(np.sort(sel.indices)[mem_pos]).to(dev)
            held = torch.from_numpy(held_pos).to(dev)
            metrics.update(
                SE.leakage(
                    model, sp.x_pool[members], sp.y_pool[members], world.x_heldout[held], world.y_heldout[held], C,
                    which=list(side["mia"]), seed=cell.seed, input_std=ds.std, curvature=side["curvature"],
                )
            )
            info["side_effects"] = {**side, "mia_points": int(len(mem_pos)), "heldout_size": int(n_held), "ece_on": "all clean test points"}
            if side.get("mia_clean_labels") and world.noise is not None:
                # the same attacks without the label confound: unflipped members against
                # unflipped held-out points (``side_effects`` module docstring)
                sub = np.sort(sel.indices)
                clean_sub = sub[~world.flipped[sub]]
                clean_held = np.flatnonzero(~world.heldout_flipped)
                if len(clean_sub) >= 1 and len(clean_held) >= 1:
                    c_mem, c_held = SE.paired_draw(
                        len(clean_sub),
                        len(clean_held),
                        side["max_points"],
                        member_seed=_hash_seed(cell.seed, "mia-members-clean-labels"),
                        heldout_seed=_hash_seed(profile.id, cell.axes["dataset"], "mia-heldout-clean-labels", cell.repeat),
                    )
                    cm = torch.from_numpy(clean_sub[c_mem]).to(dev)
                    ch = torch.from_numpy(clean_held[c_held]).to(dev)
                    metrics.update(
                        SE.leakage(
                            model, sp.x_pool[cm], sp.y_pool[cm], world.x_heldout[ch], world.y_heldout[ch], C,
                            which=list(side["mia"]), seed=cell.seed, input_std=ds.std, curvature=side["curvature"], prefix="clean_",
                        )
                    )
                    info["side_effects"]["mia_clean_points"] = int(len(c_mem))
        if world is not None and world.noise is not None:
            metrics["noise_kept_share"] = SE.kept_noise_share(sel.indices, world.flipped)
            info["noise_pool_share"] = float(world.flipped.mean())
            info["label_noise"] = dict(world.noise)
        return info

    def _robust_metrics(
        self,
        model: torch.nn.Module,
        sp: D.Splits,
        profile: Profile,
        attacks: Sequence[str],
        seed: int,
        *,
        per_point: dict[str, np.ndarray] | None = None,
        num_classes: int | None = None,
        points: dict[str, str] | None = None,
        subset_seed: int | None = None,
        progress: Callable[[str, float], None] | None = None,
    ) -> dict[str, float]:
        """Adversarial accuracy on the profile's attacked test points (``progress`` names each
        attack as it starts, e.g. ``AutoAttack on 100 points``, for the run's display).

        Settings: ``eval_subset`` (a count, or ``"all"``), ``attack_subsets`` (a smaller count for
        a costly attack, e.g. AutoAttack: a class-stratified part of the attacked points),
        ``masking_subset`` (the PGD gradient-masking check on such a part), ``eval_subset_per_repeat``
        (draw the points with ``subset_seed``, one per repeat, so test-sampling variance enters the
        repeats; otherwise one fixed draw per profile). The points of a repeat are the same for
        every method, budget and recipe, so per-point results
        are paired. With ``per_point``, per-point correctness is stored there (``<attack>_acc``) and
        per-class robust accuracy of each attack is returned (``class_<attack>_acc_<c>``).
        """
        from ... import registry as plugins
        from ...robust import evaluate_robustness

        st = profile.settings
        rb: Mapping[str, Any] = st.get("robust", {})
        y_all = sp.y_test.cpu().numpy()
        wanted = st.get("eval_subset", 500)
        n = len(y_all) if wanted == "all" else min(int(wanted), len(y_all))
        per_repeat = bool(st.get("eval_subset_per_repeat")) and subset_seed is not None
        sub_seed = int(subset_seed) if per_repeat else 0  # fixed per profile unless per repeat
        sub = np.sort(D.stratified_subset(y_all, n, seed=sub_seed))
        threat = ThreatModel(norm="linf", eps=float(rb["eps"]), step_size=float(rb["step_size"]), steps=int(rb.get("eval_steps", 20)))
        attack_params: Mapping[str, Mapping[str, Any]] = st.get("attack_params", {})
        limits: Mapping[str, int] = st.get("attack_subsets", {})
        # the batch the attacks see (quick@3: every attacked point in one batch for the batched AutoAttack)
        batch = int(st.get("attack_batch_size", 512))
        out: dict[str, float] = {}
        groups: dict[int, list[str]] = {}
        for a in attacks:
            groups.setdefault(min(int(limits.get(a, n)), n), []).append(a)
        masks: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # attack -> (test positions, correct)
        for k in sorted(groups, reverse=True):
            names = groups[k]
            # a costlier attack runs on a class-stratified part of the attacked points
            pts = sub if k == n else np.sort(sub[D.stratified_subset(y_all[sub], k, seed=sub_seed + 1)])
            idx = torch.from_numpy(pts.astype(np.int64)).to(sp.x_test.device)
            atk = {a: plugins.method(a).with_params(**dict(attack_params.get(a, {}))) for a in names}
            pp: dict[str, np.ndarray] = {}
            masking_here = "pgd" in names and not st.get("masking_subset")
            if progress is not None:
                progress(f"{' + '.join(_ATTACK_LABELS.get(a, a) for a in names)} on {len(pts)} points", 0.0)
            res = evaluate_robustness(model, sp.x_test[idx], sp.y_test[idx], atk, threat, seed=seed, batch_size=batch, masking_check=masking_here, per_point=pp)
            for key, v in res.items():
                if key == "clean_acc":
                    out["eval_subset_clean_acc" if k == n else f"eval_subset_clean_acc_{k}"] = float(v)
                elif key in ("check_order_ok", "check_ball_ok"):
                    out[key] = min(float(v), out.get(key, 1.0))
                else:
                    out[key] = float(v)
            for a in names:
                masks[a] = (pts, pp[f"{a}_acc"])
                if points is not None:
                    points[f"{a}_acc"] = hashlib.sha256(pts.astype(np.int64).tobytes()).hexdigest()[:16]
                if per_point is not None:
                    per_point[f"{a}_acc"] = pp[f"{a}_acc"]
                if num_classes:
                    ys = y_all[pts]
                    for c in range(num_classes):
                        m = ys == c
                        out[f"class_{a}_acc_{c}"] = float(pp[f"{a}_acc"][m].mean()) if m.any() else float("nan")
        if "pgd" in masks and st.get("masking_subset"):
            # the gradient-masking check (PGD with 5x the steps) on a class-stratified part of the
            # PGD points: it is a sanity flag, and 5x the steps on every point costs more than the rest
            k = min(int(st["masking_subset"]), n)
            pts = np.sort(sub[D.stratified_subset(y_all[sub], k, seed=sub_seed + 2)])
            idx = torch.from_numpy(pts.astype(np.int64)).to(sp.x_test.device)
            pgd = plugins.method("pgd").with_params(**dict(attack_params.get("pgd", {})))
            if progress is not None:
                progress(f"PGD gradient-masking check on {len(pts)} points", 0.0)
            res = evaluate_robustness(model, sp.x_test[idx], sp.y_test[idx], {"pgd": pgd}, threat, seed=seed, masking_check=True)
            out["pgd_masking_acc"] = float(res["pgd_masking_acc"])
            out["pgd_masking_flag"] = float(res["pgd_masking_flag"])
        if "pgd" in masks and "autoattack" in masks and len(groups) > 1:
            # AutoAttack ran on a part of PGD's points: it must not leave more of them robust
            (p_pts, p_ok), (a_pts, a_ok) = masks["pgd"], masks["autoattack"]
            pos = np.searchsorted(p_pts, a_pts)
            ok = int(a_ok.sum()) <= int(p_ok[pos].sum()) + 1
            out["check_order_ok"] = min(out.get("check_order_ok", 1.0), 1.0 if ok else 0.0)
        return out


@dataclass
class _Fixture:
    """One cell's world (harness side: the test split stays here)."""

    profile: Profile
    sp: D.Splits
    budget: int
    factory: M.ModelFactory
    spec: S.ProxySpec
    ctx: CellContext
    #: set by ``view``: the signals the method declared and the proxy run that served them
    wanted: set[str] = field(default_factory=set)
    bundle: Any = None
    #: the profile's side-effect settings (``side_effects.settings``; None: off)
    side: dict[str, Any] | None = None
    #: the held-out split and the pool's flip flags (profiles with side effects or label noise)
    world: _SideWorld | None = None


@dataclass
class _SideWorld:
    """The pool of a profile with side effects or label noise (harness side only)."""

    #: the splits with the held-out points removed from the pool and the pool's labels as trained on
    sp: D.Splits
    x_heldout: torch.Tensor
    y_heldout: torch.Tensor
    heldout_index: np.ndarray
    #: per pool sample, whether its label was flipped (never in a view)
    flipped: np.ndarray
    noise: dict[str, Any] | None
    #: per held-out point, whether its label was flipped (never in a view)
    heldout_flipped: np.ndarray | None = None


def _hash_seed(*parts: Any) -> int:
    return int(hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:8], 16) % (2**31)


def _registry() -> Any:
    from ... import registry

    return registry


def pack_bits(correct: np.ndarray) -> dict[str, Any]:
    """Per-point correctness as ``{"n": N, "bits": hex}`` (``np.packbits``, little bit order)."""
    c = np.asarray(correct, dtype=bool)
    return {"n": int(c.size), "bits": np.packbits(c, bitorder="little").tobytes().hex()}


def unpack_bits(packed: Mapping[str, Any]) -> np.ndarray:
    """Inverse of ``pack_bits``."""
    raw = np.frombuffer(bytes.fromhex(str(packed["bits"])), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little")[: int(packed["n"])].astype(bool)


def degeneracy(subset_hist: np.ndarray, pool_hist: np.ndarray, pred_hist: np.ndarray, ratio: float = COVERAGE_FLAG_RATIO) -> dict[str, Any]:
    """Flags of a degenerate cell (issue 20): a subset that starves a class, a model that never
    predicts a class.

    * ``subset-class-coverage``: some class's share of the subset is below ``ratio`` times its
      share of the pool (the audit's EasyCore subset kept ``[91, 0, 1, 0, 17, 5, 0, 1, 4, 2]``);
    * ``never-predicts-class``: some class is never predicted on the clean test split (a model that
      collapses onto a few classes scores "robust" points of the over-predicted classes, up to the
      constant classifier's 1/C).

    Returns ``flags`` (sorted list of the names above), ``underrepresented_classes`` and
    ``never_predicted_classes``.
    """
    sub = np.asarray(subset_hist, dtype=np.float64)
    pool = np.asarray(pool_hist, dtype=np.float64)
    share_sub = sub / max(sub.sum(), 1.0)
    share_pool = pool / max(pool.sum(), 1.0)
    under = [int(c) for c in np.flatnonzero((share_pool > 0) & (share_sub < ratio * share_pool))]
    never = [int(c) for c in np.flatnonzero(np.asarray(pred_hist) == 0)]
    flags = (["never-predicts-class"] if never else []) + (["subset-class-coverage"] if under else [])
    return {"flags": sorted(flags), "underrepresented_classes": under, "never_predicted_classes": never}
