"""Datasets as in-memory tensors, fixed seeded splits, and batched tensor augmentation.

A dataset plugin registers a ``DatasetSpec`` whose ``load(arg, data_dir)`` returns a
``DatasetTensors``: float32 images in [0, 1] of shape (N, C, H, W), int64 labels, the class names,
and the dataset's own test split when it has one. The track carves a validation split per class
from the training data and (for datasets without one) a fixed held-out test split.

Built-ins (registered by ``coreset_bench.plugins.core``):

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download);
  a fixed 25 % stratified held-out test split (seed 0).
* ``cifar10`` / ``cifar100``: the python pickle batches (``cifar-10-batches-py`` /
  ``cifar-100-python``) under ``--data-dir``; downloaded through torchvision when missing
  and the network allows.
* ``cifar10-jpeg``: the CIFAR-10 JPEG copy (an ImageFolder tree or its ``.tar.gz``) under
  ``--data-dir`` or at ``cifar10-jpeg:PATH``, read through ``imagefolder`` with CIFAR's
  augmentation; ``coreset/cifar10-study@1`` runs on it.
* ``imagefolder:PATH``: any class-folder tree. With ``PATH/train`` and ``PATH/test`` those
  are the splits; otherwise a fixed 20 % per-class test split is held out. Decoded images are
  cached under the cache directory, keyed by the tree's listing.

Each spec may declare its L-infinity threat model (``threat_model``; ``threat_model(ref)`` reads
it without loading data): 8/255 with 2/255 steps for CIFAR-10/100 and image folders, 0.1 with
0.025 steps for digits. A profile run on the dataset with ``--dataset`` adopts it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class DatasetError(Exception):
    """A dataset cannot be loaded; the message says how to fix it."""


class LeakageError(RuntimeError):
    """A contestant tried to load data (and so the test split) while it was being evaluated."""


_CONTESTANT: list[str] = []


class contestant_guard:
    """Context manager: while a contestant method runs, loading datasets raises ``LeakageError``.

    A method's view holds the pool and validation split only; a method that reaches for the
    dataset registry to get at the test split fails its cell with a message naming it. This is
    the in-process layer (the privacy and label-noise tracks rely on it alone); selection
    methods run in the contestant worker (``coreset_bench.contestant``), a process that never
    loaded the test split, where this check also fails the cell if the plugin catches the error.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        _CONTESTANT.append(self.name)

    def __exit__(self, *exc: object) -> None:
        _CONTESTANT.pop()


def _check_not_contestant(what: str) -> None:
    if _CONTESTANT:
        msg = f"plugin {_CONTESTANT[-1]!r} tried to {what} while it was being evaluated; a method may only use the view it is given (no test data)"
        sys.audit("coreset_bench.leakage", msg)  # the contestant worker's guard records it: the cell fails even if the plugin catches this
        raise LeakageError(msg)


@dataclass
class DatasetTensors:
    name: str
    x_train: torch.Tensor  # float32 (N, C, H, W) in [0, 1]
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    classes: list[str]
    #: horizontal flips keep the label (False for digits and text-like data)
    hflip: bool = True
    #: padding of the random-crop augmentation (0 disables it)
    crop_pad: int = 4
    mean: tuple[float, ...] = field(default_factory=tuple)
    std: tuple[float, ...] = field(default_factory=tuple)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


