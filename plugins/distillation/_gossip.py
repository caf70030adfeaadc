"""The training loop shared by the decentralized contestants (``d-psgd``, ``qgm``, ``idkd``,
``naive-kd``): synchronous rounds of one local step per node followed by one gossip step.

Per round every node draws a batch of ``batch_size`` from its own training set (a seeded
permutation stream per node: each sample once per pass, reshuffled after each pass), augments it
(random crop with ``crop_pad`` and, where the dataset allows it, horizontal flips, as the
references' crop+flip), computes the soft cross-entropy gradient (one-hot targets for private
labels) and updates its parameters; the parameters are mixed through ``view.net.gossip``
(kind ``model``). Each node reads its own data acting as that node (``view.net.node(i)``). All n nodes run at once through ``NodeEnsemble`` (vmap). Every node's
randomness is seeded by (cell seed, global node id), so the same cell run one node per process
(``net.local_nodes``) draws the same batches.

Learning rate: ``lr`` at epoch e is ``lr · gamma^(number of milestones <= e)`` (the references'
MultiStepLR; the track's recipe puts milestones at 60 % and 80 % of the epochs).

Update rules (x: a node's parameters, g: its gradient, η: the learning rate, wd: weight decay):

* ``dsgdm`` (DSGDm, Lian et al. 2017 with heavy-ball momentum; ``train_dpsgd.py`` of the IDKD
  code), in the reference's order (``order="gossip-step"``): the gradient g at the pre-gossip
  point, then x̃ ← W x; m ← μ·m + g + wd·x̃; x ← x̃ − η·m (a torch SGD step on the mixed
  parameters). ``order="step-gossip"`` is the order of ``d-psgd`` version 1: m ← μ·m + g + wd·x;
  x ← x − η·m; then x ← W x.
* ``qgm`` (QG-DSGDm-N, Lin et al. ICML 2021, "Quasi-global momentum"): x' = x − η(μ·m + g +
  wd·x); x_new = W x'; d = (x − x_new)/η; m ← μ·m + (1 − μ)·d.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from coreset_bench.kinds import Param

#: declared ranges of the gossip training parameters (d-psgd, qgm, idkd, naive-kd)
SPECS = {
    "lr": Param(float, min=0, min_open=True, help="learning rate eta"),
    "momentum": Param(float, min=0, max=1, max_open=True, help="momentum mu (DSGDm / QGM)"),
    "weight_decay": Param(float, min=0, help="L2 weight decay"),
    "final_gossip": Param(bool, help="one more mixing step after the last round"),
    "vmap": Param(bool, help="all nodes in one vmapped ensemble (speed only; results do not change)"),
}


#: DSGDm's update orders (``d-psgd``'s parameter ``order``)
ORDER = Param(str, choices=("gossip-step", "step-gossip"), help="DSGDm: gossip then step (the reference's order) or step then gossip (d-psgd version 1)")


def node_seed(seed: int, node: int, *what: Any) -> int:
    """A seed for node ``node``'s stream ``what`` of a cell (independent of the process layout)."""
    key = "|".join(map(str, (seed, node, *what)))
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % (2**31 - 1)


