"""Batched APGD-CE + APGD-T, the gradient-based part of AutoAttack (Croce & Hein, ICML 2020).

Croce, Hein. *Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks.* ICML 2020. The algorithm is pyautoattack's (``autopgd_base.py``), rewritten
so that independent runs share batches and stop early:

* a run is ``(model, point, target class, restart)``; the runs of one target class (and restart)
  over all points are rows of one batch. ``targets_in="sequence"`` keeps pyautoattack's order
  (target 1 on every point APGD-CE left robust, then target 2 on the points still robust, ...);
  ``"batch"`` makes all target classes and restarts of a point rows of one batch; ``"auto"``
  (default): sequence on the CPU, where a pass is compute-bound and a row that is not needed is
  pure cost, batch on accelerators, where a pass is launch-bound;
* the models of a list that share an architecture can be attacked together (their weights
  stacked, ``torch.func.functional_call`` under ``torch.vmap``; ``stack="auto"``: on accelerators);
* a run stops as soon as its point is misclassified (by any of the point's rows): AutoAttack's
  verdict for a point is "broken" once any run finds a misclassified iterate, so the remaining
  iterations of that point cannot change it (pyautoattack iterates to the end); the batch is
  compacted when enough rows have stopped.

One APGD run from ``x^(0)`` (a random start at distance ``eps`` in the norm's direction, clipped to
the box), with step size ``eta^(0) = 2 eps``, momentum ``alpha = 0.75`` (1 at the first step) and
the projection ``P`` onto the eps-ball ∩ box::

    z^(k+1) = P(x^(k) + eta^(k) * s(grad L(x^(k))))          s = sign (l-inf), g / ||g||_2 (l2)
    x^(k+1) = P(x^(k) + alpha (z^(k+1) - x^(k)) + (1 - alpha)(x^(k) - x^(k-1)))

At the checkpoints ``w_j`` (the first after ``p_1 = 0.22 N`` iterations, then windows shrinking by
``0.03 N`` down to ``0.06 N``; N = iterations) the step size of a run is halved, and the run restarts
from its best point and that point's gradient, when (1) the loss rose in at most ``rho = 0.75`` of
the window's steps, or (2) the step was not halved at the previous checkpoint and the best loss has
not improved since. As in pyautoattack, the first window's first step compares against a loss of 0
(its history buffer is zero-initialised).

Losses: APGD-CE maximises the cross-entropy ``CE(z, y)``; APGD-T the targeted DLR loss
``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`` (``pi`` sorts the logits in decreasing
order) for each target ``t`` among the ``n_target_classes`` most likely classes other than the top
one on the clean input (the 2nd, 3rd, ... largest clean logits).

AutoAttack's composition: points misclassified on clean inputs are not attacked; APGD-CE attacks the
rest; APGD-T attacks the points APGD-CE did not break; a point is robust only if every run fails.
Each model's random starts are drawn from its own ``torch.Generator`` seeded with ``seed`` (on the
CPU, so results do not depend on the device's RNG, nor on the models stacked with it); the global
RNG is untouched. pyautoattack draws its
starts from the global RNG, one target after another, so the two agree on the verdicts of a point
up to the randomness of the start, not bit for bit (``tests/test_apgd.py`` checks the agreement).

Cheaper passes, same function: the attack runs on a copy of the model with BatchNorm folded into
the convolutions (``fold=True``) and, on CPU images with planes above 16x16, in the channels-last
layout (``channels_last="auto"``). ``search_precision="bf16"`` (off by default) runs the
iterations' passes under ``torch.autocast`` to bfloat16 and counts a point broken only when a
float32 forward of the iterate misclassifies it; on a CPU with AMX a pass costs 1.3x (digits) to
1.6x (CIFAR-shaped) less, but the attack is measurably weaker (``benchmarks/RESULTS.md``: 98.7 %
and 99.0 % verdict agreement with pyautoattack on digits and a CIFAR-shaped cnn-small, below the
99.5 % bar), so it is never the default.

Norms: ``linf`` and ``l2`` (pyautoattack's l1 variant is not implemented). Boxes other than [0, 1]
are used directly (pyautoattack needs [0, 1]; the affine map is the identity on the verdicts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["APGDConfig", "autoattack_apgd", "autoattack_apgd_models", "fold_batchnorm", "stackable"]

#: rows x input elements of one batch before the points are split into chunks (memory bound)
ROW_ELEMENT_BUDGET = 1 << 24
#: ``channels_last="auto"``: CPU images with planes above this many pixels are attacked in the
#: channels-last layout (faster convolutions and max-pool there; slower on 8x8 digits)
CHANNELS_LAST_MIN_PLANE = 256


_SEARCH_DTYPES = {"fp32": None, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class APGDConfig:
    """One APGD attack: ``loss`` ``ce`` (APGD-CE) or ``dlr-targeted`` (APGD-T), ``n_iter``
    iterations, ``n_restarts`` random starts, ``n_target_classes`` (APGD-T), ``rho``."""

    loss: str = "ce"
    n_iter: int = 100
    n_restarts: int = 1
    n_target_classes: int = 9
    rho: float = 0.75

    def __post_init__(self) -> None:
        if self.loss not in ("ce", "dlr", "dlr-targeted"):
            raise ValueError(f"APGD loss must be ce, dlr or dlr-targeted, not {self.loss!r}")
        if self.n_iter < 1 or self.n_restarts < 1 or self.n_target_classes < 1:
            raise ValueError(f"APGD needs n_iter, n_restarts and n_target_classes >= 1, got {self.n_iter}, {self.n_restarts}, {self.n_target_classes}")


# --------------------------------------------------------------------------------------------
# forward over stacked models
# --------------------------------------------------------------------------------------------


def _signature(model: torch.nn.Module) -> tuple:
    return (type(model),) + tuple((k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items())


def stackable(models: Sequence[torch.nn.Module]) -> bool:
    """Whether ``models`` can be attacked as one vmapped stack (same class, same tensors)."""
    return len({_signature(m) for m in models}) <= 1


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` for attacking: eval mode, parameters without gradients, and every
    ``Conv2d`` directly followed by a ``BatchNorm2d`` with running statistics (inside an
    ``nn.Sequential``) replaced by one convolution with the normalisation folded in
    (``W' = W g / sqrt(var + e)``, ``b' = (b - mean) g / sqrt(var + e) + beta``): the same function
    in eval mode up to float rounding, at about two thirds of the cost of a small CNN's step."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if not isinstance(mod, torch.nn.Sequential):
            continue
        names = list(mod._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = mod._modules[a], mod._modules[b]
            if (isinstance(conv, torch.nn.Conv2d) and type(bn) is torch.nn.BatchNorm2d and bn.track_running_stats
                    and bn.running_mean is not None and bn.num_features == conv.out_channels):
                mod._modules[a] = fuse_conv_bn_eval(conv, bn)
                mod._modules[b] = torch.nn.Identity()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _forward_fn(models: Sequence[torch.nn.Module], channels_last: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """``f(xs)`` with ``xs`` of shape (M, R, *input) -> logits (M, R, C); M = len(models).
    ``channels_last``: (one model, whose weights are already channels-last) feed it images in
    that layout."""
    if len(models) == 1:
        model = models[0]
        if channels_last:
            return lambda xs: model(xs[0].contiguous(memory_format=torch.channels_last)).unsqueeze(0)
        return lambda xs: model(xs[0]).unsqueeze(0)
    from torch.func import functional_call

    base = models[0]
    names_p = [k for k, _ in base.named_parameters()]
    names_b = [k for k, _ in base.named_buffers()]
    params = {k: torch.stack([dict(m.named_parameters())[k].detach() for m in models]) for k in names_p}
    buffers = {k: torch.stack([dict(m.named_buffers())[k].detach() for m in models]) for k in names_b}

    def one(p, b, x):
        return functional_call(base, (p, b), (x,))

    batched = torch.vmap(one)
    return lambda xs: batched(params, buffers, xs)


# --------------------------------------------------------------------------------------------
# losses and geometry (per row; tensors of shape (M, R, ...))
# --------------------------------------------------------------------------------------------


def _row_norm(t: torch.Tensor, norm: str) -> torch.Tensor:
    flat = t.flatten(2)
    n = flat.abs().amax(-1) if norm == "linf" else flat.pow(2).sum(-1).sqrt()
    return n.reshape(t.shape[:2] + (1,) * (t.dim() - 2))


def _normalize(t: torch.Tensor, norm: str) -> torch.Tensor:
    return t / (_row_norm(t, norm) + 1e-12)


def _loss(logits: torch.Tensor, y: torch.Tensor, yt: torch.Tensor, kind: str) -> torch.Tensor:
    z = logits
    zy = z.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    zs, ind = z.sort(dim=-1)
    if kind == "ce":
        return F.cross_entropy(z.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
    if kind == "dlr":
        top_is_y = (ind[..., -1] == y).float()
        return -(zy - zs[..., -2] * top_is_y - zs[..., -1] * (1.0 - top_is_y)) / (zs[..., -1] - zs[..., -3] + 1e-12)
    zt = z.gather(-1, yt.unsqueeze(-1)).squeeze(-1)
    return -(zy - zt) / (zs[..., -1] - 0.5 * (zs[..., -3] + zs[..., -4]) + 1e-12)


def _project(z: torch.Tensor, x: torch.Tensor, eps: float, norm: str, lo: float, hi: float) -> torch.Tensor:
    if norm == "linf":
        return torch.clamp(torch.minimum(torch.maximum(z, x - eps), x + eps), lo, hi)
    d = z - x
    return torch.clamp(x + _normalize(d, norm) * torch.clamp(_row_norm(d, norm), max=eps), lo, hi)


# --------------------------------------------------------------------------------------------
# the batched runs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Setup:
    """What every run of one group of models shares: ``forward`` (rows (M, R, ...) -> logits),
    the threat model, the models' generators, ``prune`` and ``search_dtype`` (None: full
    precision; a reduced dtype: the iterations' passes run under autocast to it)."""

    forward: Callable[[torch.Tensor], torch.Tensor]
    eps: float
    norm: str
    lo: float
    hi: float
    generators: Sequence[torch.Generator]
    prune: bool
    search_dtype: torch.dtype | None = None


