"""A cache of what the listing commands print, so that they answer without importing torch.

``coreset-bench plugins``, ``plugins show``, ``tracks`` and ``profiles`` describe the installed
plugins; computing that means importing every plugin module, hence torch (seconds). The first
such command after an install or an edit computes it, prints it and saves it here; the next ones
read the saved copy (tens of milliseconds) as long as nothing it depends on changed.

The copy is keyed by a *fingerprint* of everything the plugin set depends on: the Python and
coreset-bench versions, the ``coreset_bench`` entry points (name, target, distribution and
version), the size and modification time of every ``.py`` file of the packages they live in
(an edited plugin or track changes it), and the plugin-selection environment variables
(``CORESET_BENCH_LOAD_PLUGINS``, ``CORESET_BENCH_DISABLE_PLUGINS``, ``CORESET_BENCH_STRICT_PLUGINS``).
Any change rebuilds it, so a plugin that broke (or was fixed) is reported as it is now.

``run --dry-run`` is cached the same way, one file per command line (its ``--db`` left out:
which cells are done is read from the store every time): the cells a plan holds depend only on
the installed plugins and the arguments.

Where: ``$CORESET_BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/coreset-bench``, else
``~/.cache/coreset-bench`` (file ``plugin-metadata.json``; an unwritable directory just means no
cache). ``CORESET_BENCH_METADATA_CACHE=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMAT = 1
FILE = "plugin-metadata.json"
_ENV = ("CORESET_BENCH_LOAD_PLUGINS", "CORESET_BENCH_DISABLE_PLUGINS", "CORESET_BENCH_STRICT_PLUGINS")


def enabled() -> bool:
    return os.environ.get("CORESET_BENCH_METADATA_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    explicit = os.environ.get("CORESET_BENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "coreset-bench"


def _package_roots(module: str) -> list[str]:
    """Directories (or files) of the package holding ``module``, found without running it: its
    top-level package, and for the suite's own modules the subpackage (``coreset_bench.plugins``
    lives in a directory of its own)."""
    parts = module.split(".")
    names = [parts[0]]
    if parts[0] == "coreset_bench" and len(parts) > 1:
        names.append(".".join(parts[:2]))
    out = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)  # a top-level name (or a child of the imported coreset_bench): nothing is executed
        except (ImportError, ValueError):
            continue
        if spec is None:
            continue
        if spec.submodule_search_locations:
            out.extend(str(p) for p in spec.submodule_search_locations)
        elif spec.origin:
            out.append(spec.origin)
    return out


def _tree_state(root: str, h: Any) -> None:
    if os.path.isfile(root):
        st = os.stat(root)
        h.update(f"{root}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if e.name != "__pycache__" and not e.name.startswith("."):
                    stack.append(e.path)
            elif e.name.endswith(".py"):
                st = e.stat()
                h.update(f"{e.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())


def fingerprint() -> str:
    """The key of the cache (see the module docstring)."""
    from . import __version__

    h = hashlib.sha256()
    h.update(f"{FORMAT}\0{sys.version}\0{sys.executable}\0{__version__}\n".encode())
    for var in _ENV:
        h.update(f"{var}={os.environ.get(var)}\n".encode())
    roots: set[str] = set()
    eps = sorted(md.entry_points(group="coreset_bench"), key=lambda e: (e.name, e.value))
    for ep in eps:
        dist = getattr(ep, "dist", None)
        h.update(f"{ep.name}\0{ep.value}\0{getattr(dist, 'name', '?')}\0{getattr(dist, 'version', '?')}\n".encode())
        roots.update(_package_roots(ep.module))
    roots.update(_package_roots("coreset_bench.leaderboard"))
    roots.update(_package_roots("coreset_bench"))
    for root in sorted(roots):
        _tree_state(root, h)
    return h.hexdigest()


def load(key: str | None = None, name: str = FILE) -> dict[str, Any] | None:
    """The cached metadata (file ``name``) when its fingerprint is current, else None."""
    if not enabled():
        return None
    try:
        obj = json.loads((cache_dir() / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        return None
    if obj.get("fingerprint") != (key if key is not None else fingerprint()):
        return None
    data = obj.get("data")
    return data if isinstance(data, dict) else None


def save(data: dict[str, Any], key: str | None = None, name: str = FILE) -> None:
    """Write the metadata (file ``name``, atomically); a cache that cannot be written is no error."""
    if not enabled():
        return
    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{name}.{os.getpid()}"
        tmp.write_text(json.dumps({"format": FORMAT, "fingerprint": key if key is not None else fingerprint(), "data": data}, default=str), encoding="utf-8")
        os.replace(tmp, d / name)
    except OSError:
        pass


def dry_run_name(argv: list[str]) -> str:
    """The cache file of ``run --dry-run`` with these arguments (``--db`` left out: which cells
    are done is read from the store each time)."""
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--db":
            skip = True
            continue
        if a.startswith("--db="):
            continue
        args.append(a)
    return "dry-run-" + hashlib.sha256(json.dumps(args).encode()).hexdigest()[:20] + ".json"


def get(build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The cached metadata, or ``build()`` (which loads the plugins) saved for next time. The data
    goes through JSON either way, so a cached answer prints exactly as a fresh one."""
    key = fingerprint() if enabled() else None
    hit = load(key) if key is not None else None
    if hit is not None:
        return hit
    data = json.loads(json.dumps(build(), default=str))
    if key is not None:
        save(data, key)
    return data
