"""Dataset loaders (CIFAR pickle batches, ImageFolder, digits), seeded splits, augmentation.

The CIFAR tests write tiny batches in the real on-disk format (pickled dicts with bytes keys,
``data`` as uint8 (n, 3072) in R, G, B plane order); nothing is downloaded.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from coreset_bench import data as D

CIFAR10_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def _dump(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def _batch(rng, n, label_key, num_classes):
    return {
        b"batch_label": b"testing batch",
        label_key: [int(v) for v in rng.integers(0, num_classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


@pytest.fixture
def cifar10_dir(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    batches = []
    for i in range(1, 6):
        b = _batch(rng, 4, b"labels", 10)
        _dump(base / f"data_batch_{i}", b)
        batches.append(b)
    test = _batch(rng, 6, b"labels", 10)
    _dump(base / "test_batch", test)
    _dump(base / "batches.meta", {b"label_names": CIFAR10_NAMES, b"num_cases_per_batch": 4, b"num_vis": 3072})
    return tmp_path, batches, test


@pytest.fixture
def no_download(monkeypatch):
    """torchvision's downloaders fail at once, as without a network."""
    from torchvision import datasets as tvd

    def refuse(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd, "CIFAR10", refuse)
    monkeypatch.setattr(tvd, "CIFAR100", refuse)


def test_cifar10_batches(cifar10_dir, no_download):
    root, batches, test = cifar10_dir
    ds = D.load_cifar10(None, root)
    assert ds.name == "cifar10" and ds.num_classes == 10 and ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (6, 3, 32, 32) and ds.shape == (3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    assert ds.y_train.tolist() == sum((b[b"labels"] for b in batches), [])  # batches 1..5 in order
    assert ds.y_test.tolist() == test[b"labels"]
    # plane order: data[i, c*1024 + h*32 + w] is channel c, row h, column w
    raw = batches[2][b"data"][1]
    i = 2 * 4 + 1
    for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        assert ds.x_train[i, c, h, w].item() == pytest.approx(raw[c * 1024 + h * 32 + w] / 255.0)
    assert ds.x_test[0].flatten().mul(255).round().to(torch.uint8).tolist() == test[b"data"][0].tolist()
    assert ds.hflip and ds.crop_pad == 4
    assert len(ds.mean) == 3 and len(ds.std) == 3
    assert ds.mean[0] == pytest.approx(float(ds.x_train[:, 0].mean()))


def test_cifar_data_dir_from_the_environment(cifar10_dir, no_download, monkeypatch):
    root, _b, _t = cifar10_dir
    monkeypatch.setenv("CORESET_BENCH_DATA", str(root))
    assert D.load_cifar10(None, None).x_train.shape[0] == 20


def test_cifar100_format(tmp_path, no_download):
    rng = np.random.default_rng(1)
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    train = _batch(rng, 7, b"fine_labels", 100)
    train[b"coarse_labels"] = [0] * 7
    test = _batch(rng, 3, b"fine_labels", 100)
    test[b"coarse_labels"] = [1] * 3
    _dump(base / "train", train)
    _dump(base / "test", test)
    names = [f"class{i:03d}".encode() for i in range(100)]
    _dump(base / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20})
    ds = D.load_cifar100(None, tmp_path)
    assert ds.name == "cifar100" and ds.num_classes == 100 and ds.classes[42] == "class042"
    assert ds.x_train.shape == (7, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.y_train.tolist() == train[b"fine_labels"] and ds.y_test.tolist() == test[b"fine_labels"]
    assert float(ds.x_train.max()) <= 1.0


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_cifar_is_a_one_line_error_naming_data_dir(tmp_path, no_download, name):
    with pytest.raises(D.DatasetError) as ei:
        D.resolve(name, tmp_path / "empty")
    msg = str(ei.value)
    assert "\n" not in msg and "--data-dir" in msg and str(tmp_path / "empty") in msg
    assert msg.startswith(f"{name}: no cifar-")


# ---- ImageFolder ------------------------------------------------------------------------------


def _write_tree(root, spec, size=(6, 5)):
    """spec: {class: [(filename, rgb)]}; PNG is lossless, so pixel values can be checked exactly."""
    from PIL import Image

    for cls, files in spec.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for fname, rgb in files:
            img = Image.new("RGB", size, tuple(rgb))
            img.save(root / cls / fname)


def _colors(n, base):
    return [(f"{i:02d}.png" if i % 2 == 0 else f"{i:02d}.jpg", (base, 10 * i, 255 - base)) for i in range(n)]


def test_imagefolder_with_train_and_test(tmp_path):
    root = tmp_path / "tree"
    _write_tree(root / "train", {"cat": _colors(4, 200), "dog": _colors(3, 40)})
    _write_tree(root / "test", {"cat": _colors(2, 200), "dog": _colors(2, 40)})
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / ".hidden").mkdir()
    ds = D.resolve(f"imagefolder:{root}", None, tmp_path / "cache")
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2
    assert ds.x_train.shape == (7, 3, 5, 6) and ds.x_test.shape == (4, 3, 5, 6)
    assert ds.y_train.tolist() == [0, 0, 0, 0, 1, 1, 1] and ds.y_test.tolist() == [0, 0, 1, 1]
    assert ds.x_train.dtype == torch.float32 and 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0
    # 00.png of class cat is (200, 0, 55) everywhere
    assert ds.x_train[0, :, 2, 3].mul(255).round().tolist() == [200, 0, 55]
    assert ds.crop_pad == 1 and ds.hflip


