"""The ``label-noise`` track: how much clean test accuracy does a correction method recover from a
model trained on noisy labels?

Contestants are ``noise-correction`` plugins; the fixtures are the noise injection and the
``standard`` training plugin. For every cell the harness:

1. builds the profile's fixed splits: the dataset's training data is the pool (optionally
   subsampled per class), the test split is the dataset's own (or the fixed held-out split for
   digits);
2. carves the **verified set** per class (strategy from the ``verified`` axis):

   * ``clean`` ("Expert" in Verifix): ``max(min_per_class, round(fraction * n_c))`` random
     samples of each class with their true labels, held out of the noisy training;
   * ``low-curvature`` (the released Verifix scripts, reference section 3.2): after training on
     the noisy pool, the lowest input-loss-curvature samples of each *noisy* class (Garg
     et al.'s ``regr`` estimator, ``h`` and ``n_iter`` from the profile), with their noisy
     labels; they stay in the training pool, and ``val_fraction`` of the pool is held out for
     model selection (below). The fraction of correct labels among them is recorded
     (``verified_label_precision``);
3. injects seeded label noise into the pool (``noise`` and ``rate`` axes) with an **exact**
   rate: ``round(rate * n_c)`` samples of each affected class are flipped (see
   ``inject_noise``); the realized transition matrix is stored as an artifact;
4. trains the noisy-label model with the ``standard`` training plugin and the profile's recipe,
   **once** per (dataset, noise, rate, verified strategy, architecture, repeat): the model is
   cached under ``<cache>/label-noise/<key>/`` and shared by every method's cell; its training
   time (and the curvature time, for ``low-curvature``) is recorded with every cell, flagged
   shared when the cache served it;
5. hands the method a ``NoiseView`` (the noisy model, the verified set, the noisy pool, a model
   factory and the training fixture ``train(model, x, y, epochs=None, **recipe overrides)`` with
   the profile's recipe; nothing of the test split, no clean label of the pool) in the
   contestant worker (``coreset_bench.contest``), a process that holds only that view (the
   model rebuilt from its weights), and times ``correct(view)`` there and back: that is the
   correction's cost (``correction_s``);
6. checks the output (a model of the view's architecture, sent back as its weights, with finite
   parameters and buffers giving one logit per class) and evaluates clean test accuracy before
   (``acc_before``) and after (``acc_after``, the primary metric) and the ``gain``.

Steps 1-4 are the track's ``fixture``, 5 its ``view`` and the contest, 6 its ``evaluate`` (the
cell pipeline of ``Track.run_cell``). The noisy models' cache (``<cache>/label-noise``) is out
of the contestant's reach (``private_cache``).

Noise models (reference section 7.4: symmetric "different class" noise as in Verifix, and
asymmetric noise as a separate, labelled option):

* ``symmetric``: in each class c, exactly ``k_c = round(rate * n_c)`` samples get a label from
  the *other* classes; the k_c new labels are spread as evenly as possible over the C - 1 other
  classes (counts differ by at most one, the extra ones go to random classes), so every entry
  of the realized transition matrix is within one sample of the requested ``1 - rate`` /
  ``rate / (C - 1)``;
* ``asymmetric``: class-pair flips; exactly ``round(rate * n_c)`` samples of each source class
  move to its target class. Mappings (``asymmetric_mapping``, chosen by the class names):

  - digits (names ``0``..``9``): the MNIST mapping of Patrini et al. (2017),
    2 -> 7, 3 -> 8, 5 <-> 6, 7 -> 1;
  - CIFAR-10 names (also an ImageFolder copy of CIFAR-10): truck -> automobile,
    bird -> airplane, deer -> horse, cat <-> dog (Patrini et al., 2017);
  - CIFAR-100 names: each class -> the next class of its superclass, circularly (the 20
    superclasses of the CIFAR-100 release, members in alphabetical order);
  - any other class list: c -> (c + 1) mod C (the "pair flip" of Han et al., 2018).

  At rate 0.5 a swapped pair (cat <-> dog, 5 <-> 6) carries no label information any more; that
  is part of the protocol, not a bug.

Seeds: the verified set is drawn per (profile, dataset, repeat), the noise per (profile,
dataset, noise, rate, repeat) and the model initialisation per (profile, dataset, architecture,
repeat), so the conditions and architectures of one repeat are paired. A correction method's own
randomness uses the cell seed (shared by all methods at the same point). Which labels are flipped
is the hidden truth: in a salted profile (``quick@2``, ``quick-lowcurv@3``, ``cifar10-small@3``)
the noise seeds are mixed with the results store's secret salt (``CellContext.hidden_seed``), so a
corrector cannot rebuild the flips from the public seed formula; the versions defined before the
salt (every other) keep their public seeds and their published numbers.

Model selection: with a ``clean`` verified set there is no separate validation split; the
verified set is the only clean data a method may use, including to choose its hyperparameters
(Verifix's alpha, see the plugin). A ``low-curvature`` verified set was trained on, so it cannot
rank candidate models; as in the released Verifix pipeline (a 10 % held-out split of the training
data), such cells hold out ``val_fraction`` of the pool per class before training and hand it to
the method with its *noisy* labels (``NoiseView.x_val``, ``y_val_noisy``; noise injected with
the same exact-rate rule). The reference scores alpha on the clean part of that split, an oracle
the benchmark does not grant (reference section 3.7).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ... import data as D
from ... import locks
from ... import models as M
from ... import training as T
from ...claims import SUPERIORITY, Claim, Paper, Row
from ...contest import ContestResult
from ...kinds import Method, NoiseView
from ...validation import check_corrected_model  # noqa: F401 - the noise-correction kind's output check, re-exported
from ...cells import salted_successors
from ..base import ArtifactOut, Cell, CellContext, CellResult, Profile, Track, canonical_json

# ---- asymmetric mappings ---------------------------------------------------------------------

DIGITS_ASYMMETRIC = {2: 7, 3: 8, 5: 6, 6: 5, 7: 1}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_ASYMMETRIC = {"truck": "automobile", "bird": "airplane", "deer": "horse", "cat": "dog", "dog": "cat"}
CIFAR100_SUPERCLASSES: tuple[tuple[str, ...], ...] = (
    ("beaver", "dolphin", "otter", "seal", "whale"),
    ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    ("orchid", "poppy", "rose", "sunflower", "tulip"),
    ("bottle", "bowl", "can", "cup", "plate"),
    ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    ("clock", "keyboard", "lamp", "telephone", "television"),
    ("bed", "chair", "couch", "table", "wardrobe"),
    ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    ("bear", "leopard", "lion", "tiger", "wolf"),
    ("bridge", "castle", "house", "road", "skyscraper"),
    ("cloud", "forest", "mountain", "plain", "sea"),
    ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    ("fox", "porcupine", "possum", "raccoon", "skunk"),
    ("crab", "lobster", "snail", "spider", "worm"),
    ("baby", "boy", "girl", "man", "woman"),
    ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
)


def asymmetric_mapping(classes: Sequence[str]) -> tuple[dict[int, int], str]:
    """Source class -> target class of the asymmetric noise for a dataset's class names, and the
    name of the mapping used (see the module docstring)."""
    names = [str(c) for c in classes]
    index = {n: i for i, n in enumerate(names)}
    if names == [str(i) for i in range(10)]:
        return dict(DIGITS_ASYMMETRIC), "patrini2017-mnist"
    if sorted(names) == sorted(CIFAR10_CLASSES):
        return {index[a]: index[b] for a, b in CIFAR10_ASYMMETRIC.items()}, "patrini2017-cifar10"
    c100 = [n for group in CIFAR100_SUPERCLASSES for n in group]
    if sorted(names) == sorted(c100):
        out = {}
        for group in CIFAR100_SUPERCLASSES:
            for j, n in enumerate(group):
                out[index[n]] = index[group[(j + 1) % len(group)]]
        return out, "cifar100-next-in-superclass"
    return {c: (c + 1) % len(names) for c in range(len(names))}, "pairflip-next-class"


# ---- noise injection -------------------------------------------------------------------------


def _n_flip(rate: float, n: int) -> int:
    """round(rate * n), halves rounded up (not Python's banker's rounding)."""
    return int(np.floor(rate * n + 0.5))


def inject_noise(labels: np.ndarray, num_classes: int, kind: str, rate: float, seed: int, mapping: Mapping[int, int] | None = None) -> np.ndarray:
    """Noisy copy of ``labels`` with exactly ``round(rate * n_c)`` flips in each affected class.

    ``symmetric``: flipped samples get another class, spread evenly over the C - 1 others.
    ``asymmetric``: flipped samples of a source class of ``mapping`` get its target class.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate {rate} is not in [0, 1]")
    y = np.asarray(labels, dtype=np.int64)
    noisy = y.copy()
    rng = np.random.default_rng(seed)
    if kind == "symmetric":
        if num_classes < 2:
            raise ValueError("symmetric noise needs at least two classes")
        for c in range(num_classes):
            idx = np.flatnonzero(y == c)
            k = _n_flip(rate, len(idx))
            if k == 0:
                continue
            chosen = rng.permutation(idx)[:k]
            others = np.array([j for j in range(num_classes) if j != c], dtype=np.int64)
            base, extra = divmod(k, len(others))
            counts = np.full(len(others), base, dtype=np.int64)
            counts[rng.permutation(len(others))[:extra]] += 1
            new = np.repeat(others, counts)
            noisy[chosen] = rng.permutation(new)
    elif kind == "asymmetric":
        if mapping is None:
            raise ValueError("asymmetric noise needs a class mapping")
        for c in range(num_classes):
            if c not in mapping or int(mapping[c]) == c:
                continue
            idx = np.flatnonzero(y == c)
            k = _n_flip(rate, len(idx))
            noisy[rng.permutation(idx)[:k]] = int(mapping[c])
    elif kind == "none":
        pass
    else:
        raise ValueError(f"unknown noise type {kind!r}; use symmetric or asymmetric")
    return noisy


