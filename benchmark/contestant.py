"""The contestant worker: a contestant runs in a separate process that holds only its view.

Each process that runs cells (the driver, or a worker of the process pool) starts, on first use,
one *contestant worker*: a fresh Python interpreter (``subprocess`` with the parent's
``sys.path``; no memory is inherited, unlike ``fork``) that is reused across the cells of one
method, replaced when another method runs (``prestart``'s ``tenant``: nothing a method leaves in
its worker reaches another method's cells) and restarted when it dies. The harness
(``coreset_bench.contest``) sends it the method (pickled by reference to its class) and the
views (pickled, so the worker holds its own copy; models as their registered architecture and
weights, ``_ViewPickler``), and gets back the method's outputs as numbers only (arrays, a model
as its architecture and weights, JSON text), which the contest checks. The harness unpickles
nothing else from the worker (a restricted unpickler admits numpy arrays, dtypes and scalars),
so a returned object cannot run code in the harness's process. The worker never calls the
dataset registry or a track for the harness, so no test tensor, membership truth or clean label
exists in its memory whatever the method inspects (``gc.get_objects()``, module globals such as
``coreset_bench.data._LOADED``, a track's memo: the worker's tracks are fresh, empty objects).

A *served* contest (a kind with ``Kind.served``, e.g. the decentralized track's ``node-models``)
also carries a harness-side service: in the worker ``view.open_in_worker(rpc)`` rebuilds the
view's live parts around requests to the harness (the decentralized view's network: every
gossip, exchange and allgather is mixed and counted by the harness's own ``Network``), which
the harness answers while it waits for the contestant, numbers only both ways. ``output`` names
how the result comes back when it is not the protocol function's own (``"node-models"``: each
node's model as its state arrays, ``view.info`` as JSON text).

Before any plugin module is imported, the worker installs a Python audit hook
(``sys.addaudithook``; it cannot be removed) that, while the worker lives,

* refuses to open files under the dataset locations the harness names (``--data-dir``, an
  ``imagefolder`` root, the decoded-image cache, scikit-learn's bundled data) and the track's
  private cache (``Track.private_cache``: e.g. the privacy tracks' model banks) or the directories
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

import contextlib
import io
import os
import pickle
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import MappingProxyType
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


#: in a worker started with ``blas``: the BLAS libraries' thread counts once limited, before any
#: plugin ran (threadpoolctl reads them through ctypes, which the guard refuses afterwards)
BLAS_AT_BOOT: list[int] = []


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


#: environment variables a contestant process never inherits: the hidden-data salt
#: (``run --hidden-salt``'s variable) and the results store's address (a server URL may carry
#: its password; the store holds the salt)
HARNESS_ONLY_ENV = ("CORESET_BENCH_HIDDEN_SALT", "CORESET_BENCH_DB")


def worker_environ() -> dict[str, str]:
    """This process's environment without ``HARNESS_ONLY_ENV``: what a contestant process starts with."""
    return {k: v for k, v in os.environ.items() if k not in HARNESS_ONLY_ENV}


