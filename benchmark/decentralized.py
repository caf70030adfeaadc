"""The communication layer of decentralized learning: a fixed topology and a byte-counting network.

``Network`` is the only channel between the nodes of a ``DecentralizedView``: every exchange goes
through it and is counted in ``bytes`` (``model``, ``labels``, ``meta``, or any kind the caller
names). Nodes talk only to their neighbours (``W[i, j] > 0``, j != i); ``allgather`` reaches the
nodes connected to i by some path, so on the ``isolated`` topology nothing crosses between nodes.
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


@dataclass
class Network:
    """Byte-counted communication on ``topology``; ``bytes[kind]`` totals what was sent."""

    topology: Topology
    bytes: dict[str, int] = field(default_factory=lambda: {"model": 0, "labels": 0, "meta": 0})

    @property
    def n(self) -> int:
        return self.topology.n

    def _count(self, kind: str, nbytes: int) -> None:
        self.bytes[kind] = self.bytes.get(kind, 0) + int(nbytes)

    def gossip(self, tensors: Mapping[str, Any], kind: str = "model") -> dict[str, Any]:
        """One mixing step: ``out[name][i] = sum_j W[i, j] tensors[name][j]`` for tensors stacked
        over the nodes (first dimension n). Each node sends its slice to each neighbour."""
        import torch

        out = {}
        degrees = sum(len(self.topology.neighbours(i)) for i in range(self.n))
        for name, t in tensors.items():
            if t.shape[0] != self.n:
                raise ValueError(f"gossip: tensor {name!r} has {t.shape[0]} rows, expected one per node ({self.n})")
            W = torch.tensor(np.array(self.topology.W), dtype=t.dtype, device=t.device)
            out[name] = torch.einsum("ij,j...->i...", W, t)
            self._count(kind, degrees * payload_bytes(t[0]))
        return out

    def exchange(self, payloads: Sequence[Any], kind: str = "labels") -> list[list[tuple[int, Any]]]:
        """Node i receives ``(j, payloads[j])`` from every neighbour j (itself excluded)."""
        if len(payloads) != self.n:
            raise ValueError(f"exchange: {len(payloads)} payloads, expected one per node ({self.n})")
        received = []
        for i in range(self.n):
            got = [(j, payloads[j]) for j in self.topology.neighbours(i)]
            for _, p in got:
                self._count(kind, payload_bytes(p))
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
                    self._count(kind, payload_bytes(small[j]))
            out.append([(j, small[j]) for j in comp])
        return out