class NodeSampler:
    """Batches of ``batch_size`` indices from a seeded permutation stream over ``size`` samples."""

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError("a node has no training samples")
        self.size = int(size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self._perm = torch.randperm(self.size, generator=self.generator)
        self._pos = 0

    def next(self, batch_size: int) -> torch.Tensor:
        out = []
        need = int(batch_size)
        while need > 0:
            if self._pos >= self.size:
                self._perm = torch.randperm(self.size, generator=self.generator)
                self._pos = 0
            take = min(need, self.size - self._pos)
            out.append(self._perm[self._pos : self._pos + take])
            self._pos += take
            need -= take
        return torch.cat(out)


def lr_at(lr: float, epoch: int, milestones: Sequence[int], gamma: float) -> float:
    return float(lr) * float(gamma) ** sum(1 for m in milestones if epoch >= int(m))


def dsgdm_local(x: torch.Tensor, m: torch.Tensor, g: torch.Tensor, lr: float, mu: float, wd: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DSGDm local step: m ← μ·m + g + wd·x; x ← x − η·m. Returns (x, m)."""
    m = mu * m + g + wd * x
    return x - lr * m, m


def dsgdm_after_gossip(mixed: torch.Tensor, m: torch.Tensor, g: torch.Tensor, lr: float, mu: float, wd: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DSGDm in the reference's order, after the gossip: m ← μ·m + g + wd·x̃; x ← x̃ − η·m, with
    x̃ = W x the mixed parameters and g the gradient at the pre-gossip x. Returns (x, m)."""
    m = mu * m + g + wd * mixed
    return mixed - lr * m, m


def qgm_local(x: torch.Tensor, m: torch.Tensor, g: torch.Tensor, lr: float, mu: float, wd: float) -> torch.Tensor:
    """QGM local (Nesterov-style) step: x' = x − η(μ·m + g + wd·x)."""
    return x - lr * (mu * m + g + wd * x)


def qgm_momentum(m: torch.Tensor, x_old: torch.Tensor, x_new: torch.Tensor, lr: float, mu: float) -> torch.Tensor:
    """QGM buffer: d = (x_old − x_new)/η (the local step and the gossip together); m ← μ·m + (1−μ)·d."""
    return mu * m + (1.0 - mu) * (x_old - x_new) / lr


class NodeData:
    """One node's training set: inputs and soft targets (one-hot for private labels)."""

    def __init__(self, x: torch.Tensor, targets: torch.Tensor, seed: int) -> None:
        self.x, self.targets = x, targets
        self.sampler = NodeSampler(len(x), seed)
        self.aug = torch.Generator().manual_seed(seed + 1)


def local_nodes(view: Any) -> list[int]:
    ids = list(getattr(view.net, "local_nodes", range(len(view.nodes))))
    if len(ids) != len(view.nodes):
        raise ValueError(f"the view holds {len(view.nodes)} nodes but its network {len(ids)}")
    return ids


def own_row(view: Any, r: int, which: str = "nodes") -> Any:
    """Row r of ``view.nodes`` (or ``view.own_label_counts``), read acting as its node
    (``view.net.node``), the only way a node may read its own data."""
    ids = local_nodes(view)
    with view.net.node(ids[r]):
        return getattr(view, which)[r]


def private_data(view: Any, ids: Sequence[int], round_: int = 0) -> list[NodeData]:
    C = int(view.num_classes)
    out = []
    for r, i in enumerate(ids):
        x, y = own_row(view, r)
        out.append(NodeData(x, torch.nn.functional.one_hot(y.long(), C).to(x.dtype), node_seed(view.seed, i, "batches", round_)))
    return out


def batch(data: Sequence[NodeData], batch_size: int, crop_pad: int, hflip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from coreset_bench.data import augment

    xs, ts = [], []
    for d in data:
        idx = d.sampler.next(batch_size).to(d.x.device)
        xb = d.x[idx]
        if xb.dim() == 4 and (crop_pad > 0 or hflip):
            xb = augment(xb, pad=crop_pad, hflip=hflip, generator=d.aug)
        xs.append(xb)
        ts.append(d.targets[idx])
    return torch.stack(xs), torch.stack(ts)


def gossip(net: Any, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.gossip(params, kind="model").items()}


#: a hook called at the start of every epoch: (epoch, params, ensemble, data) -> new data or None
EpochHook = Callable[[int, dict, Any, list], "list[NodeData] | None"]


def train(view: Any, *, algo: str, lr: float, momentum: float | None = None, weight_decay: float | None = None,
          final_gossip: bool = False, vmap: bool = True, hook: EpochHook | None = None, order: str = "gossip-step") -> list[torch.nn.Module]:
    """Run ``algo`` (``dsgdm`` or ``qgm``) on the view's nodes for the recipe's epochs; returns one
    model per local node. ``hook`` may replace the nodes' training sets at an epoch (IDKD);
    ``order`` is DSGDm's (``gossip-step``, the reference's, or ``step-gossip``)."""
    from coreset_bench.tracks.decentralized.network import NodeEnsemble

    if algo not in ("dsgdm", "qgm"):
        raise ValueError(f"unknown algorithm {algo!r}")
    if order not in ("gossip-step", "step-gossip"):
        raise ValueError(f"unknown DSGDm order {order!r}; choose gossip-step or step-gossip")
    rec = view.recipe
    epochs, B = int(rec["epochs"]), int(rec["batch_size"])
    mu = float(rec.get("momentum", 0.9) if momentum is None else momentum)
    wd = float(rec.get("weight_decay", 1e-4) if weight_decay is None else weight_decay)
    milestones, gamma = list(rec.get("milestones", [])), float(rec.get("gamma", 0.1))
    crop_pad, hflip = int(rec.get("crop_pad", 0)), bool(rec.get("hflip", False))
    steps = int(view.steps_per_epoch)
    ids = local_nodes(view)
    ens = NodeEnsemble.from_factory(view.model_factory, len(ids), vmap=vmap)
    params = {k: v.clone() for k, v in ens.params.items()}
    mom = {k: torch.zeros_like(v) for k, v in params.items()}
    data = private_data(view, ids)
    for epoch in range(epochs):
        if hook is not None:
            new = hook(epoch, params, ens, data)
            if new is not None:
                data = new
        eta = lr_at(lr, epoch, milestones, gamma)
        for _ in range(steps):
            xb, tb = batch(data, B, crop_pad, hflip)
            grads, _ = ens.loss_grads(params, xb, tb)
            if algo == "dsgdm" and order == "gossip-step":
                mixed = gossip(view.net, params)
                new = {}
                for k in params:
                    new[k], mom[k] = dsgdm_after_gossip(mixed[k], mom[k], grads[k], eta, mu, wd)
                params = new
            elif algo == "dsgdm":
                local = {}
                for k in params:
                    local[k], mom[k] = dsgdm_local(params[k], mom[k], grads[k], eta, mu, wd)
                params = gossip(view.net, local)
            else:
                local = {k: qgm_local(params[k], mom[k], grads[k], eta, mu, wd) for k in params}
                mixed = gossip(view.net, local)
                mom = {k: qgm_momentum(mom[k], params[k], mixed[k], eta, mu) for k in params}
                params = mixed
            if not all(bool(torch.isfinite(v).all()) for v in params.values()):
                raise FloatingPointError(f"training diverged (non-finite parameters) at epoch {epoch} with lr {eta:g}; lower the method's lr")
    if final_gossip:
        params = gossip(view.net, params)
    return ens.to_modules(params)
