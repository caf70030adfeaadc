"""The contestant worker: a contestant's ``select(view)`` (coreset selection) or ``distill(view)``
(decentralized distillation) runs in a separate process that never loaded the test split.

Each process that runs cells (the driver, or a worker of the process pool) starts, on first use,
one *contestant worker*: a fresh Python interpreter (``subprocess`` with the parent's
``sys.path``; no memory is inherited, unlike ``fork``) that is reused across cells and restarted
when it dies. The harness sends it the method (pickled by reference to its class) and the view
(pickled, so the worker holds its own copy), and gets back the method's output as numbers only
(arrays, and ``Selection.info`` as JSON text; a decentralized method's node models as their
state arrays and ``view.info`` as JSON text), which the track validates as before. During a
decentralized call the worker's ``view.net`` sends every gossip, exchange and allgather to the
harness, which mixes and counts in its own ``Network`` (numbers only, both ways). The harness
unpickles nothing else from the worker (a restricted unpickler admits numpy arrays, dtypes and
scalars), so a returned object cannot run code in the harness's process. The worker never calls the dataset registry for the harness, so no
test tensor exists in its memory whatever the method inspects (``gc.get_objects()``, module
globals such as ``coreset_bench.data._LOADED``, a track's split cache).

Before any plugin module is imported, the worker installs a Python audit hook
(``sys.addaudithook``; it cannot be removed) that, while the worker lives,

* refuses to open files under the dataset locations the harness names (``--data-dir``, an
  ``imagefolder`` root, the decoded-image cache, scikit-learn's bundled data) or the directories
  above them (a directory descriptor would reach the files through ``dir_fd``), to hard-link or
  rename them, and files of other processes under ``/proc``;
* refuses to start processes (``subprocess``, ``os.system``, ``os.exec*``, ``os.posix_spawn``,
  ``os.spawn*``, ``os.fork``) and to load or call native code through ``ctypes``.

A refused action raises ``LeakageError`` naming the plugin, and the cell fails with that message
even when the plugin catches the exception. The worker exits when its parent process dies (the
per-cell time-out of the process pool kills the parent of a hung contestant).

Not stopped: a plugin escaping Python through native code already loaded (e.g. a compiled
extension it ships that reads files or forks), or one that tampers with this guard's own Python
objects; and code a plugin module runs when it is imported, which happens in the harness's
process too (the registry loads every plugin there). What holds structurally is that the test
split is not in the worker's memory.
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .data import LeakageError

#: audit events that start a process
SPAWN_EVENTS = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "pty.spawn", "os.startfile",
})
#: audit events through which ctypes loads, finds or calls native code or reads raw memory
CTYPES_EVENTS = frozenset({
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.call_function", "ctypes.cdata",
    "ctypes.cdata/buffer", "ctypes.string_at", "ctypes.wstring_at",
})


class ContestantCrash(RuntimeError):
    """The contestant worker died while running a method."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised inside the contestant worker (shown as the cause)."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0]) if self.args else ""