@contextlib.contextmanager
def harness_env_withheld() -> Iterator[None]:
    """Take ``HARNESS_ONLY_ENV`` out of ``os.environ`` while contestant processes are started
    with the inherited environment (``torch.multiprocessing`` spawn), then put it back."""
    saved = {k: os.environ.pop(k) for k in HARNESS_ONLY_ENV if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


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
    from urllib.parse import unquote

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
                refuse(f"open {hit} (protected: dataset files or a track's hidden data)")
        elif event == "sqlite3.connect":  # SQLite opens its file in C, unseen by the "open" event (a results store holds the salt)
            db = os.fsdecode(args[0]) if args and isinstance(args[0], (str, bytes, os.PathLike)) else ""
            if db.startswith("file:"):  # a URI (uri=True): file:PATH?query, file:///PATH
                db = db[5:].split("?", 1)[0].split("#", 1)[0]
                db = unquote("/" + db[2:].lstrip("/") if db.startswith("//") else db)  # SQLite decodes %XX
            hit = under(db) if db else None
            if hit:
                refuse(f"open {hit} (protected: dataset files or a track's hidden data)")
        elif event in ("os.link", "os.rename", "os.symlink"):
            hit = under(args[0])
            if hit:
                refuse(f"{event.split('.')[1]} {hit} (protected: dataset files or a track's hidden data)")
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
    _guard_native_readers(under, refuse)


#: functions of libraries loaded in the worker that open a file by its path in C++, unseen by the
#: "open" audit event: (module, attribute path) -> the position of the path argument
NATIVE_READERS = (
    ("torch", "from_file"),
    ("torch", "_C._VariableFunctions.from_file"),
    ("torch", "UntypedStorage.from_file"),
    ("torch", "TypedStorage.from_file"),
    ("torch", "_C.PyTorchFileReader"),
    ("torch", "_C.import_ir_module"),
    ("torch", "_C._load_for_lite_interpreter"),
    ("torch", "jit.load"),
    ("torchvision", "io.read_file"),
    ("torchvision", "io.image.read_file"),
    ("torchvision", "io.read_image"),
    ("torchvision", "io.decode_image"),
    ("torchvision", "io.image.read_image"),
    ("torchvision", "io.image.decode_image"),
)


def _guard_native_readers(under: Any, refuse: Any) -> None:
    """Wrap the file readers of ``NATIVE_READERS`` (where their module is loaded) so that a path
    under a protected root is refused as ``open`` would be. Best effort: it closes the readers a
    plugin finds in the libraries the worker has loaded, not native code the plugin brings."""

    def wrap(fn: Any, name: str) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            for a in (*args[:2], *kwargs.values()):
                if isinstance(a, (str, bytes, os.PathLike)):
                    hit = under(a)
                    if hit:
                        refuse(f"open {hit} through {name} (protected: dataset files or a track's hidden data)")
            return fn(*args, **kwargs)

        guarded.__name__ = getattr(fn, "__name__", name.rsplit(".", 1)[-1])
        guarded.__doc__ = getattr(fn, "__doc__", None)
        return guarded

    for mod, path in NATIVE_READERS:
        root = sys.modules.get(mod)
        if root is None:
            continue
        *parents, attr = path.split(".")
        obj = root
        try:
            for part in parents:
                obj = getattr(obj, part)
            fn = getattr(obj, attr)
        except AttributeError:
            continue
        name = f"{mod}.{path}"
        if isinstance(fn, type):  # a reader class (PyTorchFileReader): a subclass that checks its path first
            try:
                guarded_cls = type(fn.__name__, (fn,), {"__init__": wrap(fn.__init__, name)})
                setattr(obj, attr, guarded_cls)
            except TypeError:  # a final C type: wrap its construction
                setattr(obj, attr, wrap(fn, name))
            continue
        try:
            setattr(obj, attr, staticmethod(wrap(fn, name)) if isinstance(obj, type) and isinstance(obj.__dict__.get(attr), staticmethod) else wrap(fn, name))
        except (AttributeError, TypeError):  # a read-only C attribute
            continue


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

    for mod in setup.get("preload", ()):  # harness code the views need (e.g. transformers for a Hugging Face base), imported before the guard
        try:
            __import__(mod)
        except ImportError:  # the view's own use reports it, as a one-line error
            pass
    if str(setup["device"]).startswith("cuda"):
        torch.cuda.init()
    if setup.get("blas"):  # numpy's BLAS held to the cell's thread count (through ctypes: before the guard)
        from threadpoolctl import threadpool_limits

        from threadpoolctl import threadpool_info

        threadpool_limits(limits=int(setup["blas"]), user_api="blas")
        BLAS_AT_BOOT[:] = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
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
            if "session" in req:  # a method kept across many calls (``ContestantWorker.session``)
                tx.send_bytes(_session(req, rx, tx, violations, who, D))
                continue
            method, fn = pickle.loads(req["method"]), req["call"]
            output, served = req.get("output") or fn, bool(req.get("served"))
            name = method.name or type(method).__name__
            views = pickle.loads(req["views"])
            name = method.name or type(method).__name__
            _set_rng(req["rng"])
            torch.set_num_threads(int(req["threads"]))
            _set_flags(req.get("flags"))
            plain, reports, seconds = [], [], []
            reply: tuple[Any, ...] | None = None
            for view in views:
                del violations[:]
                who.append(name)
                t0 = time.perf_counter()
                try:
                    if served:  # a view whose parts talk to the harness (its network) through rpc
                        view = view.open_in_worker(rpc)
                    with D.contestant_guard(name):
                        raw = _invoke(method, fn, view)
                finally:
                    seconds.append(time.perf_counter() - t0)
                    who.pop()
                if violations:  # refused, and the plugin caught the error: the cell fails all the same
                    reply = ("error", "LeakageError: " + violations[0], "(the plugin caught the guard's LeakageError and returned)")
                    break
                plain.append(_PLAIN_VIEW[output](raw, name, view) if output in _PLAIN_VIEW else _PLAIN[output](raw, name))
                reports.append(_report(fn, view))
                del raw
            if reply is None:
                reply = ("ok", plain, reports, seconds, _get_rng())
            out = pickle.dumps(reply, protocol=4)  # protocol 4: arrays come back writable
        except BaseException as exc:  # noqa: BLE001 - a plugin failure fails its cell only
            out = _error_reply(exc, violations, name)
        tx.send_bytes(out)


def _error_reply(exc: BaseException, violations: list[str], name: str) -> bytes:
    """The worker's error answer: the guard's refusal (even when the plugin caught it), an output
    check's message, or the plugin's exception as one line; the traceback beside it."""
    if violations:
        msg = "LeakageError: " + violations[0]
    elif isinstance(exc, ContestantOutputError):
        msg = str(exc)
    else:
        msg = format_plugin_error(exc, name)
    try:
        return pickle.dumps(("error", msg, traceback.format_exc()))
    except Exception:  # noqa: BLE001
        return pickle.dumps(("error", msg, ""))


def _session(req: dict[str, Any], rx: Connection, tx: Connection, violations: list[str], who: list[str], D: Any) -> bytes:
    """The worker's side of ``ContestantWorker.session``: one method object kept across many
    calls of its protocol functions (a provisioning method's ``fit`` and ``plan`` through the
    pool simulation the harness runs). The harness sends ``(call, args)`` messages; the session's
    state (``req["state"]``: numbers and settings only, e.g. ``pooling.PlanningState``) builds
    each view from them (``state.<call>_view(*args)``), the method runs on it under the guard,
    and the output goes back as numbers (``state.<call>_plain``) with its seconds. ``("end",)``
    closes the session with the random generators' states; the first failure (a plugin error,
    a refusal, an invalid output) is the session's last answer, returned here."""
    import torch

    name = "?"
    try:
        method = pickle.loads(req["method"])
        name = method.name or type(method).__name__
        (state,) = pickle.loads(req["state"])
        _set_rng(req["rng"])
        torch.set_num_threads(int(req["threads"]))
        _set_flags(req.get("flags"))
        tx.send_bytes(pickle.dumps(("ready",), protocol=4))
        while True:
            msg = pickle.loads(rx.recv_bytes())
            if msg[0] == "end":
                return pickle.dumps(("ok", _get_rng()), protocol=4)
            call, args = str(msg[0]), msg[1]
            if call not in getattr(state, "calls", ()):
                raise ContestantOutputError(f"the session of plugin {name!r} has no call {call!r}")
            view = getattr(state, f"{call}_view")(*args)
            del violations[:]
            who.append(name)
            t0 = time.perf_counter()
            try:
                with D.contestant_guard(name):
                    raw = getattr(method, call)(view)
            finally:
                seconds = time.perf_counter() - t0
                who.pop()
            if violations:  # refused, and the plugin caught the error: the session fails all the same
                return pickle.dumps(("error", "LeakageError: " + violations[0], "(the plugin caught the guard's LeakageError and returned)"))
            plain = getattr(state, f"{call}_plain")(raw, view, name)
            tx.send_bytes(pickle.dumps(("step", plain, seconds), protocol=4))
    except BaseException as exc:  # noqa: BLE001 - a plugin failure fails its cell only
        return _error_reply(exc, violations, name)


def _invoke(method: Any, fn: str, view: Any) -> Any:
    """The contestant's protocol function on one view (an attack's view holds its arguments)."""
    if fn == "perturb":
        return method.perturb(view.model, view.x, view.y, view.threat, view.generator)
    return getattr(method, fn)(view)


def _report(fn: str, view: Any) -> str:
    """What the view gathered while the contestant ran, as JSON text (numbers only): a
    noise-correction view's ``info`` and training-fixture use, an early-exit view's ``info``, a
    privacy view's forward counts."""
    import json

    out: dict[str, Any] = {}
    if fn == "correct":
        out["info"] = json.loads(json.dumps(dict(getattr(view, "info", {}) or {}), sort_keys=True, default=str))
        train = getattr(view, "train", None)
        out["fixture_calls"] = int(getattr(train, "calls", 0))
        out["fixture_s"] = float(getattr(train, "seconds", 0.0))
    elif fn == "distill":  # an early-exit view: what the method recorded in view.info (its string keys)
        info = {k: v for k, v in dict(getattr(view, "info", {}) or {}).items() if isinstance(k, str)}
        out["info"] = json.loads(json.dumps(info, sort_keys=True, default=_json_default))
    elif fn == "select" and hasattr(view, "contest_report"):  # a view that counts its own use (the instruction track's lm and warm-up)
        out = json.loads(json.dumps(view.contest_report(), sort_keys=True, default=str))
    elif fn == "score":
        out["target"] = int(getattr(view.target, "forwards", 0))
        out["shadows"] = int(sum(int(getattr(b, "forwards", 0)) for b in view.shadows))
        for b in view.shadows:  # the shadows are shared by the views of a cell: count per view
            if hasattr(b, "forwards"):
                b.forwards = 0
    return json.dumps(out, sort_keys=True)


def _set_flags(flags: Any) -> None:
    """The harness cell's deterministic-kernel settings (CUDA; ``env.cell_scope``)."""
    if not flags:
        return
    import torch

    cudnn_det, cudnn_bench, det, warn_only = flags
    torch.backends.cudnn.deterministic = bool(cudnn_det)
    torch.backends.cudnn.benchmark = bool(cudnn_bench)
    torch.use_deterministic_algorithms(bool(det), warn_only=bool(warn_only))


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


def _plain_scores(raw: Any, name: str) -> Any:
    """A privacy method's scores: one array of numbers (the harness checks shape and finiteness)."""
    return _plain_array(raw, "scores", name)


def _plain_tensor(raw: Any, name: str) -> Any:
    """An attack's adversarial inputs: one array of numbers (the harness checks the ball)."""
    import torch

    if not isinstance(raw, torch.Tensor):
        raise ContestantOutputError(f"invalid output of plugin {name!r}: perturb() returned {type(raw).__name__}, not a tensor")
    return _plain_array(raw, "adversarial inputs", name)


def _plain_model(raw: Any, name: str) -> dict[str, Any]:
    """A returned model as numbers: how it was built (a registered architecture) and its weights."""
    import json

    import torch

    from .models import build_spec

    if not isinstance(raw, torch.nn.Module):
        raise ContestantOutputError(f"invalid output of plugin {name!r}: correct() returned {type(raw).__name__}, not a torch.nn.Module")
    spec = build_spec(raw)
    if spec is None:
        raise ContestantOutputError(
            f"invalid output of plugin {name!r}: correct() returned a {type(raw).__name__} that is not a model of a registered architecture; "
            "return view.model (or a copy of it) or a model from view.model_factory(), trained as you like"
        )
    state, dtypes = {}, {}
    for k, v in raw.state_dict().items():
        t = v.detach().cpu()
        dtypes[k] = str(t.dtype).removeprefix("torch.")
        state[k] = (t.float() if t.dtype == torch.bfloat16 else t).contiguous().numpy()
    return {"spec": json.dumps(spec.as_dict()), "state": state, "dtypes": dtypes, "training": bool(raw.training)}


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


def _plain_exit_model(raw: Any, name: str) -> dict[str, Any]:
    """An early-exit method's ``ExitModel`` as numbers only: each head's ``state_dict`` as arrays
    keyed by (modality, k), and the combiner's weight vectors as arrays (None: no combiner). The
    harness loads the weights into heads of its own architecture (``validation.check_exit_model``)."""
    from collections.abc import Mapping

    import torch

    from .kinds import ExitModel

    prefix = f"invalid output of plugin {name!r}"
    if not isinstance(raw, ExitModel):
        raise ContestantOutputError(f"{prefix}: distill returned a {type(raw).__name__}; return an ExitModel(heads=..., combiner=...)")
    if not isinstance(raw.heads, Mapping):
        raise ContestantOutputError(f"{prefix}: ExitModel.heads is a {type(raw.heads).__name__}; return a dict (modality, k) -> head")
    heads = []
    for key, h in raw.heads.items():
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str) and isinstance(key[1], int) and not isinstance(key[1], bool)):
            raise ContestantOutputError(f"{prefix}: ExitModel.heads has the key {key!r}; keys are (modality, k) pairs such as ('mv', 1)")
        if not isinstance(h, torch.nn.Module):
            raise ContestantOutputError(f"{prefix}: head {key} is a {type(h).__name__}, not a torch.nn.Module")
        state = {}
        for k, v in h.state_dict().items():
            t = v.detach().cpu() if isinstance(v, torch.Tensor) else v
            arr = _plain_array(t.float() if isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16 else t, f"head {key}'s {k}", name)
            state[str(k)] = arr.reshape(tuple(t.shape)) if isinstance(t, torch.Tensor) else arr  # a 0-d buffer stays 0-d
        heads.append((str(key[0]), int(key[1]), state))
    combiner = None
    if raw.combiner is not None:
        try:
            vectors = list(raw.combiner)
        except TypeError:
            raise ContestantOutputError(f"{prefix}: ExitModel.combiner is a {type(raw.combiner).__name__}; return one weight vector per exit (or None)") from None
        combiner = [_plain_array(b, f"combiner weights of exit {e}", name) for e, b in enumerate(vectors)]
    return {"heads": heads, "combiner": combiner}