def transition_counts(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64: counts[i, j] = samples of true class i labelled j."""
    out = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(out, (np.asarray(clean), np.asarray(noisy)), 1)
    return out


def transition_matrix(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Row-normalized realized transition matrix T[i, j] = P(noisy = j | clean = i)."""
    counts = transition_counts(clean, noisy, num_classes).astype(np.float64)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1)


def requested_transition(kind: str, rate: float, num_classes: int, mapping: Mapping[int, int] | None = None) -> np.ndarray:
    """The transition matrix the noise model asks for (before integer rounding)."""
    t = np.eye(num_classes)
    if kind == "symmetric":
        t = np.full((num_classes, num_classes), rate / (num_classes - 1))
        np.fill_diagonal(t, 1.0 - rate)
    elif kind == "asymmetric":
        for c, d in (mapping or {}).items():
            if int(d) != int(c):
                t[c, c] = 1.0 - rate
                t[c, int(d)] = rate
    return t


# ---- verified set ----------------------------------------------------------------------------


def verified_counts(labels: np.ndarray, num_classes: int, fraction: float, min_per_class: int) -> np.ndarray:
    """Per-class size of the verified set: max(min_per_class, round(fraction * n_c)), leaving at
    least one sample of each class in the pool."""
    counts = np.bincount(np.asarray(labels), minlength=num_classes)
    want = np.maximum(int(min_per_class), np.floor(fraction * counts + 0.5).astype(np.int64))
    return np.minimum(want, np.maximum(counts - 1, 0))


