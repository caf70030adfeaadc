"""Decentralized learning machinery: topologies, a byte-counting network, the Dirichlet non-IID
partition and a vmapped ensemble of node models.

``Network`` is the only channel between the nodes of a ``DecentralizedView``: every exchange goes
through it and is counted in ``bytes`` (``model``, ``labels``, ``meta``, or any kind the caller
names). Nodes talk only to their neighbours (``W[i, j] > 0``, j != i); ``allgather`` reaches the
nodes connected to i by some path, so on the ``isolated`` topology nothing crosses between nodes.
``Network`` simulates all n nodes in one process (tensors stacked over the nodes, first dimension
n); ``GlooNetwork`` (``coreset_bench.tracks.decentralized.gloo``) is the same interface for one node per process
over ``torch.distributed`` (gloo, point-to-point). Both mix in the same order (j ascending), so a
multi-process run reproduces the simulation.

* ``Topology.ring / torus / full / isolated`` (``topology(name, n)``): symmetric, doubly
  stochastic mixing matrices (tracks-phase2.md §3.3).
* ``dirichlet_partition``: ``build_non_iid_by_dirichlet`` of the QG-DSGDm / IDKD code (Lin et al.
  2021; Ravikumar et al. 2024): per class, node shares ~ Dir(α·1_n), nodes already above the
  average size get none of later classes, redrawn until every node holds at least
  ``min_node_frac`` of the average.
* ``NodeEnsemble``: n models as stacked parameters (``torch.func.stack_module_state``) called
  through ``functional_call`` under ``vmap`` (a loop where vmap cannot run the module).

torch is imported lazily (this module is imported by the pytest plugin).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Topology:
    """``W`` (n, n): a symmetric, doubly stochastic mixing matrix; ``neighbours(i)``: the j != i
    with ``W[i, j] > 0``."""

    name: str
    W: np.ndarray

    def __post_init__(self) -> None:
        W = np.asarray(self.W, dtype=np.float64)
        if W.ndim != 2 or W.shape[0] != W.shape[1]:
            raise ValueError(f"topology {self.name!r}: W must be square, got shape {W.shape}")
        if not (np.all(W >= 0) and np.allclose(W.sum(0), 1) and np.allclose(W.sum(1), 1)):
            raise ValueError(f"topology {self.name!r}: W must be non-negative and doubly stochastic")
        W = W.copy()
        W.setflags(write=False)
        object.__setattr__(self, "W", W)

    @property
    def n(self) -> int:
        return int(self.W.shape[0])

    def neighbours(self, i: int) -> list[int]:
        return [int(j) for j in np.flatnonzero(self.W[i] > 0) if j != i]

    def component(self, i: int) -> list[int]:
        """Nodes reachable from i (i included), sorted."""
        seen, todo = {i}, [i]
        while todo:
            for j in self.neighbours(todo.pop()):
                if j not in seen:
                    seen.add(j)
                    todo.append(j)
        return sorted(seen)

    @classmethod
    def isolated(cls, n: int) -> Topology:
        return cls("isolated", np.eye(n))

    @classmethod
    def ring(cls, n: int) -> Topology:
        """Each node averages itself and its two ring neighbours with weight 1/3 (n >= 3)."""
        if n < 3:
            raise ValueError(f"a ring needs at least 3 nodes, got {n}")
        W = np.zeros((n, n))
        for i in range(n):
            for j in (i - 1, i, i + 1):
                W[i, j % n] = 1 / 3
        return cls("ring", W)

    @classmethod
    def complete(cls, n: int) -> Topology:
        return cls("complete", np.full((n, n), 1.0 / n))

    @classmethod
    def full(cls, n: int) -> Topology:
        """Fully connected: 1/n everywhere (one gossip step is the exact average)."""
        return cls("full", np.full((n, n), 1.0 / n))

    @classmethod
    def torus(cls, n: int, rows: int | None = None) -> Topology:
        """A rows x cols grid with wrap-around; 1/5 on self and the four grid neighbours
        (rows, cols >= 3, so the four are distinct). ``rows`` defaults to the divisor of n
        closest to sqrt(n)."""
        if rows is None:
            cands = [r for r in range(3, n // 3 + 1) if n % r == 0 and n // r >= 3]
            if not cands:
                raise ValueError(f"a torus needs n = rows x cols with rows, cols >= 3 (e.g. 9, 12, 16); got n = {n}")
            rows = min(cands, key=lambda r: (abs(r - n / r), r))
        cols = n // rows
        if rows * cols != n or rows < 3 or cols < 3:
            raise ValueError(f"a torus needs n = rows x cols with rows, cols >= 3; got n = {n}, rows = {rows}")
        W = np.zeros((n, n))
        for r in range(rows):
            for c in range(cols):
                i = r * cols + c
                for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
                    W[i, ((r + dr) % rows) * cols + (c + dc) % cols] = 0.2
        return cls("torus", W)

    def spectral_gap(self) -> float:
        """1 - |second largest eigenvalue| of W (0: disconnected; 1: full)."""
        ev = np.sort(np.abs(np.linalg.eigvalsh(self.W)))[::-1]
        return float(1.0 - ev[1]) if len(ev) > 1 else 1.0


TOPOLOGIES = ("ring", "torus", "full", "isolated")


def topology(name: str, n: int) -> Topology:
    """The topology ``name`` (ring, torus, full or complete, isolated) on n nodes."""
    builders = {"ring": Topology.ring, "torus": Topology.torus, "full": Topology.full, "complete": Topology.complete, "isolated": Topology.isolated}
    if name not in builders:
        raise ValueError(f"unknown topology {name!r}; choose one of {', '.join(TOPOLOGIES)}")
    return builders[name](int(n))


def payload_bytes(obj: Any) -> int:
    """Bytes of the tensors and arrays in ``obj`` (nested lists, tuples and dicts); numbers count 8."""
    if hasattr(obj, "element_size") and hasattr(obj, "numel"):
        return int(obj.element_size() * obj.numel())
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, Mapping):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    if isinstance(obj, (int, float, bool, np.number)):
        return 8
    if obj is None:
        return 0
    raise TypeError(f"cannot send a {type(obj).__name__} over the network; send tensors, arrays, numbers or containers of them")


def _leak(msg: str) -> None:
    """Refuse a read outside the node contract: the contestant worker's guard records it (so the
    cell fails even if the plugin catches the error) and ``LeakageError`` is raised."""
    import sys

    from ...data import LeakageError

    sys.audit("coreset_bench.leakage", msg)
    raise LeakageError(msg)


def _who() -> str:
    from ...data import _CONTESTANT

    return f"plugin {_CONTESTANT[-1]!r}" if _CONTESTANT else "the method"


class NodeContext:
    """The node a method is acting as (``net.node(i)``); a ``NodeLocal`` row is readable only
    while acting as its node. Mixed into every network class (``Network``, ``RemoteNetwork``,
    ``GlooNetwork``)."""

    _acting: int | None = None

    @property
    def acting(self) -> int | None:
        """The global id of the node the method acts as now (None: none)."""
        return self._acting

    def node(self, i: int) -> Any:
        """Context manager: act as global node ``i`` (one of ``local_nodes``); restores the previous
        node on exit. Inside it, ``view.nodes[r]`` and ``view.own_label_counts[r]`` of i's row are
        readable; every other node's row raises ``LeakageError``."""
        from contextlib import contextmanager

        i = int(i)
        if i not in self.local_nodes:  # type: ignore[attr-defined]
            raise ValueError(f"node {i} is not held by this network (it holds {self.local_nodes})")  # type: ignore[attr-defined]

        @contextmanager
        def ctx() -> Any:
            prev = self._acting
            self._acting = i
            try:
                yield i
            finally:
                self._acting = prev

        return ctx()