def _from_plain(call: str, out: Any) -> Any:
    """A ``select`` answer as the harness's ``Selection`` (the other calls: ``coreset_bench.contest``)."""
    if call == "select":
        import json

        from .kinds import Selection

        return Selection(indices=out["indices"], weights=out["weights"], scores=out["scores"], info=json.loads(out["info"]))
    if call == "node-models":
        import json

        return {"states": out["states"], "info": json.loads(out["info"])}
    raise ValueError(f"unknown contestant call {call!r}")  # pragma: no cover


#: the contestant's output as numbers, per protocol function (run in the worker)
_PLAIN = {"select": _plain_selection, "score": _plain_scores, "perturb": _plain_tensor, "correct": _plain_model, "distill": _plain_exit_model}
#: outputs made with the view as well (a decentralized method's ``view.info`` comes back with its models)
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


class ViewShipError(RuntimeError):
    """A view holds something that must not (or cannot) travel to the contestant worker: a model
    that is not of a registered architecture, a track object, a function defined inside another."""


def _rebuild_model(spec: Any, state: Any, training: bool, device: str) -> Any:
    """Worker side of a shipped model: the registered architecture, rebuilt, holding the weights."""
    from .models import rebuild

    return rebuild(spec, state, training, device)


def _readonly_mapping(d: dict[Any, Any]) -> MappingProxyType:
    """Worker side of a view's read-only mapping (``types.MappingProxyType`` does not pickle)."""
    return MappingProxyType(d)


