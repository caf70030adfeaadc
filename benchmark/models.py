"""Architectures. Every model takes [0, 1] inputs and normalizes them itself, so input gradients
and adversarial perturbations live in pixel space; ``embed(x)`` returns the penultimate
features, ``classify(features)`` the logits from them and ``head`` is the last linear layer
(``forward = classify(embed(x))``).

Built-ins (registered by ``coreset_bench.plugins.core``): ``mlp`` and ``cnn-small`` (any small
input, meant for 8x8 digits), ``resnet18`` (CIFAR variant: 3x3 stem, no max-pool), ``fastnet``
(a ResNet-9-style network in the spirit of the public CIFAR-10 speed-run recipes: conv-BN-ReLU
blocks with max-pools and two residual stages, scaled logits), ``vgg16-bn`` and ``densenet121``
(CIFAR stems) for transfer experiments; ``cnn-small-gn`` and ``resnet20-gn`` (GroupNorm, no
running statistics: the decentralized track vmaps and averages them across nodes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Architecture:
    """``build(in_channels, num_classes, image_size, mean, std) -> nn.Module``."""

    name: str
    build: Callable[[int, int, int, Sequence[float], Sequence[float]], nn.Module]
    summary: str = ""


class Normalized(nn.Module):
    """Base: normalization inside the model; subclasses set ``body`` and ``head``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))
        self.body: nn.Module
        self.head: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from penultimate features."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


class _ChannelsLastMaxPool(torch.autograd.Function):
    """``max_pool2d`` whose forward runs in channels-last layout and whose gradient is the default
    layout's kernel. The forward picks the same maxima and argmax indices (index within each
    plane), so values and gradients equal ``F.max_pool2d``'s; only the speed differs (see
    ``MaxPool2d``). Twice differentiable: the backward is an ATen op with its own derivative."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, ceil_mode):  # type: ignore[override]
        out, idx = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), kernel, stride, padding, dilation, ceil_mode)
        idx = idx.contiguous()
        ctx.save_for_backward(x, idx)
        ctx.conf = (kernel, stride, padding, dilation, ceil_mode)
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, idx = ctx.saved_tensors
        gx = torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, *ctx.conf, idx)
        return gx, None, None, None, None, None


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that is fast on small CPU feature maps.

    On the CPU, PyTorch's default-layout max-pool kernel costs about 5 ns per element on planes of
    at most 16x16 (8x8 digits maps: 0.7 ms of a 4 ms forward+backward of cnn-small at batch 64),
    while the channels-last kernel is 4-6x faster there. For CPU inputs with planes of at most
    ``small_plane`` elements the forward runs channels-last (same values and indices), outside
    torch.func transforms; everything else takes the stock path. Numbers are unchanged.
    """

    small_plane = 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dim() == 4
            and x.shape[-1] * x.shape[-2] <= self.small_plane
            and not self.return_indices
            and not torch._C._are_functorch_transforms_active()
        ):
            from torch.nn.modules.utils import _pair

            stride = self.stride if self.stride is not None else self.kernel_size
            return _ChannelsLastMaxPool.apply(x, list(_pair(self.kernel_size)), list(_pair(stride)), list(_pair(self.padding)), list(_pair(self.dilation)), bool(self.ceil_mode))
        return super().forward(x)


def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class MLP(Normalized):
    def __init__(self, cin: int, num_classes: int, size: int, mean, std, hidden: int = 256) -> None:
        super().__init__(mean, std)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(cin * size * size, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 128), nn.ReLU(inplace=True))
        self.head = nn.Linear(128, num_classes)