class NodeLocal(Sequence):
    """Rows of per-node data (``view.nodes``, ``view.own_label_counts``): row r belongs to the global
    node ``net.local_nodes[r]`` and is readable only inside ``with net.node(that node):``; reading
    another node's row raises ``LeakageError`` (tracks-phase2.md §3.5: node i's update may depend
    only on ``nodes[i]`` and ``own_label_counts[i]``). ``len`` is free."""

    def __init__(self, rows: Sequence[Any], net: Any, what: str) -> None:
        self._rows = tuple(rows)
        self._net = net
        self._what = what

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, r: Any) -> Any:
        if isinstance(r, slice):
            return [self[k] for k in range(*r.indices(len(self._rows)))]
        try:
            r = int(r)
        except TypeError:
            raise TypeError(f"{self._what} rows are indexed by an int (the node's row), not {type(r).__name__}") from None
        if r < 0:
            r += len(self._rows)
        if not 0 <= r < len(self._rows):
            raise IndexError(f"{self._what}: row {r} of {len(self._rows)}")
        owner = self._net.local_nodes[r]
        acting = self._net.acting
        if acting != owner:
            where = f"while acting as node {acting}" if acting is not None else "outside any node's context"
            _leak(f"{_who()} read node {owner}'s {self._what} {where}; node i may use only its own row: read it inside `with view.net.node(i):`")
        return self._rows[r]

    def __array__(self, *a: Any, **k: Any) -> Any:
        _leak(f"{_who()} read every node's {self._what} at once; node i may use only its own row: read it inside `with view.net.node(i):`")

    def __repr__(self) -> str:
        return f"NodeLocal({self._what}, {len(self._rows)} rows)"