def test_imagefolder_without_split_dirs_holds_out_a_fixed_test_split(tmp_path):
    root = tmp_path / "flat"
    _write_tree(root, {"a": _colors(10, 10), "b": _colors(5, 90), "c": _colors(5, 170)})
    ds = D.load_imagefolder(str(root), None, None)
    assert ds.classes == ["a", "b", "c"]
    assert len(ds.y_train) + len(ds.y_test) == 20
    assert np.bincount(ds.y_test.numpy()).tolist() == [2, 1, 1]  # 20 % per class
    again = D.load_imagefolder(str(root), None, None)
    assert torch.equal(ds.x_test, again.x_test) and torch.equal(ds.y_train, again.y_train)
    # every image appears exactly once across train and test (colors are unique per image)
    sig = lambda x: {tuple(v) for v in x[:, :, 0, 0].mul(255).round().int().tolist()}  # noqa: E731
    assert len(sig(ds.x_train) | sig(ds.x_test)) == 20 and not sig(ds.x_train) & sig(ds.x_test)


def test_imagefolder_resizes_to_the_first_image(tmp_path):
    root = tmp_path / "sizes"
    _write_tree(root, {"a": [("0.png", (1, 2, 3)), ("1.png", (4, 5, 6))]}, size=(8, 8))
    _write_tree(root, {"a": [("2.png", (7, 8, 9))], "b": [("0.png", (9, 9, 9)), ("1.png", (1, 1, 1))]}, size=(16, 12))
    ds = D.load_imagefolder(str(root), None, None)
    assert ds.x_train.shape[1:] == (3, 8, 8) and ds.x_test.shape[1:] == (3, 8, 8)


def test_imagefolder_decode_cache(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    _write_tree(root, {"a": _colors(5, 30), "b": _colors(5, 60)})
    cache = tmp_path / "cache"
    first = D.load_imagefolder(str(root), None, cache)
    files = list((cache / "datasets").glob("imagefolder-*.pt"))
    assert len(files) == 1

    def no_decoding(*a, **k):
        raise AssertionError("decoded again although the cache holds the tree")

    monkeypatch.setattr(D, "_decode", no_decoding)
    cached = D.load_imagefolder(str(root), None, cache)
    assert torch.equal(cached.x_train, first.x_train) and torch.equal(cached.y_test, first.y_test)
    assert cached.classes == first.classes
    monkeypatch.undo()
    # a changed tree is decoded afresh under a new key
    _write_tree(root, {"b": [("99.png", (1, 2, 3))]})
    grown = D.load_imagefolder(str(root), None, cache)
    assert len(grown.y_train) + len(grown.y_test) == 11
    assert len(list((cache / "datasets").glob("imagefolder-*.pt"))) == 2


def test_imagefolder_errors(tmp_path):
    with pytest.raises(D.DatasetError, match="not a directory"):
        D.load_imagefolder(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DatasetError, match="no class folders"):
        D.load_imagefolder(str(tmp_path / "empty"))
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "x.txt").write_text("x")
    with pytest.raises(D.DatasetError, match="no images"):
        D.load_imagefolder(str(tmp_path / "noimg"))
    with pytest.raises(D.DatasetError, match="needs an argument"):
        D.resolve("imagefolder")


# ---- digits -----------------------------------------------------------------------------------


