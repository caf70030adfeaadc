"""Module structure: no import circle in the package (issue 37), none between the runner and the
Ray executor (issue 15, item 7)."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (functions included), as absolute-ish names."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                out.add(mod)
                out.update(f"{mod}.{a.name}".lstrip(".") for a in node.names)
            else:
                out.add(mod)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


# ---- no import circle anywhere in the package ---------------------------------------------------

#: package -> its source directory (pyproject's package-dir)
PACKAGES = {"coreset_bench": ROOT / "benchmark", "coreset_bench.plugins": ROOT / "plugins", "coreset_bench.leaderboard": ROOT / "leaderboard"}


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (file, is a package ``__init__``)."""
    out: dict[str, tuple[Path, bool]] = {}
    for pkg, d in PACKAGES.items():
        for f in sorted(d.rglob("*.py")):
            parts = list(f.relative_to(d).with_suffix("").parts)
            if ".venv" in parts or "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = (f, f.name == "__init__.py")
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports, at any depth (functions included: a lazy
    import is still a dependency); imports under ``if TYPE_CHECKING:`` are not run and not counted.
    ``from pkg import name`` counts ``pkg.name`` when that is a module, else ``pkg``."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text())
        skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node) for s in node.body for n in ast.walk(s)}
        here = name if is_pkg else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for a in node.names:
                    if f"{mod}.{a.name}" in mods:
                        deps.add(f"{mod}.{a.name}")
                    elif mod in mods:
                        deps.add(mod)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in mods)
        deps.discard(name)
        graph[name] = deps
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_import_graph_sees_lazy_imports_and_finds_a_circle():
    graph = import_graph()
    # a lazy (function-level) import counts: entries imports signing inside load_entries
    assert "coreset_bench.leaderboard.signing" in graph["coreset_bench.leaderboard.entries"]
    assert "coreset_bench.leaderboard.errors" in graph["coreset_bench.leaderboard.signing"]
    # the detector finds a circle when there is one (the entries <-> signing one of issue 37)
    circled = {k: set(v) for k, v in graph.items()}
    circled["coreset_bench.leaderboard.signing"].add("coreset_bench.leaderboard.entries")
    assert ["coreset_bench.leaderboard.entries", "coreset_bench.leaderboard.signing"] in import_cycles(circled)


def test_no_import_circle_in_coreset_bench_or_its_leaderboard():
    """Issue 37: no module of ``coreset_bench`` (plugins and leaderboard included) imports, at
    any depth, a module that imports it back. Check by hand: ``python tests/test_import_structure.py``."""
    cycles = import_cycles(import_graph())
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_ray_executor_never_imports_the_runner():
    names = _imports(ROOT / "benchmark" / "ray_executor.py")
    assert not any(n == "runner" or n.endswith(".runner") or n.startswith("runner.") for n in names), names


