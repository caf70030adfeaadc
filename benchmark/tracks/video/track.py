"""The ``video`` track: early-exit recognition of compressed video (PKD + WISE), spec
tracks-phase2.md §4.

Contestants are ``distillation`` methods with ``role = "early-exit"``: ``distill(view: ExitView)
-> ExitModel``. Per cell the harness

1. loads or generates the clips (``synth-motion`` or ``video-folder:PATH``, through the real
   MPEG-4 compressed domain of ``coreset_bench.tracks.video.codec``; seeded by (profile, dataset, repeat,
   accumulate), never by the method; one memory order, ``video_data.channels_last``, whether
   fresh or cached);
2. trains, or loads from ``<cache>/video/backbones/<key>/``, one frozen ``TinyExitNet`` per
   modality (res, mv, iframe) with cross-entropy (shared by every method of the repeat; its
   training time is recorded in each cell, ``info.backbones_shared`` when the cache served it).
   The key (``backbone_key``) covers everything that changes the trained bits: the data's key
   (generator version and settings, clip counts, codec, pooling, seed), widths, epochs, lr, batch
   size, the device, the torch version and, on the CPU, the intra-op thread count (it changes how
   float reductions split: 1 vs 2 threads moved quick@2's MV IC4 from 0.679 to 0.708);
3. computes the backbones' stage features and final logits (train and test, K segments) and the
   per-exit cumulative MACs (``FlopCounterMode``). Profiles with ``heldout_fraction`` (quick@3:
   20 %) hold that share of each class's training clips out of the backbones' training and of
   ``view.feats_train``, and hand their features to the method as ``view.feats_heldout`` (WISE
   fits its weights there); profiles with ``ic_augment`` add the features of V cached
   multi-scale crops of every training clip (``view.feats_train_aug``; ``video_data.crop_bank``);
   ``info.teacher_ptrue`` / ``teacher_acc`` record each frozen network's mean p(true class) and
   accuracy on the training, held-out and test clips;
4. hands the method an ``ExitView`` (the training clips' features, teacher logits and labels, the
   harness's head factory, the frozen backbones as architecture and weights in
   ``backbone_factory``; nothing of the test clips) in the contestant worker
   (``coreset_bench.contest``: a process that holds only that view; the track's memo, with the
   test features, stays in the harness, and the worker may not open ``<cache>/video``, where the
   clips are cached) and times ``distill(view)`` there and back (``distill_s``);
5. checks the output (``validation.check_exit_model``): the 9 heads come back as weights, are
   loaded into heads of the harness's own architecture (a head of another architecture fails the
   cell), finite weights and (B, C) logits, combiner weights of length e + 1, finite (negatives
   clipped to 0); the harness's backbones bit-unchanged (parameter hash before and after). A
   violation, an exception or a reach for the data generator or the cache fails that cell only,
   naming the plugin; a method can change only its own copies of the backbones, so the next cell
   starts from the same networks.

Steps 1-3 are the track's ``fixture``, 4 its ``view`` and the contest, 5 the contest's check and
the track's ``evaluate`` (the cell pipeline of ``Track.run_cell``). The whole cell (data,
backbones, features, the method) runs under ``env.cell_scope``: the same thread count and kernels
whether the CLI's executors or a direct ``run_cell`` call run it, so the same cell and seed give
the same numbers in any process (``info.threads`` records the count; the contestant worker runs
with the cell's count).

Metrics (on the test clips, logits averaged over the K segments):

* ``exit_auc`` (primary, max): the mean over c in {0.05, 0.10, ..., 1.00} of F(c), the best
  accuracy of the confidence-threshold cascade (theta in linspace(0, 1, 101): a clip leaves at
  the first exit whose max softmax of its (combined) logits reaches theta, else at the fused
  exit) among thresholds whose mean cost is at most c x the full cost (1 / C where none is);
* ``acc_at_25``, ``acc_at_50``: F(0.25), F(0.5); ``final_acc``: the fused exit;
* ``mean_ic_acc``: mean accuracy of the 9 internal classifiers (claim V1);
  ``ic_acc_<mod>_<k>`` per exit (k = 4: the frozen final classifier); ``distill_s``.

Artifacts: ``frontier.npy`` (theta, relative cost, accuracy), ``exit_acc.npy`` (raw and combined
accuracy per exit), ``beta.npy`` (the combiner, lower-triangular) when present. The board draws
the accuracy-vs-compute frontier from ``info["frontier_cost"]``/``["frontier_acc"]``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...claims import SUPERIORITY, Claim, Paper, Row
from ...contest import ContestResult
from ...kinds import ExitModel, ExitView, Method, readonly  # noqa: F401 - ExitModel: the kind's output, re-exported
from ..base import ArtifactOut, Cell, CellContext, CellFailure, CellResult, Profile, Track, canonical_json

ORDER = ("res", "mv", "iframe")
COST_GRID = np.round(np.arange(1, 21) * 0.05, 2)
THETAS = np.linspace(0.0, 1.0, 101)

_QUICK: dict[str, Any] = {
    "size": 64, "q": 4, "accumulate": True, "segments": 3, "train_per_class": 40, "test_per_class": 20,
    "pools": {"mv": 4, "res": 4, "iframe": 4}, "widths": [8, 16, 32, 48], "backbone_epochs": 20, "backbone_lr": 0.05,
    "backbone_batch_size": 32, "ic_epochs": 12, "ic_batch_size": 32, "ic_lr": {"mv": 0.01, "res": 0.005, "iframe": 3e-4},
    "ic_milestones": [0.5, 0.667, 0.833], "adam_eps": 1e-3, "weight_decay": 1e-4, "synth": {},
}

#: quick@2: the synth-motion@v2 generator, 30 test clips per class, and the specification's input sizes
#: (MV 16x16, residual and I-frame 32x32; quick@1 pooled all three to 16x16, which averaged the
#: residual's motion structure away and left the object's colour, read as well by IC1 as by IC4)
_QUICK2: dict[str, Any] = {**_QUICK, "synth_version": 2, "test_per_class": 30, "pools": {"mv": 4, "res": 2, "iframe": 2}}


#: quick@3 (the default; issue 35): the specification's 60 IC epochs and five seeds; the reference's IC
#: training (student and teacher logits averaged over the segments before the loss; its multi-scale crops,
#: as V = 4 cached crops per clip since the backbones' features are cached); 50 training clips per class
#: of which 20 % (10) are held out of the backbones and the ICs for fitting WISE's weights. Horizontal
#: flips are left out: synth-motion's classes come in mirror pairs (slide right / left, the zig-zag's
#: diagonal, the rotation's sense), so a flip changes the label.
_QUICK3: dict[str, Any] = {
    **_QUICK2, "train_per_class": 50, "heldout_fraction": 0.2, "ic_epochs": 60, "ic_train_segments": "average",
    "ic_augment": {"views": 4, "scales": {"mv": [1.0, 0.875, 0.75], "res": [1.0, 0.875, 0.75], "iframe": [1.0, 0.875, 0.75, 0.66]}, "max_distort": 1, "flip": False},
}


def _profiles() -> list[Profile]:
    return [
        Profile("video", "tiny", 1, {"dataset": ["synth-motion"]}, seeds=(0,),
                settings={**_QUICK, "size": 32, "train_per_class": 12, "test_per_class": 6, "pools": {"mv": 2, "res": 2, "iframe": 2},
                          "widths": [4, 8, 8, 16], "backbone_epochs": 3, "ic_epochs": 4, "synth": {"classes": 4, "size": 32, "object_size": [8, 12]}},
                description="Seconds-long profile for tests: 4 classes, 32x32 clips, 12 training clips per class, 3 backbone and 4 IC epochs."),
        Profile("video", "tiny", 2, {"dataset": ["synth-motion"]}, seeds=(0,),
                settings={**_QUICK, "size": 32, "train_per_class": 12, "test_per_class": 6, "pools": {"mv": 2, "res": 2, "iframe": 2},
                          "widths": [4, 8, 8, 16], "backbone_epochs": 3, "ic_epochs": 4, "synth": {"classes": 4, "size": 32, "object_size": [8, 12]},
                          "heldout_fraction": 0.2, "ic_train_segments": "average", "ic_augment": {**_QUICK3["ic_augment"], "views": 2}},
                description="tiny@1 with quick@3's data path for tests: 2 of the 12 training clips per class held out, segment-averaged IC training, 2 cached crops per clip."),
        Profile("video", "quick", 1, {"dataset": ["synth-motion"]}, seeds=(0, 1, 2), settings=dict(_QUICK), salted=False,
                description="synth-motion (8 motion classes, 64x64 MPEG-4 clips, GOP 12, q 4; 40 training / 20 test clips per class), "
                            "three TinyExitNets (widths 8/16/32/48, 16x16 inputs) trained 20 epochs and shared through the cache, 12 IC epochs.",
                timeout_s=1800.0),
        Profile("video", "accumulate", 1, {"dataset": ["synth-motion"], "accumulate": [True, False]}, seeds=(0, 1, 2), settings=dict(_QUICK),
                description="quick@1 with accumulated (CoViAR's default) and per-frame motion vectors and residuals.", timeout_s=1800.0),
        Profile("video", "quick", 2, {"dataset": ["synth-motion"]}, seeds=(0, 1, 2), settings=dict(_QUICK2), salted=False,
                description="synth-motion@v2 (8 motion classes, 64x64 MPEG-4 clips, GOP 12, q 4; 40 training / 30 test clips per class; the generator "
                            "frozen by the acceptance rule), three TinyExitNets (widths 8/16/32/48; MV 16x16, residual and I-frame 32x32 inputs as "
                            "the specification) trained 20 epochs and shared through the cache, 12 IC epochs.",
                timeout_s=1800.0),
        Profile("video", "accumulate", 2, {"dataset": ["synth-motion"], "accumulate": [True, False]}, seeds=(0, 1, 2), settings=dict(_QUICK2),
                description="quick@2 with accumulated (CoViAR's default) and per-frame motion vectors and residuals.", timeout_s=1800.0),
        Profile("video", "quick", 3, {"dataset": ["synth-motion"]}, seeds=(0, 1, 2, 3, 4), settings=_QUICK3,
                description="synth-motion@v2 (8 motion classes, 64x64 MPEG-4 clips, GOP 12, q 4; 50 training clips per class, 10 of them held out "
                            "for fitting combiners, 30 test clips per class), three TinyExitNets (widths 8/16/32/48; MV 16x16, residual and I-frame 32x32) "
                            "trained 20 epochs on the 40 kept clips per class; ICs trained 60 epochs as the reference (logits averaged over the 3 segments, "
                            "4 cached multi-scale crops per clip); 5 seeds.",
                timeout_s=1800.0),
        Profile("video", "folder", 1, {"dataset": ["video-folder:videos"]}, seeds=(0, 1, 2),
                settings={**_QUICK, "size": 128, "q": 1, "pools": {"mv": 4, "res": 2, "iframe": 2}, "widths": [32, 64, 128, 256],
                          "max_frames": 96, "backbone_epochs": 60, "ic_epochs": 300, "ic_batch_size": 32},
                description="Real videos (GPU): a class-folder tree of .avi/.mp4 (UCF-101/HMDB-51 layout) under <data dir>/videos "
                            "(or --dataset video-folder:PATH), re-encoded to 128x128 MPEG-4 at q 1, GOP 12; the first 96 frames; 300 IC epochs.",
                device="cuda"),
    ]


def cascade(z: np.ndarray, y: np.ndarray, costs: np.ndarray, thetas: np.ndarray = THETAS) -> np.ndarray:
    """The confidence-threshold cascade: for each theta, each sample leaves at the first exit whose
    max softmax reaches theta (else the last). ``z`` (N, E, C) logits, ``costs`` (E,) cumulative.
    Returns (len(thetas), 3): theta, mean cost / full cost, accuracy."""
    z = np.asarray(z, dtype=np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    conf = p.max(-1)  # (N, E)
    correct = z.argmax(-1) == np.asarray(y)[:, None]  # (N, E)
    n, e_n = conf.shape
    out = np.zeros((len(thetas), 3))
    for i, th in enumerate(thetas):
        ok = conf >= th
        ok[:, -1] = True
        first = ok.argmax(1)
        out[i] = (th, costs[first].mean() / costs[-1], correct[np.arange(n), first].mean())
    return out


def frontier_metrics(front: np.ndarray, num_classes: int) -> dict[str, float]:
    """F(c) on the cost grid and the derived metrics (``exit_auc``, ``acc_at_25``, ``acc_at_50``)."""
    def f(c: float) -> float:
        ok = front[:, 1] <= c + 1e-12
        return float(front[ok, 2].max()) if ok.any() else 1.0 / num_classes

    vals = [f(c) for c in COST_GRID]
    return {"exit_auc": float(np.mean(vals)), "acc_at_25": f(0.25), "acc_at_50": f(0.5)}


def combine(z: np.ndarray, combiner: Sequence[np.ndarray] | None) -> np.ndarray:
    """Exit logits after the combiner: ``z~_e = sum_{j<=e} beta_e[j] z_j`` (None: unchanged)."""
    if combiner is None:
        return z
    out = np.empty_like(z)
    for e, b in enumerate(combiner):
        out[:, e] = np.einsum("j,njc->nc", np.asarray(b, dtype=np.float64), z[:, : e + 1])
    return out


def teacher_confidence(splits: Mapping[str, tuple[Mapping[str, Any], np.ndarray]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean p(true class) and accuracy of each frozen network's segment-averaged logits per split
    (``{"ptrue": {mod: {split: p}}, "acc": ...}``): how far the teachers are from one-hot on the
    clips they trained on (``train``) against clips they never saw (``heldout``, ``test``); a
    teacher near one-hot on its training clips carries little dark knowledge to distil."""
    import torch

    ptrue: dict[str, dict[str, float]] = {m: {} for m in ORDER}
    acc: dict[str, dict[str, float]] = {m: {} for m in ORDER}
    for split, (logits, y) in splits.items():
        yy = torch.as_tensor(np.asarray(y), dtype=torch.long)
        for m in ORDER:
            z = logits[m].detach().cpu().double().mean(1)
            p = torch.softmax(z, dim=1)[torch.arange(len(yy)), yy]
            ptrue[m][split] = round(float(p.mean()), 5)
            acc[m][split] = round(float((z.argmax(1) == yy).double().mean()), 5)
    return {"ptrue": ptrue, "acc": acc}


