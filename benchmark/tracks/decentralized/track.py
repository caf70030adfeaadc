"""The ``decentralized`` track: serverless (gossip) training on non-IID nodes, IDKD against naive KD,
QGM and D-PSGD (spec tracks-phase2.md §3).

Contestants are ``distillation`` methods with role ``decentralized``: ``distill(view:
DecentralizedView)`` returns one model per node. Per cell the harness (never the method):

1. splits the dataset's training data. Without ``private_classes`` every class is private: per
   class a ``public_fraction`` (or ``public_per_class``) becomes the unlabelled in-distribution
   half of the **public set**, and as many out-of-distribution images are generated (half
   uniform noise textures U(0,1), half 90°-rotated intensity-inverted images for one-channel data
   or 4×4-patch-shuffled images for colour data). With ``private_classes`` (cifar10-cpu@2: the
   first five CIFAR-10 classes) only those classes reach the nodes and the test split (relabelled
   0..k−1); the public set's in-distribution half is held-out images of those classes and its
   out-of-distribution half as many training images of the other classes: out of distribution
   for a reason, not by a pixel rule. The halves are mixed at random positions; which public
   samples are out-of-distribution is kept by the harness only, to score the methods' detectors.
   Seed: (profile, dataset, "public", repeat);
2. splits the rest (the private pool) over ``nodes`` nodes with the Dirichlet(``alpha``)
   partition of the reference (``decentralized.dirichlet_partition``; seed (profile, dataset,
   alpha, nodes, repeat)); a partition that cannot give every node half the average size fails
   the cell with a message naming alpha and n;
3. builds the ``topology`` (ring, torus, full, isolated) and a fresh byte-counting ``Network``,
   and hands the method the view: node-local data, its own label histograms, the public images,
   the network, a model factory (the same seeded initialization for every node and method:
   seed (profile, arch, repeat)), the recipe (epochs, batch size, momentum 0.9, weight decay
   1e-4, ×0.1 at 60 % and 80 % of the epochs, the dataset's crop/flip augmentation) and
   ``steps_per_epoch`` = floor(mean node size / batch size), the same for every node;
4. runs ``distill`` through the cell pipeline (``Track.run_cell``; the contest of kind
   ``node-models``, ``coreset_bench.contest``) in the **contestant worker**
   (``coreset_bench.contestant``), a process that holds the view and nothing else: no test
   split, no hidden public-set flags, no other cell's data, and the dataset files are refused.
   The view is *served*: the worker's ``view.net`` forwards every gossip, exchange and allgather
   to this process's ``Network`` (``Track.service``), which mixes and counts the bytes (a
   method cannot change what is counted); node i's rows of ``view.nodes`` and
   ``view.own_label_counts`` are readable only acting as node i (``with view.net.node(i):``).
   The models come back as their parameters (numbers only) and are loaded into the harness's own
   copies of the architecture;
5. checks the output (``validation.check_node_models``): exactly one finite model per node of
   the view's architecture giving C logits, and (``evaluate``) that the nodes agree only as far
   as the counted traffic allows: two nodes whose
   parameters end closer than 5 % of their movement from the common initialization although
   fewer than one model's bytes passed between them along any path fail the cell ("models
   converged without communication"). Any failure names the plugin and fails only this cell;
6. evaluates every node's own model on the whole test split.

Execution (setting ``execution``, overridden per run by the environment variable
``CORESET_BENCH_DECENTRALIZED_EXECUTION``): ``simulate`` runs all nodes in one contestant worker
(vmapped; contest kind ``node-models``); ``gloo`` runs one process per node over
``torch.distributed`` (gloo backend, point-to-point gossip; contest kind ``node-models-gloo``,
whose runner is ``coreset_bench.tracks.decentralized.gloo.run_views``) for methods that declare
``multiprocess``: each node process loads only its own node's data, under the worker's guard,
which is the structural form of "node i sees only its own data".

Metrics (spec §3.6): ``mean_node_acc`` (primary, max), ``min_node_acc``, ``std_node_acc``;
``consensus_acc`` (accuracy of the nodes' parameter average, informational) and
``consensus_dist`` (mean over nodes of ||x_i − x̄||², over all parameters); megabytes sent per
node by kind ``comm_mb_model``, ``comm_mb_labels``, ``comm_mb_meta``, ``comm_mb_total``;
``label_overhead`` = label bytes / model bytes; and, when the method reports
``info["public_kept"]`` (per node, the public indices its detector kept), the detector's
``public_id_precision`` (share of kept samples that are in-distribution), ``public_id_recall``
and ``public_kept_frac`` (means over nodes); ``train_s``. Artifacts: ``label_counts.npy`` (the
partition, n × C), ``W.npy``, ``node_acc.npy``.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ... import data as D
from . import network as DC
from ... import training as T
from ...claims import SUPERIORITY, Claim, Paper, Row
from ...kinds import DecentralizedView, Method
from ..base import ArtifactOut, Cell, CellContext, CellFailure, CellResult, Profile, Track, canonical_json

EXECUTIONS = ("simulate", "gloo")
ENV_EXECUTION = "CORESET_BENCH_DECENTRALIZED_EXECUTION"

#: epochs of cifar10-cpu@2 (sized for about 5 minutes per cell on 2 idle cores)
CIFAR_CPU_EPOCHS = 100

_BASE = {"batch_size": 32, "momentum": 0.9, "weight_decay": 1e-4, "gamma": 0.1, "milestone_fracs": [0.6, 0.8], "min_node_frac": 0.5, "execution": "simulate"}


def _profiles() -> list[Profile]:
    return [
        Profile("decentralized", "tiny", 1, {"dataset": ["digits"], "topology": ["ring"], "alpha": [0.5], "nodes": [4]}, seeds=(0,),
                settings={**_BASE, "arch": "mlp", "epochs": 4, "public_per_class": 10},
                description="Seconds-long profile for tests: 4 digits nodes on a ring, 4 epochs, public set 100 + 100 OOD."),
        Profile("decentralized", "quick", 1, {"dataset": ["digits"], "topology": ["ring", "torus"], "alpha": [0.1, 1.0], "nodes": [9]}, seeds=(0, 1, 2),
                settings={**_BASE, "arch": "mlp", "epochs": 60, "public_fraction": 0.2}, salted=False,
                description="9 digits nodes on a ring and a 3x3 torus, Dirichlet alpha 0.1 and 1.0, MLP, 60 epochs of batch 32; public set = 20 % of the training digits (unlabelled) + as many OOD images.",
                timeout_s=900.0),
        Profile("decentralized", "quick", 2, {"dataset": ["digits"], "topology": ["ring", "torus"], "alpha": [0.1, 1.0], "nodes": [9]}, seeds=(0, 1, 2, 3, 4),
                settings={**_BASE, "arch": "mlp", "epochs": 300, "public_fraction": 0.2},
                description="quick@1 with enough steps at the reference learning rates: 9 digits nodes on a ring and a 3x3 torus, Dirichlet alpha 0.1 and 1.0, MLP, "
                            "300 epochs of batch 32 (900 steps per node; milestones at epochs 180 and 240, IDKD exchanges from epoch 240), 5 seeds; "
                            "public set = 20 % of the training digits (unlabelled) + as many synthetic OOD images.",
                timeout_s=1800.0),
        Profile("decentralized", "cifar10-cpu", 1, {"dataset": ["cifar10"], "topology": ["ring"], "alpha": [0.1], "nodes": [8]}, seeds=(0,),
                settings={**_BASE, "arch": "cnn-small-gn", "epochs": 30, "public_fraction": 0.2, "max_train_per_class": 250},
                description="CPU check on real images (slow, about 5 min per cell): CIFAR-10, 250 images per class, 8 nodes on a ring, alpha 0.1, cnn-small-gn, 30 epochs. For the JPEG copy: --dataset imagefolder:PATH.",
                timeout_s=3600.0),
        Profile("decentralized", "cifar10-cpu", 2, {"dataset": ["cifar10-jpeg"], "topology": ["ring"], "alpha": [0.1], "nodes": [8]}, seeds=(0, 1, 2),
                settings={**_BASE, "arch": "cnn-small-gn", "epochs": CIFAR_CPU_EPOCHS, "public_fraction": 0.2, "max_train_per_class": 375, "private_classes": [0, 1, 2, 3, 4],
                          "eval_batch": 64},
                description="A public set that is out of distribution for a reason, on real images: CIFAR-10 (the JPEG copy: --data-dir holding cifar10-jpeg/ or "
                            "cifar10-jpeg.tar.gz), the 5 classes airplane, automobile, bird, cat, deer private across 8 nodes on a ring (Dirichlet alpha 0.1, "
                            "300 images per class); the public set = 75 held-out images of each private class + as many images of the other 5 classes "
                            f"(dog, frog, horse, ship, truck) as its out-of-distribution half; cnn-small-gn, {CIFAR_CPU_EPOCHS} epochs; tested on the private classes' test images.",
                timeout_s=3 * 3600.0),
        Profile("decentralized", "cifar10", 1, {"dataset": ["cifar10"], "topology": ["ring", "torus"], "alpha": [0.05, 0.1], "nodes": [16]}, seeds=(0, 1, 2),
                settings={**_BASE, "arch": "resnet20-gn", "epochs": 300, "public_fraction": 0.2},
                description="The paper's regime on a GPU: CIFAR-10, 16 nodes (ring, 4x4 torus), alpha 0.05 and 0.1, ResNet-20 with GroupNorm, 300 epochs (IDKD exchanges from epoch 240).",
                timeout_s=6 * 3600.0, device="cuda"),
    ]


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256(canonical_json(list(parts)).encode()).hexdigest()[:8], 16) % (2**31 - 1)


def make_ood(x_src: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` out-of-distribution images shaped like ``x_src``'s: the first half uniform noise
    textures U(0,1); the rest made from random source images, 90°-rotated and intensity-inverted
    (one channel) or cut into a 4x4 grid of patches shuffled at random (colour). Guarded:
    ``LeakageError`` inside a contestant."""
    from ...data import _check_not_contestant

    _check_not_contestant("generate the decentralized public set")
    g = torch.Generator().manual_seed(int(seed))
    shape = tuple(x_src.shape[1:])
    n_noise = n // 2
    noise = torch.rand((n_noise, *shape), generator=g)
    src = x_src[torch.randint(0, len(x_src), (n - n_noise,), generator=g)].float()
    c, h, w = shape
    if c == 1 or h != w or h % 4:
        other = 1.0 - torch.rot90(src, 1, dims=(2, 3)) if h == w else 1.0 - src.flip(2)
    else:
        p = h // 4
        patches = src.unfold(2, p, p).unfold(3, p, p).reshape(len(src), c, 16, p, p)
        perm = torch.stack([torch.randperm(16, generator=g) for _ in range(len(src))])
        patches = patches[torch.arange(len(src))[:, None], :, perm].permute(0, 2, 1, 3, 4)  # (N, c, 16, p, p)
        other = patches.reshape(len(src), c, 4, 4, p, p).permute(0, 1, 2, 4, 3, 5).reshape(len(src), c, h, w)
    return torch.cat([noise, other]).clamp(0, 1).contiguous()


