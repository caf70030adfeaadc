"""Real multi-process execution of the decentralized track: one process per node, gossip over
``torch.distributed`` with the gloo backend (point-to-point ``isend``/``irecv`` to the topology's
neighbours; gloo ships with the torch wheel, on CPU).

``GlooNetwork`` is ``decentralized.Network`` for one node per process: ``local_nodes`` is
``[rank]``, tensors carry one row, and ``gossip`` mixes ``Σ_j W[rank, j] x_j`` over the rank
and its neighbours in ascending j, the order of the in-process simulation, so a method that
seeds its nodes by global id (all four built-ins: ``multiprocess = True``) gives the same
parameters either way (tests/test_gossip_dist.py). ``bytes`` counts what *this* node sent; the
harness sums the ranks, which equals the simulation's count.

Three ways to run it:

* inside a run: ``CORESET_BENCH_DECENTRALIZED_EXECUTION=gloo coreset-bench run --track
  decentralized ...`` (or a profile whose setting ``execution`` is ``gloo``): every cell spawns
  n local processes (``run_cell_multiprocess``), rendezvous through a file in a temporary
  directory;
* across machines, with ``torchrun`` (which sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)::

      python -m coreset_bench.gossip_dist bundle --profile decentralized/quick@1 --plugin idkd \\
          --topology ring --alpha 0.1 --nodes 9 --repeat 0 cell.pt           # once, anywhere
      torchrun --nnodes M --nproc-per-node K --node-rank R --master-addr HOST --master-port 29500 \\
          -m coreset_bench.gossip_dist node cell.pt results/                 # on each machine
      python -m coreset_bench.gossip_dist evaluate cell.pt results/          # prints the metrics

  ``bundle`` holds the cell's node data, public set and method (no test data); each rank writes
  ``results/node<rank>.pt`` (copy them to one place, or use a shared directory) and
  ``evaluate`` scores them exactly as the track does.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .decentralized import Topology, payload_bytes


@dataclass
class GlooNetwork:
    """Byte-counted communication of node ``rank`` over an initialised gloo process group."""

    topology: Topology
    rank: int
    bytes: dict[str, int] = field(default_factory=lambda: {"model": 0, "labels": 0, "meta": 0})

    @property
    def n(self) -> int:
        return self.topology.n

    @property
    def local_nodes(self) -> list[int]:
        return [int(self.rank)]

    def _count(self, kind: str, nbytes: int) -> None:
        self.bytes[kind] = self.bytes.get(kind, 0) + int(nbytes)

    def gossip(self, tensors: Mapping[str, Any], kind: str = "model") -> dict[str, Any]:
        import torch
        import torch.distributed as dist

        nbrs = self.topology.neighbours(self.rank)
        Wrow = torch.tensor(np.asarray(self.topology.W)[self.rank])
        out = {}
        for name, t in tensors.items():
            if t.shape[0] != 1:
                raise ValueError(f"gossip: tensor {name!r} has {t.shape[0]} rows; a node process holds one")
            mine = t[0].detach().contiguous()
            bufs = {j: torch.empty_like(mine) for j in nbrs}
            reqs = [dist.isend(mine, dst=j) for j in nbrs] + [dist.irecv(bufs[j], src=j) for j in nbrs]
            for r in reqs:
                r.wait()
            bufs[self.rank] = mine
            acc = torch.zeros_like(mine)
            w = Wrow.to(dtype=mine.dtype)
            for j in sorted(bufs):
                acc += w[j] * bufs[j]
            out[name] = acc.unsqueeze(0)
            self._count(kind, len(nbrs) * payload_bytes(mine))
        return out

    def exchange(self, payloads: Sequence[Any], kind: str = "labels") -> list[list[tuple[int, Any]]]:
        import torch
        import torch.distributed as dist

        if len(payloads) != 1:
            raise ValueError(f"exchange: {len(payloads)} payloads; a node process sends one")
        nbrs = self.topology.neighbours(self.rank)
        buf = io.BytesIO()
        torch.save(payloads[0], buf)
        data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        size = torch.tensor([len(data)], dtype=torch.int64)
        sizes = {j: torch.zeros(1, dtype=torch.int64) for j in nbrs}
        reqs = [dist.isend(size, dst=j) for j in nbrs] + [dist.irecv(sizes[j], src=j) for j in nbrs]
        for r in reqs:
            r.wait()
        got = {j: torch.empty(int(sizes[j].item()), dtype=torch.uint8) for j in nbrs}
        reqs = [dist.isend(data, dst=j) for j in nbrs] + [dist.irecv(got[j], src=j) for j in nbrs]
        for r in reqs:
            r.wait()
        self._count(kind, len(nbrs) * payload_bytes(payloads[0]))
        return [[(j, torch.load(io.BytesIO(got[j].numpy().tobytes()), weights_only=False)) for j in nbrs]]

    def allgather(self, small: Sequence[Any], kind: str = "meta") -> list[list[tuple[int, Any]]]:
        import torch.distributed as dist

        if len(small) != 1:
            raise ValueError(f"allgather: {len(small)} items; a node process sends one")
        everything: list[Any] = [None] * self.n
        dist.all_gather_object(everything, small[0])
        comp = self.topology.component(self.rank)
        self._count(kind, (len(comp) - 1) * payload_bytes(small[0]))
        return [[(j, everything[j]) for j in comp]]


# ---- one node process ---------------------------------------------------------------------------


def _node_view(bundle: Mapping[str, Any], rank: int, net: GlooNetwork) -> Any:
    import torch

    from .decentralized import NodeEnsemble
    from .kinds import DecentralizedView

    counts = np.asarray(bundle["counts"])[[rank]].copy()
    counts.setflags(write=False)
    seed = int(bundle["seed"])
    return DecentralizedView(
        nodes=(tuple(bundle["nodes"][rank]),), num_classes=int(bundle["num_classes"]), own_label_counts=counts, public_x=bundle["public_x"], net=net,
        topology=net.topology, model_factory=bundle["model_factory"], recipe=dict(bundle["recipe"]), steps_per_epoch=int(bundle["steps_per_epoch"]),
        seed=seed, generator=torch.Generator().manual_seed(seed), rng=np.random.default_rng(seed), ensemble=NodeEnsemble, device="cpu", info={},
    )


def run_node(bundle: Mapping[str, Any], rank: int, world: int, init_method: str, out_dir: Path) -> None:
    """Join the process group as node ``rank``, run the bundle's method for that node and write
    ``out_dir/node<rank>.pt`` (its model's state, the bytes it sent and its ``info``)."""
    import torch
    import torch.distributed as dist

    from .data import contestant_guard

    torch.set_num_threads(int(os.environ.get("CORESET_BENCH_THREADS", "1") or 1))
    if world != int(bundle["topology_W"].shape[0]):
        raise ValueError(f"the cell has {bundle['topology_W'].shape[0]} nodes but the process group {world} processes; start one process per node")
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        net = GlooNetwork(Topology(str(bundle["topology_name"]), bundle["topology_W"]), rank)
        view = _node_view(bundle, rank, net)
        method = bundle["method"]
        with contestant_guard(method.name):
            out = method.distill(view)
        if not isinstance(out, (list, tuple)) or len(out) != 1:
            raise ValueError(f"plugin {method.name!r} returned {len(out) if isinstance(out, (list, tuple)) else type(out).__name__} models in node process {rank}; expected one")
        state = {k: v.detach().cpu() for k, v in out[0].state_dict().items()}
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".node{rank}.pt.tmp"
        torch.save({"state": state, "bytes": dict(net.bytes), "info": dict(view.info), "rank": rank}, tmp)
        os.replace(tmp, out_dir / f"node{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawn_entry(rank: int, world: int, bundle_path: str, init_method: str, out_dir: str) -> None:
    import torch

    bundle = torch.load(bundle_path, weights_only=False)
    run_node(bundle, rank, world, init_method, Path(out_dir))


def make_bundle(track: Any, profile: Any, cell: Any, method: Any, w: Any, topo: Topology, ctx: Any) -> dict[str, Any]:
    """Everything a node process needs (no test data): node data, public set, partition counts,
    topology, model factory, recipe, seed and the method itself."""
    view = track.make_view(profile, cell, w, topo, None, ctx)
    return {
        "nodes": [(x.cpu(), y.cpu()) for x, y in w.nodes], "counts": np.asarray(w.counts), "public_x": w.public_x.cpu(), "num_classes": w.num_classes,
        "topology_name": topo.name, "topology_W": np.asarray(topo.W), "model_factory": view.model_factory, "recipe": dict(view.recipe),
        "steps_per_epoch": view.steps_per_epoch, "seed": cell.seed, "method": method, "profile": profile.id, "cell_axes": dict(cell.axes),
        "repeat": cell.repeat, "method_name": method.name, "method_params": dict(method.params),
    }


def collect(bundle: Mapping[str, Any], out_dir: Path) -> tuple[list[Any], dict[str, int], dict[str, Any]]:
    """The n node models (rebuilt from the factory), the summed byte counts and the merged info
    (per-node lists concatenated in rank order)."""
    import torch

    n = int(bundle["topology_W"].shape[0])
    models, sent, infos = [], {}, []
    for r in range(n):
        path = Path(out_dir) / f"node{r}.pt"
        if not path.exists():
            raise FileNotFoundError(f"no result of node {r} ({path}); did every rank finish?")
        got = torch.load(path, weights_only=False)
        m = bundle["model_factory"]()
        m.load_state_dict(got["state"])
        models.append(m)
        for k, v in got["bytes"].items():
            sent[k] = sent.get(k, 0) + int(v)
        infos.append(got["info"])
    merged: dict[str, Any] = dict(infos[0]) if infos else {}
    for k in ("public_kept", "public_labelled", "nodes"):
        if all(k in i for i in infos):
            merged[k] = [x for i in infos for x in i[k]]
    return models, sent, merged


def run_cell_multiprocess(track: Any, profile: Any, cell: Any, method: Any, w: Any, topo: Topology, ctx: Any) -> tuple[list[Any], dict[str, int], dict[str, Any]]:
    """Run one cell with one local process per node (spawned; file rendezvous); returns what
    ``collect`` returns. A node process that fails fails the cell, naming the plugin."""
    import tempfile

    import torch
    import torch.multiprocessing as mp

    from .tracks.base import CellFailure

    with tempfile.TemporaryDirectory(prefix="coreset-bench-gloo-") as tmp:
        bundle = make_bundle(track, profile, cell, method, w, topo, ctx)
        bpath = Path(tmp) / "cell.pt"
        torch.save(bundle, bpath)
        out = Path(tmp) / "out"
        try:
            mp.start_processes(_spawn_entry, args=(topo.n, str(bpath), f"file://{tmp}/rendezvous", str(out)), nprocs=topo.n, join=True, start_method="spawn")
        except mp.ProcessRaisedException as exc:
            last = [ln for ln in str(exc).strip().splitlines() if ln.strip()][-1]
            raise CellFailure(f"plugin {method.name!r} failed in a node process (execution gloo): {last}") from None
        except mp.ProcessExitedException as exc:
            raise CellFailure(f"plugin {method.name!r}: a node process exited (execution gloo): {exc}") from None
        return collect(bundle, out)


# ---- command line (multi-machine runs with torchrun) ---------------------------------------------


def _cli(argv: Sequence[str]) -> int:
    import argparse
    import json

    import torch

    ap = argparse.ArgumentParser(prog="python -m coreset_bench.gossip_dist", description="Run a decentralized-track cell one node per process (gloo), e.g. across machines with torchrun.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bundle", help="write one cell's bundle (node data, public set, method; no test data)")
    b.add_argument("--profile", default="decentralized/quick@1")
    b.add_argument("--plugin", required=True)
    b.add_argument("--param", action="append", default=[], help="KEY=VALUE method parameter")
    b.add_argument("--dataset", default=None)
    b.add_argument("--topology", required=True)
    b.add_argument("--alpha", type=float, required=True)
    b.add_argument("--nodes", type=int, required=True)
    b.add_argument("--repeat", type=int, default=0)
    b.add_argument("--data-dir", default=None)
    b.add_argument("out")
    nd = sub.add_parser("node", help="run this process's node (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the environment, as torchrun sets them)")
    nd.add_argument("bundle")
    nd.add_argument("out_dir")
    ev = sub.add_parser("evaluate", help="score the node results as the track does and print the metrics as JSON")
    ev.add_argument("bundle")
    ev.add_argument("out_dir")
    ev.add_argument("--data-dir", default=None)
    a = ap.parse_args(argv)

    from . import registry
    from .salt import ENV, SaltError, parse_salt

    def _salt() -> str:
        """The hidden-data salt of the cell (``CORESET_BENCH_HIDDEN_SALT``, as ``run --hidden-salt``;
        unset: public seeds): bundle and evaluate must build the public set the run built."""
        try:
            return parse_salt(os.environ.get(ENV), where=ENV) or ""
        except SaltError as exc:
            ap.error(str(exc))
    from .tracks.base import Cell, CellContext

    track = registry.track("decentralized")
    if a.cmd == "node":
        bundle = torch.load(a.bundle, weights_only=False)
        run_node(bundle, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", Path(a.out_dir))
        return 0
    if a.cmd == "bundle":
        profile = track.profile(a.profile)
        method = registry.method(a.plugin)
        if a.param:
            method = method.with_params(**dict(p.split("=", 1) for p in a.param))
        dataset = a.dataset or profile.axes["dataset"][0]
        axes = {"dataset": dataset, "topology": a.topology, "alpha": a.alpha, "nodes": a.nodes}
        cell = Cell(track.name, profile.id, method.name, method.version, dict(method.params), axes, a.repeat)
        ctx = CellContext(Path("."), Path(os.environ.get("CORESET_BENCH_CACHE", ".coreset-bench-cache")), Path(a.data_dir) if a.data_dir else None, hidden_salt=_salt())
        from .decentralized import topology

        topo = topology(a.topology, a.nodes)
        w = track.world(profile, dataset, a.alpha, a.nodes, a.repeat, ctx)
        torch.save(make_bundle(track, profile, cell, method, w, topo, ctx), a.out)
        print(f"wrote {a.out}: {a.nodes} nodes; start {a.nodes} processes (torchrun) with: -m coreset_bench.gossip_dist node {a.out} OUT_DIR")
        return 0
    bundle = torch.load(a.bundle, weights_only=False)
    profile = track.profile(bundle["profile"])
    method = bundle["method"]
    cell = Cell(track.name, profile.id, method.name, method.version, dict(method.params), bundle["cell_axes"], int(bundle["repeat"]))
    ctx = CellContext(Path("."), Path(os.environ.get("CORESET_BENCH_CACHE", ".coreset-bench-cache")), Path(a.data_dir) if a.data_dir else None, hidden_salt=_salt())
    ax = bundle["cell_axes"]
    w = track.world(profile, ax["dataset"], float(ax["alpha"]), int(ax["nodes"]), cell.repeat, ctx)
    models, sent, info = collect(bundle, Path(a.out_dir))
    res = track.score(profile, cell, method, models, sent, info, w, Topology(bundle["topology_name"], bundle["topology_W"]), ctx, train_s=0.0, how="gloo")
    print(json.dumps({"cell": cell.label(), "metrics": res.metrics}, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    sys.exit(_cli(sys.argv[1:]))