def augmented_features(net: Any, x: np.ndarray, aug: Mapping[str, Any], modality: str, seed: int, device: Any) -> tuple[list[Any], Any]:
    """The frozen ``net``'s stage features (V, N, K, ch, h, w) and final logits (V, N, K, C) on
    ``views`` augmented copies of ``x`` (``video_data.crop_bank``: the reference's multi-scale
    crops, ``scales`` per modality, optional flip). Each copy's tensors have the memory order of
    the unaugmented features (the copies' inputs are in the clip arrays' order and run through
    the same ``features`` call); they are stacked without changing it."""
    import torch

    from . import data as VD
    from . import models as VM

    scales = aug.get("scales", (1.0, 0.875, 0.75))
    if isinstance(scales, Mapping):
        scales = scales[modality]
    bank = VD.crop_bank(x, views=int(aug["views"]), scales=scales, max_distort=int(aug.get("max_distort", 1)), flip=bool(aug.get("flip", False)),
                        is_mv=modality == "mv", seed=seed)
    feats: list[Any] = []
    logits: Any = None
    for v in range(bank.shape[0]):
        f, lg = VM.features(net, torch.from_numpy(bank[v]).to(device))
        if v == 0:
            feats = [_stacked_like(t, bank.shape[0]) for t in f]
            logits = _stacked_like(lg, bank.shape[0])
        for out, t in zip(feats, f):
            out[v].copy_(t)
        logits[v].copy_(lg)
    return feats, logits


