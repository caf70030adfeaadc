"""The ``privacy`` and ``memorization`` tracks: membership inference and memorization proxies.

Both tracks read one *model bank* per (dataset, architecture, recipe, repeat), trained once and
cached on disk under ``<cache>/privacy/<key>/`` (the key hashes everything the models depend on),
so every contestant cell reuses it. Its training time is recorded in every cell that uses it,
with ``info.models_shared`` saying whether this cell trained it or read it.

**Masks** (``train/generate_save_subsamples.ipynb`` of Curvature Clues). The query set is
the dataset's training split (or a fixed per-class subsample of it, ``max_train_per_class``).
One numpy generator, seeded from (dataset, universe, repeat) but not from the profile or the
method, draws Bernoulli(0.5) rows over the queries. The profile setting ``shadow_masks`` says
how the S shadows are formed (``masks_for``):

* ``independent`` (the reference's; the default, and the setting of every profile from
  version 2 on): S + T
  independent Bernoulli rows; rows 0..S-1 train the shadows and rows S..S+T-1 the targets, as
  the reference's shadows 0-63 and targets 64-66 are all independent rows of its first 128
  (the complements, rows 128-255, are never shadows there). A query's "in" count over the
  shadows is Binomial(S, 1/2), so a few queries may have no "in" (or no "out") shadow: the
  attacks fall back to pooled statistics for them (``_mia.fit_in_out``) and the Feldman-Zhang
  estimate is NaN for them (left out of the correlations).
* ``paired`` (the version-1 profiles): S/2 Bernoulli rows plus their complements, so every
  query is "in" for exactly S/2 shadows (lower-variance fits; not the reference's protocol),
  then T fresh rows for the targets.

**Hidden masks.** The targets' membership (what a privacy attack must guess) and the shadows'
masks behind the Feldman-Zhang estimate (what a memorization proxy is ranked against) are hidden
generated data. In a salted profile (privacy ``quick@3`` and ``cifar10-cpu@2``, memorization
``quick@3`` and ``quick-dp@3``) the shadows' and the targets' rows come from two generators whose
seeds are mixed with the results store's secret salt (``PrivacyBase.masks_for_cell``,
``CellContext.hidden_seed``), so a contestant cannot rebuild them from the public seed formula,
and the masks one track shows (``shadow_in``; the target's members) say nothing of those it
hides. The versions defined before the salt (every other) draw both from one public seed and
keep their published numbers.

Separate targets, not leave-one-out: with complementary or exactly balanced masks, leaving one
model out would reveal the membership of each query through the in/out counts of the remaining
shadows. A query is a member of a target when its mask holds it (about half the queries).

**privacy** (contestants: ``privacy`` plugins with role ``attack``). For each target the plugin
receives a ``PrivacyView``: the queries (x in [0, 1], labels), the target and the shadows as black
boxes (batch -> logits, no gradients; forwards are counted), ``shadow_in`` (S, N), the input
views (identity, and horizontal flip where the dataset allows it) and the models' normalization
std. All views of one cell share the cell's seed and the same shadow black-box objects, so a plugin
may compute the shadows' statistics once per cell (``plugins/privacy/_mia.cached``), as the reference
precomputes them once. It returns one finite score per query (higher = member). The harness
computes AUC,
balanced accuracy at the equal-error point, TPR at 1 % and 0.1 % FPR (interpolated, as the
reference) and the realized FPR of the nearest real threshold, per target, then mean and std
over targets. Primary metric: AUC.

**memorization** (contestants: role ``proxy``). The Feldman-Zhang estimate is computed from the
same shadows: mem_i = mean over shadows holding i of correct - mean over the others. For each
target the proxy scores the target's members (white-box final model and training checkpoints,
no shadows, so the estimate is out of its reach); the harness reports the Spearman (primary),
Pearson and cosine agreement of the score with the estimate, mean and std over targets.

**Isolation.** Both tracks run on the cell pipeline (``Track.run_cell``): ``fixture`` (the
universe and the banks), ``view`` (one ``PrivacyView`` per target), ``evaluate`` (harness side,
where the targets' membership and the estimate live). ``score()`` runs in the contestant worker
(``coreset_bench.contest``), which receives the views of a cell together (models as their
architecture and weights; the shadow boxes and the queries shared as in the harness) and holds
nothing else: no target membership, no track memo, and the banks' files under
``<cache>/privacy`` are refused by its audit hook (``private_cache``).

**DP.** ``privacy/quick-dp`` trains the targets with the ``dp-sgd`` training plugin at each
epsilon of its grid and attacks them with the non-private shadows of ``quick`` (the reference's
"effect of privacy" set-up: DP targets, non-private shadows); version 1 calibrates sigma with the
RDP accountant, version 2 with PRV (``dp-sgd``'s ``accountant``, the reference's default). Each
DP cell stores sigma (``target_noise_multiplier``), the realized epsilon (``target_epsilon``,
always under the tight PRV accountant, whatever calibrated sigma) and ``info["dp"]``
(calibrating ``accountant``, ``epsilon_accountant``, delta, per-model sigma and epsilon).

``memorization/quick-dp`` is the epsilon sweep of arXiv 2402.18726 (settings ``shadow_training =
"target"``): at each epsilon (``inf``: the non-private reference, the same loop without clipping
or noise) the shadows too are DP-trained, so the Feldman-Zhang estimate is the memorization of
the DP algorithm; cells report the distribution (mean, std, 10/50/90 % quantiles) of the proxy's
score over the targets' members (``score_*``; input-curvature: the curvature) and of the
estimate (``mem_*``), the estimate's standard error (``mem_se_mean``) and its split-half
reliability (``mem_split_half_spearman``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import data as D
from ... import locks
from ... import models as M
from . import metrics as PM
from ... import training as T
from ...claims import BEST_NON_SEED, MONOTONE, SUPERIORITY, Claim, Paper, Row
from ...contest import ContestResult
from ...kinds import Method, PrivacyView, readonly
from ...validation import validate_scores  # noqa: F401 - the privacy kind's output check, re-exported
from ...cells import salted_successors
from ..base import ArtifactOut, Cell, CellContext, CellResult, Profile, Track, canonical_json

# ---- profiles -------------------------------------------------------------------------------------

TINY = {
    "max_train_per_class": 30,
    "n_shadows": 4,
    "n_targets": 2,
    "recipe": {"epochs": 10, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4},
    "checkpoints": [5, 10],
    "shadow_masks": "paired",
}
QUICK = {
    "n_shadows": 32,
    "n_targets": 3,
    "recipe": {"epochs": 30, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4},
    "checkpoints": [10, 20, 30],
    "shadow_masks": "paired",
}
#: spec 1.7: RMSprop lr 1e-3, 20 epochs, batch 128, x0.1 at 60 % and 80 %, no augmentation.
#: Version-1 profiles calibrate sigma with the RDP accountant (what the harness did first).
DP_RECIPE = {"epochs": 20, "batch_size": 128, "lr": 1e-3, "milestones": [0.6, 0.8], "gamma": 0.1, "delta": 1e-5, "max_grad_norm": 1.0, "augment": False, "accountant": "rdp"}
#: from version 2 on: the accountant ``PrivacyEngine()`` defaults to in the pinned Opacus (>= 1.5): PRV
DP_RECIPE_2 = {**DP_RECIPE, "accountant": "prv"}
#: version 2 of every profile: the reference's independent shadow masks
V2 = {"shadow_masks": "independent"}
#: the non-private reference of an epsilon sweep (the DP-SGD loop without clipping or noise)
NONPRIVATE = "inf"


#: CIFAR-10 on the CPU (issue 22): a class-balanced subset of the JPEG copy, cnn-small, the
#: reference's independent masks; sized so the 20-model bank trains in about a quarter of an hour
#: of one core (measured figure in the profile's description).
CIFAR_CPU = {
    "max_train_per_class": 200,
    "n_shadows": 16,
    "n_targets": 4,
    "recipe": {"epochs": 20, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "weight_decay": 5e-4},
    "checkpoints": [10, 20],
    "shadow_masks": "independent",
}


def _cifar(bs: int) -> dict[str, Any]:
    # train/train_cifar10.py: ResNet-18, 300 epochs, SGD 0.1, momentum 0.9, wd 1e-4, x0.1 at 60/80 %
    return {
        "n_shadows": 64,
        "n_targets": 3,
        "recipe": {"epochs": 300, "batch_size": bs, "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4, "schedule": "multistep", "milestones": [0.6, 0.8], "gamma": 0.1},
        "checkpoints": [60, 120, 180, 240, 300],
        "shadow_masks": "paired",
    }


#: memorization against epsilon (arXiv 2402.18726 links 2 and 3): every model of the bank, shadows
#: included, is trained with DP-SGD at the cell's epsilon, so the Feldman-Zhang estimate is the
#: memorization of the DP algorithm itself. Sized for the CPU: 600 digits (60 a class), MLP,
#: 32 shadows and 2 targets per epsilon (5 x 34 DP models); per-sample gradients dominate.
MEM_DP = {
    "max_train_per_class": 60,
    "n_shadows": 32,
    "n_targets": 2,
    "recipe": DP_RECIPE_2,
    "target_recipe": DP_RECIPE_2,
    "shadow_training": "target",
    "shadow_masks": "independent",
}


def _privacy_profiles(track: str) -> list[Profile]:
    digits_mlp = {"dataset": ["digits"], "arch": ["mlp"]}
    digits_cnn = {"dataset": ["digits"], "arch": ["cnn-small"]}
    out = [
        Profile(track, "tiny", 1, {**digits_mlp, "training": ["standard"]}, settings=TINY,
                description="Seconds, for tests: 300 digits, MLP, 4 shadows (2 masks + complements), 2 targets."),
        Profile(track, "tiny", 2, {**digits_mlp, "training": ["standard"]}, settings={**TINY, **V2},
                description="Seconds, for tests: 300 digits, MLP, 4 independent shadows, 2 targets."),
        Profile(track, "quick", 1, {**digits_cnn, "training": ["standard"]}, settings=QUICK,
                description="Digits on the CPU: cnn-small, 32 shadows (16 masks + complements), 3 targets; the 35-model bank trains once (about 4 minutes on a free core), then each attack takes seconds (curvature: minutes)."),
        Profile(track, "quick", 2, {**digits_cnn, "training": ["standard"]}, settings={**QUICK, **V2, "n_targets": 12},
                description="Digits on the CPU: cnn-small, 32 independent shadows (the reference's masks), 12 targets so that AUC intervals over targets separate methods 1-2 points apart; the 44-model bank trains once (about 5 minutes on a free core, scaled from the 35 models of quick@1 in about 4), then each attack takes seconds (curvature: minutes)."),
    ]
    out.append(
        Profile(track, "cifar10-cpu", 1, {"dataset": ["cifar10-jpeg"], "arch": ["cnn-small"], "training": ["standard"]}, settings=CIFAR_CPU,
                description="CIFAR-10 on the CPU: 2,000 images of the JPEG copy (200 a class; --data-dir holding cifar10-jpeg/ or its .tar.gz), cnn-small, 20 epochs with CIFAR augmentation, 16 independent shadows and 4 targets (about 1,000 members each). Far smaller than the papers' ResNet-18 on 50,000 images (the models reach about 40 % test accuracy): it tests the attacks' ordering on real images at CPU scale, not the papers' absolute numbers. Measured: the 7 privacy attacks (bank of 20 models included) took 95 min wall on 2 cores shared with other runs, 58 CPU-minutes; the bank 31 min of it, the curvature attack (41 forwards per query, model and view) most of the rest."),
    )
    if track == "privacy":
        out += [
            Profile(track, "tiny-dp", 1, {**digits_mlp, "training": ["dp-sgd"], "epsilon": [8.0]},
                    settings={**TINY, "target_recipe": {**DP_RECIPE, "epochs": 3, "batch_size": 32}},
                    description="Seconds, for tests: DP-SGD targets (RDP accountant) at epsilon 8 against the shadows of tiny@1."),
            Profile(track, "tiny-dp", 2, {**digits_mlp, "training": ["dp-sgd"], "epsilon": [8.0]},
                    settings={**TINY, **V2, "target_recipe": {**DP_RECIPE_2, "epochs": 3, "batch_size": 32}},
                    description="Seconds, for tests: DP-SGD targets (PRV accountant) at epsilon 8 against the shadows of tiny@2."),
            Profile(track, "quick-dp", 1, {**digits_cnn, "training": ["dp-sgd"], "epsilon": [1.0, 4.0, 16.0, 64.0]},
                    settings={**QUICK, "target_recipe": DP_RECIPE},
                    description="DP-SGD targets (epsilon grid, delta 1e-5, C 1, RDP accountant) attacked with the non-private shadows of quick@1: attack AUC against epsilon."),
            Profile(track, "quick-dp", 2, {**digits_cnn, "training": ["dp-sgd"], "epsilon": [1.0, 4.0, 16.0, 64.0]},
                    settings={**QUICK, **V2, "target_recipe": DP_RECIPE_2},
                    description="DP-SGD targets (epsilon grid, delta 1e-5, C 1, PRV accountant as the reference's PrivacyEngine()) attacked with the non-private independent shadows of quick@2 (3 targets per epsilon): attack AUC against epsilon."),
        ]
    else:
        out += [
            Profile(track, "tiny-dp", 1, {**digits_mlp, "training": ["dp-sgd"], "epsilon": [8.0, NONPRIVATE]},
                    settings={**TINY, **MEM_DP, "max_train_per_class": 30, "n_shadows": 8,
                              "recipe": {**DP_RECIPE_2, "epochs": 3, "batch_size": 32}, "target_recipe": {**DP_RECIPE_2, "epochs": 3, "batch_size": 32}},
                    description="Seconds, for tests: the epsilon sweep at epsilon 8 and non-private, 300 digits, MLP, 8 DP shadows, 2 targets."),
            Profile(track, "quick-dp", 1, {**digits_mlp, "training": ["dp-sgd"], "epsilon": [1.0, 4.0, 16.0, 64.0, NONPRIVATE]},
                    settings=MEM_DP,
                    description="Memorization and input-loss curvature against epsilon (arXiv 2402.18726): digits, MLP, every model trained by DP-SGD (RMSprop, 20 epochs, C 1, delta 1e-5, PRV accountant) at epsilon 1, 4, 16, 64 and without privacy (inf: no clipping, no noise), on 600 digits (60 a class); 32 independent shadows per epsilon (about 16 in / 16 out per sample) give the Feldman-Zhang estimate and its standard error, 2 targets are scored. Cost: 170 DP-SGD models; measured: the 4 proxies x 5 epsilons (20 cells, banks included) took 13.4 min wall on 2 cores shared with other runs, 246 CPU-seconds."),
            # version 2: three repeats (independent banks and targets), so the curvature-against-epsilon
            # trend has an interval over repeats (version 1 has one: no interval at all)
            Profile(track, "quick-dp", 2, {**digits_mlp, "training": ["dp-sgd"], "epsilon": [1.0, 4.0, 16.0, 64.0, NONPRIVATE]},
                    settings=MEM_DP, seeds=(0, 1, 2),
                    description="The epsilon sweep of quick-dp@1 (arXiv 2402.18726: memorization and input-loss curvature against epsilon; digits, MLP, DP-SGD at epsilon 1, 4, 16, 64 and without privacy, 32 shadows per epsilon, 2 targets) with three repeats, each with its own bank and targets, so the trend has an interval (version 1: one repeat)."),
        ]
    for ds, bs in (("cifar10", 256), ("cifar100", 512)):
        out.append(
            Profile(track, ds, 1, {"dataset": [ds], "arch": ["resnet18"], "training": ["standard"]}, settings=_cifar(bs), device="cuda",
                    description=f"{ds.upper()} on a GPU as the reference: ResNet-18, 300 epochs, 64 shadows (32 masks + complements), 3 targets.")
        )
        out.append(
            Profile(track, ds, 2, {"dataset": [ds], "arch": ["resnet18"], "training": ["standard"]}, settings={**_cifar(bs), **V2}, device="cuda",
                    description=f"{ds.upper()} on a GPU as the reference: ResNet-18, 300 epochs, 64 independent shadows (the reference's masks), 3 targets.")
        )
    # every version above was defined before the hidden-data salt: its masks follow from public
    # seeds (published entries keep reproducing); the next version of the default and claim
    # profiles draws them from the store's secret salt (``PrivacyBase.masks_for_cell``)
    return salted_successors(
        out, SALTED_PROFILES[track], "The membership masks of shadows and targets are drawn from two seeds salted with the results store's secret (version {version}: one public seed)."
    )


#: the profiles that get a salted version (the track's default ``quick`` and the profiles its
#: claims are read on), numbered after the newest unsalted version of the same name
SALTED_PROFILES = {"privacy": ("quick", "cifar10-cpu"), "memorization": ("quick", "quick-dp")}


# ---- helpers ---------------------------------------------------------------------------------------


def _seed(obj: Any) -> int:
    return int(hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:8], 16) % (2**31 - 1)



class BlackBox:
    """Logits-only access to a model: ``box(x) -> logits`` (eval mode, no gradients, batched).

    ``forwards`` counts the samples sent through the model (the attack's query cost).
    """

    def __init__(self, model: torch.nn.Module, batch_size: int = 2048) -> None:
        self.__model = model
        self._batch = batch_size
        self.forwards = 0

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.__model.eval()
        self.forwards += len(x)
        out = [self.__model(x[i : i + self._batch]).float() for i in range(0, len(x), self._batch)]
        return torch.cat(out) if out else torch.zeros(0)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _hflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


# ---- the model bank --------------------------------------------------------------------------------


@dataclass
class Universe:
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    ds: D.DatasetTensors
    index: np.ndarray  # positions in the dataset's training split


@dataclass
class BankSpec:
    """Everything a set of models depends on; its hash is the cache key."""

    dataset: str
    universe: Mapping[str, Any]
    arch: str
    training: str
    recipe: Mapping[str, Any]
    role: str  # shadows | targets
    n_models: int
    mask_seed: int
    checkpoints: tuple[int, ...] = ()
    mask_scheme: str = "independent"

    @property
    def key(self) -> str:
        return hashlib.sha256(canonical_json(self.__dict__).encode()).hexdigest()[:24]


@dataclass
class Bank:
    spec: BankSpec
    masks: np.ndarray  # (K, N) bool
    states: list[dict[str, torch.Tensor]]
    checkpoints: list[list[dict[str, torch.Tensor]]]  # per model, per checkpoint epoch
    meta: dict[str, Any]
    shared: bool
    correct: np.ndarray  # (K, N) bool: eval-mode prediction on each query is right
    factory: Callable[[int], torch.nn.Module] = field(repr=False, default=lambda k: torch.nn.Identity())

    def model(self, k: int, state: Mapping[str, torch.Tensor] | None = None) -> torch.nn.Module:
        m = self.factory(k)
        m.load_state_dict(state if state is not None else self.states[k])
        return m.eval()


MASK_SCHEMES = ("independent", "paired")


def masks_for(n_queries: int, n_shadows: int, n_targets: int, seed: int, scheme: str = "independent") -> tuple[np.ndarray, np.ndarray]:
    """(shadow masks (S, N), target masks (T, N)) from one ``np.random.default_rng(seed)``.

    ``scheme="independent"`` (the reference's): S + T independent Bernoulli(0.5) rows, the first
    S for the shadows, the next T for the targets; a query's "in" count over the shadows is
    Binomial(S, 1/2). ``scheme="paired"``: S/2 Bernoulli rows and their complements (every query
    is "in" for exactly S/2 shadows; S must be even), then T independent rows for the targets.
    """
    if scheme not in MASK_SCHEMES:
        raise ValueError(f"unknown shadow_masks {scheme!r}; use one of {', '.join(MASK_SCHEMES)}")
    rng = np.random.default_rng(seed)
    if scheme == "independent":
        rows = rng.random((n_shadows + n_targets, n_queries)) < 0.5
        return rows[:n_shadows], rows[n_shadows:]
    if n_shadows % 2:
        raise ValueError(f"n_shadows must be even with shadow_masks='paired' (masks plus complements), got {n_shadows}")
    rows = rng.random((n_shadows // 2 + n_targets, n_queries)) < 0.5
    base = rows[: n_shadows // 2]
    return np.concatenate([base, ~base]), rows[n_shadows // 2 :]


#: a cell's fixture: the universe of queries, the shadow bank, the target bank
_Banks = tuple  # (Universe, Bank, Bank)


class PrivacyBase(Track):
    """Shared machinery of the privacy and memorization tracks."""

    contestant_kind = "privacy"
    fixtures = ("training",)
    role = "attack"
    #: the model banks (``<cache>/privacy/<key>/``: the targets' masks among them) are out of the
    #: contestant worker's reach
    private_cache = ("privacy",)
    #: the membership masks of shadows and targets (``masks_for_cell``: their seeds go through
    #: ``CellContext.hidden_seed`` for a salted profile)
    hidden_data = True

    def __init__(self) -> None:
        self._universes: dict[str, Universe] = {}
        self._banks: dict[str, Bank] = {}

    def profiles(self) -> list[Profile]:
        return _privacy_profiles(self.name)

    # -- data --------------------------------------------------------------------------------------
    def universe(self, profile: Profile, dataset: str, ctx: CellContext) -> Universe:
        st = profile.settings
        key = canonical_json([dataset, st.get("max_train_per_class"), str(ctx.data_dir), ctx.device])
        if key not in self._universes:
            ds = D.resolve(dataset, ctx.data_dir, ctx.cache_dir)
            y = ds.y_train.numpy()
            idx = np.arange(len(y))
            if st.get("max_train_per_class"):
                idx = D.per_class_subsample(y, int(st["max_train_per_class"]), seed=_seed(["privacy-universe", dataset]))
            dev = torch.device(ctx.device)
            assert ds.x_test is not None and ds.y_test is not None
            ti = torch.from_numpy(idx)
            self._universes[key] = Universe(ds.x_train[ti].to(dev), ds.y_train[ti].to(dev), ds.x_test.to(dev), ds.y_test.to(dev), ds, idx)
        return self._universes[key]

    def _universe_spec(self, profile: Profile, dataset: str, u: Universe) -> dict[str, Any]:
        return {"dataset": dataset, "max_train_per_class": profile.settings.get("max_train_per_class"), "n": int(len(u.y)), "index_sha": hashlib.sha256(u.index.astype(np.int64).tobytes()).hexdigest()[:16]}

    def _mask_seed(self, profile: Profile, dataset: str, u: Universe, repeat: int) -> int:
        """The public mask seed of a repeat (the universe's spec and the repeat, not the profile)."""
        return _seed(["privacy-masks", self._universe_spec(profile, dataset, u), repeat])

    def masks_for_cell(self, profile: Profile, dataset: str, u: Universe, repeat: int, hidden_seed: Callable[[int], int]) -> tuple[int, np.ndarray, int, np.ndarray]:
        """(shadow mask seed, shadow masks, target mask seed, target masks) of a repeat.

        An unsalted profile (``Profile.salted`` False, every version defined before the salt):
        both from one generator seeded with the public ``_mask_seed`` (``masks_for``). A salted
        profile: the shadows' rows from ``hidden_seed(public seed of "shadows")`` and the
        targets' from ``hidden_seed(public seed of "targets")`` (``CellContext.hidden_seed``: the
        public seed mixed with the store's secret salt), two generators, so the masks one track
        shows its contestant (the privacy track's ``shadow_in``; the memorization track's
        queries, the target's members) say nothing about the masks it hides (the targets'
        membership; the shadows' behind the Feldman-Zhang estimate)."""
        st = profile.settings
        scheme = str(st.get("shadow_masks", "independent"))  # the reference's, unless the profile says otherwise
        n_s, n_t, n = int(st["n_shadows"]), int(st["n_targets"]), len(u.y)
        public = self._mask_seed(profile, dataset, u, repeat)
        if not profile.salted:
            shadow_masks, target_masks = masks_for(n, n_s, n_t, public, scheme)
            return public, shadow_masks, public, target_masks
        s_seed, t_seed = hidden_seed(_seed([public, "shadows"])), hidden_seed(_seed([public, "targets"]))
        return s_seed, masks_for(n, n_s, 0, s_seed, scheme)[0], t_seed, masks_for(n, 0, n_t, t_seed, scheme)[1]

    # -- banks -------------------------------------------------------------------------------------
    def bank_specs(self, cell: Cell, ctx: CellContext) -> tuple[Universe, BankSpec, np.ndarray, BankSpec, np.ndarray]:
        """The shadow and target banks a cell needs (specs and masks), without training them."""
        from ... import registry as plugins

        profile = self.profile(cell.profile)
        st = profile.settings
        ax = cell.axes
        dataset, arch = str(ax["dataset"]), str(ax["arch"])
        u = self.universe(profile, dataset, ctx)
        uspec = self._universe_spec(profile, dataset, u)
        scheme = str(st.get("shadow_masks", "independent"))  # the reference's, unless the profile says otherwise
        s_seed, shadow_masks, t_seed, target_masks = self.masks_for_cell(profile, dataset, u, cell.repeat, ctx.hidden_seed)
        recipe = dict(st["recipe"])
        ck = tuple(int(e) for e in st.get("checkpoints", ()))
        training = str(ax.get("training", "standard"))
        t_recipe = dict(st.get("target_recipe", recipe)) if training != "standard" else recipe
        if "epsilon" in ax:
            t_recipe["epsilon"] = float(ax["epsilon"])
        trainer = plugins.method(training)
        t_ck = () if getattr(trainer, "own_loop", False) else ck
        # shadow_training "target": the shadows are trained exactly as the targets (the epsilon
        # sweep of the memorization track: the FZ estimate of the DP algorithm itself)
        if st.get("shadow_training", "standard") == "target":
            shadow_spec = BankSpec(dataset, uspec, arch, training, t_recipe, "shadows", len(shadow_masks), s_seed, t_ck, scheme)
        else:
            shadow_spec = BankSpec(dataset, uspec, arch, "standard", recipe, "shadows", len(shadow_masks), s_seed, (), scheme)
        target_spec = BankSpec(dataset, uspec, arch, training, t_recipe, "targets", len(target_masks), t_seed, t_ck, scheme)
        return u, shadow_spec, shadow_masks, target_spec, target_masks

    def banks(self, cell: Cell, ctx: CellContext) -> tuple[Universe, Bank, Bank]:
        """The cell's shadow and target banks, from the cache or trained now (once)."""
        u, sspec, smasks, tspec, tmasks = self.bank_specs(cell, ctx)
        return u, self._bank(sspec, smasks, u, ctx), self._bank(tspec, tmasks, u, ctx)

    def _bank(self, spec: BankSpec, masks: np.ndarray, u: Universe, ctx: CellContext) -> Bank:
        from ... import registry as plugins

        mem_key = f"{spec.key}|{ctx.device}"
        trainer = plugins.method(spec.training)
        ds = u.ds

        def factory(k: int) -> torch.nn.Module:
            m = M.build(spec.arch, ds.shape, ds.num_classes, ds.mean, ds.std, _seed([spec.key, "init", k]))
            if getattr(trainer, "own_loop", False):
                m = M.mark_prepared(trainer.prepare_model(m), spec.training)  # rebuilt as such in the contestant worker
            return m.to(ctx.device)

        if mem_key in self._banks:
            b = self._banks[mem_key]
            return Bank(b.spec, b.masks, b.states, b.checkpoints, b.meta, True, b.correct, factory)
        path = Path(ctx.cache_dir) / "privacy" / spec.key
        with locks.lock_for(path):
            bank = self._load(path, spec, factory, ctx)
            if bank is None:
                bank = self._train(path, spec, masks, u, factory, trainer, ctx)
        if not np.array_equal(bank.masks, masks):
            raise RuntimeError(f"model bank {spec.key}: cached masks differ from the profile's; delete {path}")
        self._banks[mem_key] = bank
        return bank

    def _load(self, path: Path, spec: BankSpec, factory: Callable[[int], torch.nn.Module], ctx: CellContext) -> Bank | None:
        if not (path / "meta.json").exists():
            return None
        meta = json.loads((path / "meta.json").read_text())
        blob = torch.load(path / "models.pt", map_location=ctx.device, weights_only=True)
        with np.load(path / "arrays.npz") as z:
            masks, correct = z["masks"], z["correct"]
        return Bank(spec, masks, blob["states"], blob["checkpoints"], meta, True, correct, factory)

    def _train(self, path: Path, spec: BankSpec, masks: np.ndarray, u: Universe, factory: Callable[[int], torch.nn.Module], trainer: Any, ctx: CellContext) -> Bank:
        ds = u.ds
        states, ckpts, per_model = [], [], []
        correct_all = np.zeros(masks.shape, dtype=bool)
        t0 = time.perf_counter()
        for k, mask in enumerate(masks):
            ctx.progress(f"train {spec.role}", k / len(masks))
            idx = torch.from_numpy(np.flatnonzero(mask)).to(u.x.device)
            model = factory(k)
            seed = _seed([spec.key, "train", k])
            saved: list[dict[str, torch.Tensor]] = []
            t1 = time.perf_counter()
            if getattr(trainer, "own_loop", False):
                info = trainer.fit(model, u.x[idx], u.y[idx], recipe=spec.recipe, num_classes=ds.num_classes, seed=seed)
            else:
                want = set(spec.checkpoints)

                def on_epoch_end(epoch: int, m: torch.nn.Module) -> None:
                    if epoch in want:
                        saved.append({n: v.detach().clone() for n, v in m.state_dict().items()})

                pad = ds.crop_pad if spec.recipe.get("augment", True) else 0
                info = T.train(model, u.x[idx], u.y[idx], method=trainer, recipe=spec.recipe, num_classes=ds.num_classes, seed=seed,
                               pad=pad, hflip=ds.hflip and spec.recipe.get("augment", True), on_epoch_end=on_epoch_end)
            secs = time.perf_counter() - t1
            model.eval()
            pred_u = T.predict(model, u.x).argmax(1)
            correct = (pred_u == u.y).cpu().numpy()
            test_acc = float((T.predict(model, u.x_test).argmax(1) == u.y_test).float().mean())
            states.append({n: v.detach().clone() for n, v in model.state_dict().items()})
            ckpts.append(saved)
            per_model.append({
                "train_s": secs,
                "train_acc": float(correct[mask].mean()) if mask.any() else float("nan"),
                "heldout_acc": float(correct[~mask].mean()) if (~mask).any() else float("nan"),
                "test_acc": test_acc,
                **{k2: float(v) for k2, v in info.items() if isinstance(v, (int, float)) and k2 != "train_s"},
                **{k2: v for k2, v in info.items() if isinstance(v, str)},
            })
            correct_all[k] = correct
        meta = {"train_s": time.perf_counter() - t0, "models": per_model, "spec": spec.__dict__, "device": ctx.device}
        self._save(path, masks, correct_all, states, ckpts, meta)
        return Bank(spec, masks, states, ckpts, meta, False, correct_all, factory)

    @staticmethod
    def _save(path: Path, masks: np.ndarray, correct: np.ndarray, states: list[Any], ckpts: list[Any], meta: Mapping[str, Any]) -> None:
        tmp = locks.temp_dir_for(path)
        cpu = lambda s: {n: v.cpu() for n, v in s.items()}  # noqa: E731
        torch.save({"states": [cpu(s) for s in states], "checkpoints": [[cpu(s) for s in c] for c in ckpts]}, tmp / "models.pt")
        np.savez(tmp / "arrays.npz", masks=masks, correct=correct)
        (tmp / "meta.json").write_text(json.dumps(meta, default=str, sort_keys=True))
        locks.replace_dir(tmp, path)

    # -- the pipeline's fixture (the tracks' views and evaluations below) --------------------------
    def fixture(self, profile: Profile, cell: Cell, ctx: CellContext) -> _Banks:
        """The universe of queries and the cell's shadow and target banks (trained once, cached).
        The targets' membership stays here: the contestant receives views only."""
        return self.banks(cell, ctx)

    @staticmethod
    def _views(ds: D.DatasetTensors) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        return [_identity, _hflip] if ds.hflip else [_identity]

    @staticmethod
    def _summ(per_target: list[dict[str, float]], names: Sequence[str], se: Sequence[str] = ()) -> dict[str, float]:
        """Mean and std (ddof 0) over targets of each metric; for those in ``se`` also the
        standard error of the mean, std (ddof 1) / sqrt(T), when there are 2 targets or more."""
        out: dict[str, float] = {}
        for n in names:
            v = np.array([d[n] for d in per_target], dtype=np.float64)
            out[n] = float(v.mean())
            out[f"{n}_std"] = float(v.std())
            if n in se and len(v) > 1:
                out[f"{n}_se"] = float(v.std(ddof=1) / np.sqrt(len(v)))
        return out

    @staticmethod
    def _bank_info(shadows: Bank, targets: Bank) -> dict[str, Any]:
        sm, tm = shadows.meta["models"], targets.meta["models"]
        info: dict[str, Any] = {
            "shadow_bank": shadows.spec.key,
            "target_bank": targets.spec.key,
            "models_shared": {"shadows": shadows.shared, "targets": targets.shared},
            "n_shadows": len(sm),
            "n_targets": len(tm),
            "target_models": tm,
            "shadow_masks": shadows.spec.mask_scheme,
        }
        dp = PrivacyBase._dp_info(shadows, targets)
        if dp:
            info["dp"] = dp
        return info

    @staticmethod
    def _model_metrics(shadows: Bank, targets: Bank) -> dict[str, float]:
        sm, tm = shadows.meta["models"], targets.meta["models"]
        out = {
            "target_test_acc": float(np.mean([m["test_acc"] for m in tm])),
            "target_train_acc": float(np.mean([m["train_acc"] for m in tm])),
            "shadow_test_acc": float(np.mean([m["test_acc"] for m in sm])),
        }
        # DP targets: the realized epsilon and the noise multiplier sigma of each target (their
        # accountant is in ``info["dp"]``); a non-private reference has sigma 0 and no epsilon
        if all("noise_multiplier" in m for m in tm):
            out["target_noise_multiplier"] = float(np.mean([m["noise_multiplier"] for m in tm]))
            eps = PrivacyBase._realized_epsilons(targets)
            if tm and all(e is not None for e in eps):
                out["target_epsilon"] = float(np.mean(eps))
        return out

    @staticmethod
    def _realized_epsilons(bank: Bank) -> list[float | None]:
        """Per model of a DP bank, the realized epsilon under the training plugin's reporting
        accountant (``dp-sgd``: PRV, whatever accountant calibrated sigma; a bank stored before
        dp-sgd 3 that reported an RDP run with RDP is re-accounted from its sigma, so a cached
        and a fresh bank report the same number); None for a non-private model."""
        from ... import registry as plugins

        fn = getattr(plugins.method(bank.spec.training), "realized_epsilon", None)
        ms = bank.meta["models"]
        return [fn(m) for m in ms] if fn is not None else [m.get("epsilon") for m in ms]

    @staticmethod
    def _dp_info(shadows: Bank, targets: Bank) -> dict[str, Any]:
        """Per DP bank: the accountant that calibrated sigma, the one the epsilons are reported
        with, delta, and per model sigma and realized epsilon."""
        out: dict[str, Any] = {}
        for role, bank in (("targets", targets), ("shadows", shadows)):
            ms = bank.meta["models"]
            if ms and all("noise_multiplier" in m for m in ms):
                eps = PrivacyBase._realized_epsilons(bank)
                out[role] = {
                    "accountant": ms[0].get("accountant", "rdp"),
                    **({"epsilon_accountant": "prv"} if any(e is not None for e in eps) else {}),
                    "delta": ms[0].get("delta"),
                    "private": bool(ms[0].get("private", 1.0)),
                    "noise_multiplier": [m["noise_multiplier"] for m in ms],
                    "epsilon": eps,
                }
        return out


#: the per-target numbers of the privacy track (``PM.membership_metrics``)
_MEMBERSHIP = ("auc", "balanced_acc", *(m for s in PM.FPR_LEVELS for m in (f"tpr_at_{s}_fpr", f"realized_fpr_{s}", f"realized_tpr_{s}")))


class PrivacyTrack(PrivacyBase):
    name = "privacy"
    summary = "Membership inference against target models trained on random halves, with shadow models: AUC, TPR at 1 % and 0.1 % FPR."
    role = "attack"
    primary_metric = "auc"
    secondary_metrics = ("tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "balanced_acc")
    metric_directions = {
        "auc": "max", "tpr_at_1pct_fpr": "max", "tpr_at_0.1pct_fpr": "max", "balanced_acc": "max",
        "target_test_acc": "max",
    }
    #: every metric a cell emits: the per-target numbers (``PM.membership_metrics``) in [0, 1],
    #: their std over targets (ddof 0) and standard error in [0, 0.5] (half the range), the
    #: models' accuracies, and the DP targets' sigma and realized epsilon
    metric_bounds = {
        **dict.fromkeys((*_MEMBERSHIP, "target_test_acc", "target_train_acc", "shadow_test_acc", "member_fraction"), (0.0, 1.0)),
        **{f"{m}_{s}": (0.0, 0.5) for m in _MEMBERSHIP for s in ("std", "se")},
        **dict.fromkeys(("n_queries", "target_noise_multiplier", "target_epsilon"), (0.0, None)),
    }
    #: AUCs, TPRs and accuracies are fractions shown in percent; a membership AUC of 0.5 (and a
    #: balanced accuracy of 0.5) is what guessing achieves: the board's 50 % chance row
    metric_units = {**dict.fromkeys((*_MEMBERSHIP, "target_test_acc", "target_train_acc", "shadow_test_acc", "member_fraction"), "%"),
                    **{f"{m}_{s}": "pp" for m in _MEMBERSHIP for s in ("std", "se")}}
    metric_chance = {"auc": 0.5, "balanced_acc": 0.5}
    board_figures = ("budget-curves", "pareto", "epsilon-sweep")
    #: the profiles the seed paper's claim is read on (add a new profile version here)
    claim_profiles = ("privacy/quick@3", "privacy/cifar10-cpu@2", "privacy/quick@2", "privacy/cifar10-cpu@1")

    def claims(self) -> list[Claim]:
        """Curvature Clues: the curvature attack (``curvature-mia``) beats the other attacks in AUC."""
        return [
            Claim(
                id="curvature-mia-auc", system="Curvature MIA",
                paper=Paper("2407.02747", "Curvature Clues: Decoding Deep Learning Privacy with Input Loss Curvature", 2024, "NeurIPS"),
                quote="curvature-based MIA outperforms other methods on sufficiently large datasets",
                track=self.name, profiles=self.claim_profiles, metric="auc", seed=Row("curvature-mia"), comparator=BEST_NON_SEED,
                kind=SUPERIORITY, effect=0.0165,
                paper_number="AUC 68.95 against 67.30 for the next attack (Attack R): +1.65 points (CIFAR-10, ResNet-18, 64 shadows; Table 1 via the official notebooks)",
            )
        ]

    def view(self, fixture: _Banks, cell: Cell, method: Method) -> list[PrivacyView]:
        """One view per target: the queries, the target and the shadows as black boxes (one set
        of shadow boxes and one copy of the queries shared by the views of the cell, so a method
        computes the shadows' statistics once per cell) and the shadows' membership; never the
        targets' membership. The contestant worker receives them together (models as weights)."""
        u, shadows, targets = fixture
        ds = u.ds
        shadow_boxes = [BlackBox(shadows.model(k)) for k in range(len(shadows.states))]
        # the views' own copy of the queries, one per cell: the track's universe stays untouched
        # whatever a plugin writes, and per-cell shadow statistics stay cached across targets
        xq, yq = readonly(u.x), readonly(u.y)
        return [
            PrivacyView(
                x=xq, y=yq, num_classes=ds.num_classes, target=BlackBox(targets.model(t)), shadows=list(shadow_boxes),
                shadow_in=shadows.masks.copy(), views=self._views(ds), seed=int(cell.seed),
                generator=torch.Generator().manual_seed(int(cell.seed)), input_std=tuple(ds.std),
            )
            for t in range(len(targets.states))
        ]

    def evaluate(self, fixture: _Banks, cell: Cell, contest: ContestResult) -> CellResult:
        """Membership metrics of each target's scores against its true membership (harness side)."""
        u, shadows, targets = fixture
        ds = u.ds
        per_target: list[dict[str, float]] = []
        all_scores, members = [], []
        evaluation_s = 0.0
        for t, scores in enumerate(contest.outputs):
            t1 = time.perf_counter()
            per_target.append(PM.membership_metrics(targets.masks[t], scores))
            evaluation_s += time.perf_counter() - t1
            all_scores.append(scores)
            members.append(targets.masks[t])
        forwards = [{"target": int(r["target"]), "shadows": int(r["shadows"])} for r in contest.reports]
        attack_s = contest.seconds
        names = list(per_target[0])
        metrics = self._summ(per_target, names, se=("auc", "tpr_at_1pct_fpr"))
        metrics.update(self._model_metrics(shadows, targets))
        metrics["n_queries"] = float(len(u.y))
        metrics["member_fraction"] = float(np.mean([m.mean() for m in members]))
        train_s = float(shadows.meta["train_s"]) + float(targets.meta["train_s"])
        timings = {"training_s": train_s, "attack_s": attack_s, "evaluation_s": evaluation_s, "total_s": train_s + attack_s + evaluation_s}
        info = {
            **self._bank_info(shadows, targets),
            "per_target": per_target,
            "forwards": forwards,
            "views": ["identity", "hflip"][: len(self._views(ds))],
            "primary_metric": self.primary_metric,
            "target_selection": "separate targets (independent Bernoulli masks); shadows: " + ("independent Bernoulli masks" if shadows.spec.mask_scheme == "independent" else "masks + complements"),
        }
        artifacts = [
            ArtifactOut.npy("scores", "scores.npy", np.stack(all_scores)),
            ArtifactOut.npy("members", "members.npy", np.stack(members)),
        ]
        return CellResult(metrics=metrics, timings=timings, artifacts=artifacts, info=info)


class MemorizationTrack(PrivacyBase):
    name = "memorization"
    summary = "Memorization proxies ranked by their Spearman correlation with the Feldman-Zhang estimate from the shadow models."
    role = "proxy"
    primary_metric = "spearman"
    secondary_metrics = ("pearson", "cosine")
    metric_directions = {"spearman": "max", "pearson": "max", "cosine": "max"}
    #: every metric a cell emits: correlations in [-1, 1] (their std over targets in [0, 1]),
    #: the Feldman-Zhang estimate (a difference of two accuracies, in [-1, 1]) and its summaries,
    #: the models' accuracies, and the proxy's own scores (``score_*``: its scale, unbounded)
    metric_bounds = {
        **dict.fromkeys(("spearman", "pearson", "cosine", "mem_split_half_spearman", "mem_mean", "mem_q10", "mem_q50", "mem_q90"), (-1.0, 1.0)),
        **dict.fromkeys(("spearman_std", "pearson_std", "cosine_std", "spearman_se", "mem_std"), (0.0, 1.0)),
        **dict.fromkeys(("target_test_acc", "target_train_acc", "shadow_test_acc", "mem_high_fraction"), (0.0, 1.0)),
        **dict.fromkeys(("mem_se_mean", "mem_models_in_mean", "mem_models_out_mean", "score_std", "target_noise_multiplier", "target_epsilon"), (0.0, None)),
        **dict.fromkeys(("score_mean", "score_q10", "score_q50", "score_q90"), (None, None)),
    }
    #: correlations are plain numbers in [-1, 1] (never percent); a correlation of 0 is no skill,
    #: so no row whose interval reaches 0 leads
    metric_units = {**dict.fromkeys(("spearman", "pearson", "cosine", "mem_split_half_spearman", "spearman_std", "pearson_std", "cosine_std", "spearman_se"), ""),
                    **dict.fromkeys(("target_test_acc", "target_train_acc", "shadow_test_acc", "mem_high_fraction"), "%")}
    metric_chance = {"spearman": 0.0, "pearson": 0.0, "cosine": 0.0}
    board_figures = ("budget-curves", "pareto", "proxy-score-sweep")
    #: the profiles the seed paper's claim is read on (add a new profile version here)
    claim_profiles = ("memorization/quick-dp@3", "memorization/quick-dp@2", "memorization/quick-dp@1")

    def claims(self) -> list[Claim]:
        """arXiv 2402.18726: input-loss curvature is bounded by privacy, so the mean curvature of the
        target models (``score_mean`` of ``input-curvature``) rises with epsilon and saturates."""
        return [
            Claim(
                id="curvature-rises-with-epsilon", system="Privacy-memorization-curvature links", readings="claim-memorization",
                paper=Paper("2402.18726", "Unveiling Privacy, Memorization, and Input Curvature Links", 2024, "ICML"),
                quote="we present a novel insight showing that input loss curvature is upper-bounded by the differential privacy parameter",
                track=self.name, profiles=self.claim_profiles, metric="score_mean", seed=Row("input-curvature", {"estimator": "hutchinson"}),
                kind=MONOTONE, trend_axis="epsilon", trend="increasing", saturates=True, percent=False,
                paper_number="mean curvature rises with epsilon and saturates by epsilon of about 30-50 (DP ResNet-18, CIFAR-10/100; the code's fit (a + b e^(-c eps)) d (1 - e^(-eps)) + e)",
            )
        ]

    def view(self, fixture: _Banks, cell: Cell, method: Method) -> list[PrivacyView]:
        """One view per target: its members (the queries), the target as a black box and white
        box, its training checkpoints; no shadows, so the Feldman-Zhang estimate is out of reach."""
        u, shadows, targets = fixture
        ds = u.ds
        out = []
        for t in range(len(targets.states)):
            keep = np.flatnonzero(targets.masks[t])
            ki = torch.from_numpy(keep).to(u.x.device)
            final = targets.model(t)
            ckpts = [targets.model(t, s) for s in targets.checkpoints[t]] if targets.checkpoints[t] else [final]
            out.append(PrivacyView(
                x=u.x[ki], y=u.y[ki], num_classes=ds.num_classes, target=BlackBox(final), shadows=[],
                shadow_in=np.zeros((0, len(keep)), dtype=bool), views=self._views(ds), seed=int(cell.seed + t),
                generator=torch.Generator().manual_seed(int(cell.seed + t)), target_model=final,
                target_checkpoints=ckpts, input_std=tuple(ds.std),
            ))
        return out

    def evaluate(self, fixture: _Banks, cell: Cell, contest: ContestResult) -> CellResult:
        """Agreement of each target's scores with the Feldman-Zhang estimate from the shadows."""
        u, shadows, targets = fixture
        mem = PM.fz_memorization(shadows.correct, shadows.masks)
        per_target: list[dict[str, float]] = []
        all_scores = []
        attack_s, evaluation_s = contest.seconds, 0.0
        for t, scores in enumerate(contest.outputs):
            keep = np.flatnonzero(targets.masks[t])
            t1 = time.perf_counter()
            m = mem[keep]
            ok = np.isfinite(m)
            per_target.append({
                "spearman": PM.spearman(scores[ok], m[ok]),
                "pearson": PM.pearson(scores[ok], m[ok]),
                "cosine": PM.cosine(scores[ok], m[ok]),
            })
            evaluation_s += time.perf_counter() - t1
            full = np.full(len(u.y), np.nan)
            full[keep] = scores
            all_scores.append(full)
        metrics = self._summ(per_target, ["spearman", "pearson", "cosine"], se=("spearman",))
        metrics.update(self._model_metrics(shadows, targets))
        # the target itself: how noisy the Feldman-Zhang estimate is (its per-sample standard
        # error, and the Spearman agreement of two estimates from disjoint halves of the shadows)
        se = PM.fz_standard_error(shadows.correct, shadows.masks)
        metrics["mem_se_mean"] = float(np.nanmean(se))
        metrics["mem_split_half_spearman"] = PM.fz_split_half(shadows.correct, shadows.masks, seed=int(cell.seed))
        metrics["mem_high_fraction"] = float(np.nanmean(mem > 0.5))
        # distributions (the epsilon sweep's rows): memorization over the queries, and the proxy's
        # score over each target's members (for input-curvature: the curvature), pooled over targets
        metrics.update(PM.distribution(mem, "mem"))
        pooled = np.concatenate([a[np.isfinite(a)] for a in all_scores])
        metrics.update(PM.distribution(pooled, "score"))
        n_in = shadows.masks.sum(0)
        metrics["mem_models_in_mean"] = float(n_in.mean())
        metrics["mem_models_out_mean"] = float((len(shadows.masks) - n_in).mean())
        train_s = float(shadows.meta["train_s"]) + float(targets.meta["train_s"])
        timings = {"training_s": train_s, "proxy_s": attack_s, "evaluation_s": evaluation_s, "total_s": train_s + attack_s + evaluation_s}
        info = {
            **self._bank_info(shadows, targets),
            "per_target": per_target,
            "n_checkpoints": len(targets.checkpoints[0]) or 1,
            "checkpoint_epochs": list(targets.spec.checkpoints),
            "primary_metric": self.primary_metric,
            "estimate": "Feldman-Zhang subsampled estimate from the shadows (0/1 correctness); queries = each target's members",
            "shadow_training": targets.spec.training if shadows.spec.training == targets.spec.training and shadows.spec.recipe == targets.spec.recipe else shadows.spec.training,
        }
        artifacts = [
            ArtifactOut.npy("scores", "scores.npy", np.stack(all_scores)),
            ArtifactOut.npy("memorization", "fz_memorization.npy", mem),
            ArtifactOut.npy("memorization_se", "fz_memorization_se.npy", se),
        ]
        return CellResult(metrics=metrics, timings=timings, artifacts=artifacts, info=info)