def carve_verified(labels: np.ndarray, num_classes: int, fraction: float, min_per_class: int, seed: int) -> np.ndarray:
    """Sorted pool indices of a random per-class verified set (sizes from ``verified_counts``)."""
    rng = np.random.default_rng(seed)
    counts = verified_counts(labels, num_classes, fraction, min_per_class)
    parts = [rng.permutation(np.flatnonzero(labels == c))[: counts[c]] for c in range(num_classes)]
    return np.sort(np.concatenate(parts)).astype(np.int64)


def input_curvature(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, h: float, n_iter: int, seed: int, batch_size: int = 256, std: Sequence[float] | None = None) -> np.ndarray:
    """Garg et al.'s input-loss curvature (``regr``, reference section 2.1), per sample:

        curv(x) = (1/n) sum_i || grad_x [ l(f(x + h v_i), y) - l(f(x), y) ] ||_2,  v_i ~ Rademacher

    with the summed (not mean) cross-entropy, so scores do not depend on the batch size.

    ``std=None`` (profile setting ``curvature.units = "pixel"``, version-1 profiles): the step
    and the gradient are in the model's [0, 1] pixel units. ``std`` given (``units =
    "normalized"``, the reference's convention and that of ``_mia.regr_curvature`` of the privacy
    tracks): the step is h in normalized-input units (h * std per channel in pixels) and the
    gradient is taken with respect to the normalized input (the pixel gradient times std).
    """
    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    s: torch.Tensor | float = 1.0
    if std is not None:
        t = torch.tensor(list(std), dtype=x.dtype, device=x.device)
        s = t.view(1, -1, *([1] * (x.dim() - 2))) if x.dim() > 2 else t.view(1, -1)
    out = np.zeros(len(y), dtype=np.float64)
    for i in range(0, len(y), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        acc = torch.zeros(len(yb), dtype=torch.float64)
        for _ in range(int(n_iter)):
            v = (torch.randint(0, 2, xb.shape, generator=gen).float() * 2 - 1 + 1e-7).to(xb.device)
            x0 = xb.clone().requires_grad_(True)
            x1 = (xb + h * v * s).requires_grad_(True)
            with torch.enable_grad():
                l0 = F.cross_entropy(model(x0).float(), yb, reduction="sum")
                l1 = F.cross_entropy(model(x1).float(), yb, reduction="sum")
                g0, g1 = torch.autograd.grad(l0 + l1, (x0, x1))
            acc += ((g1 - g0) * s).flatten(1).norm(dim=1).double().cpu()
        out[i : i + len(yb)] = (acc / int(n_iter)).numpy()
    return out


def low_curvature_verified(curv: np.ndarray, noisy_labels: np.ndarray, counts: np.ndarray, percentile: float = 0.0) -> np.ndarray:
    """Sorted indices of the ``counts[c]`` lowest-curvature samples of each noisy class, starting
    at the ``percentile`` (0..1) from the bottom of the class (the reference's
    ``--percentile-low-curve``)."""
    out = []
    for c, k in enumerate(counts):
        idx = np.flatnonzero(noisy_labels == c)
        order = idx[np.argsort(curv[idx], kind="stable")]
        start = min(int(np.floor(percentile * len(order))), max(len(order) - int(k), 0))
        out.append(order[start : start + int(k)])
    return np.sort(np.concatenate(out)).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


# ---- profiles ---------------------------------------------------------------------------------

#: digits: long training without augmentation, so the network fits its noisy labels (the regime
#: in which the reference's baselines lose 10-20 points to 25 % noise); 200 epochs of the MLP
#: take a few seconds on one CPU core
QUICK_RECIPE = {"epochs": 200, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4, "augment": False}
CIFAR_RECIPE = {"epochs": 100, "batch_size": 128, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4}
CONVENTIONS = {
    "noise_rate": "exact: round(rate * n_c) flips per affected class; realized transition matrix stored",
    "verified_set": "carved per class from the training data; 'clean' is held out of the noisy training, 'low-curvature' is not",
    "model_selection": "clean verified sets: the verified set is the only clean data, no validation split; low-curvature verified sets: a held-out split of the pool (val_fraction) with noisy labels, never trained on",
    "noisy_model": "trained once per (dataset, noise, rate, verified, arch, repeat) and shared by all methods",
}


def _profiles() -> list[Profile]:
    out = [
        Profile(
            "label-noise",
            "tiny",
            1,
            {"dataset": ["digits"], "arch": ["mlp"], "noise": ["symmetric"], "rate": [0.5], "verified": ["clean", "low-curvature"]},
            seeds=(0,),
            settings={
                "max_train_per_class": 40,
                "max_test": 200,
                "train": {"epochs": 8, "batch_size": 32, "lr": 0.05, "augment": False},
                "verified_fraction": 0.01,
                "verified_min_per_class": 4,
                "curvature": {"h": 1e-3, "n_iter": 2, "percentile": 0.0},
                "val_fraction": 0.1,
                **CONVENTIONS,
            },
            description="A seconds-long profile for tests: digits subsample, MLP, 50 % symmetric noise, clean and low-curvature verified sets.",
        ),
        Profile(
            "label-noise",
            "quick",
            1,
            {"dataset": ["digits"], "arch": ["mlp"], "noise": ["symmetric", "asymmetric"], "rate": [0.25, 0.5], "verified": ["clean"]},
            seeds=(0, 1, 2),
            settings={
                "train": QUICK_RECIPE,
                "verified_fraction": 0.01,
                "verified_min_per_class": 10,
                "curvature": {"h": 1e-3, "n_iter": 10, "percentile": 0.0},
                "val_fraction": 0.1,
                **CONVENTIONS,
            },
            description="Embedded digits on the CPU in a few minutes: MLP trained 200 epochs on noisy labels, symmetric and asymmetric noise at 25 % and 50 %, 10 verified samples per class, three repeats.",
        ),
        Profile(
            "label-noise",
            "quick-lowcurv",
            1,
            {"dataset": ["digits"], "arch": ["mlp"], "noise": ["symmetric", "asymmetric"], "rate": [0.25, 0.5], "verified": ["low-curvature"]},
            seeds=(0, 1, 2),
            settings={
                "train": QUICK_RECIPE,
                "verified_fraction": 0.01,
                "verified_min_per_class": 10,
                "curvature": {"h": 1e-3, "n_iter": 10, "percentile": 0.0},
                "val_fraction": 0.1,
                **CONVENTIONS,
            },
            description="As quick, but the verified set is the lowest-curvature samples of each noisy class (the released Verifix pipeline: no external clean data).",
        ),
    ]
    # version 2 of the profiles with low-curvature verified sets: the finite-difference step in
    # normalized-input units, the reference's and the privacy tracks' convention (issue 22 item 5)
    for p in list(out):
        if "low-curvature" in p.axes["verified"]:
            st = {**p.settings, "curvature": {**p.settings["curvature"], "units": "normalized"}}
            out.append(Profile(p.track, p.name, 2, p.axes, p.seeds, st, p.description + " Curvature step h in normalized-input units (version 1: [0, 1] pixel units).", p.timeout_s, p.device))
    out.append(
        Profile(
            "label-noise",
            "cifar10-small",
            1,
            {"dataset": ["cifar10"], "arch": ["mlp"], "noise": ["symmetric", "asymmetric"], "rate": [0.25, 0.5], "verified": ["clean"]},
            seeds=(0,),
            settings={
                "max_train_per_class": 500,
                "max_test": 2000,
                "train": {"epochs": 60, "batch_size": 64, "lr": 0.02, "schedule": "cosine", "weight_decay": 5e-4, "augment": False},
                "verified_fraction": 0.02,
                "verified_min_per_class": 10,
                "curvature": {"h": 1e-3, "n_iter": 10, "percentile": 0.0},
                "val_fraction": 0.1,
                **CONVENTIONS,
            },
            description="A CPU-sized CIFAR-10 check (also --dataset imagefolder:PATH of a CIFAR-10 copy): 500 images a class, MLP, 60 epochs on noisy labels, 10 verified samples a class, one repeat.",
        )
    )
    # version 2: the same protocol on the CIFAR-10 JPEG copy (``cifar10-jpeg``: the tree or its
    # .tar.gz under --data-dir) with five repeats, so a claim read on it has a paired interval
    # (version 1 reads torchvision's CIFAR-10 and has one repeat: no interval at all)
    small = out[-1]
    out.append(
        Profile(small.track, small.name, 2, {**small.axes, "dataset": ["cifar10-jpeg"]}, (0, 1, 2, 3, 4), small.settings,
                "The CPU-sized CIFAR-10 check on the CIFAR-10 JPEG copy (cifar10-jpeg/ or cifar10-jpeg.tar.gz under --data-dir): 500 images a class, MLP, 60 epochs on noisy labels, 10 verified samples a class, five repeats (version 1: torchvision's CIFAR-10, one repeat).",
                small.timeout_s, small.device)
    )
    for ds, arch in (("cifar10", "resnet18"), ("cifar100", "resnet18")):
        out.append(
            Profile(
                "label-noise",
                ds,
                1,
                {"dataset": [ds], "arch": [arch], "noise": ["symmetric", "asymmetric"], "rate": [0.25, 0.5], "verified": ["clean"]},
                seeds=(0, 1, 2),
                settings={
                    "train": CIFAR_RECIPE,
                    "verified_fraction": 0.02,
                    "verified_min_per_class": 5,
                    "curvature": {"h": 1e-3, "n_iter": 10, "percentile": 0.0},
                    "val_fraction": 0.1,
                    **CONVENTIONS,
                },
                description=f"{ds.upper()} on a GPU: ResNet-18, 100 epochs on noisy labels, symmetric and asymmetric noise at 25 % and 50 %, a 2 % verified set (1,000 samples, as in Verifix), three repeats.",
                device="cuda",
            )
        )
    # every version above was defined before the hidden-data salt: its flips follow from public
    # seeds (published entries keep reproducing); the next version of the default and claim
    # profiles seeds them with the results store's secret salt (``CellContext.hidden_seed``)
    return salted_successors(out, SALTED_PROFILES, "The label flips are seeded with the results store's secret salt (version {version}: public seeds).")


#: the profiles that get a salted version (the default ``quick`` and the profiles the claim is
#: read on), numbered after the newest unsalted version of the same name
SALTED_PROFILES = ("quick", "quick-lowcurv", "cifar10-small")



def _hash_seed(*parts: Any) -> int:
    return int(hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:8], 16) % (2**31)