def _stacked_like(ref: Any, views: int) -> Any:
    """An empty (views, *ref.shape) tensor whose every [v] slice has ``ref``'s strides."""
    import torch

    if ref.stride(0) != max(ref.stride()) or ref.stride(0) * ref.shape[0] != ref.numel():
        raise ValueError(f"expected a dense tensor with its first dimension outermost, got strides {ref.stride()} for shape {tuple(ref.shape)}")
    return torch.empty_strided((views, *ref.shape), (ref.numel(), *ref.stride()), dtype=ref.dtype, device=ref.device)


#: revision of the backbone training code (architecture, optimiser, schedule, augmentation): bump it
#: when ``video_models.build_backbones`` or ``TinyExitNet`` change what they produce
BACKBONE_REVISION = 2


def backbone_key(profile: Profile, cell: Cell, data_key: str | None, device: str, threads: int | None = None) -> tuple[str, dict[str, Any]]:
    """The cache key of a cell's frozen backbones and its payload (stored in their ``meta.json``).

    It covers every input of ``build_backbones``: the data (its key: generator version and settings,
    clip counts, codec, pooling, the data seed's inputs), the profile's widths, epochs, lr and batch
    size, the code (``BACKBONE_REVISION``, torch's version) and where they were computed: the device
    type, and on the CPU the intra-op thread count (``threads``, default the current one: the
    count changes the last bits of every reduction, and 20 epochs of SGD grow them into different
    networks), on CUDA the GPU's name and whether deterministic kernels were on."""
    import torch

    from ... import env as envmod

    st = profile.settings
    dev = torch.device(device)
    where: dict[str, Any] = {"device": dev.type}
    if dev.type == "cpu":
        where["threads"] = int(torch.get_num_threads() if threads is None else threads)
    elif dev.type == "cuda":
        where["gpu"] = torch.cuda.get_device_name(dev)
        where["deterministic"] = envmod.deterministic(str(device))
    payload = {"profile": profile.id, "axes": dict(cell.axes), "repeat": cell.repeat, "data": data_key, "widths": [int(w) for w in st["widths"]],
               "epochs": int(st["backbone_epochs"]), "lr": float(st["backbone_lr"]), "bs": int(st["backbone_batch_size"]),
               "v": BACKBONE_REVISION, "torch": torch.__version__, **where}
    if float(st.get("heldout_fraction", 0.0) or 0.0) > 0:  # the backbones train on the clips not held out
        payload["heldout"] = float(st["heldout_fraction"])
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:24], payload


