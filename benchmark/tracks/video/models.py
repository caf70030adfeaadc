"""Models of the ``video`` track: one small early-exit CNN per modality, the harness's internal
classifier (IC) heads, cost counting, backbone training and the cached stage features.

* ``TinyExitNet`` (spec tracks-phase2.md §4.5): 4 stages, each ``[conv3x3-BN-ReLU] x 2``, widths
  ``widths`` (16/32/64/96 in the spec; a profile setting), stride 2 at the start of stages 2-4,
  then global average pooling and a linear layer: IC4, the network's own final classifier. An
  input BatchNorm on the MV and residual networks (as CoViAR's ResNets for those modalities).
* ``ICHead`` (the harness's head, so exit costs are comparable between methods; the reference's
  heads): after stage k (k = 1, 2, 3): ``Conv3x3(ch, ch) + BN -> AdaptiveAvgPool(4 if the map is
  at least 4 wide, else 1) -> Linear(ch * pool^2 -> C)``, no ReLU.
* Costs: MACs of each stage and head counted with ``torch.utils.flop_counter.FlopCounterMode``
  (FLOPs / 2) on one segment, times K segments; cumulative along the exit order (a network's
  stages and heads up to the exit, after all earlier networks in full); the fused exit adds the
  sum of the three final logits.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

IN_CHANNELS = {"mv": 2, "res": 3, "iframe": 3}


def _seed(*parts: Any) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16) % (2**31 - 1)


class TinyExitNet(nn.Module):
    """4-stage CNN; ``stages(x)`` returns the 4 stage outputs, ``classify(s4)`` IC4's logits."""

    def __init__(self, in_ch: int, num_classes: int, widths: Sequence[int] = (16, 32, 64, 96), input_bn: bool = False) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm2d(in_ch) if input_bn else nn.Identity()
        blocks = []
        prev = in_ch
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks.append(nn.Sequential(
                nn.Conv2d(prev, w, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            ))
            prev = w
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(prev, num_classes)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        h = self.input_bn(x)
        for b in self.blocks:
            h = b(h)
            out.append(h)
        return out

    def classify(self, s4: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(s4, 1).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.stages(x)[-1])


def ic_head(ch: int, hw: int, num_classes: int) -> nn.Module:
    """The harness's IC head for a (ch, hw, hw) stage output."""
    pool = 4 if hw >= 4 else 1
    return nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.BatchNorm2d(ch), nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(ch * pool * pool, num_classes))


class HeadFactory:
    """Picklable ``(modality, k) -> fresh IC head`` for the track's stage shapes; seeded per
    (seed, modality, k), so every method starts from the same heads."""

    def __init__(self, shapes: Mapping[str, Sequence[tuple[int, int]]], num_classes: int, seed: int) -> None:
        self.shapes = {m: [tuple(s) for s in v] for m, v in shapes.items()}
        self.num_classes, self.seed = int(num_classes), int(seed)

    def __call__(self, modality: str, k: int) -> nn.Module:
        if modality not in self.shapes:
            raise ValueError(f"unknown modality {modality!r}; the track's are {', '.join(self.shapes)}")
        if not 1 <= int(k) <= 3:
            raise ValueError(f"stage k must be in 1..3, got {k}")
        ch, hw = self.shapes[modality][int(k) - 1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed("ic-head", self.seed, modality, k))
            return ic_head(ch, hw, self.num_classes)


class FrozenBackbones:
    """Picklable ``modality -> a fresh copy of that modality's frozen network`` (a
    ``TinyExitNet`` in eval mode with ``requires_grad`` off): the frozen backbones of a cell as
    their architecture (input channels, classes, widths, input BatchNorm) and weights. It travels
    to the contestant worker inside ``ExitView.backbone_factory`` as numbers; every call builds a
    new network, so what a method does to one copy reaches neither another copy nor the harness's
    networks (``param_hash`` of which the track checks after the contest)."""

    def __init__(self, nets: Mapping[str, TinyExitNet]) -> None:
        self.config: dict[str, dict[str, Any]] = {}
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        for m, net in nets.items():
            if not isinstance(net, TinyExitNet):
                raise TypeError(f"backbone {m!r} is a {type(net).__name__}, not a TinyExitNet")
            first = net.blocks[0][0]
            self.config[m] = {"in_ch": int(first.in_channels), "num_classes": int(net.fc.out_features),
                              "widths": [int(b[0].out_channels) for b in net.blocks], "input_bn": isinstance(net.input_bn, nn.BatchNorm2d)}
            self.state[m] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.config)

    def __call__(self, modality: str, device: Any = "cpu") -> TinyExitNet:
        if modality not in self.config:
            raise ValueError(f"unknown modality {modality!r}; the track's are {', '.join(self.config)}")
        c = self.config[modality]
        with torch.random.fork_rng(devices=[]):  # the weights are overwritten: the initialisation must not use the caller's generator
            net = TinyExitNet(c["in_ch"], c["num_classes"], c["widths"], input_bn=c["input_bn"])
        net.load_state_dict(self.state[modality])
        for p in net.parameters():
            p.requires_grad_(False)
        return net.eval().to(device)