def _apgd_rows(
    st: _Setup,
    x: torch.Tensor,
    y: torch.Tensor,
    yt: torch.Tensor,
    pid: torch.Tensor,
    valid: torch.Tensor,
    n_points: int,
    cfg: APGDConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """APGD on rows (M, R): clean inputs ``x``, labels ``y``, targets ``yt``, the point each row
    attacks ``pid`` (in [0, n_points)), ``valid`` (padding rows are False). Returns per model and
    point whether some row found a misclassified iterate, and that iterate (M, n_points, ...)."""
    forward, eps, norm, lo, hi, generators, prune = st.forward, st.eps, st.norm, st.lo, st.hi, st.generators, st.prune
    M, R = y.shape
    dev = x.device
    fooled = torch.zeros(M, n_points, dtype=torch.bool, device=dev)
    adv = torch.zeros((M, n_points) + tuple(x.shape[2:]), dtype=x.dtype, device=dev)
    m_idx = torch.arange(M, device=dev).unsqueeze(1)

    # random start (pyautoattack: x + eps * t / ||t|| with t uniform in [-1, 1] (l-inf) or normal (l2))
    # drawn per model for its valid rows (which come first), so a model's starts do not depend on
    # the models stacked with it
    noise = torch.zeros(x.shape, dtype=torch.float32)
    for m, n_valid in enumerate(valid.sum(1).tolist()):
        shape = (int(n_valid),) + tuple(x.shape[2:])
        noise[m, : int(n_valid)] = (2 * torch.rand(shape, generator=generators[m]) - 1) if norm == "linf" else torch.randn(shape, generator=generators[m])
    x_adv = torch.clamp(x + eps * _normalize(noise.to(device=dev, dtype=x.dtype), norm), lo, hi)

    half = st.search_dtype

    def grad_at(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            with torch.autocast(dev.type, dtype=half or torch.float32, enabled=half is not None):
                logits = forward(z)
            loss = _loss(logits.float(), y, yt, cfg.loss)
            (g,) = torch.autograd.grad(loss.sum(), [z])
        return logits.detach().float(), loss.detach(), g.detach()

    def record(logits: torch.Tensor, z: torch.Tensor) -> None:
        hit = (logits.argmax(-1) != y) & valid
        if half is not None and bool(hit.any()):
            # reduced-precision search, full-precision verdict: a row counts as a hit only if the
            # full-precision forward of its iterate misclassifies it too
            n_hit = hit.sum(1)
            k = int(n_hit.max())
            rows = torch.argsort((~hit).to(torch.int8), dim=1, stable=True)[:, :k]
            keep = torch.arange(k, device=dev).unsqueeze(0) < n_hit.unsqueeze(1)
            with torch.no_grad():
                wrong = forward(z[m_idx.expand(M, k), rows]).argmax(-1) != y[m_idx.expand(M, k), rows]
            hit = torch.zeros_like(hit)
            hit[m_idx.expand(M, k)[keep], rows[keep]] = wrong[keep]
        if bool(hit.any()):
            mm, rr = hit.nonzero(as_tuple=True)
            fooled[mm, pid[mm, rr]] = True
            adv[mm, pid[mm, rr]] = z[mm, rr]

    logits, loss, grad = grad_at(x_adv)
    record(logits, x_adv)
    grad_best = grad.clone()
    x_best = x_adv.clone()
    loss_best = loss.clone()
    step = torch.full((M, R) + (1,) * (x.dim() - 2), 2.0 * eps, dtype=x.dtype, device=dev)
    x_old = x_adv.clone()
    n2, n_min, decr = max(int(0.22 * cfg.n_iter), 1), max(int(0.06 * cfg.n_iter), 1), max(int(0.03 * cfg.n_iter), 1)
    k, counter = n2, 0
    loss_prev = torch.zeros_like(loss)  # pyautoattack's zero-initialised loss history (see above)
    n_up = torch.zeros_like(loss)
    best_last = loss_best.clone()
    reduced_last = torch.ones_like(loss)

    for i in range(cfg.n_iter):
        if prune:
            live = valid & ~fooled[m_idx.expand(M, R), pid]
            per_model = live.sum(1)
            keep = int(per_model.max())
            if keep == 0:
                break
            if keep <= 0.8 * R:
                # compact: per model the live rows first, padded with (invalid) copies of row 0
                order = torch.argsort((~live).to(torch.int8), dim=1, stable=True)[:, :keep]
                pad = torch.arange(keep, device=dev).unsqueeze(0) >= per_model.unsqueeze(1)
                order = torch.where(pad, torch.zeros_like(order), order)
                sel = (m_idx.expand(M, keep), order)
                x, y, yt, pid = x[sel], y[sel], yt[sel], pid[sel]
                valid = live[sel] & ~pad
                x_adv, x_old, grad, grad_best, x_best = x_adv[sel], x_old[sel], grad[sel], grad_best[sel], x_best[sel]
                loss_best, step, loss_prev, n_up, best_last, reduced_last = (
                    loss_best[sel], step[sel], loss_prev[sel], n_up[sel], best_last[sel], reduced_last[sel])
                R = keep
        with torch.no_grad():
            grad2 = x_adv - x_old
            x_old = x_adv
            a = 0.75 if i > 0 else 1.0
            if norm == "linf":
                z = _project(x_adv + step * torch.sign(grad), x, eps, norm, lo, hi)
            else:
                z = _project(x_adv + step * _normalize(grad, norm), x, eps, norm, lo, hi)
            x_adv = _project(x_adv + (z - x_adv) * a + grad2 * (1 - a), x, eps, norm, lo, hi)
        logits, loss, grad = grad_at(x_adv)
        record(logits, x_adv)
        with torch.no_grad():
            better = loss > loss_best
            bx = better.reshape(better.shape + (1,) * (x.dim() - 2))
            x_best = torch.where(bx, x_adv, x_best)
            grad_best = torch.where(bx, grad, grad_best)
            loss_best = torch.where(better, loss, loss_best)
            n_up = n_up + (loss > loss_prev).to(loss.dtype)
            loss_prev = loss
            counter += 1
            if counter == k:
                osc = (n_up <= k * cfg.rho).to(loss.dtype)
                no_impr = (1.0 - reduced_last) * (best_last >= loss_best).to(loss.dtype)
                fl = torch.maximum(osc, no_impr)
                reduced_last = fl
                best_last = loss_best.clone()
                fx = (fl > 0).reshape(fl.shape + (1,) * (x.dim() - 2))
                step = torch.where(fx, step / 2.0, step)
                x_adv = torch.where(fx, x_best, x_adv)
                grad = torch.where(fx, grad_best, grad)
                k = max(k - decr, n_min)
                counter = 0
                n_up = torch.zeros_like(n_up)
    return fooled, adv


def _attack_points(
    x: torch.Tensor,
    y: torch.Tensor,
    todo: torch.Tensor,
    clean_logits: torch.Tensor,
    cfg: APGDConfig,
    st: _Setup,
    sequence: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One APGD attack on the points ``todo`` (M, P) of every model. Its runs are (target class,
    restart) pairs (one target for the untargeted losses). ``sequence``: pyautoattack's order, one
    run after another, each on the points the earlier runs left unbroken; otherwise every run of a
    point is a row of one batch. Returns (fooled (M, P), adversarial inputs (M, P, ...))."""
    M, P = todo.shape
    dev = x.device
    n_cls = int(clean_logits.shape[-1])
    targets = min(cfg.n_target_classes, n_cls - 1) if cfg.loss == "dlr-targeted" else 1
    runs = [t for t in range(targets) for _ in range(cfg.n_restarts)]  # 0-based target rank per run
    fooled = torch.zeros(M, P, dtype=torch.bool, device=dev)
    adv = x.unsqueeze(0).expand((M,) + tuple(x.shape)).clone()
    # target t (1-based rank among the others): the (t+1)-th largest clean logit, as pyautoattack
    order = clean_logits.argsort(dim=-1)  # (M, P, C), ascending
    for ranks in ([[t] for t in runs] if sequence else [runs]):
        left = todo & ~fooled
        f, a = _attack_runs(x, y, left, order, ranks, cfg, st)
        fm, fp = f.nonzero(as_tuple=True)
        fooled[fm, fp] = True
        adv[fm, fp] = a[fm, fp]
    return fooled, adv


def _attack_runs(
    x: torch.Tensor,
    y: torch.Tensor,
    todo: torch.Tensor,
    order: torch.Tensor,
    ranks: Sequence[int],
    cfg: APGDConfig,
    st: _Setup,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The runs ``ranks`` (a target rank per run) of every point ``todo`` (M, P) as rows of one
    batch (point-major, then run), chunked by points to bound memory."""
    M, P = todo.shape
    dev = x.device
    n_cls = int(order.shape[-1])
    per_point = len(ranks)
    fooled = torch.zeros(M, P, dtype=torch.bool, device=dev)
    adv = torch.empty((M, P) + tuple(x.shape[1:]), dtype=x.dtype, device=dev)
    counts = todo.sum(1)
    n_max = int(counts.max()) if M else 0
    if n_max == 0:
        return fooled, adv
    elems = max(1, x[0].numel())
    chunk_pts = max(1, ROW_ELEMENT_BUDGET // (elems * per_point * M))
    # per model, the points to attack first, padded to n_max with (invalid) copies
    pts = torch.argsort((~todo).to(torch.int8), dim=1, stable=True)[:, :n_max]
    pad = torch.arange(n_max, device=dev).unsqueeze(0) >= counts.unsqueeze(1)
    pts = torch.where(pad, pts[:, :1].expand_as(pts), pts)
    m_idx = torch.arange(M, device=dev).unsqueeze(1)
    rank_of_run = torch.tensor(list(ranks), dtype=torch.long, device=dev)
    for s in range(0, n_max, chunk_pts):
        cp = pts[:, s : s + chunk_pts]  # (M, c)
        cvalid = ~pad[:, s : s + chunk_pts]
        c = cp.shape[1]
        rp = cp.repeat_interleave(per_point, dim=1)
        rvalid = cvalid.repeat_interleave(per_point, dim=1)
        rank = rank_of_run.repeat(c)
        mm = m_idx.expand_as(rp)
        yt = order[mm, rp, n_cls - 2 - rank.unsqueeze(0).expand_as(rp)]
        rows_pid = torch.arange(c, device=dev).repeat_interleave(per_point).unsqueeze(0).expand(M, -1).contiguous()
        f, a = _apgd_rows(st, x[rp], y[rp], yt, rows_pid, rvalid, c, cfg)
        f = f & cvalid
        fm, fc = f.nonzero(as_tuple=True)
        fooled[fm, cp[fm, fc]] = True
        adv[fm, cp[fm, fc]] = a[fm, fc]
    return fooled, adv


def autoattack_apgd_models(
    models: Sequence[torch.nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: str = "linf",
    lower: float = 0.0,
    upper: float = 1.0,
    attacks: Sequence[str] = ("apgd-ce", "apgd-t"),
    n_target_classes: int = 9,
    n_iter: int = 100,
    n_restarts: int = 1,
    seed: int = 0,
    prune: bool = True,
    fold: bool = True,
    stack: bool | str = "auto",
    targets_in: str = "auto",
    search_precision: str = "fp32",
    channels_last: bool | str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """AutoAttack's APGD part on every model of ``models`` (all in eval mode, same points).

    ``attacks``: the APGD components in AutoAttack's order (``apgd-ce``, ``apgd-dlr``, ``apgd-t``).
    With ``stack`` (``"auto"``: on accelerators, not on the CPU, where a small CNN's step is
    compute-bound and stacking gains nothing) models that share an architecture are attacked
    together (stacked weights, vmapped), the others group by architecture; otherwise one model
    after another. ``fold``: attack a copy with BatchNorm folded into the convolutions
    (``fold_batchnorm``); the clean and final verdicts are always the given models'.
    ``prune``: stop the runs of a point once it is broken (the verdicts are the same).
    ``targets_in``: ``"sequence"`` (pyautoattack's order: each target class, then restart, is one
    run over the points still robust), ``"batch"`` (all of them rows of one batch) or ``"auto"``
    (sequence on the CPU, batch elsewhere). ``search_precision``: ``"fp32"`` (default) or
    ``"bf16"`` (iterations under bfloat16 autocast, verdicts in float32; weaker, see the module
    docstring). ``channels_last``: attack 4-d inputs in the channels-last layout (``"auto"``: on
    the CPU for planes above ``CHANNELS_LAST_MIN_PLANE`` pixels). Returns ``(x_adv, robust)``:
    adversarial inputs (M, N, ...) (the clean input where no attack succeeded) and the per-point verdict (M, N) bool, True where the
    model classifies the clean input correctly and no attack broke it.
    """
    norm = str(norm).lower()
    if norm not in ("linf", "l2"):
        raise ValueError(f"the batched APGD supports the norms linf and l2, not {norm!r}")
    known = {"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr-targeted"}
    unknown = [a for a in attacks if a not in known]
    if unknown:
        raise ValueError(f"the batched APGD runs {', '.join(known)}, not {', '.join(unknown)}")
    if not models:
        raise ValueError("autoattack_apgd_models needs at least one model")
    if targets_in not in ("auto", "sequence", "batch"):
        raise ValueError(f"targets_in must be auto, sequence or batch, not {targets_in!r}")
    if search_precision not in _SEARCH_DTYPES:
        raise ValueError(f"search_precision must be {' or '.join(_SEARCH_DTYPES)}, not {search_precision!r}")
    search_dtype = _SEARCH_DTYPES[search_precision]
    x = x.detach()
    y = y.detach().long()
    N = x.shape[0]
    attacked = [fold_batchnorm(m) if fold else m for m in models]
    if stack == "auto":
        stack = x.device.type != "cpu"
    if channels_last == "auto":
        channels_last = x.device.type == "cpu" and x.dim() == 4 and x.shape[-1] * x.shape[-2] > CHANNELS_LAST_MIN_PLANE
    channels_last = bool(channels_last) and x.dim() == 4
    if channels_last:
        import copy

        attacked = [(m if fold else copy.deepcopy(m)).to(memory_format=torch.channels_last) for m in attacked]
    sequence = targets_in == "sequence" or (targets_in == "auto" and x.device.type == "cpu")
    groups: dict[tuple, list[int]] = {}
    for j, m in enumerate(attacked):
        groups.setdefault(_signature(m) if stack else (j,), []).append(j)
    out_adv = x.unsqueeze(0).repeat((len(models),) + (1,) * x.dim())
    out_robust = torch.zeros(len(models), N, dtype=torch.bool, device=x.device)
    for members in groups.values():
        forward = _forward_fn([attacked[j] for j in members], channels_last and len(members) == 1)
        confirm = _forward_fn([models[j] for j in members])  # verdicts on the models as given
        M = len(members)
        generators = [torch.Generator().manual_seed(int(seed)) for _ in range(M)]
        st = _Setup(forward, float(eps), norm, float(lower), float(upper), generators, prune, search_dtype)
        with torch.no_grad():
            clean_logits = confirm(x.unsqueeze(0).expand((M,) + tuple(x.shape)))
        robust = clean_logits.argmax(-1) == y.unsqueeze(0)
        adv = x.unsqueeze(0).repeat((M,) + (1,) * x.dim())
        yy = y.unsqueeze(0).expand(M, N)
        for name in attacks:
            if not bool(robust.any()):
                break
            cfg = APGDConfig(loss=known[name], n_iter=n_iter, n_restarts=n_restarts, n_target_classes=n_target_classes)
            if cfg.loss == "dlr-targeted" and clean_logits.shape[-1] < 4:
                raise ValueError(f"APGD-T's targeted DLR loss needs at least 4 classes, the model has {clean_logits.shape[-1]}")
            f, a = _attack_points(x, y, robust, clean_logits, cfg, st, sequence)
            # confirm on the returned inputs, as pyautoattack does
            if bool(f.any()):
                with torch.no_grad():
                    broke = f & (confirm(a).argmax(-1) != yy)
                adv = torch.where(broke.reshape(broke.shape + (1,) * (x.dim() - 1)), a, adv)
                robust = robust & ~broke
        for gi, j in enumerate(members):
            out_adv[j] = adv[gi]
            out_robust[j] = robust[gi]
    return out_adv, out_robust


def autoattack_apgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """``autoattack_apgd_models`` for one model: ``(x_adv (N, ...), robust (N,))``."""
    adv, robust = autoattack_apgd_models([model], x, y, **kw)
    return adv[0], robust[0]