class VideoTrack(Track):
    name = "video"
    summary = "Early-exit recognition of MPEG-4 compressed video: internal classifiers on frozen MV/residual/I-frame networks (PKD + WISE)."
    contestant_kind = "distillation"
    role = "early-exit"
    fixtures = ("clips", "backbones", "features")
    primary_metric = "exit_auc"
    secondary_metrics = ("mean_ic_acc", "final_acc", "acc_at_25", "acc_at_50", "distill_s")
    metric_directions = {"exit_auc": "max", "mean_ic_acc": "max", "final_acc": "max", "acc_at_25": "max", "acc_at_50": "max", "distill_s": "min", "plain_final_acc": "max",
                         **{f"ic_acc_{m}_{k}": "max" for m in ORDER for k in (1, 2, 3, 4)}}
    metric_bounds = {**dict.fromkeys(("exit_auc", "mean_ic_acc", "final_acc", "acc_at_25", "acc_at_50", "plain_final_acc"), (0.0, 1.0)),
                     **{f"ic_acc_{m}_{k}": (0.0, 1.0) for m in ORDER for k in (1, 2, 3, 4)}, "distill_s": (0.0, None)}
    metric_units = {**dict.fromkeys(("exit_auc", "mean_ic_acc", "final_acc", "acc_at_25", "acc_at_50", "plain_final_acc", "ic_acc_*"), "%"), "distill_s": "s"}
    board_figures = ("budget-curves", "pareto", "exit-frontier")
    baseline_method = "ce-exits"
    reference_methods = ("ce-exits",)
    hidden_data = True  # the test clips (their seed goes through ``CellContext.hidden_seed``)
    #: the clips' and backbones' cache (the test clips are there): out of the contestant worker's reach
    private_cache = ("video",)

    #: the profiles the seed paper's claims are read on (add a new profile version here)
    claim_profiles = ("video/quick@3", "video/quick@2")

    def claims(self) -> list[Claim]:
        """PKD: internal-classifier accuracy over cross-entropy exits (+5.87); WISE: fused accuracy over
        the plain mean of the same exits (+4.28; ``ce-exits`` trains the same exits as ``wise`` and
        fuses them by the plain mean)."""
        paper = Paper("2407.02713", "Advancing Compressed Video Action Recognition through Progressive Knowledge Distillation", 2024)
        return [
            Claim(id="pkd-ic-accuracy", system="PKD + WISE", paper=paper,
                  quote=("Our experiments demonstrate the effectiveness of training the ICs with PKD compared to standard cross-entropy-based "
                         "training, showing IC accuracy improvements of up to 5.87% and 11.42% on the UCF-101 and HMDB-51 datasets, respectively."),
                  track=self.name, profiles=self.claim_profiles, metric="mean_ic_acc", seed=Row("pkd"), comparator=Row("ce-exits"),
                  kind=SUPERIORITY, effect=0.0587, system_methods=("pkd-wise", "pkd-anti", "wise"),
                  paper_number="up to +5.87 points of IC accuracy (UCF-101; +11.42 on HMDB-51)"),
            Claim(id="wise-fused-accuracy", system="PKD + WISE", paper=paper,
                  quote="Additionally, WISE improves accuracy by up to 4.28% and 9.30% on UCF-101 and HMDB-51, respectively.",
                  track=self.name, profiles=self.claim_profiles, metric="final_acc", seed=Row("wise"), comparator=Row("ce-exits"),
                  kind=SUPERIORITY, effect=0.0428, system_methods=("pkd-wise", "pkd", "pkd-anti"),
                  note="ce-exits trains the same exits as wise (cross-entropy) and fuses them by the plain mean: the difference is WISE's fusion alone",
                  paper_number="up to +4.28 points of accuracy (UCF-101; +9.30 on HMDB-51)"),
            Claim(id="pkd-curriculum-order", system="PKD + WISE", paper=paper,
                  quote="the progressive order of teachers (motion vectors, then residuals, then the I-frame network) matters",
                  track=self.name, profiles=self.claim_profiles, metric="mean_ic_acc", seed=Row("pkd"), comparator=Row("pkd-anti"),
                  kind=SUPERIORITY, effect=None, system_methods=("pkd-wise", "wise", "ce-exits"),
                  note="pkd-anti is the released anticurriculum (own final classifier, then residual, then motion vectors, in thirds, learning-rate steps at 1/3 and 2/3) from version 2 on; the paper's ablation gives no single number, so the claim is 'beats it'",
                  paper_number="an ablation against the anticurriculum order (no single number quoted)"),
        ]

    def profiles(self) -> list[Profile]:
        return _profiles()

    def cost_hint(self, cell: Cell) -> float:
        return 2.0 if "wise" in cell.method else 1.0

    # ---- fixtures ------------------------------------------------------------------------------
    def _data_seed(self, profile: Profile, dataset: str, repeat: int, accumulate: bool) -> int:
        return int(hashlib.sha256(f"{profile.id}|{dataset}|{repeat}|{accumulate}".encode()).hexdigest()[:8], 16) % (2**31)

    def dataset(self, profile: Profile, cell: Cell, ctx: CellContext) -> Any:
        from . import data as VD

        st = dict(profile.settings)
        acc = bool(cell.axes.get("accumulate", st.get("accumulate", True)))
        st["accumulate"] = acc
        ref = str(cell.axes["dataset"])
        seed = ctx.hidden_seed(self._data_seed(profile, ref, cell.repeat, acc))
        synth = dict(st.get("synth", {}))
        st["synth"] = synth
        try:
            return VD.resolve(ref, seed=seed, settings=st, cache_dir=ctx.cache_dir, data_dir=ctx.data_dir), seed
        except (VD.VideoDataError, ValueError) as exc:
            raise CellFailure(str(exc)) from None
        except Exception as exc:
            from .codec import VideoError

            if isinstance(exc, VideoError):
                raise CellFailure(str(exc)) from None
            raise

    def _fixtures(self, profile: Profile, cell: Cell, ctx: CellContext) -> dict[str, Any]:
        """Clips, frozen backbones, features and costs of the cell's (profile, dataset, repeat)."""
        import torch

        from ... import locks
        from . import data as VD
        from . import models as VM

        memo = self.__dict__.setdefault("_memo", {})
        mkey = f"{profile.id}|{canonical_json(dict(cell.axes))}|{cell.repeat}|{ctx.cache_dir}|{ctx.device}|{torch.get_num_threads()}|{ctx.salt_id}"
        if mkey in memo:
            return memo[mkey]
        st = profile.settings
        t0 = time.perf_counter()
        ds, data_seed = self.dataset(profile, cell, ctx)
        data_s = time.perf_counter() - t0
        device = torch.device(ctx.device)
        hold = float(st.get("heldout_fraction", 0.0) or 0.0)
        fit_idx, held_idx = VD.heldout_split(ds.train.y, hold, VM._seed("heldout", data_seed)) if hold > 0 else (None, None)

        def inputs(a: np.ndarray, idx: np.ndarray | None) -> torch.Tensor:
            # one memory order whatever the source (fresh build, cache, a subset, another loader): it changes the CPU's rounding
            return torch.from_numpy(VD.channels_last(a if idx is None else a[idx])).to(device)

        x_tr = {m: inputs(ds.train.x[m], fit_idx) for m in ORDER}
        x_te = {m: inputs(ds.test.x[m], None) for m in ORDER}
        y_tr = torch.from_numpy(ds.train.y if fit_idx is None else ds.train.y[fit_idx]).to(device)
        widths = [int(w) for w in st["widths"]]
        key, payload = backbone_key(profile, cell, ds.info.get("key"), ctx.device)
        path = Path(ctx.cache_dir) / "video" / "backbones" / key if ctx.cache_dir else None
        bseed = data_seed

        def make() -> dict[str, VM.TinyExitNet]:
            return {m: VM.TinyExitNet(VM.IN_CHANNELS[m], ds.num_classes, widths, input_bn=m in ("mv", "res")).to(device) for m in ORDER}

        def train() -> tuple[dict[str, VM.TinyExitNet], dict[str, float]]:
            ctx.progress("backbones", 0.0)
            return VM.build_backbones(x_tr, y_tr, ds.num_classes, modalities=ORDER, widths=widths, epochs=int(st["backbone_epochs"]),
                                      lr=float(st["backbone_lr"]), batch_size=int(st["backbone_batch_size"]), seed=bseed)

        shared = False
        if path is None:
            nets, secs = train()
        else:
            with locks.lock_for(path):
                if (path / "meta.json").exists():
                    nets = make()
                    sd = torch.load(path / "backbones.pt", map_location=device, weights_only=True)
                    for m in ORDER:
                        nets[m].load_state_dict(sd[m])
                        nets[m].eval()
                    secs = json.loads((path / "meta.json").read_text())["train_s"]
                    shared = True
                else:
                    nets, secs = train()
                    tmp = locks.temp_dir_for(path)
                    torch.save({m: {k: v.detach().cpu() for k, v in nets[m].state_dict().items()} for m in ORDER}, tmp / "backbones.pt")
                    (tmp / "meta.json").write_text(json.dumps({"train_s": secs, "key": payload}, sort_keys=True, default=str))
                    locks.replace_dir(tmp, path)
        t1 = time.perf_counter()
        feats_tr, logits_tr, feats_te, logits_te, feats_ho, logits_ho, feats_aug, logits_aug = {}, {}, {}, {}, {}, {}, {}, {}
        aug = dict(st.get("ic_augment") or {})
        for m in ORDER:
            feats_tr[m], logits_tr[m] = VM.features(nets[m], x_tr[m])
            feats_te[m], logits_te[m] = VM.features(nets[m], x_te[m])
            if held_idx is not None:
                feats_ho[m], logits_ho[m] = VM.features(nets[m], inputs(ds.train.x[m], held_idx))
            if aug.get("views"):
                feats_aug[m], logits_aug[m] = augmented_features(nets[m], x_tr[m].cpu().numpy(), aug, m, VM._seed("crop", data_seed, m), device)
        y_ho = ds.train.y[held_idx] if held_idx is not None else None
        teacher = teacher_confidence({"train": (logits_tr, ds.train.y if fit_idx is None else ds.train.y[fit_idx]),
                                      **({"heldout": (logits_ho, y_ho)} if held_idx is not None else {}), "test": (logits_te, ds.test.y)})
        # what the views hand out, made the views' own copies once here (``kinds.readonly``): the
        # views of every cell of this fixture share them instead of copying ~0.5 GB each (quick@3),
        # and the contestant worker gets a pickled copy of its own anyway
        feats_tr, logits_tr = {m: [readonly(t) for t in v] for m, v in feats_tr.items()}, {m: readonly(t) for m, t in logits_tr.items()}
        feats_ho, logits_ho = {m: [readonly(t) for t in v] for m, v in feats_ho.items()}, {m: readonly(t) for m, t in logits_ho.items()}
        feats_aug, logits_aug = {m: [readonly(t) for t in v] for m, v in feats_aug.items()}, {m: readonly(t) for m, t in logits_aug.items()}
        y_tr = readonly(y_tr)
        per_mod, shapes = {}, {}
        for m in ORDER:
            stages, heads, shp = VM.stage_costs(nets[m], tuple(x_tr[m].shape[2:]), ds.num_classes)
            per_mod[m], shapes[m] = (stages, heads), shp
        order = [(m, k) for m in ORDER for k in (1, 2, 3, 4)] + [("fused", 4)]
        kseg = int(x_tr[ORDER[0]].shape[1])
        costs = VM.exit_costs(per_mod, order, kseg, ds.num_classes)
        out = {
            "ds": ds, "nets": nets, "feats_tr": feats_tr, "logits_tr": logits_tr, "feats_te": feats_te, "logits_te": logits_te,
            "y_tr": y_tr, "y_te": ds.test.y, "shapes": shapes, "order": order, "costs": costs, "backbone_s": secs, "shared": shared,
            "data_s": data_s, "features_s": time.perf_counter() - t1, "data_seed": data_seed, "hash": VM.param_hash(nets),
            "feats_ho": feats_ho or None, "logits_ho": logits_ho or None, "y_ho": readonly(torch.from_numpy(y_ho).to(device)) if y_ho is not None else None,
            "held_idx": held_idx, "feats_aug": feats_aug or None, "logits_aug": logits_aug or None, "teacher": teacher, "device": ctx.device,
        }
        memo.clear()  # one fixture set in memory at a time
        memo[mkey] = out
        return out

    # ---- the cell ------------------------------------------------------------------------------
    def recipe(self, profile: Profile) -> dict[str, Any]:
        """The IC training recipe every method follows. quick@3 adds ``train_segments``
        ("average": student and teacher logits averaged over the K segments before the loss, as
        the reference scripts; absent: one random segment per clip per epoch) and, with a
        training augmentation, ``augment_views`` (V cached crops per clip, ``feats_train_aug``)."""
        st = profile.settings
        out = {"ic_epochs": int(st["ic_epochs"]), "lr": dict(st["ic_lr"]), "batch_size": int(st["ic_batch_size"]),
               "milestones": list(st["ic_milestones"]), "adam_eps": float(st["adam_eps"]), "weight_decay": float(st["weight_decay"])}
        if "ic_train_segments" in st:
            out["train_segments"] = str(st["ic_train_segments"])
        if (st.get("ic_augment") or {}).get("views"):
            out["augment_views"] = int(st["ic_augment"]["views"])
        return out

    def check_dataset(self, ref: str, data_dir: Path | None) -> None:
        """``synth-motion`` (generated) or ``video-folder:PATH`` (a directory; its clips are listed
        and decoded inside the cells, cached per key)."""
        name, _, arg = ref.partition(":")
        if name == "synth-motion" and not arg:
            return
        if name == "video-folder":
            from . import data as VD

            try:
                p = VD.folder_path(arg, data_dir)
            except VD.VideoDataError as exc:
                raise ValueError(str(exc)) from None
            if not p.is_dir():
                raise ValueError(f"video-folder: {p} is not a directory; pass --dataset video-folder:PATH of a class-folder tree of .avi/.mp4 clips")
            return
        raise LookupError(f"unknown video dataset {ref!r}; use synth-motion or video-folder:PATH")

    def load_dataset(self, ref: str, ctx: CellContext) -> None:
        """Nothing to preload: clips are encoded, decoded and cached per (dataset, repeat) by the cells."""

    # ---- the pipeline's pieces (``Track.run_cell``) ------------------------------------------
    def fixture(self, profile: Profile, cell: Cell, ctx: CellContext) -> dict[str, Any]:
        """Clips, frozen backbones, their stage features (train, held-out, augmented copies and
        test) and the exits' costs of the cell's (profile, dataset, repeat), memoized in-process
        (one set at a time) and cached on disk (clips and backbones under ``<cache>/video``)."""
        return self._fixtures(profile, cell, ctx)

    def view(self, fixture: Mapping[str, Any], cell: Cell, method: Method) -> ExitView:
        """The training clips' stage features, teacher logits and labels (and the held-out and
        augmented ones where the profile has them), the harness's head factory, the frozen
        backbones as architecture and weights (``backbone_factory``), the exit order and costs,
        the recipe and the cell's generators: nothing of the test clips. The contestant worker
        receives a copy. The global torch generator is seeded with the cell's seed here, after
        the fixture, as the track did before the pipeline (the contestant starts from it)."""
        import torch

        from . import models as VM

        fx = fixture
        ds = fx["ds"]
        profile = self.profile(cell.profile)
        view = ExitView(
            modalities=ORDER, feats_train=fx["feats_tr"], final_logits_train=fx["logits_tr"], y_train=fx["y_tr"], num_classes=ds.num_classes,
            head_factory=VM.HeadFactory(fx["shapes"], ds.num_classes, cell.seed), exit_order=tuple(fx["order"]), exit_macs=fx["costs"].copy(),
            recipe=self.recipe(profile), seed=cell.seed, generator=torch.Generator(device="cpu").manual_seed(cell.seed),
            rng=np.random.default_rng(cell.seed), device=str(fx["device"]), feats_heldout=fx["feats_ho"], final_logits_heldout=fx["logits_ho"],
            y_heldout=fx["y_ho"], feats_train_aug=fx["feats_aug"], final_logits_train_aug=fx["logits_aug"],
            backbone_factory=VM.FrozenBackbones(fx["nets"]),
        )
        torch.manual_seed(cell.seed)
        return view

    def evaluate(self, fixture: Mapping[str, Any], cell: Cell, contest: ContestResult) -> CellResult:
        """The checked heads on the test clips' stage features (segment-averaged logits), the
        combiner, the confidence cascade and its frontier; the backbones checked bit-unchanged."""
        import torch

        from . import models as VM

        fx = fixture
        ds = fx["ds"]
        who = f"plugin {cell.method!r}"
        out = contest.output
        report = contest.reports[0] if contest.reports else {}
        distill_s = float(contest.seconds)
        if VM.param_hash(fx["nets"]) != fx["hash"]:
            raise CellFailure(f"{who} modified a frozen backbone's parameters (hash changed); the backbones must stay bit-unchanged")
        z = self._test_logits(out.heads, fx, ds.num_classes, who)
        combiner = out.combiner
        y = np.asarray(fx["y_te"])
        costs = fx["costs"]
        zc = combine(z, combiner)
        raw_acc = (z.argmax(-1) == y[:, None]).mean(0)
        comb_acc = (zc.argmax(-1) == y[:, None]).mean(0)
        front = cascade(zc, y, costs)
        metrics: dict[str, float] = {**frontier_metrics(front, ds.num_classes), "final_acc": float(comb_acc[-1]), "distill_s": distill_s}
        ic_idx = [i for i, (m, k) in enumerate(fx["order"]) if m != "fused" and k <= 3]
        metrics["mean_ic_acc"] = float(raw_acc[ic_idx].mean())
        for i, (m, k) in enumerate(fx["order"]):
            if m != "fused":
                metrics[f"ic_acc_{m}_{k}"] = float(raw_acc[i])
        metrics["plain_final_acc"] = float(raw_acc[-1])
        artifacts = [
            ArtifactOut.npy("video", "frontier.npy", front.astype(np.float64)),
            ArtifactOut.npy("video", "exit_acc.npy", np.stack([raw_acc, comb_acc]).astype(np.float64)),
        ]
        if combiner is not None:
            e_n = len(combiner)
            beta = np.zeros((e_n, e_n))
            for e, b in enumerate(combiner):
                beta[e, : e + 1] = b
            artifacts.append(ArtifactOut.npy("video", "beta.npy", beta))
        backbone_s = float(sum(fx["backbone_s"].values()))
        n_heldout = int(len(fx["y_ho"])) if fx["y_ho"] is not None else 0
        info: dict[str, Any] = {
            "primary_metric": self.primary_metric, "dataset": ds.name, "num_classes": ds.num_classes, "n_train": int(len(fx["y_tr"])), "n_test": len(ds.test),
            **({"n_heldout": n_heldout} if n_heldout else {}), **({"augment_views": int(fx["logits_aug"]["res"].shape[0])} if fx["logits_aug"] else {}),
            "teacher_ptrue": fx["teacher"]["ptrue"], "teacher_acc": fx["teacher"]["acc"],
            "data_seed": fx["data_seed"], "data_cached": bool(ds.info.get("cached")), "data_s": fx["data_s"], "threads": torch.get_num_threads(),
            "backbones_shared": fx["shared"], "backbone_hash": fx["hash"], "backbone_train_s": {m: round(float(s), 3) for m, s in fx["backbone_s"].items()},
            "features_s": fx["features_s"], "exit_order": [f"{m}{k}" for m, k in fx["order"]],
            "exit_gmacs": [round(float(c) / 1e9, 6) for c in costs], "full_gmacs": float(costs[-1]) / 1e9,
            "frontier_cost": [round(float(c), 5) for c in front[:, 1]], "frontier_acc": [round(float(a), 5) for a in front[:, 2]],
            "exit_acc": [round(float(a), 5) for a in raw_acc], "exit_acc_combined": [round(float(a), 5) for a in comb_acc],
            "combiner": combiner is not None, **dict(report.get("info", {})),
        }
        timings = {"distill_s": distill_s, "backbone_s": backbone_s, "features_s": float(fx["features_s"])}
        return CellResult(metrics=metrics, timings=timings, artifacts=artifacts, info=info)

    def _test_logits(self, heads: Mapping[tuple[str, int], Any], fx: Mapping[str, Any], num_classes: int, who: str) -> np.ndarray:
        """Segment-averaged test logits (N, 13, C) of the checked heads (``validation.check_exit_model``)
        and the frozen final classifiers; the fused exit is the mean of the three final ones."""
        import torch

        from . import models as VM

        cols = []
        for m, k in fx["order"]:
            if m == "fused":
                cols.append(torch.stack([fx["logits_te"][mm].mean(1) for mm in ORDER]).mean(0))
            elif k == 4:
                cols.append(fx["logits_te"][m].mean(1))
            else:
                lg = VM.head_logits(heads[(m, k)], fx["feats_te"][m][k - 1])
                n = fx["feats_te"][m][k - 1].shape[0]
                if tuple(lg.shape) != (n, num_classes):
                    raise CellFailure(f"{who}: head {(m, k)} gives logits of shape {tuple(lg.shape)}; expected (batch, {num_classes})")
                if not bool(torch.isfinite(lg).all()):
                    raise CellFailure(f"{who}: head {(m, k)} gives non-finite logits on the test clips")
                cols.append(lg)
        return torch.stack(cols, dim=1).detach().cpu().double().numpy()