class _ViewPickler(pickle.Pickler):
    """Pickles a contestant's views: every ``torch.nn.Module`` travels as its ``BuildSpec`` (a
    registered architecture) and its weights, so the worker rebuilds its own model and no live
    harness object (hooks, attributes, a track's memo) goes along; a track object is refused."""

    def reducer_override(self, obj: Any) -> Any:
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(obj, torch.nn.Module):
            from .models import build_spec, weights

            spec = build_spec(obj)
            if spec is None:
                raise ViewShipError(f"it holds a {type(obj).__name__} that is not a model of a registered architecture (models travel as an architecture and weights)")
            first = next(iter(obj.parameters()), None)
            first = first if first is not None else next(iter(obj.buffers()), None)
            return (_rebuild_model, (spec, weights(obj), bool(obj.training), str(first.device) if first is not None else "cpu"))
        if isinstance(obj, MappingProxyType):  # a view's read-only mapping (ExitView's features): rebuilt read-only
            return (_readonly_mapping, (dict(obj),))
        base = sys.modules.get("coreset_bench.tracks.base")
        if base is not None and isinstance(obj, base.Track):
            raise ViewShipError(f"it holds the track object {type(obj).__name__} (a track's memo must not reach the contestant)")
        return NotImplemented


def dump_views(views: Sequence[Any]) -> bytes:
    """The views of one contest as the worker receives them (``ViewShipError`` when one cannot go)."""
    buf = io.BytesIO()
    _ViewPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(list(views))
    return buf.getvalue()