def format_plugin_error(exc: BaseException, method_name: str) -> str:
    """One line: ``plugin 'NAME' failed: Type: message`` (or the message when it names the plugin)."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if f"plugin {method_name!r}" not in msg:  # a bare substring test is fooled by e.g. 'kaboom' in 'kaboom!'
        return f"plugin {method_name!r} failed: {type(exc).__name__}: {msg}"
    return f"{type(exc).__name__}: {msg}"


def protected_paths(dataset: str, data_dir: Path | None, cache_dir: Path | None) -> tuple[str, ...]:
    """The directories holding dataset files a contestant must not open (resolved, existing or not)."""
    out = []
    root = data_dir or os.environ.get("CORESET_BENCH_DATA", "data")
    out.append(Path(root).expanduser())
    name, _, arg = dataset.partition(":")
    if arg:
        out.append(Path(arg).expanduser())
    if cache_dir is not None:
        out.append(Path(cache_dir) / "datasets")
    try:  # scikit-learn's bundled data (digits), found without importing sklearn
        import importlib.util

        spec = importlib.util.find_spec("sklearn")
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                out += [Path(loc) / "datasets" / "data", Path(loc) / "datasets" / "images"]
    except (ImportError, ValueError):  # pragma: no cover - sklearn is a dependency
        pass
    return tuple(sorted({os.path.realpath(p) for p in out}))


# ---- the worker side ----------------------------------------------------------------------------


def _install_guard(protected: tuple[str, ...], violations: list[str], who: list[str]) -> None:
    """Install the audit hook (irrevocable). ``who[-1]`` names the plugin now running."""
    own = os.getpid()
    roots = tuple(p.rstrip(os.sep) + os.sep for p in protected)
    realpath, fsdecode = os.path.realpath, os.fsdecode

    def under(path: Any) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        try:
            p = realpath(fsdecode(path))
        except (TypeError, ValueError, OSError):
            return None
        if (p + os.sep).startswith(roots):
            return p
        # a directory above a dataset location: its descriptor would let a relative path with
        # dir_fd (which the audit event does not show) reach the files
        anc = p.rstrip(os.sep) + os.sep
        if any(r.startswith(anc) for r in roots) and os.path.isdir(p):
            return p
        if p.startswith("/proc/"):
            part = p.split("/")[2]
            if part.isdigit() and int(part) != own:
                return p
        return None

    def refuse(what: str) -> None:
        msg = f"plugin {who[-1] if who else '?'!r} tried to {what} while it was being evaluated; a method may only use the view it is given (the contestant guard refuses it)"
        violations.append(msg)
        raise LeakageError(msg)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "coreset_bench.leakage":  # data.resolve()/make_splits() refused (they raise)
            violations.append(str(args[0]))
        elif event == "open":
            hit = under(args[0])
            if hit:
                refuse(f"open {hit} (dataset files)")
        elif event in ("os.link", "os.rename", "os.symlink"):
            hit = under(args[0])
            if hit:
                refuse(f"{event.split('.')[1]} {hit} (dataset files)")
        elif event in SPAWN_EVENTS:
            refuse(f"start a process ({event})")
        elif event in CTYPES_EVENTS:
            refuse(f"use native code through ctypes ({event})")
        elif event in ("os.kill", "os.killpg") and args and args[0] not in (own, 0):
            refuse(f"signal another process ({event})")

    sys.addaudithook(hook)
    try:  # the C entry point of subprocess is not audited; take it out of reach of Python code
        import _posixsubprocess

        def fork_exec(*a: Any, **k: Any) -> Any:
            refuse("start a process (_posixsubprocess.fork_exec)")

        _posixsubprocess.fork_exec = fork_exec  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - not POSIX
        pass


def _main(read_fd: int, write_fd: int, parent: int) -> None:
    """Entry point of the worker process (see ``ContestantWorker``)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the harness's to handle; it stops us
    rx, tx = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    from .lifetime import die_with_parent

    die_with_parent(parent, interval=0.2)  # before the guard: it arms PR_SET_PDEATHSIG through ctypes
    setup = pickle.loads(rx.recv_bytes())
    import warnings

    import numpy as np  # noqa: F401 - harness imports before the guard
    import torch

    # views hand out read-only arrays; a method that wraps one in a tensor only to read it
    # (torch.as_tensor) need not hear about it
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    if str(setup["device"]).startswith("cuda"):
        torch.cuda.init()
    violations: list[str] = []
    who: list[str] = []
    _install_guard(tuple(setup["protected"]), violations, who)
    from . import data as D  # plugins load lazily (the registry loads them on first use)

    def rpc(payload: Any) -> Any:
        """A request to the harness during the call (e.g. the decentralized track's network);
        the harness answers with numbers only, or with an error raised here."""
        tx.send_bytes(pickle.dumps(("rpc", payload), protocol=4))
        status, value = pickle.loads(rx.recv_bytes())
        if status == "error":
            kind, msg = value
            raise {"ValueError": ValueError, "TypeError": TypeError}.get(kind, RuntimeError)(msg)
        return value

    while True:
        try:
            blob = rx.recv_bytes()
        except (EOFError, OSError):
            return
        name = "?"
        try:
            req = pickle.loads(blob)
            method, call, view = req["method"], req["call"], req["view"]
            name = method.name or type(method).__name__
            _set_rng(req["rng"])
            torch.set_num_threads(int(req["threads"]))
            del violations[:]
            who.append(name)
            try:
                if hasattr(view, "open_in_worker"):  # a view whose parts talk to the harness (its network)
                    view = view.open_in_worker(rpc)
                with D.contestant_guard(name):
                    raw = getattr(method, call)(view)
            finally:
                who.pop()
            if violations:  # refused, and the plugin caught the error: the cell fails all the same
                reply: tuple[Any, ...] = ("error", "LeakageError: " + violations[0], "(the plugin caught the guard's LeakageError and returned)")
            else:
                output = req.get("output", call)
                plain = _PLAIN_VIEW[output](raw, name, view) if output in _PLAIN_VIEW else _PLAIN[output](raw, name)
                reply = ("ok", plain, _get_rng())
            out = pickle.dumps(reply, protocol=4)  # protocol 4: arrays come back writable
        except BaseException as exc:  # noqa: BLE001 - a plugin failure fails its cell only
            if violations:
                msg = "LeakageError: " + violations[0]
            elif isinstance(exc, ContestantOutputError):
                msg = str(exc)
            else:
                msg = format_plugin_error(exc, name)
            try:
                out = pickle.dumps(("error", msg, traceback.format_exc()))
            except Exception:  # noqa: BLE001
                out = pickle.dumps(("error", msg, ""))
        tx.send_bytes(out)