@dataclass
class World:
    """One cell's fixed data: node-local sets, the public set (with its hidden OOD flags), the test
    split and the partition."""

    nodes: list[tuple[torch.Tensor, torch.Tensor]]
    counts: np.ndarray
    public_x: torch.Tensor
    public_is_id: np.ndarray
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pad: int
    hflip: bool
    partition_seed: int
    public_seed: int
    build_s: float
    #: names of the classes the nodes hold (the models' classes 0..C-1, in order)
    classes: list[str] | None = None
    #: what the public set's out-of-distribution half is made of
    public_ood: str = ""


def check_node_models(out: Any, method_name: str, n: int, x_probe: torch.Tensor, num_classes: int, device: Any) -> list[torch.nn.Module]:
    """The harness's check of a decentralized method's output (``validation.check_node_models``,
    the contest's check of kind ``node-models``); raises ``CellFailure`` naming the plugin."""
    from ...validation import check_node_models as check

    return check(out, method_name, n, x_probe, num_classes, device)


@dataclass
class _Fixture:
    """One cell's fixture: the profile, context, world, topology, execution, the view's spec and
    (execution simulate) the harness's byte-counting network."""

    profile: Profile
    ctx: CellContext
    world: World
    topo: DC.Topology
    how: str
    spec: DC.ViewSpec
    net: DC.Network | None