@dataclass
class ContestantWorker:
    """One worker process (see the module docstring); use it through ``coreset_bench.contest``
    (or ``run_contestant``)."""

    device: str
    protected: tuple[str, ...]
    #: numpy's BLAS threads in the worker (None: the library's default), set before any plugin runs
    blas: int | None = None
    #: modules imported before the guard (``Track.worker_imports``): harness code a view needs
    #: whose import starts processes or loads native code (transformers does both)
    preload: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        path = [p for p in sys.path if p]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, __import__("json").dumps(path), str(to_child_r), str(from_child_w), str(os.getpid())],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            close_fds=True,
            env={**worker_environ(), **_blas_env(self.blas)},  # the hidden-data salt and the store's address stay with the harness
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.owner = os.getpid()
        #: the method this worker has run (``prestart`` gives another method a fresh worker)
        self.tenant: str | None = None
        self.tx = Connection(to_child_w, readable=False)
        self.rx = Connection(from_child_r, writable=False)
        self.tx.send_bytes(pickle.dumps({"device": self.device, "protected": self.protected, "blas": self.blas, "preload": self.preload}))

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def run(self, method: Any, call: str, views: Sequence[Any], threads: int, flags: Any = None, *, output: str | None = None,
            serve: Any = None) -> tuple[list[Any], list[dict[str, Any]], list[float]]:
        """``call`` on each of ``views`` in the worker, in order (the views travel together, so
        objects they share stay shared). Returns (outputs as numbers, what each view gathered,
        the contestant's seconds per view); the harness's RNG continues from the worker's.

        ``output``: how the outputs come back (default ``call``; ``"node-models"``). ``serve``:
        the worker opens each view with ``view.open_in_worker(rpc)`` and ``serve`` answers its
        requests while the contestant runs (numbers only, both ways; an exception of ``serve``
        is raised in the worker, inside the method, as one line)."""
        import json
        import random

        import numpy as np
        import torch

        name = method.name or type(method).__name__
        try:
            method_blob = pickle.dumps(method, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001
            raise ContestantError(
                f"plugin {name!r} cannot be sent to the contestant worker ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"define its method class at module level of an importable module"
            ) from None
        try:
            views_blob = dump_views(views)
        except Exception as exc:  # noqa: BLE001 - a harness bug, reported on the cell
            raise ViewShipError(f"the view of plugin {name!r} cannot be sent to the contestant worker: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        blob = pickle.dumps(
            {"method": method_blob, "call": call, "output": output or call, "served": serve is not None, "views": views_blob, "threads": threads, "flags": flags,
             "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state())},
            protocol=pickle.HIGHEST_PROTOCOL,
        )
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
                try:  # a request of the contestant's view (e.g. its network), answered in numbers
                    result: tuple[Any, Any] = ("ok", serve(reply[1]))
                except Exception as exc:  # noqa: BLE001 - a bad request fails inside the method, as in-process
                    result = ("error", (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                self.tx.send_bytes(pickle.dumps(result, protocol=4))
        except (EOFError, OSError):
            raise self._crashed(name) from None
        except BaseException:  # Ctrl-C while waiting: the answer would be read by the next cell
            self.close()
            raise
        try:
            if bad is not None:
                raise bad
            if reply[0] == "ok":
                plain, reports, seconds = list(reply[1]), [json.loads(r) for r in reply[2]], [float(t) for t in reply[3]]
                if not (len(plain) == len(reports) == len(seconds) == len(views)):
                    raise ValueError(f"{len(plain)} answers for {len(views)} views")
                _set_rng(reply[4])
                return plain, reports, seconds
            msg, tb = str(reply[1]), str(reply[2])
        except Exception as exc:  # noqa: BLE001 - whatever the worker sent, it fails this cell only
            self.close()  # a worker that sends anything else is not trusted with another cell
            raise ContestantError(f"plugin {name!r} sent back an invalid answer from the contestant worker ({type(exc).__name__}: {exc})") from None
        raise ContestantError(msg) from RemoteTraceback(tb)

    def session(self, method: Any, state: Any, threads: int, flags: Any = None) -> "Session":
        """Open a session (see ``_session``): ``method`` and ``state`` go to the worker once, and
        the returned ``Session`` sends each call's arguments (numbers only) and reads its output
        back (numbers only, through the restricted unpickler). Close it with ``Session.end``."""
        import random

        import numpy as np
        import torch

        name = method.name or type(method).__name__
        try:
            method_blob = pickle.dumps(method, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001
            raise ContestantError(
                f"plugin {name!r} cannot be sent to the contestant worker ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                f"define its method class at module level of an importable module"
            ) from None
        try:
            state_blob = dump_views([state])  # refuses a live model or a track object, as in a view
        except Exception as exc:  # noqa: BLE001 - a harness bug, reported on the cell
            raise ViewShipError(f"the view of plugin {name!r} cannot be sent to the contestant worker: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        blob = pickle.dumps(
            {"session": True, "method": method_blob, "state": state_blob, "threads": threads, "flags": flags,
             "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state())},
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        s = Session(self, name)
        s._send(blob)
        s._expect("ready")
        return s

    def call(self, method: Any, call: str, view: Any, threads: int, *, output: str | None = None, serve: Any = None) -> Any:
        """``call`` on one view (``run``); a ``select`` answer as a ``Selection``, a
        ``"node-models"`` output as ``{"states", "info"}``, others as numbers."""
        plain, _, _ = self.run(method, call, [view], threads, output=output, serve=serve)
        out = output or call
        return _from_plain(out, plain[0]) if out in ("select", "node-models") else plain[0]

    def _crashed(self, name: str) -> "ContestantCrash":
        """The worker died during ``name``'s call: reap and close it, and say so."""
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self.close()
        return ContestantCrash(f"plugin {name!r} crashed the contestant worker process (exit code {code})")

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


def _blas_env(n: int | None) -> dict[str, str]:
    """The environment that holds BLAS libraries loaded later (scipy's) to ``n`` threads."""
    return {} if not n else {k: str(int(n)) for k in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")}


class Session:
    """The harness's handle on a session in the contestant worker (``ContestantWorker.session``).
    ``call(name, *args)`` returns (the output as numbers, the contestant's seconds); ``end()``
    closes it and continues the harness's random generators from the worker's. Any failure
    raises ``ContestantError`` / ``ContestantCrash`` (the session is over: a later call or
    ``end`` raises it again)."""

    def __init__(self, worker: ContestantWorker, name: str) -> None:
        self.worker, self.name = worker, name
        self.failed: BaseException | None = None

    def _send(self, blob: bytes) -> None:
        try:
            self.worker.tx.send_bytes(blob)
        except (EOFError, OSError):
            self._fail(self.worker._crashed(self.name))
        except BaseException:
            self.worker.close()
            raise

    def _expect(self, status: str) -> tuple[Any, ...]:
        try:
            answer = self.worker.rx.recv_bytes()
        except (EOFError, OSError):
            self._fail(self.worker._crashed(self.name))
        except BaseException:  # Ctrl-C while waiting: the answer would be read by the next cell
            self.worker.close()
            raise
        try:
            reply = _safe_loads(answer)
            if not isinstance(reply, tuple) or not reply:
                raise ValueError(f"a {type(reply).__name__}")
        except Exception as exc:  # noqa: BLE001 - whatever the worker sent, it fails this cell only
            self.worker.close()
            self._fail(ContestantError(f"plugin {self.name!r} sent back an invalid answer from the contestant worker ({type(exc).__name__}: {exc})"))
        if reply[0] == status:
            return reply
        if reply[0] == "error" and len(reply) == 3:
            self._fail(ContestantError(str(reply[1])), RemoteTraceback(str(reply[2])))
        self.worker.close()
        self._fail(ContestantError(f"plugin {self.name!r} sent back an invalid answer from the contestant worker (a {str(reply[0])[:40]!r} answer)"))
        raise AssertionError  # pragma: no cover - _fail raises

    def _fail(self, exc: BaseException, cause: BaseException | None = None) -> None:
        self.failed = exc
        raise exc from cause

    def call(self, call: str, *args: Any) -> tuple[Any, float]:
        if self.failed is not None:
            raise self.failed
        self._send(pickle.dumps((call, args), protocol=4))
        reply = self._expect("step")
        return reply[1], float(reply[2])

    def end(self) -> None:
        if self.failed is not None:
            raise self.failed
        self._send(pickle.dumps(("end",), protocol=4))
        reply = self._expect("ok")
        _set_rng(reply[1])

    def abort(self) -> None:
        """Close a session the harness gives up on (an output failed its check): the worker goes
        back to waiting for the next cell, or is stopped if it does not answer as it should."""
        if self.failed is not None:
            return
        try:
            self.end()
        except BaseException:  # noqa: BLE001 - the cell has failed already; this worker is not reused
            self.worker.close()


_WORKER: list[ContestantWorker] = []


def prestart(*, device: str, protected: Sequence[str], tenant: str | None = None, blas: int | None = None, preload: Sequence[str] = ()) -> ContestantWorker:
    """This process's contestant worker for ``(device, protected)``, started now if needed (it
    boots while the harness computes signals, so the first selection does not wait for it).

    ``tenant`` names the method about to run (``contest.tenant``): a worker that ran another
    method is replaced by a fresh one, so nothing a method leaves in its worker's memory (a
    patched function, a damaged module global) reaches another method's cells. ``blas``: the
    worker's BLAS threads (a track whose numbers depend on them, ``Track.blas_threads``); a worker
    started with another count is replaced. ``preload``: modules imported before the guard
    (``Track.worker_imports``)."""
    want = (str(device), tuple(protected), blas, tuple(preload))
    w = _WORKER[0] if _WORKER else None
    if w is not None and (not w.alive() or (w.device, w.protected, w.blas, w.preload) != want or (tenant is not None and w.tenant not in (None, tenant))):
        w.close()  # in a forked child: closes only the inherited pipe ends
        _WORKER.clear()
        w = None
    if w is None:
        w = ContestantWorker(*want)
        _WORKER.append(w)
    if tenant is not None:
        w.tenant = tenant
    return w


def run_contestant(method: Any, call: str, view: Any, *, device: str, protected: Sequence[str], output: str | None = None, serve: Any = None) -> Any:
    """``getattr(method, call)(view)`` in this process's contestant worker; returns the output
    (a ``select`` answer as a ``Selection``, other calls as numbers). The pipeline calls
    contestants through ``coreset_bench.contest.contest``, which also checks the output.

    ``output`` / ``serve`` (``ContestantWorker.run``): the output converted as ``output``
    (``"node-models"``: a decentralized method's per-node states and info), and ``serve`` answers
    the requests the worker sends during the call (``view.open_in_worker`` builds the worker's
    view around them; e.g. the decentralized track's ``NetworkService``).

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
