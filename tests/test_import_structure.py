"""Module structure: no import circle between the runner and the Ray executor (issue 15, item 7)."""

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
    code = "import sys, coreset_bench.testing, coreset_bench.kit, coreset_bench.decentralized; print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
