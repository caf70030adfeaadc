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
  decentralized ...`` (or a profile whose setting ``execution`` is ``gloo``): the cell's contest
  is of kind ``node-models-gloo`` (``coreset_bench.contest``), whose runner (``run_views``)
  spawns n local processes, rendezvous through a file in a temporary directory, and hands the
  node models back as numbers to the contest's output check;
* across machines, with ``torchrun`` (which sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)::

      python -m coreset_bench.tracks.decentralized.gloo bundle --profile decentralized/quick@2 --plugin idkd \\
          --topology ring --alpha 0.1 --nodes 9 --repeat 0 cell.pt           # once, anywhere
      torchrun --nnodes M --nproc-per-node K --node-rank R --master-addr HOST --master-port 29500 \\
          -m coreset_bench.tracks.decentralized.gloo node cell.pt results/                 # on each machine
      python -m coreset_bench.tracks.decentralized.gloo evaluate cell.pt results/          # prints the metrics

  ``bundle`` writes ``cell.pt`` (public set, model factory, recipe and method; no test data, no
  hidden flags) and ``cell.pt.node<r>`` (node r's own data and label counts): a machine needs
  only the node files of its ranks, and each process loads only its own. Each rank writes
  ``results/node<rank>.pt`` (copy them to one place, or use a shared directory) and
  ``evaluate`` scores them exactly as the track does.

This is the structural form of the track's contract: a node process holds only its own data,
so it cannot read another node's data or parameters except through the process group. Inside a
track run the node processes also run under the contestant worker's guard (no dataset files,
no new processes, no ctypes). What it does not stop: a method that calls ``torch.distributed``
itself instead of ``view.net`` communicates uncounted (the harness's consistency check still
fails a cell whose nodes agree without counted traffic).
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

from .network import NodeContext, Topology, ViewSpec, payload_bytes


@dataclass
class GlooNetwork(NodeContext):
    """Byte-counted communication of node ``rank`` over an initialised gloo process group.
    ``sent_to[j]``: the bytes this node sent to node j. The process acts as its own node always."""

    topology: Topology
    rank: int
    bytes: dict[str, int] = field(default_factory=lambda: {"model": 0, "labels": 0, "meta": 0})

    def __post_init__(self) -> None:
        self.sent_to = np.zeros(self.n, dtype=np.int64)

    @property
    def n(self) -> int:
        return self.topology.n

    @property
    def local_nodes(self) -> list[int]:
        return [int(self.rank)]

    @property
    def acting(self) -> int | None:
        return int(self.rank)

    def _count(self, kind: str, nbytes: int, to: Sequence[int] = ()) -> None:
        self.bytes[kind] = self.bytes.get(kind, 0) + int(nbytes) * len(to)
        for j in to:
            self.sent_to[j] += int(nbytes)

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
            self._count(kind, payload_bytes(mine), nbrs)
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
        self._count(kind, payload_bytes(payloads[0]), nbrs)
        return [[(j, torch.load(io.BytesIO(got[j].numpy().tobytes()), weights_only=False)) for j in nbrs]]

    def allgather(self, small: Sequence[Any], kind: str = "meta") -> list[list[tuple[int, Any]]]:
        import torch.distributed as dist

        if len(small) != 1:
            raise ValueError(f"allgather: {len(small)} items; a node process sends one")
        everything: list[Any] = [None] * self.n
        dist.all_gather_object(everything, small[0])
        comp = self.topology.component(self.rank)
        self._count(kind, payload_bytes(small[0]), [j for j in comp if j != self.rank])
        return [[(j, everything[j]) for j in comp]]


# ---- one node process ---------------------------------------------------------------------------


def node_path(bundle_path: str | Path, rank: int) -> Path:
    """The file holding node ``rank``'s own data beside the cell's bundle."""
    return Path(f"{bundle_path}.node{rank}")