class LabelNoiseTrack(Track):
    name = "label-noise"
    summary = "Correct a model trained on noisy labels with a small verified set; report clean test accuracy after correction."
    contestant_kind = "noise-correction"
    fixtures = ("training",)
    primary_metric = "acc_after"
    secondary_metrics = ("acc_before", "gain")
    metric_directions = {"acc_after": "max", "acc_before": "max", "gain": "max"}
    #: ``gain`` = acc_after − acc_before, a difference of two accuracies
    metric_bounds = {"acc_after": (0.0, 1.0), "acc_before": (0.0, 1.0), "gain": (-1.0, 1.0), "class_acc_*": (0.0, 1.0)}
    metric_units = {"acc_after": "%", "acc_before": "%", "gain": "pp", "class_acc_*": "%"}
    baseline_method = "none"
    reference_methods = ("none",)
    private_cache = ("label-noise",)
    #: which labels are flipped (the pool's and the held-out split's): their seeds go through
    #: ``CellContext.hidden_seed``, salted for a salted profile
    hidden_data = True

    def __init__(self) -> None:
        self._splits: dict[str, D.Splits] = {}

    #: the profiles the seed paper's claim is read on (add a new profile version here)
    claim_profiles = ("label-noise/quick@2", "label-noise/quick-lowcurv@3", "label-noise/cifar10-small@3",
                      "label-noise/quick@1", "label-noise/quick-lowcurv@2", "label-noise/cifar10-small@2")

    def claims(self) -> list[Claim]:
        """Verifix: the corrected model's clean test accuracy beats the uncorrected one (``none``)
        by 7.36 points at 25 % symmetric noise."""
        return [
            Claim(
                id="verifix-symmetric-25", system="Verifix",
                paper=Paper("2403.08618", "Verifix: Post-Training Correction to Improve Label Noise Robustness with Verified Samples", 2024),
                quote="Experiments on the CIFAR dataset with 25% synthetic corruption show 7.36% generalization improvements on average.",
                track=self.name, profiles=self.claim_profiles, metric="acc_after", seed=Row("verifix"), comparator=Row("none"),
                kind=SUPERIORITY, effect=0.0736, where={"noise": "symmetric", "rate": 0.25},
                paper_number="+7.36 points of test accuracy at 25 % symmetric noise, mean over CIFAR-10/100 settings (abstract)",
            )
        ]

    def profiles(self) -> list[Profile]:
        return _profiles()

    # ---- helpers ---------------------------------------------------------------------------
    def splits(self, profile: Profile, dataset: str, ctx: CellContext) -> D.Splits:
        key = f"{profile.id}|{dataset}|{ctx.data_dir}|{ctx.device}"
        if key not in self._splits:
            ds = D.resolve(dataset, ctx.data_dir, ctx.cache_dir)
            st = profile.settings
            self._splits[key] = D.make_splits(
                ds,
                val_fraction=0.0,
                seed=_hash_seed(profile.id, dataset),
                max_train_per_class=st.get("max_train_per_class"),
                max_test=st.get("max_test"),
                device=ctx.device,
            )
        return self._splits[key]

    def _noisy_model(
        self,
        key_payload: Mapping[str, Any],
        ctx: CellContext,
        factory: Any,
        x: torch.Tensor,
        y_noisy: torch.Tensor,
        recipe: Mapping[str, Any],
        num_classes: int,
        seed: int,
        ds: D.DatasetTensors,
        curvature: Mapping[str, Any] | None,
    ) -> tuple[torch.nn.Module, dict[str, Any], bool]:
        """Train (or load from the cache) the noisy-label model; with ``curvature`` also the
        per-sample curvature under it. Returns (model, meta, served_from_cache)."""
        key = hashlib.sha256(canonical_json(dict(key_payload)).encode()).hexdigest()[:24]
        labels_sha = hashlib.sha256(y_noisy.cpu().numpy().astype(np.int64).tobytes()).hexdigest()
        path = Path(ctx.cache_dir) / "label-noise" / key if ctx.cache_dir else None

        def load() -> tuple[torch.nn.Module, dict[str, Any]] | None:
            if path is None or not (path / "meta.json").exists():
                return None
            meta = json.loads((path / "meta.json").read_text())
            if meta.get("labels_sha256") != labels_sha:
                return None
            m = factory()
            m.load_state_dict(torch.load(path / "model.pt", map_location=x.device, weights_only=True))
            if curvature is not None:
                meta["curvature"] = np.load(path / "curvature.npy")
            return m.to(x.device).eval(), meta

        def compute() -> tuple[torch.nn.Module, dict[str, Any]]:
            m = factory()
            t0 = time.perf_counter()
            T.train(m, x, y_noisy, method=_standard(), recipe=recipe, num_classes=num_classes, seed=seed, pad=ds.crop_pad, hflip=ds.hflip, progress=lambda w, f: ctx.progress("noisy training", f))
            meta: dict[str, Any] = {"train_s": time.perf_counter() - t0, "labels_sha256": labels_sha, "key": dict(key_payload)}
            if curvature is not None:
                ctx.progress("curvature", 0.0)
                t1 = time.perf_counter()
                units = str(curvature.get("units", "pixel"))
                if units not in ("pixel", "normalized"):
                    raise ValueError(f"curvature units {units!r}: use pixel or normalized")
                meta["curvature"] = input_curvature(m, x, y_noisy, h=float(curvature["h"]), n_iter=int(curvature["n_iter"]), seed=seed, std=ds.std if units == "normalized" else None)
                meta["curvature_s"] = time.perf_counter() - t1
            return m.eval(), meta

        if path is None:
            m, meta = compute()
            return m, meta, False
        with locks.lock_for(path):  # one process trains; concurrent cells wait and load
            got = load()
            if got is not None:
                return got[0], got[1], True
            m, meta = compute()
            tmp = locks.temp_dir_for(path)
            torch.save({k: v.detach().cpu() for k, v in m.state_dict().items()}, tmp / "model.pt")
            if curvature is not None:
                np.save(tmp / "curvature.npy", meta["curvature"])
            (tmp / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "curvature"}, sort_keys=True, default=str))
            locks.replace_dir(tmp, path)
            return m, meta, False

    # ---- the pipeline's pieces -----------------------------------------------------------------
    def fixture(self, profile: Profile, cell: Cell, ctx: CellContext) -> _Fixture:
        """Splits, verified set, injected noise, the noisy-label model (trained once, cached) and
        its clean test accuracy (``acc_before``)."""
        st = profile.settings
        ax = cell.axes
        dataset, arch, noise, rate, strategy = str(ax["dataset"]), str(ax["arch"]), str(ax["noise"]), float(ax["rate"]), str(ax.get("verified", "clean"))
        if strategy not in ("clean", "low-curvature"):
            raise ValueError(f"unknown verified strategy {strategy!r}; use clean or low-curvature")
        device = ctx.device
        sp = self.splits(profile, dataset, ctx)
        ds = sp.dataset
        C = ds.num_classes
        y_clean = sp.y_pool.cpu().numpy().astype(np.int64)
        n_all = len(y_clean)
        counts = verified_counts(y_clean, C, float(st.get("verified_fraction", 0.01)), int(st.get("verified_min_per_class", 1)))
        mapping, mapping_name = asymmetric_mapping(ds.classes) if noise == "asymmetric" else ({}, "")
        # the flips are the hidden truth: their seeds go through ctx.hidden_seed (the public seed
        # itself for an unsalted profile, whose context carries no salt)
        public_noise_seed = _hash_seed(profile.id, dataset, noise, rate, cell.repeat)
        noise_seed, val_noise_seed = ctx.hidden_seed(public_noise_seed), ctx.hidden_seed(public_noise_seed + 1)
        init_seed = _hash_seed(profile.id, dataset, arch, cell.repeat)

        # ---- verified set (clean: before the noise, held out of training) and noise ----------
        if strategy == "clean":
            ver = carve_verified(y_clean, C, float(st.get("verified_fraction", 0.01)), int(st.get("verified_min_per_class", 1)), _hash_seed(profile.id, dataset, "verified", cell.repeat))
            keep = np.setdiff1d(np.arange(n_all), ver)
            val = np.zeros(0, dtype=np.int64)
        else:
            ver = np.zeros(0, dtype=np.int64)
            vf = float(st.get("val_fraction", 0.0))
            val = D.stratified_split(y_clean, vf, _hash_seed(profile.id, dataset, "val", cell.repeat)) if vf > 0 else np.zeros(0, dtype=np.int64)
            keep = np.setdiff1d(np.arange(n_all), val)
        y_keep_clean = y_clean[keep]
        y_keep_noisy = inject_noise(y_keep_clean, C, noise, rate, noise_seed, mapping)
        y_val_noisy = inject_noise(y_clean[val], C, noise, rate, val_noise_seed, mapping)
        tcounts = transition_counts(y_keep_clean, y_keep_noisy, C)
        keep_t = torch.from_numpy(keep).to(device)
        x_pool = sp.x_pool[keep_t]
        y_pool_noisy = torch.from_numpy(y_keep_noisy).to(device)

        def factory(seed: int = init_seed) -> torch.nn.Module:
            return M.build(arch, ds.shape, C, ds.mean, ds.std, seed).to(device)

        recipe = dict(st["train"])
        curv_cfg = dict(st.get("curvature", {})) if strategy == "low-curvature" else None
        key_payload = {
            "profile": profile.id,
            "dataset": dataset,
            "n_pool": int(len(keep)),
            "max_train_per_class": st.get("max_train_per_class"),
            "arch": arch,
            "noise": noise,
            "rate": rate,
            "verified": strategy,
            "verified_counts": counts.tolist() if strategy == "clean" else None,
            "recipe": recipe,
            "curvature": curv_cfg,
            "repeat": cell.repeat,
            "seed": init_seed,
            # a salted profile's noisy model depends on the salt (its flips): one cache entry per salt
            **({"salt": ctx.salt_id} if profile.salted else {}),
        }
        ctx.progress("noisy training", 0.0)
        noisy_model, meta, shared = self._noisy_model(key_payload, ctx, factory, x_pool, y_pool_noisy, recipe, C, init_seed, ds, curv_cfg)
        if strategy == "clean":
            ver_t = torch.from_numpy(ver).to(device)
            x_ver, y_ver = sp.x_pool[ver_t], sp.y_pool[ver_t]
            ver_pool_idx = ver
            precision = 1.0
        else:
            # sizes from the noisy class counts: the clean ones are unknown in this setting
            noisy_counts = verified_counts(y_keep_noisy, C, float(st.get("verified_fraction", 0.01)), int(st.get("verified_min_per_class", 1)))
            local = low_curvature_verified(meta["curvature"], y_keep_noisy, noisy_counts, float(curv_cfg.get("percentile", 0.0)) if curv_cfg else 0.0)
            local_t = torch.from_numpy(local).to(device)
            x_ver, y_ver = x_pool[local_t], y_pool_noisy[local_t]
            ver_pool_idx = keep[local]
            precision = float((y_keep_noisy[local] == y_keep_clean[local]).mean()) if len(local) else float("nan")

        # ---- before ---------------------------------------------------------------------------
        ctx.progress("evaluate", 0.0)
        t_eval = time.perf_counter()
        before = T.accuracy(noisy_model, sp.x_test, sp.y_test, C)
        eval_s = time.perf_counter() - t_eval
        ctx.progress("correct", 0.0)
        return _Fixture(
            sp=sp, num_classes=C, arch=arch, recipe=recipe, noise=noise, rate=rate, strategy=strategy, keep=keep, val=val,
            x_pool=x_pool, y_pool_noisy=y_pool_noisy, y_val_noisy=y_val_noisy, x_ver=x_ver, y_ver=y_ver, ver_pool_idx=ver_pool_idx,
            precision=precision, tcounts=tcounts, mapping=mapping, mapping_name=mapping_name, noisy_model=noisy_model, meta=meta,
            shared=shared, key_payload=key_payload, before=before, eval_s=eval_s, device=device,
        )

    def view(self, fixture: _Fixture, cell: Cell, method: Method) -> NoiseView:
        """The noisy model, the verified set, the noisy pool (and the noisy held-out split), a
        model factory and the training fixture: nothing of the test split, no clean label of
        the pool. The contestant worker receives a copy (the model as its weights)."""
        f = fixture
        ds = f.sp.dataset
        return NoiseView(
            model=f.noisy_model,
            x_verified=f.x_ver,
            y_verified=f.y_ver,
            x_pool=f.x_pool,
            y_pool_noisy=f.y_pool_noisy,
            num_classes=f.num_classes,
            model_factory=M.ModelFactory(f.arch, ds.shape, f.num_classes, ds.mean, ds.std, cell.seed, f.device),
            train=T.TrainingFixture(f.recipe, f.num_classes, cell.seed, pad=ds.crop_pad, hflip=ds.hflip),
            seed=cell.seed,
            generator=torch.Generator().manual_seed(cell.seed),
            recipe=dict(f.recipe),
            info={},
            x_val=f.sp.x_pool[torch.from_numpy(f.val).to(f.device)] if len(f.val) else None,
            y_val_noisy=torch.from_numpy(f.y_val_noisy).to(f.device) if len(f.val) else None,
        )

    def evaluate(self, fixture: _Fixture, cell: Cell, contest: ContestResult) -> CellResult:
        """Clean test accuracy of the corrected model (``acc_after``), the gain over the noisy one."""
        f = fixture
        sp, C = f.sp, f.num_classes
        corrected = contest.output
        report = contest.reports[0]
        t2 = time.perf_counter()
        after = T.accuracy(corrected, sp.x_test, sp.y_test, C)
        eval_s = f.eval_s + time.perf_counter() - t2
        before = f.before

        metrics: dict[str, float] = {"acc_after": after["acc"], "acc_before": before["acc"], "gain": after["acc"] - before["acc"]}
        for c, a in enumerate(after["per_class"]):
            metrics[f"class_acc_{c}"] = a
        noisy_train_s = float(f.meta["train_s"])
        curvature_s = float(f.meta.get("curvature_s", 0.0))
        correction_s = contest.seconds
        timings = {
            "noisy_train_s": noisy_train_s,
            "curvature_s": curvature_s,
            "correction_s": correction_s,
            "correction_training_s": float(report.get("fixture_s", 0.0)),
            "evaluation_s": eval_s,
            "total_s": noisy_train_s + curvature_s + correction_s + eval_s,
        }
        tcounts = f.tcounts
        realized = tcounts.astype(np.float64) / np.maximum(tcounts.sum(1, keepdims=True), 1)
        n_flipped = int(tcounts.sum() - np.trace(tcounts))
        info: dict[str, Any] = {
            "primary_metric": self.primary_metric,
            "pool_size": int(len(f.keep)),
            "verified_size": int(len(f.y_ver)),
            "verified_strategy": f.strategy,
            "verified_label_precision": f.precision,
            "val_size": int(len(f.val)),
            "noise": f.noise,
            "noise_rate_requested": f.rate,
            "noise_rate_realized": n_flipped / max(int(tcounts.sum()), 1),
            "n_flipped": n_flipped,
            "asymmetric_mapping": {str(k): int(v) for k, v in f.mapping.items()} if f.mapping else None,
            "asymmetric_mapping_name": f.mapping_name or None,
            "noisy_model_shared": f.shared,
            "noisy_model_key": hashlib.sha256(canonical_json(dict(f.key_payload)).encode()).hexdigest()[:24],
            "fixture_calls": int(report.get("fixture_calls", 0)),
            "test_size": int(len(sp.y_test)),
            "acc_before_per_class": before["per_class"],
            **{f"method_{k}": v for k, v in dict(report.get("info", {})).items()},
        }
        if C <= 20:
            info["transition_matrix"] = realized.round(6).tolist()
        artifacts = [
            ArtifactOut.npy("transition", "transition_counts.npy", tcounts),
            ArtifactOut.npy("indices", "verified_indices.npy", np.sort(f.ver_pool_idx).astype(np.int64)),
        ]
        return CellResult(metrics=metrics, timings=timings, artifacts=artifacts, info=info)


@dataclass
class _Fixture:
    """One cell's world (harness side only: the clean labels and the test split stay here)."""

    sp: D.Splits
    num_classes: int
    arch: str
    recipe: dict[str, Any]
    noise: str
    rate: float
    strategy: str
    keep: np.ndarray
    val: np.ndarray
    x_pool: torch.Tensor
    y_pool_noisy: torch.Tensor
    y_val_noisy: np.ndarray
    x_ver: torch.Tensor
    y_ver: torch.Tensor
    ver_pool_idx: np.ndarray
    precision: float
    tcounts: np.ndarray
    mapping: Mapping[int, int]
    mapping_name: str
    noisy_model: torch.nn.Module
    meta: dict[str, Any]
    shared: bool
    key_payload: dict[str, Any]
    before: dict[str, Any]
    eval_s: float
    device: str


def _standard() -> Any:
    from ... import registry as plugins

    return plugins.method("standard")