def test_digits():
    ds = D.resolve("digits")
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.shape == (1, 8, 8)
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert len(ds.y_test) == pytest.approx(1797 * 0.25, abs=10)
    assert ds.num_classes == 10 and ds.classes == [str(i) for i in range(10)]
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0
    assert not ds.hflip and ds.crop_pad == 1
    assert set(ds.y_test.tolist()) == set(range(10))
    assert D.resolve("digits") is ds  # memoized


# ---- splits -----------------------------------------------------------------------------------


def test_stratified_split_is_seeded_and_per_class():
    labels = np.repeat(np.arange(4), [10, 20, 30, 3])
    a = D.stratified_split(labels, 0.2, seed=5)
    assert np.array_equal(a, D.stratified_split(labels, 0.2, seed=5))
    assert not np.array_equal(a, D.stratified_split(labels, 0.2, seed=6))
    assert np.all(np.diff(a) > 0)  # sorted and unique
    assert np.bincount(labels[a], minlength=4).tolist() == [2, 4, 6, 1]
    assert len(D.stratified_split(labels, 0.0, seed=0)) == 0
    # min_per_class, never a whole class
    one = np.array([0, 1, 1])
    assert np.bincount(one[D.stratified_split(one, 0.01, seed=0)], minlength=2).tolist() == [0, 1]


def _indexed_dataset(n_per_class=(30, 20, 10), n_test=40):
    """A dataset whose image i holds the value i, so a split's indices can be read back."""
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    rng = np.random.default_rng(0)
    y = y[rng.permutation(len(y))]
    n = len(y)
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    yt = np.arange(n_test) % len(n_per_class)
    xt = (1000 + torch.arange(n_test, dtype=torch.float32)).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    return D.DatasetTensors("indexed", x, torch.from_numpy(y), xt, torch.from_numpy(yt), ["a", "b", "c"])


def _ids(x):
    return x[:, 0, 0, 0].long().tolist()


def test_make_splits_is_seeded_and_disjoint():
    ds = _indexed_dataset()
    sp = D.make_splits(ds, val_fraction=0.2, seed=3)
    pool, val = _ids(sp.x_pool), _ids(sp.x_val)
    assert not set(pool) & set(val) and sorted(pool + val) == list(range(60))
    assert pool == sp.pool_index.tolist()
    assert sp.y_pool.tolist() == ds.y_train[pool].tolist() and sp.y_val.tolist() == ds.y_train[val].tolist()
    assert np.bincount(sp.y_val.numpy()).tolist() == [6, 4, 2]
    assert _ids(sp.x_test) == list(range(1000, 1040))
    same = D.make_splits(ds, val_fraction=0.2, seed=3)
    assert _ids(same.x_val) == val and _ids(same.x_pool) == pool
    other = D.make_splits(ds, val_fraction=0.2, seed=4)
    assert _ids(other.x_val) != val


def test_make_splits_subsamples_train_and_test():
    ds = _indexed_dataset()
    sp = D.make_splits(ds, val_fraction=0.1, seed=0, max_train_per_class=8, max_test=12)
    pool, val = _ids(sp.x_pool), _ids(sp.x_val)
    assert not set(pool) & set(val)
    assert np.bincount(np.concatenate([sp.y_pool.numpy(), sp.y_val.numpy()])).tolist() == [8, 8, 8]
    assert np.bincount(sp.y_val.numpy()).tolist() == [1, 1, 1]
    assert len(sp.y_test) == 12 and np.bincount(sp.y_test.numpy()).tolist() == [4, 4, 4]
    assert len(set(_ids(sp.x_test))) == 12
    assert _ids(D.make_splits(ds, val_fraction=0.1, seed=0, max_train_per_class=8, max_test=12).x_pool) == pool


def test_splits_cannot_be_built_by_a_contestant():
    ds = _indexed_dataset()
    with D.contestant_guard("sneaky"):
        with pytest.raises(D.LeakageError, match="plugin 'sneaky' tried to build data splits"):
            D.make_splits(ds, val_fraction=0.1, seed=0)
        with pytest.raises(D.LeakageError, match="plugin 'sneaky' tried to load dataset 'digits'"):
            D.resolve("digits")
    D.make_splits(ds, val_fraction=0.1, seed=0)  # fine outside the guard


# ---- augmentation -----------------------------------------------------------------------------