def count_macs(module: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of ``module(x)``: FlopCounterMode's FLOPs / 2 (conv, linear, matmul)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = module.training
    module.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module(x)
    module.train(was)
    return int(fc.get_total_flops()) // 2


class _Stage(nn.Module):
    def __init__(self, net: TinyExitNet, k: int) -> None:
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.k == 0:
            return self.net.blocks[0](self.net.input_bn(x))
        return self.net.blocks[self.k](x)


def stage_costs(net: TinyExitNet, in_shape: Sequence[int], num_classes: int) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """(MACs of stages 1..4 and of IC4's pool + linear, MACs of heads 1..3, stage shapes
    (ch, hw) of stages 1..3) for one segment of shape ``in_shape`` (C, H, W)."""
    x = torch.zeros(1, *in_shape)
    stages, heads, shapes = [], [], []
    h = x
    for k in range(4):
        st = _Stage(net, k)
        stages.append(count_macs(st, h))
        with torch.no_grad():
            h = st.eval()(h)
        if k < 3:
            shapes.append((int(h.shape[1]), int(h.shape[2])))
            heads.append(count_macs(ic_head(int(h.shape[1]), int(h.shape[2]), num_classes), h))
    stages.append(count_macs(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), net.fc), h))
    return stages, heads, shapes


def exit_costs(per_mod: Mapping[str, tuple[list[int], list[int]]], order: Sequence[tuple[str, int]], segments: int, num_classes: int) -> np.ndarray:
    """Cumulative MACs of each exit of ``order`` (the fused exit last), times ``segments``.

    Exit (m, k): every network before m in full (stages 1-4, heads 1-3, IC4), then m's stages
    1..k and heads 1..k (IC4's pool + linear for k = 4). The fused exit adds 3 x C additions."""
    total, out, done = 0.0, [], None
    for m, k in order:
        if m == "fused":
            out.append(total + segments * 3 * num_classes)
            continue
        if m != done:
            # exits of m are visited in order k = 1..4
            done = m
        stages, heads = per_mod[m]
        step = stages[k - 1] + (heads[k - 1] if k <= 3 else stages[4])
        total += segments * step
        out.append(total)
    return np.asarray(out, dtype=np.float64)


def param_hash(modules: Mapping[str, nn.Module]) -> str:
    """SHA-256 over every parameter and buffer of ``modules`` (the frozen-backbone check)."""
    h = hashlib.sha256()
    for name in sorted(modules):
        for k, v in sorted(modules[name].state_dict().items()):
            h.update(f"{name}.{k}".encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_backbone(net: TinyExitNet, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float = 0.05, batch_size: int = 64,
                   momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0, flip: str | None = None) -> TinyExitNet:
    """Cross-entropy training on one random segment per clip per epoch (SGD, cosine schedule).
    ``x`` (N, K, C, H, W). ``flip``: "mv" flips horizontally and negates the x channel, "image"
    flips; None: no augmentation."""
    g = torch.Generator().manual_seed(seed)
    n, kseg = x.shape[:2]
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    steps = max(1, epochs * ((n + batch_size - 1) // batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    net.train()
    for _ in range(epochs):
        seg = torch.randint(0, kseg, (n,), generator=g)
        perm = torch.randperm(n, generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        for i in range(0, n, batch_size):
            idx = perm[i: i + batch_size]
            xb = x[idx, seg[idx]]
            if flip is not None:
                fb = flips[idx]
                if fb.any():
                    xb = xb.clone()
                    xf = xb[fb].flip(-1)
                    if flip == "mv":
                        xf[:, 0] = -xf[:, 0]
                    xb[fb] = xf
            loss = F.cross_entropy(net(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


@torch.no_grad()
def features(net: TinyExitNet, x: torch.Tensor, batch_size: int = 256) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Stage 1..3 outputs (N, K, ch, h, w) and IC4 logits (N, K, C) of every segment."""
    net.eval()
    n, kseg = x.shape[:2]
    flat = x.reshape(n * kseg, *x.shape[2:])
    feats: list[list[torch.Tensor]] = [[], [], []]
    logits = []
    for i in range(0, len(flat), batch_size):
        st = net.stages(flat[i: i + batch_size])
        for j in range(3):
            feats[j].append(st[j])
        logits.append(net.classify(st[3]))
    out = [torch.cat(f).reshape(n, kseg, *f[0].shape[1:]) for f in feats]
    lg = torch.cat(logits).reshape(n, kseg, -1)
    return out, lg


@torch.no_grad()
def head_logits(head: nn.Module, f: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Segment-averaged logits (N, C) of ``head`` on stage features (N, K, ch, h, w)."""
    head.eval()
    n, kseg = f.shape[:2]
    flat = f.reshape(n * kseg, *f.shape[2:])
    out = torch.cat([head(flat[i: i + batch_size]) for i in range(0, len(flat), batch_size)])
    return out.reshape(n, kseg, -1).mean(1)


def build_backbones(x_train: Mapping[str, torch.Tensor], y: torch.Tensor, num_classes: int, *, modalities: Sequence[str], widths: Sequence[int],
                    epochs: int, lr: float, batch_size: int, seed: int) -> tuple[dict[str, TinyExitNet], dict[str, float]]:
    """Train one ``TinyExitNet`` per modality (seeded per modality); returns nets and seconds."""
    nets, secs = {}, {}
    for m in modalities:
        torch.manual_seed(_seed("backbone", seed, m))
        net = TinyExitNet(IN_CHANNELS[m], num_classes, widths, input_bn=m in ("mv", "res"))
        t0 = time.perf_counter()
        train_backbone(net, x_train[m], y, epochs=epochs, lr=lr, batch_size=batch_size, seed=_seed("backbone-data", seed, m))
        secs[m] = time.perf_counter() - t0
        nets[m] = net.eval()
    return nets, secs