@pytest.mark.parametrize("order", [("runner", "ray_executor"), ("ray_executor", "runner")])
def test_modules_import_in_either_order_without_pulling_each_other(order):
    first, second = order
    code = f"""
import sys
import coreset_bench.{first}
loaded_after_first = sorted(m for m in sys.modules if m in ('coreset_bench.runner', 'coreset_bench.ray_executor'))
import coreset_bench.{second}
print(loaded_after_first)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    # importing one module must not import the other at module level
    assert res.stdout.strip() == repr([f"coreset_bench.{first}"]), res.stdout


class _FakeRay(types.ModuleType):
    """Just enough of Ray to run RayExecutor synchronously (Ray itself is an optional extra)."""

    def __init__(self) -> None:
        super().__init__("ray")
        self._up = False

    def is_initialized(self):
        return self._up

    def init(self, **kw):
        self._up = True

    def shutdown(self):
        self._up = False

    def cluster_resources(self):
        return {"CPU": 1}

    def remote(self, **kw):
        results = self.results = {}

        def wrap(fn):
            class R:
                @staticmethod
                def remote(*args):
                    ref = len(results)
                    results[ref] = fn(*args)
                    return ref

            return R()

        return wrap

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return self.results[ref]

    def cancel(self, ref, force=False):  # pragma: no cover - no time-outs here
        pass


def test_ray_executor_runs_the_cell_function_the_runner_hands_it(monkeypatch, tmp_path):
    from coreset_bench import runner
    from coreset_bench.tracks.base import Cell, CellContext, CellResult

    monkeypatch.setitem(sys.modules, "ray", _FakeRay())
    calls = []

    def fake_run_one(track, method, params, cell, ctx):
        calls.append((track, method, ctx.device))
        if method == "bad":
            raise ValueError("kaboom")
        return CellResult({"clean_acc": 0.5})

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    ctx = CellContext(tmp_path, tmp_path / "cache", None)
    exe = runner.make_executor("ray", ctx, 1, None)
    items = []
    for name in ("good", "bad"):
        m = types.SimpleNamespace(name=name, params={})
        items.append(types.SimpleNamespace(cell=Cell("coreset", "coreset/quick@2", name, "1", {}, {"budget": 0.1}, 0), method=m))
    out = list(exe.run(items, lambda *a: None))
    exe.close()
    assert calls == [("coreset", "good", "cpu"), ("coreset", "bad", "cpu")]
    assert out[0][1] is True and out[0][2].metrics == {"clean_acc": 0.5}
    assert out[1][1] is False and out[1][2] == "plugin 'bad' failed: ValueError: kaboom"


def test_the_pytest_plugin_loads_without_torch():
    """``coreset_bench.testing`` is a pytest11 plugin, loaded by every pytest run in an environment
    where coreset-bench is installed: the kit (phase-2 checks included) imports torch lazily."""
    code = "import sys, coreset_bench.testing, coreset_bench.kit, coreset_bench.tracks.decentralized.network; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


# ---- layers: nothing imports upward, no import circle (issue 37) ------------------------------

#: the packages of the distribution and their import names
_PACKAGES = {"benchmark": "coreset_bench", "plugins": "coreset_bench.plugins", "leaderboard": "coreset_bench.leaderboard"}
#: the core: the nouns, the kinds, the pipeline's parts, the store and the runner (the track base
#: class ``tracks.base`` owns the pipeline and belongs here; the tracks derive from it)
CORE = {
    "", "cells", "kinds", "validation", "contest", "contestant", "data", "models", "training", "signals", "robust",
    "store", "store_copy", "metacache", "apgd", "registry", "env", "locks", "lifetime", "progress", "hookspecs", "runner", "ray_executor", "salt", "claims", "public",
    "tracks", "tracks.base",
}
#: track worlds: the helpers of one track each. A track's package ``tracks/NAME/`` holds the track
#: (``tracks.NAME.track``, re-exported by the package) and its helpers: every other module of the
#: package is a world (see ``_layer``). Listed here: the old flat paths of moved helpers (aliases of
#: the moved modules), and the helpers of the tracks not moved yet (flat beside the core).
WORLDS = {"pooling", "privacy_metrics", "side_effects", "decentralized", "gossip_dist", "video", "video_data", "video_models", "lm", "instruction_world"}
#: the commands: the CLI, and ``reproduce`` (re-runs published cells and compares them with the
#: board's statistics, ``leaderboard.stats``)
CLI = {"cli", "reproduce"}
#: the plugin authors' kit (it builds small worlds of its own)
KIT = {"kit", "testing"}
#: lowest first: a module may import modules of its own layer or of a lower one
LAYERS = ("core", "worlds", "tracks", "plugins", "leaderboard", "cli")


def _module_graph() -> dict[str, set[str]]:
    """import name -> the coreset_bench modules it imports (at any depth, functions included): the
    deepest module an imported name is in."""
    files: dict[str, Path] = {}
    for folder, name in _PACKAGES.items():
        for p in (ROOT / folder).rglob("*.py"):
            parts = list(p.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            files[".".join([name, *parts])] = p
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) if node.level else (node.module or "")
                # ``from pkg import mod`` depends on mod (as ``import pkg.mod`` does), ``from pkg import
                # name`` on pkg: a package's ``__init__`` runs either way, and a track package's
                # only re-exports its track lazily (tests/test_layout.py checks that at run time)
                names = [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for n in names:
                while n and n not in files:  # the deepest coreset_bench module the name is in
                    n = n.rsplit(".", 1)[0] if "." in n else ""
                if n and n != mod:
                    out.add(n)
        graph[mod] = out
    return graph


def _layer(mod: str) -> str:
    if mod.startswith("coreset_bench.plugins"):
        return "plugins"
    if mod.startswith("coreset_bench.leaderboard"):
        return "leaderboard"
    rel = mod.removeprefix("coreset_bench").lstrip(".")
    if rel in CLI:
        return "cli"
    if rel in CORE:
        return "core"
    parts = rel.split(".")
    if rel in WORLDS or (len(parts) >= 3 and parts[0] == "tracks" and parts[2] != "track"):
        return "worlds"  # tracks.NAME.HELPER: a track's helper, below every track
    if rel in KIT or rel.startswith("tracks."):
        return "tracks"
    raise AssertionError(f"module {mod} is in no layer: add it to CORE, WORLDS or KIT in tests/test_import_structure.py")


def _circles(graph: dict[str, set[str]], within: set[str]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), restricted to ``within``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v] & within:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(within):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_a_layer_above_its_own():
    """``python -m pytest tests/test_import_structure.py -k layer`` (issue 37): the core (nouns,
    kinds, pipeline parts, store, runner, the track base class) imports no track world, no track,
    no plugin and no leaderboard module; the worlds import no track; and so on up to the CLI."""
    graph = _module_graph()
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        f"{mod} ({_layer(mod)}) imports {dep} ({_layer(dep)})"
        for mod, deps in sorted(graph.items())
        for dep in sorted(deps)
        if rank[_layer(dep)] > rank[_layer(mod)]
    ]
    assert not upward, "imports upward:\n" + "\n".join(upward)


def test_the_core_imports_no_track_module():
    graph = _module_graph()
    bad = [(m, d) for m, deps in graph.items() if _layer(m) == "core" for d in deps if d.startswith("coreset_bench.tracks.") and d != "coreset_bench.tracks.base"]
    assert not bad, bad


def test_the_layer_check_sees_an_upward_import():
    """The check can fail: a core module importing a track is reported."""
    graph = _module_graph()
    graph["coreset_bench.runner"] = graph["coreset_bench.runner"] | {"coreset_bench.tracks.privacy"}
    rank = {name: i for i, name in enumerate(LAYERS)}
    assert any(rank[_layer(d)] > rank[_layer("coreset_bench.runner")] for d in graph["coreset_bench.runner"])
    assert _circles({"a": {"b"}, "b": {"a"}, "c": set()}, {"a", "b", "c"}) == [["a", "b"]]


def test_a_helper_of_a_track_package_is_a_world_and_may_not_import_its_track():
    """The layer of ``tracks.NAME.HELPER`` is the worlds' (below the tracks): a helper that imported
    its own track (or the package, which re-exports it) is reported as an upward import."""
    assert _layer("coreset_bench.tracks.pooling.sim") == "worlds"
    assert _layer("coreset_bench.tracks.privacy.metrics") == "worlds"
    assert _layer("coreset_bench.tracks.pooling.track") == _layer("coreset_bench.tracks.pooling") == "tracks"
    rank = {name: i for i, name in enumerate(LAYERS)}
    for dep in ("coreset_bench.tracks.pooling.track", "coreset_bench.tracks.pooling"):
        assert rank[_layer(dep)] > rank[_layer("coreset_bench.tracks.pooling.sim")]


def test_no_import_circle_in_the_core_the_tracks_and_the_plugins():
    graph = _module_graph()
    within = {m for m in graph if _layer(m) != "leaderboard"}
    assert _circles(graph, within) == []


def test_no_import_circle_in_the_leaderboard():
    graph = _module_graph()
    assert _circles(graph, set(graph)) == []


if __name__ == "__main__":  # python tests/test_import_structure.py: print the circles, if any
    found = import_cycles(import_graph())
    print("\n".join(" <-> ".join(c) for c in found) or f"no import circle among {len(import_graph())} modules")
    sys.exit(1 if found else 0)