def _node_view(bundle: Mapping[str, Any], part: Mapping[str, Any], rank: int, net: GlooNetwork) -> Any:
    """Node ``rank``'s view: its own data and label counts (``part``) and the common parts."""
    if int(part["rank"]) != rank:
        raise ValueError(f"node file of rank {part['rank']} given to node process {rank}")
    spec = ViewSpec(
        nodes=[tuple(part["node"])], counts=np.asarray(part["counts"]).reshape(1, -1), num_classes=int(bundle["num_classes"]),
        public_x=bundle["public_x"], topology=net.topology, model_factory=bundle["model_factory"], recipe=dict(bundle["recipe"]),
        steps_per_epoch=int(bundle["steps_per_epoch"]), seed=int(bundle["seed"]), device="cpu",
    )
    return spec.open(net)


def run_node(bundle: Mapping[str, Any], part: Mapping[str, Any], rank: int, world: int, init_method: str, out_dir: Path) -> None:
    """Join the process group as node ``rank``, run the bundle's method for that node (its own
    data only: ``part``) and write ``out_dir/node<rank>.pt`` (its model's state, the bytes it
    sent, to whom, and its ``info`` as JSON). With ``bundle["protected"]`` (a track run) the
    contestant worker's guard is installed first: the method cannot open the dataset files,
    start processes or use ctypes."""
    import json

    import torch
    import torch.distributed as dist

    from ...data import contestant_guard

    torch.set_num_threads(int(os.environ.get("CORESET_BENCH_THREADS", "1") or 1))
    if world != int(bundle["topology_W"].shape[0]):
        raise ValueError(f"the cell has {bundle['topology_W'].shape[0]} nodes but the process group {world} processes; start one process per node")
    if int(part["rank"]) != rank:
        raise ValueError(f"node file of rank {part['rank']} given to node process {rank}")
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        net = GlooNetwork(Topology(str(bundle["topology_name"]), bundle["topology_W"]), rank)
        view = _node_view(bundle, part, rank, net)
        method = bundle["method"]
        violations: list[str] = []
        if bundle.get("protected") is not None:
            from ...contestant import _install_guard

            _install_guard(tuple(bundle["protected"]), violations, [method.name])
        with contestant_guard(method.name):
            out = method.distill(view)
        if violations:
            raise PermissionError(violations[0])
        if not isinstance(out, (list, tuple)) or len(out) != 1:
            raise ValueError(f"plugin {method.name!r} returned {len(out) if isinstance(out, (list, tuple)) else type(out).__name__} models in node process {rank}; expected one")
        state = {k: v.detach().cpu() for k, v in out[0].state_dict().items()}
        info = json.dumps(dict(view.info), sort_keys=True, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / f".node{rank}.pt.tmp"
        torch.save({"state": state, "bytes": {str(k): int(v) for k, v in net.bytes.items()}, "sent_to": torch.from_numpy(net.sent_to.copy()), "info": info, "rank": rank}, tmp)
        os.replace(tmp, out_dir / f"node{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawn_entry(rank: int, world: int, bundle_path: str, init_method: str, out_dir: str) -> None:
    """A spawned node process: it loads the common bundle and its own node's file, no other node's."""
    import torch

    bundle = torch.load(bundle_path, weights_only=False)
    part = torch.load(node_path(bundle_path, rank), weights_only=False)
    run_node(bundle, part, rank, world, init_method, Path(out_dir))


def bundle_from_spec(spec: ViewSpec, method: Any, protected: Sequence[str] | None = None, **extra: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What the node processes need from a cell's view (no test data, no hidden flags): the common
    bundle (public set, topology, model factory, recipe, seed, the method; ``extra`` keys beside)
    and one part per node (its own data and label counts), saved to separate files so that each
    process loads only its own."""
    topo = spec.topology
    common = {
        "public_x": spec.public_x.cpu(), "num_classes": int(spec.num_classes), "topology_name": topo.name, "topology_W": np.asarray(topo.W),
        "model_factory": spec.model_factory, "recipe": dict(spec.recipe), "steps_per_epoch": int(spec.steps_per_epoch), "seed": int(spec.seed), "method": method,
        "method_name": method.name, "method_params": dict(method.params), "protected": list(protected) if protected is not None else None, **extra,
    }
    counts = np.asarray(spec.counts)
    parts = [{"rank": r, "node": (x.cpu(), y.cpu()), "counts": counts[r].copy()} for r, (x, y) in enumerate(spec.nodes)]
    return common, parts


def make_bundle(track: Any, profile: Any, cell: Any, method: Any, w: Any, topo: Topology, ctx: Any, protected: Sequence[str] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``bundle_from_spec`` of the track's view of ``cell`` (the ``bundle`` command), with the
    profile, the cell's axes and repeat beside (``evaluate`` rebuilds the cell from them)."""
    spec = track.view_spec(profile, cell, w, topo, ctx)
    return bundle_from_spec(spec, method, protected, profile=profile.id, cell_axes=dict(cell.axes), repeat=cell.repeat)


def save_bundle(common: Mapping[str, Any], parts: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """``path`` (the common bundle) and ``path.node<r>`` (node r's own part) for every node."""
    import torch

    torch.save(dict(common), path)
    for p in parts:
        torch.save(dict(p), node_path(path, int(p["rank"])))


def collect(bundle: Mapping[str, Any], out_dir: Path) -> tuple[list[Any], dict[str, int], dict[str, Any], np.ndarray]:
    """The n node models (rebuilt from the factory), the summed byte counts, the merged info
    (per-node lists concatenated in rank order) and the traffic matrix (``traffic[i, j]``: bytes
    node i received from node j). Node files are read as weights only (no code runs)."""
    import torch

    states, sent, merged, traffic = collect_plain(bundle, out_dir)
    models = []
    for state in states:
        m = bundle["model_factory"]()
        m.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        models.append(m)
    return models, sent, merged, traffic


def collect_plain(bundle: Mapping[str, Any], out_dir: Path) -> tuple[list[dict[str, np.ndarray]], dict[str, int], dict[str, Any], np.ndarray]:
    """``collect`` in numbers: each node's state as arrays instead of a model."""
    import json

    import torch

    n = int(bundle["topology_W"].shape[0])
    states, sent, infos = [], {}, []
    traffic = np.zeros((n, n), dtype=np.int64)
    for r in range(n):
        path = Path(out_dir) / f"node{r}.pt"
        if not path.exists():
            raise FileNotFoundError(f"no result of node {r} ({path}); did every rank finish?")
        got = torch.load(path, weights_only=True)
        states.append({str(k): v.detach().cpu().numpy() for k, v in got["state"].items()})
        for k, v in got["bytes"].items():
            sent[k] = sent.get(k, 0) + int(v)
        traffic[:, r] += np.asarray(got["sent_to"], dtype=np.int64)
        infos.append(json.loads(got["info"]) if isinstance(got["info"], str) else dict(got["info"]))
    merged: dict[str, Any] = dict(infos[0]) if infos else {}
    for k in ("public_kept", "public_labelled", "nodes"):
        if all(k in i for i in infos):
            merged[k] = [x for i in infos for x in i[k]]
    return states, sent, merged, traffic


def run_views(method: Any, views: Sequence[ViewSpec], *, device: str, protected: Sequence[str]) -> tuple[list[Any], list[dict[str, Any]], list[float]]:
    """The runner of the contest kind ``node-models-gloo``: each view (a ``ViewSpec`` of all n
    nodes) run with one local process per node (spawned; file rendezvous; each under the
    contestant worker's guard, holding only its own node's data). Returns, per view, the node
    states, merged info, summed bytes and traffic matrix as numbers (``contest.NodeModels``
    reads them), no report, and the seconds. A node process that fails fails the cell, naming
    the plugin."""
    import tempfile
    import time

    import torch.multiprocessing as mp

    from ...cells import CellFailure
    from ...contestant import harness_env_withheld

    if not getattr(method, "multiprocess", False):
        raise CellFailure(f"plugin {method.name!r} does not declare multiprocess = True, so it cannot run one node per process; use execution 'simulate'")
    plain, seconds = [], []
    for spec in views:
        t0 = time.perf_counter()
        n = spec.topology.n
        with tempfile.TemporaryDirectory(prefix="coreset-bench-gloo-") as tmp:
            common, parts = bundle_from_spec(spec, method, protected)
            bpath = Path(tmp) / "cell.pt"
            save_bundle(common, parts, bpath)
            out = Path(tmp) / "out"
            try:
                with harness_env_withheld():  # spawned nodes inherit the environment: not the salt's variable nor the store's address
                    mp.start_processes(_spawn_entry, args=(n, str(bpath), f"file://{tmp}/rendezvous", str(out)), nprocs=n, join=True, start_method="spawn")
            except mp.ProcessRaisedException as exc:
                last = [ln for ln in str(exc).strip().splitlines() if ln.strip()][-1]
                raise CellFailure(f"plugin {method.name!r} failed in a node process (execution gloo): {last}") from None
            except mp.ProcessExitedException as exc:
                raise CellFailure(f"plugin {method.name!r}: a node process exited (execution gloo): {exc}") from None
            try:
                states, sent, info, traffic = collect_plain(common, out)
            except Exception as exc:  # noqa: BLE001 - what a node process wrote fails this cell only
                raise CellFailure(f"invalid output of plugin {method.name!r} (execution gloo): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
        plain.append({"states": states, "info": info, "bytes": sent, "traffic": traffic})
        seconds.append(time.perf_counter() - t0)
    return plain, [{} for _ in plain], seconds


# ---- command line (multi-machine runs with torchrun) ---------------------------------------------


def _cli(argv: Sequence[str]) -> int:
    import argparse
    import json

    import torch

    ap = argparse.ArgumentParser(prog="python -m coreset_bench.tracks.decentralized.gloo", description="Run a decentralized-track cell one node per process (gloo), e.g. across machines with torchrun.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bundle", help="write one cell's bundle (node data, public set, method; no test data)")
    b.add_argument("--profile", default=None, help="default: the track's default profile")
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

    from ... import registry
    from ...salt import ENV, SaltError, parse_salt

    def _salt() -> str:
        """The hidden-data salt of the cell (``CORESET_BENCH_HIDDEN_SALT``, as ``run --hidden-salt``;
        unset: public seeds): bundle and evaluate must build the public set the run built."""
        try:
            return parse_salt(os.environ.get(ENV), where=ENV) or ""
        except SaltError as exc:
            ap.error(str(exc))
    from ...cells import Cell, CellContext

    track = registry.track("decentralized")
    if a.cmd == "node":
        rank = int(os.environ["RANK"])
        bundle = torch.load(a.bundle, weights_only=False)
        run_node(bundle, torch.load(node_path(a.bundle, rank), weights_only=False), rank, int(os.environ["WORLD_SIZE"]), "env://", Path(a.out_dir))
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
        from .network import topology

        topo = topology(a.topology, a.nodes)
        w = track.world(profile, dataset, a.alpha, a.nodes, a.repeat, ctx)
        save_bundle(*make_bundle(track, profile, cell, method, w, topo, ctx), a.out)
        print(f"wrote {a.out} and {a.out}.node0 .. {a.out}.node{a.nodes - 1} (each node's own data: a machine needs only the files of its ranks); "
              f"start {a.nodes} processes (torchrun) with: -m coreset_bench.tracks.decentralized.gloo node {a.out} OUT_DIR")
        return 0
    bundle = torch.load(a.bundle, weights_only=False)
    profile = track.profile(bundle["profile"])
    method = bundle["method"]
    cell = Cell(track.name, profile.id, method.name, method.version, dict(method.params), bundle["cell_axes"], int(bundle["repeat"]))
    ctx = CellContext(Path("."), Path(os.environ.get("CORESET_BENCH_CACHE", ".coreset-bench-cache")), Path(a.data_dir) if a.data_dir else None, hidden_salt=_salt())
    ax = bundle["cell_axes"]
    w = track.world(profile, ax["dataset"], float(ax["alpha"]), int(ax["nodes"]), cell.repeat, ctx)
    models, sent, info, traffic = collect(bundle, Path(a.out_dir))
    res = track.score(profile, cell, method, models, sent, info, w, Topology(bundle["topology_name"], bundle["topology_W"]), ctx, train_s=0.0, how="gloo", traffic=traffic)
    print(json.dumps({"cell": cell.label(), "metrics": res.metrics}, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    sys.exit(_cli(sys.argv[1:]))