#: L-infinity threat models in [0, 1] pixel units: ``eps`` and the PGD ``step_size`` (training
#: and evaluation). Natural images (CIFAR-10/100, image folders, ImageNet-like data): the standard
#: 8/255 with 2/255 steps. Digits (8x8, 16 grey levels): 0.075 (about 1.2 grey levels) with
#: 0.01875 steps, calibrated for ``coreset/quick@2`` so that the undefended full-data model keeps a
#: measurable robust accuracy (38 % AutoAttack; at quick@1's 0.1 undefended models sit at 0-10 %,
#: see benchmarks/RESULTS.md). Profiles name their own threat model; this one applies when
#: ``--dataset digits`` moves a profile of other data onto digits.
CIFAR_THREAT: dict[str, float] = {"eps": 8 / 255, "step_size": 2 / 255}
DIGITS_THREAT: dict[str, float] = {"eps": 0.075, "step_size": 0.01875}


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset. ``load(arg, data_dir, cache_dir)``: ``arg`` is the text after the
    colon in ``name:arg`` (e.g. the path of ``imagefolder:PATH``), or None.

    ``threat_model``: the dataset's L-infinity threat model (``{"eps": ..., "step_size": ...}`` in
    [0, 1] pixel units), which a profile run on this dataset with ``--dataset`` adopts; None: the
    dataset declares none and such a profile keeps its own."""

    name: str
    load: Callable[[str | None, Path | None, Path | None], DatasetTensors]
    summary: str = ""
    needs_arg: bool = False
    threat_model: Mapping[str, float] | None = None
    #: optional cheap check ``check(arg, data_dir)`` run before a plan is made (``run`` and
    #: ``run --dry-run``): raises ``DatasetError`` when the data cannot be there, without loading it
    check: Callable[[str | None, Path | None], None] | None = None


def _finish(ds: DatasetTensors) -> DatasetTensors:
    if not ds.mean:
        dims = (0, 2, 3)
        ds.mean = tuple(float(v) for v in ds.x_train.mean(dim=dims))
        ds.std = tuple(max(float(v), 1e-3) for v in ds.x_train.std(dim=dims))
    return ds


# ---- digits ---------------------------------------------------------------------------------


def load_digits(arg: str | None = None, data_dir: Path | None = None, cache_dir: Path | None = None) -> DatasetTensors:
    """The 1,797 scikit-learn digits with a fixed, stratified held-out test split (seed 0).

    ``arg`` may be ``test=F``: the held-out fraction (default 0.25, 450 images; profiles that
    attack more test points, such as ``coreset/quick@2``, use ``digits:test=0.3``, 540 images).
    """
    from sklearn.datasets import load_digits as _ld

    test_fraction = 0.25
    if arg:
        key, _, value = arg.partition("=")
        try:
            test_fraction = float(value)
        except ValueError:
            test_fraction = -1.0
        if key != "test" or not 0.05 <= test_fraction <= 0.5:
            raise DatasetError(f"digits takes one argument test=F with 0.05 <= F <= 0.5 (e.g. digits:test=0.3), got {arg!r}")
    d = _ld()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)  # (1797, 1, 8, 8)
    y = torch.from_numpy(d.target.astype(np.int64))
    test_idx = stratified_split(y.numpy(), test_fraction, seed=0)
    mask = np.ones(len(y), dtype=bool)
    mask[test_idx] = False
    tr = torch.from_numpy(np.flatnonzero(mask))
    te = torch.from_numpy(test_idx)
    return _finish(
        DatasetTensors("digits", x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)], hflip=False, crop_pad=1)
    )


# ---- CIFAR pickle batches -------------------------------------------------------------------


def _unpickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _cifar_arrays(batches: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for b in batches:
        d = _unpickle(b)
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[label_key], dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255.0)
    return x, torch.from_numpy(np.concatenate(ys))


def _cifar(name: str, data_dir: Path | None) -> DatasetTensors:
    root = Path(data_dir or os.environ.get("CORESET_BENCH_DATA", "data")).expanduser()
    if name == "cifar10":
        folder, train_files, test_files, label_key, meta, meta_key = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
            "labels",
            "batches.meta",
            "label_names",
        )
    else:
        folder, train_files, test_files, label_key, meta, meta_key = (
            "cifar-100-python",
            ["train"],
            ["test"],
            "fine_labels",
            "meta",
            "fine_label_names",
        )
    base = root / folder
    if not all((base / f).exists() for f in train_files + test_files):
        try:
            from torchvision import datasets as tvd

            cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
            cls(str(root), train=True, download=True)
        except Exception as exc:
            raise DatasetError(
                f"{name}: no {folder}/ under {root} and the download failed ({type(exc).__name__}); "
                f"put the python batches there (--data-dir) or use --dataset imagefolder:PATH"
            ) from None
    x_tr, y_tr = _cifar_arrays([base / f for f in train_files], label_key)
    x_te, y_te = _cifar_arrays([base / f for f in test_files], label_key)
    if (base / meta).exists():
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in _unpickle(base / meta)[meta_key]]
    else:
        classes = [str(i) for i in range(int(y_tr.max()) + 1)]
    return _finish(DatasetTensors(name, x_tr, y_tr, x_te, y_te, classes, hflip=True, crop_pad=4))


def load_cifar10(arg: str | None = None, data_dir: Path | None = None, cache_dir: Path | None = None) -> DatasetTensors:
    return _cifar("cifar10", data_dir)


def load_cifar100(arg: str | None = None, data_dir: Path | None = None, cache_dir: Path | None = None) -> DatasetTensors:
    return _cifar("cifar100", data_dir)


# ---- ImageFolder ----------------------------------------------------------------------------


def _list_tree(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DatasetError(f"imagefolder: {root} has no class folders; expected {root}/<class>/<image> (or train/ and test/ trees)")
    items = []
    for ci, c in enumerate(classes):
        for dirpath, _dirs, files in os.walk(root / c):
            for f in sorted(files):
                if f.lower().endswith(IMG_EXTENSIONS):
                    items.append((os.path.join(dirpath, f), ci))
    if not items:
        raise DatasetError(f"imagefolder: no images ({', '.join(IMG_EXTENSIONS)}) under {root}")
    items.sort()
    return classes, items


def _decode(items: list[tuple[str, int]], size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image

    first = Image.open(items[0][0]).convert("RGB")
    w, h = size or first.size
    out = np.empty((len(items), h, w, 3), dtype=np.uint8)
    for i, (p, _c) in enumerate(items):
        with Image.open(p) as im:
            im = im.convert("RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            out[i] = np.asarray(im)
    x = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    y = torch.tensor([c for _p, c in items], dtype=torch.int64)
    return x, y


def check_imagefolder(arg: str | None, data_dir: Path | None = None) -> None:
    """The tree of ``imagefolder:PATH`` exists and has class folders with images (listed, not decoded)."""
    if not arg:
        raise DatasetError("imagefolder needs a path: --dataset imagefolder:PATH")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DatasetError(f"imagefolder: {root} is not a directory; pass --dataset imagefolder:PATH of a class-folder tree")
    split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
    _list_tree(root / "train" if split_dirs else root)


def load_imagefolder(arg: str | None, data_dir: Path | None = None, cache_dir: Path | None = None) -> DatasetTensors:
    if not arg:
        raise DatasetError("imagefolder needs a path: --dataset imagefolder:PATH")
    root = Path(arg).expanduser()
    if not root.is_dir():
        raise DatasetError(f"imagefolder: {root} is not a directory; pass --dataset imagefolder:PATH of a class-folder tree")
    split_dirs = (root / "train").is_dir() and (root / "test").is_dir()
    if split_dirs:
        classes, train_items = _list_tree(root / "train")
        test_classes, test_items = _list_tree(root / "test")
        if test_classes != classes:
            raise DatasetError(f"imagefolder: {root}/train and {root}/test have different class folders")
    else:
        classes, train_items = _list_tree(root)
        test_items = []
    listing = hashlib.sha256()
    for p, c in train_items + test_items:
        st = os.stat(p)
        listing.update(f"{p}|{c}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    digest = listing.hexdigest()[:20]
    cache_file = Path(cache_dir) / "datasets" / f"imagefolder-{digest}.pt" if cache_dir else None
    if cache_file is not None and cache_file.exists():
        blob = torch.load(cache_file, weights_only=True)
        x_tr, y_tr, x_te, y_te = blob["x_tr"], blob["y_tr"], blob.get("x_te"), blob.get("y_te")
    else:
        x_tr, y_tr = _decode(train_items, None)
        size = (int(x_tr.shape[3]), int(x_tr.shape[2]))
        x_te, y_te = _decode(test_items, size) if test_items else (None, None)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
            torch.save({"x_tr": x_tr, "y_tr": y_tr, "x_te": x_te, "y_te": y_te}, tmp)
            os.replace(tmp, cache_file)
    if x_te is None:
        test_idx = stratified_split(y_tr.numpy(), 0.2, seed=0)
        mask = np.ones(len(y_tr), dtype=bool)
        mask[test_idx] = False
        keep = torch.from_numpy(np.flatnonzero(mask))
        te = torch.from_numpy(test_idx)
        x_te, y_te, x_tr, y_tr = x_tr[te], y_tr[te], x_tr[keep], y_tr[keep]
    ds = DatasetTensors(f"imagefolder:{root}", x_tr.float().div_(255.0), y_tr, x_te.float().div_(255.0), y_te, classes)
    ds.crop_pad = max(1, int(round(x_tr.shape[-1] / 8)))
    return _finish(ds)


#: the standard CIFAR-10 class order (airplane=0 ... truck=9), which the JPEG copy's folders sort into
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_cifar10_jpeg(arg: str | None = None, data_dir: Path | None = None, cache_dir: Path | None = None) -> DatasetTensors:
    """The CIFAR-10 JPEG copy: the 60,000 images as 32x32 JPEG files in an ImageFolder tree
    ``cifar10-jpeg/{train,test}/<class>/*.jpg`` (5,000 / 1,000 per class; lossy, so pixels differ
    slightly from the binary release). Read through the ``imagefolder`` loader.

    ``arg``: the tree, or a ``.tar.gz`` of it (unpacked once under the cache directory). Without
    one: ``cifar10-jpeg/`` or ``cifar10-jpeg.tar.gz`` under ``--data-dir``. The class folders must
    be CIFAR-10's ten; augmentation is CIFAR's (4-pixel crops, horizontal flips)."""
    root = Path(data_dir or os.environ.get("CORESET_BENCH_DATA", "data")).expanduser()
    src = _cifar10_jpeg_source(arg, data_dir)
    if src.is_file() and src.name.endswith((".tar.gz", ".tgz")):
        src = _unpack_tree(src, Path(cache_dir) if cache_dir else root)
    if not src.is_dir():
        raise DatasetError(
            f"cifar10-jpeg: no tree at {src}; put cifar10-jpeg/ or cifar10-jpeg.tar.gz under --data-dir, or pass --dataset cifar10-jpeg:PATH"
        )
    if (src / "cifar10-jpeg" / "train").is_dir() and not (src / "train").is_dir():
        src = src / "cifar10-jpeg"
    ds = load_imagefolder(str(src), data_dir, cache_dir)
    if ds.classes != CIFAR10_CLASSES:
        raise DatasetError(f"cifar10-jpeg: {src} has class folders {ds.classes}, expected CIFAR-10's {CIFAR10_CLASSES}")
    ds.name, ds.hflip, ds.crop_pad = "cifar10-jpeg", True, 4
    return ds


def _cifar10_jpeg_source(arg: str | None, data_dir: Path | None) -> Path:
    """The tree or archive ``cifar10-jpeg`` reads: ``arg``, else under ``--data-dir``."""
    if arg:
        return Path(arg).expanduser()
    root = Path(data_dir or os.environ.get("CORESET_BENCH_DATA", "data")).expanduser()
    src = root / "cifar10-jpeg"
    if not src.is_dir() and (root / "cifar10-jpeg.tar.gz").is_file():
        src = root / "cifar10-jpeg.tar.gz"
    return src


def check_cifar10_jpeg(arg: str | None, data_dir: Path | None = None) -> None:
    """The CIFAR-10 JPEG tree or archive exists (nothing is unpacked or decoded)."""
    src = _cifar10_jpeg_source(arg, data_dir)
    if not (src.is_dir() or (src.is_file() and src.name.endswith((".tar.gz", ".tgz")))):
        raise DatasetError(
            f"cifar10-jpeg: no tree at {src}; put cifar10-jpeg/ or cifar10-jpeg.tar.gz under --data-dir, or pass --dataset cifar10-jpeg:PATH"
        )


def _unpack_tree(archive: Path, into: Path) -> Path:
    """Unpack ``archive`` (a .tar.gz of an image tree) once under ``into/datasets/`` and return
    the directory; regular files and directories only (no links, no paths outside)."""
    import tarfile

    st = archive.stat()
    digest = hashlib.sha256(f"{archive.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode()).hexdigest()[:16]
    dest = into / "datasets" / f"{archive.name.split('.')[0]}-{digest}"
    if (dest / ".complete").exists():
        return dest
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tf:
        members = [m for m in tf.getmembers() if m.isfile() or m.isdir()]
        for m in members:
            if m.name.startswith(("/", "..")) or ".." in Path(m.name).parts:
                raise DatasetError(f"{archive}: unsafe path {m.name!r} in the archive")
        tf.extractall(tmp, members=members, filter="data")
    (tmp / ".complete").write_text("ok\n")
    if (dest / ".complete").exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        if dest.exists():  # an unpack cut short earlier
            shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest


BUILTIN_DATASETS = [
    DatasetSpec("digits", load_digits, "scikit-learn 8x8 handwritten digits, embedded (no download)", threat_model=DIGITS_THREAT),
    DatasetSpec("cifar10", load_cifar10, "CIFAR-10 python batches under --data-dir (torchvision download when possible)", threat_model=CIFAR_THREAT),
    DatasetSpec("cifar100", load_cifar100, "CIFAR-100 python batches under --data-dir (torchvision download when possible)", threat_model=CIFAR_THREAT),
    DatasetSpec("cifar10-jpeg", load_cifar10_jpeg, "the CIFAR-10 JPEG copy (ImageFolder tree or .tar.gz): cifar10-jpeg/ under --data-dir, or --dataset cifar10-jpeg:PATH", threat_model=CIFAR_THREAT, check=check_cifar10_jpeg),
    DatasetSpec("imagefolder", load_imagefolder, "any class-folder tree: --dataset imagefolder:PATH", needs_arg=True, threat_model=CIFAR_THREAT, check=check_imagefolder),
]


def threat_model(ref: str) -> dict[str, float] | None:
    """The L-infinity threat model (``eps``, ``step_size``) the dataset ``name`` or ``name:arg``
    declares, from the registry without loading any data; None when the dataset declares none or
    is not registered (its loading fails later with the registry's message)."""
    from . import registry as plugins

    name = ref.partition(":")[0]
    try:
        spec = plugins.dataset(name)
    except LookupError:
        spec = next((b for b in BUILTIN_DATASETS if b.name == name), None)
    tm = getattr(spec, "threat_model", None)
    return {"eps": float(tm["eps"]), "step_size": float(tm["step_size"])} if tm else None


def builtin_threat_model(name: str) -> dict[str, float]:
    """The threat model of the built-in dataset ``name``, independent of installed plugins (what
    built-in profiles are defined with, so their settings never depend on the environment)."""
    spec = next((b for b in BUILTIN_DATASETS if b.name == name), None)
    if spec is None or spec.threat_model is None:
        raise ValueError(f"{name!r} is not a built-in dataset with a threat model; known: {', '.join(b.name for b in BUILTIN_DATASETS)}")
    return {"eps": float(spec.threat_model["eps"]), "step_size": float(spec.threat_model["step_size"])}


def threat_text(eps: float) -> str:
    """``8/255`` for multiples of 1/255, else the plain number (``0.1``)."""
    k = float(eps) * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 and round(k) > 0 else f"{float(eps):g}"


_LOADED: dict[tuple[str, str], DatasetTensors] = {}


def check(ref: str, data_dir: Path | None = None) -> None:
    """Fail early, without loading data: ``ref`` names a registered dataset, has the argument it
    needs, and passes the dataset's own ``check`` (e.g. the image-folder tree exists).

    Raises ``DatasetError`` (or ``LookupError`` listing the known names) with a one-line message."""
    from . import registry as plugins

    name, _, arg = ref.partition(":")
    spec: DatasetSpec = plugins.dataset(name)
    if spec.needs_arg and not arg:
        raise DatasetError(f"dataset {name} needs an argument: --dataset {name}:PATH")
    if getattr(spec, "check", None) is not None:
        spec.check(arg or None, data_dir)


def resolve(ref: str, data_dir: Path | None = None, cache_dir: Path | None = None) -> DatasetTensors:
    """Load ``name`` or ``name:arg`` through the dataset registry (memoized in-process)."""
    from . import registry as plugins

    _check_not_contestant(f"load dataset {ref!r}")
    name, _, arg = ref.partition(":")
    spec: DatasetSpec = plugins.dataset(name)
    if spec.needs_arg and not arg:
        raise DatasetError(f"dataset {name} needs an argument: --dataset {name}:PATH")
    key = (ref, str(data_dir))
    if key not in _LOADED:
        _LOADED[key] = spec.load(arg or None, data_dir, cache_dir)
    return _LOADED[key]


# ---- splits ---------------------------------------------------------------------------------


def stratified_split(labels: np.ndarray, fraction: float, seed: int, *, min_per_class: int = 1) -> np.ndarray:
    """Indices of a per-class random ``fraction`` of ``labels`` (sorted), seeded."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(min_per_class, int(round(fraction * len(idx)))) if fraction > 0 else 0
        k = min(k, len(idx) - 1) if len(idx) > 1 else 0
        out.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(out)) if out else np.array([], dtype=np.int64)


def per_class_subsample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``per_class`` random samples of each class."""
    rng = np.random.default_rng(seed)
    out = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(out))


@dataclass
class Splits:
    """Train pool / validation / test tensors of one profile (the pool is what methods see)."""

    x_pool: torch.Tensor
    y_pool: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    dataset: DatasetTensors
    pool_index: np.ndarray  # positions of the pool in the dataset's training split


def make_splits(ds: DatasetTensors, *, val_fraction: float, seed: int, max_train_per_class: int | None = None, max_test: int | None = None, device: str = "cpu") -> Splits:
    """Seeded splits: optional per-class subsample of train, per-class validation carve-out."""
    _check_not_contestant("build data splits")
    y = ds.y_train.numpy()
    base = np.arange(len(y))
    if max_train_per_class:
        base = per_class_subsample(y, max_train_per_class, seed + 1)
    val_local = stratified_split(y[base], val_fraction, seed) if val_fraction > 0 else np.array([], dtype=np.int64)
    mask = np.ones(len(base), dtype=bool)
    mask[val_local] = False
    pool = base[mask]
    val = base[val_local]
    assert ds.x_test is not None and ds.y_test is not None
    te = np.arange(len(ds.y_test))
    if max_test and max_test < len(te):
        te = np.sort(stratified_subset(ds.y_test.numpy(), max_test, seed + 2))
    dev = torch.device(device)
    return Splits(
        ds.x_train[pool].to(dev),
        ds.y_train[pool].to(dev),
        ds.x_train[val].to(dev),
        ds.y_train[val].to(dev),
        ds.x_test[te].to(dev),
        ds.y_test[te].to(dev),
        ds,
        pool,
    )


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices spread over classes proportionally (seeded)."""
    from .kinds import class_budgets

    num_classes = int(labels.max()) + 1
    counts = class_budgets(labels, n, num_classes)
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: counts[c]] for c in range(num_classes)])


# ---- augmentation (batched tensor ops) --------------------------------------------------------


def augment(x: torch.Tensor, *, pad: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding ``pad`` and random horizontal flip, for a whole batch.

    One gather per batch; no per-sample Python.
    """
    b, c, h, w = x.shape
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(x.device)
        # two gathers (rows, then columns): vectorized crops at a different offset per sample
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(b, c, h, w + 2 * pad)
        x = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(b, c, h, w)
        x = x.gather(3, cols)
    if hflip:
        flip = (torch.rand(b, generator=generator, device="cpu") < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x.contiguous()