def _plain_array(value: Any, what: str, name: str) -> Any:
    import numpy as np

    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001
        raise ContestantOutputError(f"invalid output of plugin {name!r}: its {what} are not an array ({type(exc).__name__})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ContestantOutputError(f"invalid output of plugin {name!r}: its {what} are of dtype {arr.dtype}; expected numbers")
    return np.ascontiguousarray(arr)


def _plain_selection(raw: Any, name: str) -> dict[str, Any]:
    """A selection as numbers only (arrays and JSON text): what comes back to the harness, which
    unpickles nothing else (a plugin object could run code in the harness's process)."""
    import json

    from .kinds import Selection

    sel = raw if isinstance(raw, Selection) else Selection(indices=raw)
    try:
        info = json.dumps(dict(sel.info or {}), sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise ContestantOutputError(f"invalid output of plugin {name!r}: Selection.info is not a JSON-serialisable dict ({exc})") from None
    return {
        "indices": _plain_array(sel.indices, "indices", name),
        "weights": _plain_array(sel.weights, "weights", name),
        "scores": _plain_array(sel.scores, "scores", name),
        "info": info,
    }


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars, tensors
        return value.tolist()
    return str(value)


def _plain_node_models(raw: Any, name: str, view: Any) -> dict[str, Any]:
    """A decentralized method's models as numbers only: each node's ``state_dict`` as arrays, and
    the view's ``info`` as JSON text (the harness rebuilds the models from its own factory)."""
    import json

    import torch

    prefix = f"invalid output of plugin {name!r}"
    if not isinstance(raw, (list, tuple)):
        raise ContestantOutputError(f"{prefix}: distill() returned {type(raw).__name__}, not a list of one model per node")
    states = []
    for i, m in enumerate(raw):
        if not isinstance(m, torch.nn.Module):
            raise ContestantOutputError(f"{prefix}: node {i}'s model is a {type(m).__name__}, not a torch.nn.Module")
        states.append({str(k): _plain_array(v, f"node {i}'s {k}", name) for k, v in m.state_dict().items()})
    try:
        info = json.dumps(dict(getattr(view, "info", None) or {}), sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ContestantOutputError(f"{prefix}: view.info is not a JSON-serialisable dict ({exc})") from None
    return {"states": states, "info": info}


def _from_plain(call: str, out: Any) -> Any:
    import json

    if call == "select":
        from .kinds import Selection

        return Selection(indices=out["indices"], weights=out["weights"], scores=out["scores"], info=json.loads(out["info"]))
    if call == "node-models":
        return {"states": out["states"], "info": json.loads(out["info"])}
    raise ValueError(f"unknown contestant call {call!r}")  # pragma: no cover


#: how the worker turns a call's raw output into numbers: ``(raw, plugin name)``, or with the
#: view as well (``_PLAIN_VIEW``: a decentralized method's ``view.info`` comes back with its models)
_PLAIN = {"select": _plain_selection}
_PLAIN_VIEW = {"node-models": _plain_node_models}


class ContestantOutputError(ValueError):
    """A contestant's output is not made of numbers (raised in the worker, reported in the cell)."""


def _get_rng() -> tuple[Any, ...]:
    import random

    import numpy as np
    import torch

    return (random.getstate(), np.random.get_state(), torch.get_rng_state().numpy())


def _set_rng(state: tuple[Any, ...]) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(torch.from_numpy(np.array(state[2], dtype=np.uint8)))


#: what the harness unpickles from the worker: numpy arrays, dtypes and scalars (plus plain
#: Python values, which need no lookup); anything else is refused
_SAFE_GLOBALS = frozenset({
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
})


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module == "numpy" and name.endswith("DType")) or module == "numpy.dtypes":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"the contestant worker sent a {module}.{name} object; only numbers and arrays come back")


def _safe_loads(blob: bytes) -> Any:
    return _SafeUnpickler(io.BytesIO(blob)).load()


# ---- the harness side ---------------------------------------------------------------------------

_BOOT = (
    "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); "
    "from coreset_bench.contestant import _main; _main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))"
)


@dataclass
class ContestantWorker:
    """One worker process (see the module docstring); use ``call`` through ``run_contestant``."""

    device: str
    protected: tuple[str, ...]

    def __post_init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        path = [p for p in sys.path if p]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, __import__("json").dumps(path), str(to_child_r), str(from_child_w), str(os.getpid())],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.owner = os.getpid()
        self.tx = Connection(to_child_w, readable=False)
        self.rx = Connection(from_child_r, writable=False)
        self.tx.send_bytes(pickle.dumps({"device": self.device, "protected": self.protected}))

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def call(self, method: Any, call: str, view: Any, threads: int, *, output: str | None = None, serve: Any = None) -> Any:
        import random

        import numpy as np
        import torch

        name = method.name or type(method).__name__
        output = output or call
        try:
            blob = pickle.dumps(
                {"method": method, "call": call, "output": output, "view": view, "threads": threads,
                 "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state())},
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        except Exception as exc:  # noqa: BLE001
            raise ContestantError(
                f"plugin {name!r} cannot be sent to the contestant worker ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"define its method class at module level of an importable module"
            ) from None
        reply: Any = None
        bad: Exception | None = None
        try:
            self.tx.send_bytes(blob)
            while True:
                answer = self.rx.recv_bytes()
                try:
                    reply = _safe_loads(answer)
                except Exception as exc:  # noqa: BLE001 - whatever the worker sent, it fails this cell only
                    bad = exc
                    break
                if not (serve is not None and isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "rpc"):
                    break
                try:  # a request of the method's view (e.g. its network), answered in numbers
                    result: tuple[Any, Any] = ("ok", serve(reply[1]))
                except Exception as exc:  # noqa: BLE001 - a bad request fails inside the method, as in-process
                    result = ("error", (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                self.tx.send_bytes(pickle.dumps(result, protocol=4))
        except (EOFError, OSError):
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            self.close()
            raise ContestantCrash(f"plugin {name!r} crashed the contestant worker process (exit code {code})") from None
        except BaseException:  # Ctrl-C while waiting: the answer would be read by the next cell
            self.close()
            raise
        try:
            if bad is not None:
                raise bad
            if reply[0] == "ok":
                out = _from_plain(output, reply[1])
                _set_rng(reply[2])
                return out
            msg, tb = str(reply[1]), str(reply[2])
        except Exception as exc:  # noqa: BLE001 - whatever the worker sent, it fails this cell only
            self.close()  # a worker that sends anything else is not trusted with another cell
            raise ContestantError(f"plugin {name!r} sent back an invalid answer from the contestant worker ({type(exc).__name__}: {exc})") from None
        raise ContestantError(msg) from RemoteTraceback(tb)

    def close(self) -> None:
        for c in (self.tx, self.rx):
            try:
                c.close()
            except OSError:
                pass
        if self.owner == os.getpid() and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class ContestantError(RuntimeError):
    """A contestant failed in its worker; the message is the one-line reason for the cell."""


_WORKER: list[ContestantWorker] = []


def prestart(*, device: str, protected: Sequence[str]) -> ContestantWorker:
    """This process's contestant worker for ``(device, protected)``, started now if needed (it
    boots while the harness computes signals, so the first selection does not wait for it)."""
    want = (str(device), tuple(protected))
    w = _WORKER[0] if _WORKER else None
    if w is not None and (not w.alive() or (w.device, w.protected) != want):
        w.close()  # in a forked child: closes only the inherited pipe ends
        _WORKER.clear()
        w = None
    if w is None:
        w = ContestantWorker(*want)
        _WORKER.append(w)
    return w


def run_contestant(method: Any, call: str, view: Any, *, device: str, protected: Sequence[str], output: str | None = None, serve: Any = None) -> Any:
    """``getattr(method, call)(view)`` in this process's contestant worker; returns the output as
    the harness-side value of ``output`` (default: ``call``; ``"node-models"``: a decentralized
    method's per-node states and info).

    ``serve``: answers the requests the worker sends during the call (``view.open_in_worker``
    builds the worker's view around them; the decentralized track's ``NetworkService``): each
    request and answer is numbers only, and an exception from ``serve`` is raised in the worker.

    Raises ``ContestantError`` (a plugin exception or a guard refusal, one-line message naming the
    plugin) or ``ContestantCrash`` (the worker died; the next call starts a new one).
    """
    import torch

    w = prestart(device=device, protected=protected)
    try:
        return w.call(method, call, view, torch.get_num_threads(), output=output, serve=serve)
    except ContestantCrash:
        _WORKER.clear()
        raise


def shutdown() -> None:
    """Stop this process's contestant worker (it also exits when this process dies)."""
    for w in _WORKER:
        if w.owner == os.getpid():
            w.close()
    _WORKER.clear()


import atexit  # noqa: E402

atexit.register(shutdown)
