"""Architectures: shapes, the embed/classify split, and the CPU max-pool giving the stock numbers."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from coreset_bench import models as M


@pytest.mark.parametrize("name", ["mlp", "cnn-small", "resnet18", "fastnet", "vgg16-bn", "densenet121"])
def test_every_architecture_builds_and_splits_into_embed_and_classify(name):
    shape = (1, 8, 8) if name in ("mlp", "cnn-small") else (3, 32, 32)
    model = M.build(name, shape, 10, [0.5] * shape[0], [0.25] * shape[0], 0).eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        logits = model(x)
        again = model.classify(model.embed(x))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert torch.equal(logits, again)
    assert model.head.out_features == 10


def _stock_copy(model):
    """The same model with ``torch.nn.MaxPool2d`` in place of ours."""
    old = copy.deepcopy(model)
    for parent in old.modules():
        for key, child in parent.named_children():
            if isinstance(child, M.MaxPool2d):
                setattr(parent, key, torch.nn.MaxPool2d(child.kernel_size, child.stride, child.padding, child.dilation, ceil_mode=child.ceil_mode))
    return old


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_cpu_max_pool_gives_the_stock_values_gradients_and_second_derivatives(mode):
    torch.manual_seed(0)
    ours = M.SmallCNN(1, 10, 8, [0.5], [0.5])
    stock = _stock_copy(ours)
    assert sum(isinstance(m, M.MaxPool2d) for m in ours.modules()) == 1
    assert not any(isinstance(m, M.MaxPool2d) for m in stock.modules())
    x, y = torch.rand(50, 1, 8, 8), torch.randint(0, 10, (50,))
    out = []
    for model in (ours, stock):
        getattr(model, mode)()
        z = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(z), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, z, create_graph=True)  # input-loss curvature uses this
        (hv,) = torch.autograd.grad((g * torch.linspace(-1, 1, g.numel()).view_as(g)).sum(), z)
        params = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
        out.append((loss.detach(), g.detach(), hv, params))
    (l1, g1, h1, p1), (l2, g2, h2, p2) = out
    assert torch.equal(l1, l2) and torch.equal(g1, g2) and torch.equal(h1, h2)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))
    assert h1.abs().sum() > 0  # the second derivative is not trivially zero


def test_max_pool_takes_the_stock_path_under_vmap_and_on_large_planes():
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(0)
    model = M.SmallCNN(1, 10, 8, [0.5], [0.5]).eval()
    stock = _stock_copy(model).eval()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 10, (6,))

    def per_sample(m):
        params = {k: v.detach() for k, v in m.named_parameters()}
        buffers = dict(m.named_buffers())

        def loss(p, xi, yi):
            return F.cross_entropy(functional_call(m, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

        return vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)  # DP-SGD's per-sample gradients

    a, b = per_sample(model), per_sample(stock)
    assert all(torch.equal(a[k], b[k]) for k in a)
    big = torch.relu(torch.randn(2, 4, 32, 32))
    assert torch.equal(M.MaxPool2d(2)(big), F.max_pool2d(big, 2))