class DecentralizedTrack(Track):
    name = "decentralized"
    summary = "Gossip training on label-skewed (Dirichlet) nodes: mean node test accuracy, with the bytes each node sent."
    contestant_kind = "distillation"
    role = "decentralized"
    fixtures = ("partition", "public-set")
    primary_metric = "mean_node_acc"
    secondary_metrics = ("min_node_acc", "std_node_acc", "consensus_acc", "comm_mb_total", "label_overhead", "public_id_precision", "public_kept_frac", "train_s")
    metric_directions = {
        "mean_node_acc": "max", "min_node_acc": "max", "std_node_acc": "min", "consensus_acc": "max", "consensus_dist": "min",
        "comm_mb_model": "min", "comm_mb_labels": "min", "comm_mb_meta": "min", "comm_mb_total": "min", "label_overhead": "min",
        "public_id_precision": "max", "public_id_recall": "max", "public_kept_frac": "max", "train_s": "min",
    }
    metric_bounds = {
        **dict.fromkeys(("mean_node_acc", "min_node_acc", "consensus_acc", "public_id_precision", "public_id_recall", "public_kept_frac"), (0.0, 1.0)),
        **dict.fromkeys(("std_node_acc", "consensus_dist", "comm_mb_model", "comm_mb_labels", "comm_mb_meta", "comm_mb_total", "label_overhead", "train_s"), (0.0, None)),
    }
    metric_units = {
        **dict.fromkeys(("mean_node_acc", "min_node_acc", "consensus_acc", "public_id_precision", "public_id_recall", "public_kept_frac"), "%"),
        "std_node_acc": "pp", "consensus_dist": "", "label_overhead": "×", "train_s": "s",
        **dict.fromkeys(("comm_mb_model", "comm_mb_labels", "comm_mb_meta", "comm_mb_total"), "MB"),
    }
    baseline_method = "d-psgd"
    reference_methods = ("d-psgd",)
    hidden_data = True  # the public set's OOD flags (its seed goes through ``CellContext.hidden_seed``)

    def __init__(self) -> None:
        self._worlds: dict[str, World] = {}

    #: the profiles the seed paper's claims are read on (add a new profile version here)
    claim_profiles = ("decentralized/quick@2", "decentralized/cifar10-cpu@2", "decentralized/quick@1")

    def claims(self) -> list[Claim]:
        """IDKD: mean node accuracy over naive KD (2-13 points) and over QGM (up to 8 points), all
        rows at their installed (reference) learning rates."""
        paper = Paper("2304.04326", "Homogenizing Non-IID Datasets via In-Distribution Knowledge Distillation for Decentralized Learning", 2024, "TMLR")
        quote = ("the proposed IDKD scheme is more effective than traditional knowledge distillation and achieves state-of-the-art "
                 "generalization performance on heterogeneously distributed data with minimal communication overhead")
        common = dict(system="IDKD", paper=paper, quote=quote, track=self.name, profiles=self.claim_profiles, metric="mean_node_acc",
                      seed=Row("idkd"), kind=SUPERIORITY,
                      note="rows at their installed (reference) learning rates; rows run at other rates are labelled settings, not read here")
        return [
            Claim(id="idkd-over-naive-kd", comparator=Row("naive-kd"), effect=0.02,
                  paper_number="+2 to +13 points over vanilla KD across datasets and topologies (the smallest is the claimed effect)", **common),
            Claim(id="idkd-over-qgm", comparator=Row("qgm"), effect=0.08,
                  paper_number="up to +8 points over state-of-the-art decentralized methods (QGM, the base IDKD builds on)", **common),
        ]

    def profiles(self) -> list[Profile]:
        return _profiles()

    def cost_hint(self, cell: Cell) -> float:
        return 1.5 if cell.method in ("idkd", "naive-kd") else 1.0

    # ---- data -----------------------------------------------------------------------------

    def world(self, profile: Profile, dataset: str, alpha: float, n: int, repeat: int, ctx: CellContext) -> World:
        """The cell's splits, public set and partition (memoized in-process; never depends on the method)."""
        st = profile.settings
        key = canonical_json([profile.id, dataset, alpha, n, repeat, str(ctx.data_dir), ctx.device, ctx.salt_id])
        if key in self._worlds:
            return self._worlds[key]
        t0 = time.perf_counter()
        ds = D.resolve(dataset, ctx.data_dir, ctx.cache_dir)
        y_all = ds.y_train.numpy()
        base = np.arange(len(y_all))
        if st.get("max_train_per_class"):
            base = D.per_class_subsample(y_all, int(st["max_train_per_class"]), _seed(profile.id, dataset, "subsample"))
        priv_cls, ood_cls = self.class_split(profile, ds.num_classes)
        class_map = np.full(ds.num_classes, -1, dtype=np.int64)
        class_map[priv_cls] = np.arange(len(priv_cls))
        num_classes = len(priv_cls)
        base_ood = base[np.isin(y_all[base], ood_cls)]
        base = base[np.isin(y_all[base], priv_cls)]
        public_seed = ctx.hidden_seed(_seed(profile.id, dataset, "public", repeat))  # the public set's hidden OOD flags
        rng = np.random.default_rng(public_seed)
        pub_local = []
        for c in np.unique(y_all[base]):
            idx = base[y_all[base] == c]
            k = int(st["public_per_class"]) if st.get("public_per_class") else int(round(float(st.get("public_fraction", 0.2)) * len(idx)))
            pub_local.append(rng.permutation(idx)[: min(k, len(idx) - 1)])
        pub_idx = np.sort(np.concatenate(pub_local))
        priv_idx = np.setdiff1d(base, pub_idx)
        x_id = ds.x_train[torch.from_numpy(pub_idx)]
        if len(ood_cls):
            # the out-of-distribution half: training images of the classes no node holds
            if len(base_ood) < len(pub_idx):
                raise CellFailure(f"profile {profile.id}: the out-of-distribution classes hold {len(base_ood)} images, fewer than the {len(pub_idx)} the public set needs; lower public_fraction")
            ood_pick = np.sort(np.random.default_rng(public_seed + 1).permutation(base_ood)[: len(pub_idx)])
            x_ood = ds.x_train[torch.from_numpy(ood_pick)]
            ood_kind = "classes " + ", ".join(ds.classes[int(c)] for c in ood_cls)
        else:
            x_ood = make_ood(ds.x_train[torch.from_numpy(base)], len(pub_idx), public_seed + 1)
            ood_kind = "synthetic (noise textures, rotated-inverted or patch-shuffled images)"
        order = rng.permutation(len(pub_idx) + len(x_ood))
        public_x = torch.cat([x_id, x_ood])[torch.from_numpy(order)].contiguous()
        public_is_id = (order < len(pub_idx))
        y_priv = class_map[y_all[priv_idx]]
        partition_seed = _seed(profile.id, dataset, alpha, n, repeat)
        try:
            parts = DC.dirichlet_partition(y_priv, n, alpha, partition_seed, min_node_frac=float(st.get("min_node_frac", 0.5)))
        except DC.PartitionError as exc:
            raise CellFailure(str(exc)) from None
        dev = torch.device(ctx.device)
        y_priv_t = torch.from_numpy(y_priv)
        nodes = [(ds.x_train[torch.from_numpy(priv_idx[p])].to(dev), y_priv_t[torch.from_numpy(p)].to(dev)) for p in parts]
        counts = DC.label_counts(y_priv, parts, num_classes)
        assert ds.x_test is not None and ds.y_test is not None
        y_te_all = ds.y_test.numpy()
        te = np.flatnonzero(np.isin(y_te_all, priv_cls))
        if st.get("max_test") and int(st["max_test"]) < len(te):
            te = te[np.sort(D.stratified_subset(class_map[y_te_all[te]], int(st["max_test"]), _seed(profile.id, dataset, "test")))]
        w = World(nodes, counts, public_x.to(dev), public_is_id, ds.x_test[torch.from_numpy(te)].to(dev), torch.from_numpy(class_map[y_te_all[te]]).to(dev),
                  num_classes, tuple(ds.shape), tuple(ds.mean), tuple(ds.std), int(ds.crop_pad), bool(ds.hflip), partition_seed, public_seed,
                  time.perf_counter() - t0, [ds.classes[int(c)] for c in priv_cls], ood_kind)
        self._worlds[key] = w
        return w

    @staticmethod
    def class_split(profile: Profile, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
        """(private classes, out-of-distribution classes) of the dataset's class ids: the setting
        ``private_classes`` (the rest are the public set's out-of-distribution half), or every
        class private (synthetic out-of-distribution images)."""
        want = profile.settings.get("private_classes")
        if want is None:
            return np.arange(num_classes), np.array([], dtype=np.int64)
        priv = np.array(sorted({int(c) for c in want}), dtype=np.int64)
        if len(priv) < 2 or priv.min() < 0 or priv.max() >= num_classes or len(priv) == num_classes:
            raise CellFailure(f"profile {profile.id}: private_classes {list(want)} must name 2 to {num_classes - 1} of the dataset's class ids 0..{num_classes - 1}")
        return priv, np.setdiff1d(np.arange(num_classes), priv)

    def recipe(self, profile: Profile, w: World) -> dict[str, Any]:
        st = profile.settings
        E = int(st["epochs"])
        return {
            "epochs": E, "batch_size": int(st["batch_size"]), "momentum": float(st["momentum"]), "weight_decay": float(st["weight_decay"]),
            "milestones": [int(round(f * E)) for f in st.get("milestone_fracs", [0.6, 0.8])], "gamma": float(st["gamma"]),
            "crop_pad": w.crop_pad, "hflip": w.hflip,
        }

    @staticmethod
    def execution(profile: Profile) -> str:
        how = os.environ.get(ENV_EXECUTION) or str(profile.settings.get("execution", "simulate"))
        if how not in EXECUTIONS:
            raise CellFailure(f"unknown decentralized execution {how!r} (setting 'execution' or ${ENV_EXECUTION}); choose simulate or gloo")
        return how

    def model_factory(self, profile: Profile, cell: Cell, w: World, ctx: CellContext) -> Any:
        """The cell's model factory: the same seeded initialization (profile, arch, repeat) for every node and method."""
        from ...models import ModelFactory

        arch = str(profile.settings["arch"])
        return ModelFactory(arch, w.shape, w.num_classes, w.mean, w.std, _seed(profile.id, arch, cell.repeat), ctx.device)

    @staticmethod
    def steps_per_epoch(profile: Profile, w: World) -> int:
        """floor(mean node size / batch size), the same for every node (synchronous rounds)."""
        return max(1, int(np.mean([len(y) for _, y in w.nodes]) // int(profile.settings["batch_size"])))

    def view_spec(self, profile: Profile, cell: Cell, w: World, topo: DC.Topology, ctx: CellContext) -> DC.ViewSpec:
        """What the method's view holds, without its network (it travels to the contestant worker)."""
        return DC.ViewSpec(
            nodes=list(w.nodes), counts=np.asarray(w.counts), num_classes=w.num_classes, public_x=w.public_x, topology=topo,
            model_factory=self.model_factory(profile, cell, w, ctx), recipe=self.recipe(profile, w), steps_per_epoch=self.steps_per_epoch(profile, w),
            seed=cell.seed, device=ctx.device,
        )

    def make_view(self, profile: Profile, cell: Cell, w: World, topo: DC.Topology, net: Any, ctx: CellContext) -> DecentralizedView:
        """The cell's view on ``net`` (a fresh ``Network`` when None), in this process (tests, tools);
        a track run builds it in the contestant worker instead."""
        return self.view_spec(profile, cell, w, topo, ctx).open(net if net is not None else DC.Network(topo))

    # ---- the cell (the base class's pipeline: fixture -> view -> contest -> evaluate) --------

    def contest_kind(self, profile: Profile) -> str:
        """``node-models`` (all nodes in the contestant worker, its ``view.net`` served by this
        process's ``Network``) or, with execution ``gloo``, ``node-models-gloo`` (one process
        per node; ``gossip_dist.run_views``)."""
        return "node-models" if self.execution(profile) == "simulate" else "node-models-gloo"

    def fixture(self, profile: Profile, cell: Cell, ctx: CellContext) -> "_Fixture":
        """The cell's world (splits, public set with its hidden flags, partition; memoized), its
        topology, the view's spec, and (execution simulate) a fresh byte-counting ``Network``."""
        topo_name, n = str(cell.axes["topology"]), int(cell.axes["nodes"])
        try:
            topo = DC.topology(topo_name, n)
        except ValueError as exc:
            raise CellFailure(f"profile {profile.id}: {exc}") from None
        how = self.execution(profile)
        ctx.progress("data", 0.0)
        w = self.world(profile, str(cell.axes["dataset"]), float(cell.axes["alpha"]), n, cell.repeat, ctx)
        ctx.progress("distill", 0.1)
        return _Fixture(profile, ctx, w, topo, how, self.view_spec(profile, cell, w, topo, ctx), DC.Network(topo) if how == "simulate" else None)

    def view(self, fixture: "_Fixture", cell: Cell, method: Method) -> DC.ViewSpec:
        """The view's spec: node-local data and label counts, the public images (no flags), the
        topology, model factory, recipe and seed; the contestant worker opens it around a remote
        ``view.net`` (``service``). No test split, no hidden flags."""
        return fixture.spec

    def service(self, fixture: "_Fixture", cell: Cell) -> Any:
        """The worker's ``view.net`` requests run on this process's ``Network``, which mixes and
        counts every byte (None for execution gloo: the node processes count)."""
        return DC.NetworkService(fixture.net) if fixture.net is not None else None

    def runner(self, fixture: "_Fixture", cell: Cell) -> Any:
        """Execution gloo: one process per node (``gossip_dist.run_views``), which count the bytes."""
        if fixture.how != "gloo":
            return None
        from . import gloo as gossip_dist

        return gossip_dist.run_views

    def evaluate(self, fixture: "_Fixture", cell: Cell, contest: Any) -> CellResult:
        """The communication check and the metrics (``score``) of the contest's node models."""
        f = fixture
        out = contest.output
        if f.net is not None:
            sent, traffic = dict(f.net.bytes), f.net.traffic.copy()
        else:
            sent, traffic = dict(out.bytes or {}), out.traffic
        return self.score(f.profile, cell, cell.method, out.models, sent, dict(out.info), f.world, f.topo, f.ctx, train_s=float(contest.seconds), how=f.how, traffic=traffic)

    @staticmethod
    def check_communication(models: list[torch.nn.Module], init: torch.nn.Module, traffic: np.ndarray, method_name: str) -> None:
        """Fail the cell when two nodes' models agree although less than one model's bytes passed
        between them through the network (``decentralized.converged_without_communication``)."""
        flat = [torch.cat([p.detach().double().flatten() for p in m.parameters()]).numpy() for m in models]
        x0 = torch.cat([p.detach().double().flatten() for p in init.parameters()]).numpy()
        model_bytes = sum(p.numel() * p.element_size() for p in init.parameters())
        hit = DC.converged_without_communication(flat, x0, traffic, model_bytes)
        if hit is not None:
            i, j, rel, b = hit
            raise CellFailure(
                f"plugin {method_name!r}: models converged without communication: nodes {i} and {j} ended {rel:.1e} apart (squared distance over squared movement "
                f"from the common initialization) though at most {int(b)} bytes passed between them through view.net, less than one model's {model_bytes}; "
                "nodes may share parameters only through view.net"
            )

    def score(self, profile: Profile, cell: Cell, method: Method | str, out: Any, sent: dict[str, int], method_info: dict[str, Any], w: World,
              topo: DC.Topology, ctx: CellContext, *, train_s: float, how: str, traffic: np.ndarray | None = None) -> CellResult:
        """Check the method's node models (and, given the counted ``traffic``, that nodes agree
        only as far as it allows) and compute the cell's metrics, artifacts and info. ``method``:
        the method or its name (messages name it)."""
        name = method if isinstance(method, str) else method.name
        n = topo.n
        models = check_node_models(out, name, n, w.x_test[: min(8, len(w.x_test))], w.num_classes, ctx.device)
        factory = self.model_factory(profile, cell, w, ctx)
        if traffic is not None:
            self.check_communication(models, factory(), traffic, name)
        method_info = dict(method_info)

        ctx.progress("evaluate", 0.9)
        t1 = time.perf_counter()
        bs = int(profile.settings.get("eval_batch", 1024))  # 64 is faster for conv nets on the CPU (same predictions)
        accs = np.array([self._accuracy(m, w, bs) for m in models])
        states = [{k: v.detach().float() for k, v in m.state_dict().items()} for m in models]
        names = [k for k, _ in models[0].named_parameters()]
        mean_state = {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}
        cons_dist = float(np.mean([sum(float(((s[k] - mean_state[k]) ** 2).sum()) for k in names) for s in states]))
        cons_model = factory()
        cons_model.load_state_dict({k: v.to(dtype=cons_model.state_dict()[k].dtype) for k, v in mean_state.items()})
        cons_acc = self._accuracy(cons_model, w, bs)
        eval_s = time.perf_counter() - t1

        mb = {k: sent.get(k, 0) / n / 1e6 for k in ("model", "labels", "meta")}
        metrics: dict[str, float] = {
            "mean_node_acc": float(accs.mean()), "min_node_acc": float(accs.min()), "std_node_acc": float(accs.std()),
            "consensus_acc": float(cons_acc), "consensus_dist": cons_dist,
            "comm_mb_model": mb["model"], "comm_mb_labels": mb["labels"], "comm_mb_meta": mb["meta"], "comm_mb_total": sum(sent.values()) / n / 1e6,
            "label_overhead": float(sent.get("labels", 0)) / sent["model"] if sent.get("model") else 0.0,
            "train_s": train_s,
        }
        kept = method_info.pop("public_kept", None)
        detector: dict[str, Any] = {}
        if kept is not None:
            metrics.update(self._detector_metrics(kept, w.public_is_id, n, name, detector))
        if not all(np.isfinite(v) for v in metrics.values()):
            raise CellFailure(f"plugin {name!r}: the cell's metrics are not finite ({ {k: v for k, v in metrics.items() if not np.isfinite(v)} })")
        artifacts = [
            ArtifactOut.npy("partition", "label_counts.npy", w.counts),
            ArtifactOut.npy("topology", "W.npy", topo.W),
            ArtifactOut.npy("evaluation", "node_acc.npy", accs.astype(np.float64)),
        ]
        info: dict[str, Any] = {
            "primary_metric": self.primary_metric, "execution": how, "topology": topo.name, "spectral_gap": topo.spectral_gap(),
            "node_sizes": [int(len(y)) for _, y in w.nodes], "public_size": int(len(w.public_x)), "public_id": int(w.public_is_id.sum()),
            "test_size": int(len(w.y_test)), "partition_seed": w.partition_seed, "public_seed": w.public_seed, "bytes": {k: int(v) for k, v in sent.items()},
            "node_acc": [round(float(a), 6) for a in accs], "world_build_s": w.build_s, **detector,
            "epochs": int(profile.settings["epochs"]), "steps_per_epoch": self.steps_per_epoch(profile, w),
            **{f"method_{k}": v for k, v in method_info.items()},
        }
        return CellResult(metrics=metrics, timings={"train_s": train_s, "evaluation_s": eval_s, "total_s": train_s + eval_s}, artifacts=artifacts, info=info)

    @staticmethod
    def _accuracy(model: torch.nn.Module, w: World, batch_size: int) -> float:
        with torch.no_grad():
            return float((T.predict(model, w.x_test, batch_size=batch_size).argmax(1) == w.y_test).float().mean())

    @staticmethod
    def _detector_metrics(kept: Any, is_id: np.ndarray, n: int, name: str, detector: dict[str, Any]) -> dict[str, float]:
        P = len(is_id)
        if not isinstance(kept, (list, tuple)) or len(kept) != n:
            raise CellFailure(f"invalid output of plugin {name!r}: info['public_kept'] must hold one index list per node ({n}), got {type(kept).__name__}")
        prec, rec, frac, sizes = [], [], [], []
        for i, k in enumerate(kept):
            idx = np.asarray(k, dtype=np.int64).ravel()
            if len(idx) and (idx.min() < 0 or idx.max() >= P or len(np.unique(idx)) != len(idx)):
                raise CellFailure(f"invalid output of plugin {name!r}: info['public_kept'][{i}] must hold unique public indices in [0, {P})")
            sizes.append(int(len(idx)))
            frac.append(len(idx) / P)
            rec.append(float(is_id[idx].sum()) / max(int(is_id.sum()), 1))
            if len(idx):
                prec.append(float(is_id[idx].mean()))
        detector["public_kept_per_node"] = sizes
        out = {"public_kept_frac": float(np.mean(frac)), "public_id_recall": float(np.mean(rec))}
        if prec:
            out["public_id_precision"] = float(np.mean(prec))
        return out