def test_augment_keeps_shape_and_is_deterministic_under_a_generator():
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = D.augment(x, pad=2, hflip=True, generator=torch.Generator().manual_seed(1))
    b = D.augment(x, pad=2, hflip=True, generator=torch.Generator().manual_seed(1))
    c = D.augment(x, pad=2, hflip=True, generator=torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype and a.is_contiguous()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, x)


def test_augment_identity_without_pad_and_flip():
    x = torch.rand(5, 3, 4, 4)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(D.augment(x, pad=0, hflip=False, generator=g), x)


def test_augment_outputs_are_shifted_windows_or_mirror_images():
    x = torch.rand(32, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    flipped = D.augment(x, pad=0, hflip=True, generator=torch.Generator().manual_seed(3))
    is_flip = [torch.equal(f, xi.flip(2)) for f, xi in zip(flipped, x)]
    assert all(torch.equal(f, xi) or fl for f, xi, fl in zip(flipped, x, is_flip))
    assert 0 < sum(is_flip) < 32
    pad = 1
    cropped = D.augment(x, pad=pad, hflip=False, generator=torch.Generator().manual_seed(4))
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    shifts = set()
    for i in range(len(x)):
        match = [(dy, dx) for dy in range(3) for dx in range(3) if torch.equal(cropped[i], padded[i, :, dy : dy + 5, dx : dx + 5])]
        assert match, f"sample {i} is not a crop of its padded image"
        shifts.add(match[0])
    assert len(shifts) > 3


# ---- cifar10-jpeg: the CIFAR-10 JPEG copy ------------------------------------------------------


def _cifar_tree(root, per_class=2):
    from coreset_bench.data import CIFAR10_CLASSES

    for split, n in (("train", per_class), ("test", 1)):
        _write_tree(root / split, {c: _colors(n, 20 * i) for i, c in enumerate(CIFAR10_CLASSES)}, size=(32, 32))


def test_cifar10_jpeg_reads_the_tree_under_data_dir_or_a_path(tmp_path):
    _cifar_tree(tmp_path / "data" / "cifar10-jpeg")
    ds = D.resolve("cifar10-jpeg", tmp_path / "data", tmp_path / "cache")
    assert ds.name == "cifar10-jpeg" and ds.num_classes == 10 and ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    assert np.bincount(ds.y_train.numpy()).tolist() == [2] * 10
    assert (ds.hflip, ds.crop_pad) == (True, 4)
    by_path = D.load_cifar10_jpeg(str(tmp_path / "data" / "cifar10-jpeg"), None, None)
    assert torch.equal(by_path.x_train, ds.x_train) and torch.equal(by_path.y_test, ds.y_test)
    assert D.threat_model("cifar10-jpeg") == {"eps": 8 / 255, "step_size": 2 / 255}


def test_cifar10_jpeg_unpacks_the_archive_once(tmp_path, monkeypatch):
    import tarfile

    _cifar_tree(tmp_path / "src" / "cifar10-jpeg")
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(data / "cifar10-jpeg.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar10-jpeg", arcname="cifar10-jpeg")
    cache = tmp_path / "cache"
    ds = D.load_cifar10_jpeg(None, data, cache)
    assert ds.x_train.shape[0] == 20 and ds.classes == D.CIFAR10_CLASSES
    unpacked = list((cache / "datasets").glob("cifar10-jpeg-*"))
    assert len(unpacked) == 1 and (unpacked[0] / ".complete").exists()

    def no_unpacking(*a, **k):
        raise AssertionError("unpacked again")

    monkeypatch.setattr("tarfile.open", no_unpacking)
    again = D.load_cifar10_jpeg(str(data / "cifar10-jpeg.tar.gz"), None, cache)
    assert torch.equal(again.x_train, ds.x_train)


def test_cifar10_jpeg_errors_name_the_fix(tmp_path):
    with pytest.raises(D.DatasetError, match=r"cifar10-jpeg: no tree at .*put cifar10-jpeg/ or cifar10-jpeg.tar.gz under --data-dir"):
        D.load_cifar10_jpeg(None, tmp_path, None)
    _write_tree(tmp_path / "other" / "train", {"cat": _colors(2, 1), "dog": _colors(2, 2)})
    _write_tree(tmp_path / "other" / "test", {"cat": _colors(1, 1), "dog": _colors(1, 2)})
    with pytest.raises(D.DatasetError, match=r"class folders \['cat', 'dog'\], expected CIFAR-10's"):
        D.load_cifar10_jpeg(str(tmp_path / "other"), None, None)
