"""The shared proxy run: what it records, the cache, and its cost accounting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coreset_bench import data as D
from coreset_bench import models as M
from coreset_bench import plugins
from coreset_bench import signals as S
from coreset_bench import training as T


@pytest.fixture(scope="module")
def small():
    plugins.load_plugins()
    ds = D.resolve("digits")
    sp = D.make_splits(ds, val_fraction=0.1, seed=3, max_train_per_class=20)
    return ds, sp


def _run(small, wanted, cache_dir, epochs=3):
    ds, sp = small
    spec = S.ProxySpec("digits", {"t": 1}, "mlp", {"epochs": epochs, "batch_size": 32, "lr": 0.05}, seed=5, checkpoint_epochs=(1, epochs))
    return S.compute_signals(
        spec,
        wanted,
        x_pool=sp.x_pool,
        y_pool=sp.y_pool,
        x_val=sp.x_val,
        y_val=sp.y_val,
        num_classes=10,
        model_factory=lambda: M.build("mlp", ds.shape, 10, ds.mean, ds.std, 5),
        training=plugins.method("standard"),
        pad=1,
        hflip=False,
        cache_dir=cache_dir,
    )


def test_shapes_and_values(small, tmp_path):
    _ds, sp = small
    n, nv = len(sp.y_pool), len(sp.y_val)
    b = _run(small, {"loss", "input_grad_norm", "embeddings", "train_correct", "val_loss"}, tmp_path)
    a = b.arrays
    assert a["loss"].shape == (3, n) and a["val_loss"].shape == (3, nv)
    assert a["input_grad_norm"].shape == (3, n) and np.all(a["input_grad_norm"] >= 0)
    assert a["train_correct"].shape == (3, n) and a["train_correct"].dtype == bool
    assert a["embeddings"].shape[:2] == (2, n) and a["logits"].shape == (2, n, 10)
    assert list(a["checkpoint_epochs"]) == [1, 3]
    # probabilities are consistent with the loss: p_true = exp(-CE)
    assert np.allclose(a["prob_true"], np.exp(-a["loss"]), atol=1e-4)
    assert np.all(a["prob_true"] + a["prob_other_max"] <= 1 + 1e-5)
    # the final proxy model reproduces the last epoch's recorded losses
    model = a["proxy_model"]()
    logits = T.predict(model, sp.x_pool)
    ce = torch.nn.functional.cross_entropy(logits, sp.y_pool, reduction="none").numpy()
    assert np.allclose(ce, a["loss"][-1], atol=1e-4)
    assert not b.shared and b.proxy_s > 0


def test_input_grad_norm_matches_per_sample_autograd(small, tmp_path):
    ds, sp = small
    b = _run(small, {"input_grad_norm"}, tmp_path)
    model = b.arrays["proxy_model"]()
    for i in (0, 7, 19):
        x = sp.x_pool[i : i + 1].clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(x), sp.y_pool[i : i + 1])
        (g,) = torch.autograd.grad(loss, x)
        assert float(g.norm()) == pytest.approx(float(b.arrays["input_grad_norm"][-1, i]), rel=1e-4, abs=1e-7)


def test_cache_serves_and_grows(small, tmp_path):
    first = _run(small, {"loss"}, tmp_path)
    assert "input_grad_norm" not in first.arrays and not first.shared
    second = _run(small, {"loss"}, tmp_path)
    assert second.shared and second.proxy_s == pytest.approx(first.proxy_s)
    assert np.array_equal(first.arrays["loss"], second.arrays["loss"])
    # asking for more recomputes the union, and the cache then holds both groups
    third = _run(small, {"input_grad_norm"}, tmp_path)
    assert not third.shared and "loss" in third.arrays and "input_grad_norm" in third.arrays
    fourth = _run(small, {"loss", "input_grad_norm"}, tmp_path)
    assert fourth.shared
    # the same seed gives the same proxy: dynamics identical across the recomputation
    assert np.array_equal(first.arrays["loss"], third.arrays["loss"])


def test_no_signals_no_proxy(small, tmp_path):
    b = _run(small, set(), tmp_path)
    assert b.arrays == {} and b.proxy_s == 0.0
    assert not (tmp_path / "signals").exists()


def test_restrict_and_unknown():
    assert S.restrict({"loss": 1, "embeddings": 2}, {"loss"}) == {"loss": 1}
    with pytest.raises(ValueError, match="unknown signals"):
        S.groups_for({"nope"})


def _child(small, cache_dir, queue):
    b = _run(small, {"loss", "input_grad_norm"}, cache_dir, epochs=6)
    queue.put((b.shared, b.arrays["loss"].tobytes()))


def test_concurrent_cells_train_one_proxy_and_share_it(small, tmp_path):
    """Cells run side by side by default; two that need the same proxy must not both train it
    (nor trip over each other's cache writes): one computes under the key's lock, the other
    waits and reads the cache."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(small, tmp_path, q)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert sorted(shared for shared, _ in got) == [False, True]
    assert got[0][1] == got[1][1]
    assert [p.name for p in (tmp_path / "signals").iterdir() if p.name.startswith(".")] == []


def _count_embedded_rows(small, wanted, tmp_path, arch="cnn-small"):
    """Rows pushed through the model's body during one proxy run (training + recording)."""
    ds, sp = small
    rows = [0]

    def factory():
        m = M.build(arch, ds.shape, 10, ds.mean, ds.std, 5)
        m.body.register_forward_hook(lambda _m, inp, _o: rows.__setitem__(0, rows[0] + inp[0].shape[0]))
        return m

    spec = S.ProxySpec("digits", {"t": 2}, arch, {"epochs": 2, "batch_size": 32, "lr": 0.05}, seed=5, checkpoint_epochs=(1, 2))
    b = S.compute_signals(spec, wanted, x_pool=sp.x_pool, y_pool=sp.y_pool, x_val=sp.x_val, y_val=sp.y_val, num_classes=10,
                          model_factory=factory, training=plugins.method("standard"), pad=1, hflip=False, cache_dir=tmp_path)
    return rows[0], b.arrays


def test_optional_groups_ride_on_the_recording_pass(small, tmp_path):
    """Input gradients and checkpoint embeddings/logits come from the per-epoch eval pass: the
    optional groups push no extra row through the network (issue 26: they added 57 % to a CIFAR
    proxy run when embeddings took their own forward passes)."""
    base, _ = _count_embedded_rows(small, {"loss"}, tmp_path / "a")
    full, arrays = _count_embedded_rows(small, {"loss", "input_grad_norm", "embeddings", "val_embeddings"}, tmp_path / "b")
    assert full == base
    assert arrays["embeddings"].shape[0] == 2 and arrays["val_embeddings"].shape[0] == 2


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_one_pass_signals_equal_separate_passes(shape):
    """The folded pass gives bit-identical dynamics, input-gradient norms, embeddings and logits
    to the separate passes it replaced (plain eval forward, ``features()``), so no stored
    selection moves."""
    torch.manual_seed(0)
    m = M.build("cnn-small", shape, 10, [0.5] * shape[0], [0.25] * shape[0], 0)
    with torch.no_grad():
        m.train()(torch.rand(64, *shape))  # non-trivial BN statistics
    x, y = torch.rand(600, *shape), torch.randint(0, 10, (600,))
    e, lg = T.features(m, x)
    for ig in (False, True):
        s = T.eval_signals(m, x, y, input_grad=ig, features=True)
        assert np.array_equal(s["embeddings"], e) and np.array_equal(s["logits"], lg)
        ref = torch.nn.functional.cross_entropy(T.predict(m, x), y, reduction="none").numpy()
        assert np.array_equal(s["loss"], ref)
        if ig:
            xr = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(m(xr), y, reduction="sum"), xr)
            assert np.allclose(s["input_grad_norm"], g.flatten(1).norm(dim=1).numpy(), rtol=1e-5, atol=1e-7)
    assert all(p.requires_grad for p in m.parameters())  # the pass unfreezes what it froze


@pytest.mark.parametrize("arch, shape", [("cnn-small", (1, 8, 8)), ("cnn-small", (3, 32, 32)), ("mlp", (1, 8, 8))])
def test_eval_pass_batch_size_changes_no_bit(arch, shape):
    """The eval pass runs in batches of 64 on the CPU (``eval_batch_size``; 512 before issue 26,
    about 2x slower on 32x32 images): every recorded value equals the 512-batch pass bit for bit,
    so cached signals and stored selections stay valid."""
    torch.manual_seed(1)
    m = M.build(arch, shape, 10, [0.5] * shape[0], [0.25] * shape[0], 0)
    with torch.no_grad():
        m.train()(torch.rand(64, *shape))
    x, y = torch.rand(300, *shape), torch.randint(0, 10, (300,))
    assert T.eval_batch_size("cpu") == 64 and T.eval_batch_size(torch.device("meta")) == 512
    for ig in (False, True):
        new = T.eval_signals(m, x, y, input_grad=ig, features=True)
        old = T.eval_signals(m, x, y, input_grad=ig, features=True, batch_size=512)
        assert set(new) == set(old) and all(np.array_equal(new[k], old[k]) for k in new)