class SmallCNN(Normalized):
    def __init__(self, cin: int, num_classes: int, size: int, mean, std, width: int = 16) -> None:
        super().__init__(mean, std)
        self.body = nn.Sequential(
            _cbr(cin, width),
            _cbr(width, 2 * width),
            MaxPool2d(2),
            _cbr(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.short(x))


class ResNet18(Normalized):
    """ResNet-18, CIFAR variant (3x3 stem, stride 1, no max-pool)."""

    def __init__(self, cin: int, num_classes: int, size: int, mean, std) -> None:
        super().__init__(mean, std)
        layers: list[nn.Module] = [nn.Conv2d(cin, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        c = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c, cout, stride), BasicBlock(cout, cout, 1)]
            c = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(512, num_classes)


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.f = nn.Sequential(_cbr(c, c), _cbr(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x)


class FastNet(Normalized):
    """ResNet-9-style speed-run network (after the DAWNBench CIFAR-10 recipes).

    prep 64 -> [128, pool, residual] -> [256, pool] -> [512, pool, residual] -> global max-pool ->
    linear, logits scaled by 0.125. Reaches >= 93 % on CIFAR-10 in about 15-20 epochs with the
    ``fastnet`` recipe of the CIFAR profiles (label smoothing, one-cycle lr, batch 512).
    """

    def __init__(self, cin: int, num_classes: int, size: int, mean, std, width: int = 64) -> None:
        super().__init__(mean, std)
        w = width
        self.body = nn.Sequential(
            _cbr(cin, w),
            _cbr(w, 2 * w),
            MaxPool2d(2),
            _Residual(2 * w),
            _cbr(2 * w, 4 * w),
            MaxPool2d(2),
            _cbr(4 * w, 8 * w),
            MaxPool2d(2),
            _Residual(8 * w),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(8 * w, num_classes, bias=False)
        self.scale = 0.125

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features) * self.scale


class VGG16BN(Normalized):
    cfg = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, cin: int, num_classes: int, size: int, mean, std) -> None:
        super().__init__(mean, std)
        layers: list[nn.Module] = []
        c = cin
        for v in self.cfg:
            if v == "M":
                layers.append(MaxPool2d(2))
            else:
                layers.append(_cbr(c, int(v)))
                c = int(v)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(512, num_classes)


class DenseNet121(Normalized):
    """torchvision's DenseNet-121 with a CIFAR stem (3x3 conv, stride 1, no max-pool)."""

    def __init__(self, cin: int, num_classes: int, size: int, mean, std) -> None:
        super().__init__(mean, std)
        from torchvision.models import densenet121

        net = densenet121(weights=None, num_classes=num_classes)
        net.features.conv0 = nn.Conv2d(cin, 64, 3, 1, 1, bias=False)
        net.features.pool0 = nn.Identity()
        self.body = nn.Sequential(net.features, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = net.classifier


def _cgr(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(min(groups, cout), cout), nn.ReLU(inplace=True))


class SmallCNNGN(Normalized):
    """``cnn-small`` with GroupNorm(4, ·) in place of BatchNorm: no running statistics, so the
    model can be vmapped over decentralized nodes and averaged across non-IID nodes."""

    def __init__(self, cin: int, num_classes: int, size: int, mean, std, width: int = 16, groups: int = 4) -> None:
        super().__init__(mean, std)
        self.body = nn.Sequential(
            _cgr(cin, width, groups),
            _cgr(width, 2 * width, groups),
            nn.MaxPool2d(2),
            _cgr(2 * width, 4 * width, groups),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, num_classes)


class _BlockGN(nn.Module):
    """ResNet basic block (two 3x3 convs) with GroupNorm; option-B 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.gn1 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.gn2 = nn.GroupNorm(groups, cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(groups, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.gn1(self.conv1(x)))
        out = self.gn2(self.conv2(out))
        return F.relu(out + self.short(x))


class ResNet20GN(Normalized):
    """The CIFAR ResNet-20 (He et al. 2016: 3 stages of 3 basic blocks, 16-32-64 channels) with
    GroupNorm(2, ·) in place of BatchNorm, standing in for the EvoNorm ResNet-20 of the IDKD and
    QG-DSGDm references (decentralized track)."""

    def __init__(self, cin: int, num_classes: int, size: int, mean, std, groups: int = 2) -> None:
        super().__init__(mean, std)
        layers: list[nn.Module] = [nn.Conv2d(cin, 16, 3, 1, 1, bias=False), nn.GroupNorm(groups, 16), nn.ReLU(inplace=True)]
        c = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(3):
                layers.append(_BlockGN(c, cout, stride if b == 0 else 1, groups))
                c = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(64, num_classes)


BUILTIN_ARCHITECTURES = [
    Architecture("mlp", lambda c, k, s, m, sd: MLP(c, k, s, m, sd), "two-hidden-layer perceptron (small inputs)"),
    Architecture("cnn-small", lambda c, k, s, m, sd: SmallCNN(c, k, s, m, sd), "3-conv BN network for 8x8 inputs"),
    Architecture("cnn-small-gn", lambda c, k, s, m, sd: SmallCNNGN(c, k, s, m, sd), "cnn-small with GroupNorm(4) (decentralized track)"),
    Architecture("resnet20-gn", lambda c, k, s, m, sd: ResNet20GN(c, k, s, m, sd), "CIFAR ResNet-20 with GroupNorm(2) (decentralized track)"),
    Architecture("resnet18", lambda c, k, s, m, sd: ResNet18(c, k, s, m, sd), "ResNet-18, CIFAR stem"),
    Architecture("fastnet", lambda c, k, s, m, sd: FastNet(c, k, s, m, sd), "ResNet-9-style CIFAR speed-run network"),
    Architecture("vgg16-bn", lambda c, k, s, m, sd: VGG16BN(c, k, s, m, sd), "VGG-16 with batch norm, CIFAR head"),
    Architecture("densenet121", lambda c, k, s, m, sd: DenseNet121(c, k, s, m, sd), "DenseNet-121, CIFAR stem"),
]


#: the attribute under which ``build`` records how a model was built (a ``BuildSpec``)
BUILD_SPEC = "_coreset_bench_build"


@dataclass(frozen=True)
class BuildSpec:
    """How to build a model again: a registered architecture, the input shape (C, H, W), the
    classes, the normalization inside the model, and ``prepare``, the training plugin whose
    ``prepare_model`` was applied to it (e.g. ``dp-sgd``: BatchNorm to GroupNorm), if any.

    Models travel to the contestant worker (and corrected models back) as this and their weights
    (``ship`` / ``rebuild``), never as pickled harness objects."""

    arch: str
    shape: tuple[int, ...]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    prepare: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "shape": list(self.shape), "num_classes": self.num_classes, "mean": list(self.mean), "std": list(self.std), "prepare": self.prepare}

    @classmethod
    def from_dict(cls, d: Any) -> "BuildSpec":
        """The spec a JSON mapping describes; ``ValueError`` when it describes none."""
        try:
            return cls(str(d["arch"]), tuple(int(v) for v in d["shape"]), int(d["num_classes"]), tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]), str(d.get("prepare", "") or ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a model description ({type(exc).__name__}: {exc})") from None


def build(arch: str, ds_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], seed: int) -> nn.Module:
    """Build ``arch`` for inputs of shape (C, H, W) with weights seeded by ``seed``. The model
    records how it was built (``build_spec``), so it can travel as its weights."""
    from . import registry as plugins

    spec: Architecture = plugins.architecture(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.build(int(ds_shape[0]), num_classes, int(ds_shape[-1]), mean, std)
    setattr(model, BUILD_SPEC, BuildSpec(str(arch), tuple(int(v) for v in ds_shape), int(num_classes), tuple(float(v) for v in mean), tuple(float(v) for v in std)))
    return model


def build_spec(model: Any) -> BuildSpec | None:
    """How ``model`` was built (None: not by ``build``, e.g. a plugin's own module)."""
    spec = getattr(model, BUILD_SPEC, None)
    return spec if isinstance(spec, BuildSpec) else None


def mark_prepared(model: nn.Module, training: str) -> nn.Module:
    """Record that ``training``'s ``prepare_model`` was applied to ``model`` (returned)."""
    spec = build_spec(model)
    if spec is not None:
        setattr(model, BUILD_SPEC, BuildSpec(spec.arch, spec.shape, spec.num_classes, spec.mean, spec.std, str(training)))
    return model


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as detached CPU tensors."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def rebuild(spec: BuildSpec, state: Mapping[str, torch.Tensor], training: bool = False, device: Any = "cpu") -> nn.Module:
    """A model of ``spec`` holding ``state`` (strictly: the same names and shapes), in train or
    eval mode, on ``device``. Raises ``ValueError`` naming the mismatch."""
    from . import registry as plugins

    model = build(spec.arch, spec.shape, spec.num_classes, spec.mean, spec.std, 0)
    if spec.prepare:
        model = mark_prepared(plugins.method(spec.prepare).prepare_model(model), spec.prepare)  # type: ignore[attr-defined]
    try:
        model.load_state_dict(dict(state))
    except RuntimeError as exc:
        raise ValueError(f"its weights do not fit a {spec.arch} ({str(exc).splitlines()[0] if str(exc) else 'load_state_dict failed'})") from None
    return model.train(bool(training)).to(device)


class ModelFactory:
    """A picklable ``() -> nn.Module`` (it travels to the contestant worker inside a view):
    ``build(arch, shape, num_classes, mean, std, seed)`` moved to ``device``. Called with a seed,
    that seed replaces the default one."""

    def __init__(self, arch: str, shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], seed: int, device: Any = "cpu") -> None:
        self.arch, self.shape, self.num_classes = str(arch), tuple(int(v) for v in shape), int(num_classes)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.seed, self.device = int(seed), str(device)

    def __call__(self, seed: int | None = None) -> nn.Module:
        return build(self.arch, self.shape, self.num_classes, self.mean, self.std, self.seed if seed is None else int(seed)).to(self.device)

    def with_seed(self, seed: int) -> "ModelFactory":
        return ModelFactory(self.arch, self.shape, self.num_classes, self.mean, self.std, seed, self.device)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"ModelFactory({self.arch!r}, seed={self.seed}, device={self.device!r})"