def wire(obj: Any) -> Any:
    """``obj`` as numbers only for the pipe to the harness: tensors become numpy arrays (nested
    lists, tuples and dicts kept); what the network cannot send raises TypeError."""
    if hasattr(obj, "detach") and hasattr(obj, "numel"):
        return obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray) or obj is None or isinstance(obj, (bool, int, float, np.number)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): wire(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(wire(v) for v in obj) if type(obj) in (list, tuple) else tuple(wire(v) for v in obj)
    raise TypeError(f"cannot send a {type(obj).__name__} over the network; send tensors, arrays, numbers or containers of them")


def unwire(obj: Any, device: Any = None) -> Any:
    """The inverse of ``wire``: arrays become tensors (on ``device``)."""
    import torch

    if isinstance(obj, np.ndarray):
        t = torch.from_numpy(np.array(obj, copy=True))
        return t.to(device) if device is not None else t
    if isinstance(obj, dict):
        return {k: unwire(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(unwire(v, device) for v in obj)
    return obj


@dataclass
class Network(NodeContext):
    """Byte-counted communication on ``topology``; ``bytes[kind]`` totals what was sent and
    ``traffic[i, j]`` the bytes node i received from node j (all kinds)."""

    topology: Topology
    bytes: dict[str, int] = field(default_factory=lambda: {"model": 0, "labels": 0, "meta": 0})

    def __post_init__(self) -> None:
        self.traffic = np.zeros((self.n, self.n), dtype=np.int64)
        self._acting = None

    @property
    def n(self) -> int:
        return self.topology.n

    @property
    def local_nodes(self) -> list[int]:
        """The nodes this process holds: all n in the simulation (one per process in
        ``GlooNetwork``); stacked tensors and payload lists are indexed in this order."""
        return list(range(self.n))

    def _count(self, kind: str, nbytes: int, to: int | None = None, frm: int | None = None) -> None:
        self.bytes[kind] = self.bytes.get(kind, 0) + int(nbytes)
        if to is not None and frm is not None:
            self.traffic[to, frm] += int(nbytes)

    def gossip(self, tensors: Mapping[str, Any], kind: str = "model") -> dict[str, Any]:
        """One mixing step: ``out[name][i] = sum_j W[i, j] tensors[name][j]`` for tensors stacked
        over the nodes (first dimension n). Each node sends its slice to each neighbour."""
        import torch

        out = {}
        Wn = np.asarray(self.topology.W)
        nbrs = [self.topology.neighbours(i) for i in range(self.n)]
        for name, t in tensors.items():
            if t.shape[0] != self.n:
                raise ValueError(f"gossip: tensor {name!r} has {t.shape[0]} rows, expected one per node ({self.n})")
            W = torch.tensor(Wn, dtype=t.dtype, device=t.device)
            # out[i] = sum over j ascending with W[i, j] > 0 of W[i, j] * t[j]: the order (and so
            # the float result) of GlooNetwork.gossip, and no 0 * NaN from a non-neighbour
            acc = torch.zeros_like(t)
            for j in range(self.n):
                rows = np.flatnonzero(Wn[:, j] > 0)
                if len(rows) == self.n:
                    acc += W[:, j].view(-1, *([1] * (t.dim() - 1))) * t[j]
                else:
                    r = torch.as_tensor(rows, device=t.device)
                    acc[r] += W[r, j].view(-1, *([1] * (t.dim() - 1))) * t[j]
            out[name] = acc
            size = payload_bytes(t[0])
            for i in range(self.n):
                for j in nbrs[i]:
                    self._count(kind, size, to=i, frm=j)
        return out

    def exchange(self, payloads: Sequence[Any], kind: str = "labels") -> list[list[tuple[int, Any]]]:
        """Node i receives ``(j, payloads[j])`` from every neighbour j (itself excluded)."""
        if len(payloads) != self.n:
            raise ValueError(f"exchange: {len(payloads)} payloads, expected one per node ({self.n})")
        received = []
        for i in range(self.n):
            got = [(j, payloads[j]) for j in self.topology.neighbours(i)]
            for j, p in got:
                self._count(kind, payload_bytes(p), to=i, frm=j)
            received.append(got)
        return received

    def allgather(self, small: Sequence[Any], kind: str = "meta") -> list[list[tuple[int, Any]]]:
        """Node i receives ``(j, small[j])`` from every node j connected to it by some path, itself
        included (for metadata such as label histograms)."""
        if len(small) != self.n:
            raise ValueError(f"allgather: {len(small)} items, expected one per node ({self.n})")
        out = []
        for i in range(self.n):
            comp = self.topology.component(i)
            for j in comp:
                if j != i:
                    self._count(kind, payload_bytes(small[j]), to=i, frm=j)
            out.append([(j, small[j]) for j in comp])
        return out


class NetworkService:
    """The harness's side of ``RemoteNetwork``: runs each request of the contestant worker on the
    harness's own ``Network`` (which does the mixing and counts every byte) and answers with
    numbers only. A method cannot change what is counted: the count lives in this process."""

    def __init__(self, net: Network) -> None:
        self.net = net

    def __call__(self, req: Any) -> Any:
        import torch

        if not isinstance(req, dict) or req.get("op") not in ("gossip", "exchange", "allgather"):
            raise ValueError("unknown network operation; use gossip, exchange or allgather")
        kind = req.get("kind")
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"the byte kind must be a non-empty string, got {type(kind).__name__}")
        if req["op"] == "gossip":
            tensors = req.get("tensors")
            if not isinstance(tensors, dict):
                raise TypeError("gossip: send a dict of name -> tensor stacked over the nodes")
            ts = {}
            for k, v in tensors.items():
                if not isinstance(v, np.ndarray) or not (np.issubdtype(v.dtype, np.number)):
                    raise TypeError(f"gossip: tensor {k!r} is not a numeric tensor")
                ts[str(k)] = torch.from_numpy(v)
            out = self.net.gossip(ts, kind=kind)
            return {"out": {k: v.numpy() for k, v in out.items()}, "bytes": dict(self.net.bytes)}
        items = req.get("items")
        if not isinstance(items, list):
            raise TypeError(f"{req['op']}: send a list of one payload per node")
        got = self.net.exchange(items, kind=kind) if req["op"] == "exchange" else self.net.allgather(items, kind=kind)
        return {"out": got, "bytes": dict(self.net.bytes)}


class RemoteNetwork(NodeContext):
    """``view.net`` in the contestant worker: the ``Network`` interface, every call sent to the
    harness's ``NetworkService`` (the harness mixes and counts). ``bytes`` is a copy of the
    harness's count as of the last call; changing it changes nothing the harness records.
    Tensors travel as numbers and come back as tensors on the sender's device."""

    def __init__(self, topology: Topology, call: Any) -> None:
        self.topology = topology
        self._call = call
        self._bytes: dict[str, int] = {"model": 0, "labels": 0, "meta": 0}
        self._acting = None

    @property
    def n(self) -> int:
        return self.topology.n

    @property
    def local_nodes(self) -> list[int]:
        return list(range(self.n))

    @property
    def bytes(self) -> dict[str, int]:
        return dict(self._bytes)

    def _do(self, req: dict[str, Any]) -> Any:
        reply = self._call(req)
        self._bytes = {str(k): int(v) for k, v in reply["bytes"].items()}
        return reply["out"]

    def gossip(self, tensors: Mapping[str, Any], kind: str = "model") -> dict[str, Any]:
        import torch

        items = list(tensors.items())
        ts = [t for _, t in items]
        if len(ts) > 1 and all(isinstance(t, torch.Tensor) for t in ts) and len({(t.dtype, t.device) for t in ts}) == 1 and all(t.dim() >= 1 and t.shape[0] == self.n for t in ts):
            # one flat (n, total) tensor: one array on the pipe; mixing is elementwise, so the
            # result and the byte count are those of the separate tensors
            flat = torch.cat([t.detach().reshape(self.n, -1) for t in ts], 1)
            mixed = unwire(self._do({"op": "gossip", "kind": kind, "tensors": {"flat": wire(flat)}})["flat"], flat.device)
            sizes = [int(t[0].numel()) for t in ts]
            return {str(k): part.reshape(t.shape) for (k, t), part in zip(items, torch.split(mixed, sizes, dim=1))}
        devices = {k: getattr(t, "device", None) for k, t in items}
        out = self._do({"op": "gossip", "kind": kind, "tensors": {str(k): wire(t) for k, t in items}})
        return {k: unwire(v, devices.get(k)) for k, v in out.items()}

    def _send(self, op: str, items: Sequence[Any], kind: str) -> list[list[tuple[int, Any]]]:
        if not isinstance(items, (list, tuple)):
            raise TypeError(f"{op}: send a list of one payload per node")
        out = self._do({"op": op, "kind": kind, "items": [wire(p) for p in items]})
        return [[(int(j), unwire(p)) for j, p in got] for got in out]

    def exchange(self, payloads: Sequence[Any], kind: str = "labels") -> list[list[tuple[int, Any]]]:
        """Node i receives ``(j, payloads[j])`` from every neighbour j (itself excluded)."""
        return self._send("exchange", payloads, kind)

    def allgather(self, small: Sequence[Any], kind: str = "meta") -> list[list[tuple[int, Any]]]:
        """Node i receives ``(j, small[j])`` from every node connected to it, itself included."""
        return self._send("allgather", small, kind)


def widest_paths(traffic: np.ndarray) -> np.ndarray:
    """B[i, j]: the most bytes that passed between nodes i and j along one path, i.e. the largest
    over paths of the smallest edge on the path, with an edge's bytes ``traffic[a, b] +
    traffic[b, a]`` (B[i, i] = inf)."""
    cap = np.asarray(traffic, dtype=np.float64)
    B = cap + cap.T
    n = len(B)
    np.fill_diagonal(B, np.inf)
    for k in range(n):
        B = np.maximum(B, np.minimum(B[:, k : k + 1], B[k : k + 1, :]))
    return B


#: nodes i and j "agree" when ||x_i - x_j||² <= AGREE_TOL · min(||x_i - x0||², ||x_j - x0||²).
#: Measured on quick@2's data (9 digits nodes, 60 epochs, d-psgd and qgm, alpha 0.1 and 1.0):
#: nodes trained without any communication stay 0.66-3.7 apart by this ratio; nodes that gossip
#: on a ring end 2e-8 to 5e-4 apart. 0.05 lies far from both.
AGREE_TOL = 0.05


def converged_without_communication(params: Sequence[np.ndarray], init: np.ndarray, traffic: np.ndarray, model_bytes: int, tol: float = AGREE_TOL) -> tuple[int, int, float, float] | None:
    """The harness's consistency check of a cell: a pair of nodes (i, j) whose final parameters
    agree (squared distance at most ``tol`` of the smaller squared movement from the common
    initialization ``init``) although fewer than ``model_bytes`` (one model's parameters) passed
    between them along any path of the counted traffic. Nodes start alike but train on disjoint
    data, so such agreement means parameters crossed outside the network. Returns (i, j,
    relative distance, widest-path bytes) of the first such pair, or None. Nodes that did not
    move from the initialization are skipped (an untrained model agrees with anything)."""
    X = np.stack([np.asarray(p, dtype=np.float64).ravel() for p in params])
    x0 = np.asarray(init, dtype=np.float64).ravel()
    move = ((X - x0) ** 2).sum(1)
    B = widest_paths(traffic)
    n = len(X)
    for i in range(n):
        for j in range(i + 1, n):
            lo = min(move[i], move[j])
            if lo <= 0 or B[i, j] >= model_bytes:
                continue
            d = float(((X[i] - X[j]) ** 2).sum())
            if d <= tol * lo:
                return i, j, d / lo, float(B[i, j])
    return None


@dataclass
class ViewSpec:
    """Everything a ``DecentralizedView`` holds except its network, for the nodes ``rows`` (global
    ids; all n in the simulation, one in a node process). Picklable: it travels to the contestant
    worker, which opens it with a ``RemoteNetwork`` (``open_in_worker``), so the view there talks
    to the harness's ``Network``. ``nodes`` and ``counts`` hold those nodes' rows only."""

    nodes: Sequence[tuple[Any, Any]]
    counts: np.ndarray
    num_classes: int
    public_x: Any
    topology: Topology
    model_factory: Any
    recipe: Mapping[str, Any]
    steps_per_epoch: int
    seed: int
    device: Any = "cpu"

    def open(self, net: Any) -> Any:
        """The view on ``net`` (whose ``local_nodes`` are this spec's rows)."""
        import torch

        from ...kinds import DecentralizedView, readonly

        if len(net.local_nodes) != len(self.nodes):
            raise ValueError(f"the view holds {len(self.nodes)} nodes but its network {len(net.local_nodes)}")
        counts = np.asarray(self.counts)
        return DecentralizedView(
            nodes=NodeLocal([readonly(tuple(xy)) for xy in self.nodes], net, "data"), num_classes=int(self.num_classes),
            own_label_counts=NodeLocal([readonly(np.array(counts[r])) for r in range(len(counts))], net, "label counts"),
            public_x=self.public_x, net=net, topology=self.topology, model_factory=self.model_factory, recipe=dict(self.recipe),
            steps_per_epoch=int(self.steps_per_epoch), seed=int(self.seed), generator=torch.Generator().manual_seed(int(self.seed)),
            rng=np.random.default_rng(int(self.seed)), ensemble=NodeEnsemble, device=self.device, info={},
        )

    def open_in_worker(self, call: Any) -> Any:
        """The view in the contestant worker: its network is a ``RemoteNetwork`` over ``call``."""
        return self.open(RemoteNetwork(self.topology, call))


# ============================================================================================
# Dirichlet non-IID partition
# ============================================================================================


class PartitionError(ValueError):
    """The Dirichlet partition could not meet its minimum node size (α and n too extreme)."""


def dirichlet_partition(labels: np.ndarray, n_nodes: int, alpha: float, seed: int, *, min_node_frac: float = 0.5, max_tries: int = 10_000, group_size: int = 10) -> list[np.ndarray]:
    """Split sample indices over ``n_nodes`` nodes, label-skewed by a Dirichlet(α) prior.

    ``build_non_iid_by_dirichlet`` of the QG-DSGDm and IDKD code: the shuffled samples are cut
    into consecutive groups of ``group_size`` nodes' worth (the last group takes the rest); within
    a group of m nodes and T samples, for each class c in turn the class's samples are split by
    proportions p ~ Dir(α·1_m), where a node already holding T/m or more samples gets p = 0 (then
    renormalized); the draw is repeated until every node of the group holds at least
    ``min_node_frac`` · T/m samples (at most ``max_tries`` draws, else ``PartitionError``).
    Deterministic in ``seed``. Returns one sorted index array per node.
    """
    labels = np.asarray(labels)
    if n_nodes < 1:
        raise ValueError(f"n_nodes must be >= 1, got {n_nodes}")
    if not alpha > 0:
        raise ValueError(f"the Dirichlet alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    classes = np.unique(labels)
    n_groups = int(np.ceil(n_nodes / group_size))
    sizes = [group_size if g < n_groups - 1 else n_nodes - group_size * (n_groups - 1) for g in range(n_groups)]
    out: list[np.ndarray] = []
    start = 0
    for g, m in enumerate(sizes):
        stop = len(order) if g == n_groups - 1 else start + int(group_size / n_nodes * len(order))
        part = order[start:stop]
        start = stop
        T = len(part)
        need = int(min_node_frac * T / m)
        for attempt in range(max_tries):
            batch: list[list[int]] = [[] for _ in range(m)]
            for c in classes:
                idx_c = part[labels[part] == c]
                p = rng.dirichlet(np.full(m, float(alpha)))
                p = p * np.array([len(b) < T / m for b in batch], dtype=np.float64)
                if p.sum() <= 0:
                    continue
                p = p / p.sum()
                cuts = (np.cumsum(p) * len(idx_c)).astype(int)[:-1]
                for b, chunk in zip(batch, np.split(idx_c, cuts)):
                    b.extend(chunk.tolist())
            if min(len(b) for b in batch) >= need:
                break
        else:
            raise PartitionError(
                f"the Dirichlet partition (alpha={alpha}, {n_nodes} nodes) left a node under {min_node_frac:g} of the average size after {max_tries} draws; "
                "raise alpha, lower the node count or lower min_node_frac"
            )
        out.extend(np.sort(np.asarray(b, dtype=np.int64)) for b in batch)
    return out


def label_counts(labels: np.ndarray, parts: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
    """(n, C) int64: how many samples of each class each node holds."""
    labels = np.asarray(labels)
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts]).astype(np.int64)


# ============================================================================================
# vmapped node ensemble
# ============================================================================================


def soft_cross_entropy(logits: Any, targets: Any) -> Any:
    """-sum_c t_c log softmax(z)_c, averaged over the batch (one-hot targets: cross-entropy)."""
    import torch

    return -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()


class NodeEnsemble:
    """n copies of one architecture as stacked parameters, run together.

    ``params`` / ``buffers``: dicts name -> tensor (n, ...) (``torch.func.stack_module_state``).
    ``forward(params, x)`` with x (n, B, ...) gives (n, B, C) logits; ``loss_grads(params, x,
    targets)`` the per-node soft cross-entropy gradients (dict like ``params``) and the losses (n,),
    each node on its own batch. Both run ``functional_call`` under ``torch.func.vmap``; a module
    vmap cannot run (e.g. BatchNorm in training mode) falls back to a loop over the nodes, with
    the same numbers up to float rounding (``vmapped`` says which). ``to_modules(params)`` gives
    n independent ``nn.Module`` copies.
    """

    def __init__(self, models: Sequence[Any], *, vmap: bool = True) -> None:
        import copy

        import torch
        from torch.func import stack_module_state

        if not models:
            raise ValueError("NodeEnsemble needs at least one model")
        self.n = len(models)
        self.template = copy.deepcopy(models[0])
        params, buffers = stack_module_state(list(models))
        self.params = {k: v.detach().clone() for k, v in params.items()}
        self.buffers = {k: v.detach().clone() for k, v in buffers.items()}
        self.param_names = list(self.params)
        self.vmapped = bool(vmap)
        self._torch = torch

    @classmethod
    def from_factory(cls, factory: Any, n: int, **kw: Any) -> NodeEnsemble:
        """n nodes, each starting from ``factory()`` (the same seeded initialization)."""
        return cls([factory() for _ in range(n)], **kw)

    def _one(self, p: Any, b: Any, x: Any) -> Any:
        from torch.func import functional_call

        return functional_call(self.template, (p, b), (x,))

    def forward(self, params: Mapping[str, Any], x: Any) -> Any:
        torch = self._torch
        if self.vmapped:
            try:
                return torch.func.vmap(self._one)(dict(params), self.buffers, x)
            except Exception:  # noqa: BLE001 - a module vmap cannot run: loop instead
                self.vmapped = False
        return torch.stack([self._one({k: v[i] for k, v in params.items()}, {k: v[i] for k, v in self.buffers.items()}, x[i]) for i in range(len(x))])

    def loss_grads(self, params: Mapping[str, Any], x: Any, targets: Any) -> tuple[dict[str, Any], Any]:
        torch = self._torch

        def loss(p: Any, b: Any, xb: Any, tb: Any) -> Any:
            out = self._one(p, b, xb)
            val = soft_cross_entropy(out, tb)
            return val, val

        if self.vmapped:
            try:
                g, losses = torch.func.vmap(torch.func.grad(loss, has_aux=True))(dict(params), self.buffers, x, targets)
                return dict(g), losses.detach()
            except Exception:  # noqa: BLE001
                self.vmapped = False
        grads: dict[str, list[Any]] = {k: [] for k in params}
        losses = []
        for i in range(len(x)):
            p = {k: v[i].detach().requires_grad_(True) for k, v in params.items()}
            with torch.enable_grad():
                val, _ = loss(p, {k: v[i] for k, v in self.buffers.items()}, x[i], targets[i])
                gs = torch.autograd.grad(val, list(p.values()))
            for k, gk in zip(p, gs):
                grads[k].append(gk)
            losses.append(val.detach())
        return {k: torch.stack(v) for k, v in grads.items()}, torch.stack(losses)

    def to_modules(self, params: Mapping[str, Any] | None = None) -> list[Any]:
        import copy

        params = self.params if params is None else params
        out = []
        for i in range(len(next(iter(params.values())))):
            m = copy.deepcopy(self.template)
            state = {k: v[i].detach().clone() for k, v in params.items()}
            state.update({k: v[i].detach().clone() for k, v in self.buffers.items()})
            m.load_state_dict(state)
            out.append(m)
        return out
