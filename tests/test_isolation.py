"""Contestant isolation (issue 24): selection runs in a worker process that never loaded the test
split and refuses dataset files, process spawning and ctypes; views are read-only; NaN scores fail
the cell.

The hostile methods are module-level classes (the contestant worker imports them by reference, as
it does an installed plugin) registered inside the tests.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from coreset_bench import hookimpl
from coreset_bench.kinds import (
    DecentralizedView,
    NoiseView,
    PrivacyView,
    ProvisioningView,
    Selection,
    SelectionMethod,
    SelectionView,
    Signals,
)
from coreset_bench.runner import default_context, execute, make_plan
from coreset_bench.store import Store
from coreset_bench.testing import check_no_test_access, make_selection_view, validate_selection
from coreset_bench.tracks.base import Profile

GUARD = "the contestant guard refuses it"


def _digits_file() -> str:
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    return str(Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz")


class Hostile(SelectionMethod):
    """Tries every way to the test split it knows of; ``probe`` picks one (or ``all``)."""

    name = "hostile"
    params = {"probe": "all"}

    def _probes(self, view):
        found: list[str] = []

        def in_memory():
            import coreset_bench.data as D
            from coreset_bench import registry

            for key, ds in list(D._LOADED.items()):
                if ds.x_test is not None:
                    found.append(f"_LOADED{key}")
            for name in ("coreset",):
                try:
                    track = registry.track(name)
                except LookupError:
                    continue
                for key, sp in track.__dict__.get("_splits_cache", {}).items():
                    found.append(f"_splits_cache[{key}]")
            import warnings

            warnings.simplefilter("ignore")
            shape = tuple(view.x.shape[1:])
            sizes = {len(view.y), len(view.y_val)}
            for obj in gc.get_objects():
                if isinstance(obj, (torch.Tensor, np.ndarray)) and obj.ndim == 1 + len(shape) and tuple(obj.shape[1:]) == shape and obj.shape[0] not in sizes:
                    found.append(f"tensor {tuple(obj.shape)}")

        def resolve():
            import coreset_bench.data as D

            ds = D.resolve("digits")
            found.append(f"resolve -> x_test {tuple(ds.x_test.shape)}")

        def open_file():
            with open(_digits_file(), "rb") as fh:
                found.append(f"read {len(fh.read())} bytes of digits.csv.gz")

        def dir_fd():
            path = Path(_digits_file())
            fd = os.open(path.parent.parent, os.O_RDONLY)  # a directory above the data
            try:
                with open(os.open(f"data/{path.name}", os.O_RDONLY, dir_fd=fd), "rb") as fh:
                    found.append(f"dir_fd read {len(fh.read())} bytes")
            finally:
                os.close(fd)

        def sklearn_loader():
            from sklearn.datasets import load_digits

            found.append(f"sklearn load_digits -> {load_digits().images.shape}")

        def spawn_cat():
            import subprocess

            out = subprocess.run(["cat", _digits_file()], capture_output=True, check=False).stdout
            found.append(f"cat -> {len(out)} bytes")

        def system():
            found.append(f"os.system -> {os.system('true')}")

        def fork():
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            found.append(f"fork -> {pid}")

        def ctypes_libc():
            import ctypes

            found.append(f"ctypes -> {ctypes.CDLL('libc.so.6')}")

        return found, {
            "memory": in_memory, "resolve": resolve, "open": open_file, "dir_fd": dir_fd, "sklearn": sklearn_loader,
            "cat": spawn_cat, "system": system, "fork": fork, "ctypes": ctypes_libc,
        }

    def select(self, view):
        found, probes = self._probes(view)
        refused = []
        for name, fn in probes.items():
            if self.params["probe"] not in ("all", name):
                continue
            try:
                fn()
            except Exception as exc:  # a hostile plugin swallows the guard's error and goes on
                refused.append(f"{name}: {type(exc).__name__}")
        return Selection(np.arange(view.budget), info={"found": found, "refused": refused, "pid": os.getpid()})


class Crasher(SelectionMethod):
    name = "crasher"

    def select(self, view):
        os._exit(7)


class Sleeper(SelectionMethod):
    name = "iso-sleeper"
    params = {"pidfile": ""}

    def select(self, view):
        Path(self.params["pidfile"]).write_text(str(os.getpid()))
        time.sleep(120)
        return np.arange(view.budget)


class Mutator(SelectionMethod):
    """Writes into every field of its view it can, then selects like ``random`` would not."""

    name = "mutator"
    signals = frozenset({"loss"})

    def select(self, view):
        for field in ("x", "y", "x_val", "y_val"):
            t = getattr(view, field)
            t.zero_() if hasattr(t, "zero_") else t.fill(0)
        for v in view.signals.values():
            if isinstance(v, np.ndarray):
                try:
                    v[...] = 0
                except ValueError:
                    pass
        return np.arange(view.budget)


class NanScores(SelectionMethod):
    name = "nanscores"

    def select(self, view):
        s = np.zeros(view.n)
        s[3] = np.nan
        return Selection(np.arange(view.budget), scores=s)


def _write_marker(path: str) -> str:
    Path(path).write_text(f"code ran in process {os.getpid()}")
    return path


class _Payload:
    """Unpickling it runs ``_write_marker`` in the unpickling process."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (_write_marker, (self.path,))


class Trojan(SelectionMethod):
    """Sends back objects whose unpickling would run its code in the harness's process."""

    name = "trojan"
    params = {"marker": "", "bypass": False}

    def select(self, view):
        if self.params["bypass"]:  # skip the worker's own conversion to numbers
            import coreset_bench.contestant as c

            c._PLAIN["select"] = lambda raw, name: raw
            return _Payload(self.params["marker"])
        return Selection(np.array([_Payload(self.params["marker"])] * view.budget, dtype=object))


class UsesModels(SelectionMethod):
    """Builds the proxy model and a fresh model inside the worker (both travel in the view)."""

    name = "uses-models"
    signals = frozenset({"proxy_model", "loss"})

    def select(self, view):
        proxy = view.signals["proxy_model"]()
        fresh = view.model_factory()
        with torch.no_grad():
            margin = proxy(view.x).max(1).values - fresh(view.x).max(1).values
        idx = np.argsort(-margin.numpy(), kind="stable")[: view.budget]
        return Selection(np.sort(idx), info={"proxy": type(proxy).__name__, "same_arch": type(proxy) is type(fresh)})


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        for cls in (Hostile, Crasher, Sleeper, Mutator, NanScores, Trojan, UsesModels):
            register(cls())


@pytest.fixture
def reg(fresh_plugins):
    fresh_plugins.register(_Plugin(), name="isolation-test")
    return fresh_plugins


def one_budget(reg):
    t = reg.track("coreset")
    prof = t.profile("tiny@1")
    return t, Profile(prof.track, prof.name, prof.version, {**prof.axes, "budget": [0.2]}, prof.seeds, prof.settings)


def run(reg, store, tmp_path, methods, **kw):
    t, prof = one_budget(reg)
    plan = make_plan(t, prof, methods, store, references=False)
    return execute(plan, store, default_context(tmp_path / "results", "cpu", None), **kw)


# ---- 1. structural isolation -------------------------------------------------------------------


def test_a_hostile_method_finds_no_test_data_and_each_refusal_fails_its_cell(reg, tmp_path):
    from coreset_bench import data as D

    D.resolve("digits")  # the harness's memo holds the test split in this process
    store = Store(tmp_path / "r.db")
    probes = ["memory", "resolve", "open", "dir_fd", "sklearn", "cat", "system", "fork", "ctypes", "all"]
    hostile = reg.method("hostile")
    outs = {o.cell.params["probe"]: o for o in run(reg, store, tmp_path, [hostile.with_params(probe=p) for p in probes])}
    # in memory there is nothing to find: the cell succeeds and its info says so
    mem = outs.pop("memory")
    assert mem.status == "done", mem.error
    info = store.results(status="done")[0]["info"]
    assert info["method_found"] == [] and info["method_refused"] == []
    assert info["method_pid"] != os.getpid()
    # every other path is refused, and the cell fails with the guard's one-line message even
    # though the plugin caught the error
    for probe, out in outs.items():
        assert out.status == "failed", (probe, out.error)
        assert out.error.startswith("LeakageError: plugin 'hostile' tried to"), (probe, out.error)
        assert "\n" not in out.error
        if probe not in ("resolve", "all"):
            assert GUARD in out.error, (probe, out.error)
    assert "open" in outs["open"].error and "digits.csv.gz" in outs["open"].error
    assert "sklearn/datasets (protected: dataset files" in outs["dir_fd"].error
    assert "subprocess.Popen" in outs["cat"].error and "os.system" in outs["system"].error
    assert "os.fork" in outs["fork"].error and "ctypes" in outs["ctypes"].error
    store.close()


def test_the_kit_check_no_test_access_passes_a_clean_method_and_catches_a_hostile_one(reg):
    sel = check_no_test_access(reg.method("random"))
    assert len(sel.indices) == make_selection_view().budget
    assert check_no_test_access(reg.method("hostile").with_params(probe="memory")).info["found"] == []
    for probe in ("open", "cat"):
        with pytest.raises(AssertionError, match="plugin 'hostile' tried to"):
            check_no_test_access(reg.method("hostile").with_params(probe=probe))


def test_the_proxy_model_and_the_model_factory_work_in_the_worker(reg, tmp_path):
    store = Store(tmp_path / "r.db")
    (out,) = run(reg, store, tmp_path, [reg.method("uses-models")])
    assert out.status == "done", out.error
    info = store.results(status="done")[0]["info"]
    assert info["method_same_arch"] is True and info["method_proxy"]
    store.close()


def test_a_crash_of_the_contestant_worker_fails_only_its_cell(reg, tmp_path):
    store = Store(tmp_path / "r.db")
    outs = run(reg, store, tmp_path, [reg.method("crasher"), reg.method("random")])
    by = {o.cell.method: o for o in outs}
    assert by["crasher"].status == "failed"
    assert by["crasher"].error == "plugin 'crasher' crashed the contestant worker process (exit code 7)"
    assert by["random"].status == "done"  # a fresh worker ran the next cell
    store.close()


def test_only_numbers_come_back_from_the_contestant_worker(reg, tmp_path):
    store = Store(tmp_path / "r.db")
    marker = tmp_path / "marker"
    methods = [reg.method("trojan").with_params(marker=str(marker), bypass=b) for b in (False, True)] + [reg.method("random")]
    outs = {(o.cell.method, o.cell.params.get("bypass")): o for o in run(reg, store, tmp_path, methods)}
    plain = outs[("trojan", False)]
    assert plain.status == "failed" and plain.error == "invalid output of plugin 'trojan': its indices are of dtype object; expected numbers"
    bypass = outs[("trojan", True)]
    assert bypass.status == "failed"
    assert bypass.error.startswith("plugin 'trojan' sent back an invalid answer from the contestant worker (UnpicklingError:")
    assert not marker.exists()  # the payload never ran in the harness
    assert outs[("random", None)].status == "done"
    store.close()


@pytest.mark.slow
def test_a_hung_contestant_times_out_and_its_worker_does_not_survive(reg, tmp_path):
    store = Store(tmp_path / "r.db")
    pidfile = tmp_path / "pid"
    sleeper = reg.method("iso-sleeper").with_params(pidfile=str(pidfile))
    outs = run(reg, store, tmp_path, [sleeper, reg.method("random")], timeout_s=25)
    by = {o.cell.method: o for o in outs}
    assert by["iso-sleeper"].status == "failed" and "timed out" in by["iso-sleeper"].error
    assert by["random"].status == "done"
    pid = int(pidfile.read_text())
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"contestant worker {pid} outlived its cell")
    store.close()


# ---- 2. read-only views ------------------------------------------------------------------------


def test_a_method_that_writes_into_its_view_does_not_change_later_cells(reg, tmp_path):
    clean_store = Store(tmp_path / "clean.db")
    clean = run(reg, clean_store, tmp_path / "clean", [reg.method("random"), reg.method("full")])
    store = Store(tmp_path / "r.db")
    outs = run(reg, store, tmp_path / "dirty", [reg.method("mutator"), reg.method("random"), reg.method("full")])
    assert [o.cell.method for o in outs] == ["mutator", "random", "full"]
    assert outs[0].status == "done"
    assert {o.cell.key: o.metrics for o in outs[1:]} == {o.cell.key: o.metrics for o in clean}
    assert all(o.status == "done" for o in clean)
    clean_store.close()
    store.close()


def _tensor() -> torch.Tensor:
    return torch.arange(12, dtype=torch.float32).reshape(3, 4)


def _array() -> np.ndarray:
    return np.arange(12, dtype=np.float64).reshape(3, 4)


def _mutate_all(view) -> None:
    for name in view.__dataclass_fields__:
        value = getattr(view, name)
        items = value if isinstance(value, (tuple, list)) else [value]
        for v in items:
            for leaf in v if isinstance(v, tuple) else [v]:
                if isinstance(leaf, torch.Tensor):
                    leaf.zero_()
                elif isinstance(leaf, np.ndarray):
                    with pytest.raises(ValueError, match="read-only"):
                        leaf[...] = 0
        if isinstance(value, list):
            value.clear()


def test_every_array_and_tensor_field_of_every_view_kind_is_protected():
    src = {"t": _tensor(), "a": _array(), "b": np.ones((2, 3), dtype=bool)}
    originals = {k: v.clone() if isinstance(v, torch.Tensor) else v.copy() for k, v in src.items()}
    node_data = [(src["t"], src["a"])]
    shadows = [lambda x: x]
    views = [
        SelectionView(src["t"], src["t"], src["t"], src["t"], 4, 2, 0.5, Signals({"loss": src["a"]}), 0, None, np.random.default_rng(0), lambda: None),
        NoiseView(None, src["t"], src["t"], src["t"], src["t"], 4, lambda: None, lambda *a: None, 0, None, x_val=src["t"], y_val_noisy=src["t"]),
        PrivacyView(src["t"], src["t"], 4, lambda x: x, shadows, src["b"], [lambda x: x], 0, None),
        DecentralizedView(node_data, 4, src["a"], src["t"], None, None, lambda: None, {}, 1, 0, None, np.random.default_rng(0)),
        ProvisioningView(src["a"], 3, 1.0, 0),
    ]
    for view in views:
        _mutate_all(view)
    sig = views[0].signals["loss"]
    with pytest.raises(ValueError, match="read-only"):
        sig[0, 0] = -1
    for k, v in src.items():
        assert (torch.equal(v, originals[k]) if isinstance(v, torch.Tensor) else np.array_equal(v, originals[k])), k
    assert len(shadows) == 1 and len(node_data) == 1


# ---- 5. NaN scores -----------------------------------------------------------------------------


def test_nan_scores_fail_the_cell(reg, tmp_path):
    view = make_selection_view()
    with pytest.raises(ValueError, match="nanscores: returned NaN in its scores"):
        validate_selection(NanScores().select(view), view, NanScores())
    inf = Selection(np.arange(view.budget), scores=np.full(view.n, np.inf))  # inf ranks (forgetting)
    assert np.isinf(validate_selection(inf, view, NanScores()).scores).all()
    with pytest.raises(ValueError, match=r"expected one score per pool sample"):
        validate_selection(Selection(np.arange(view.budget), scores=np.zeros(3)), view, NanScores())
    store = Store(tmp_path / "r.db")
    (out,) = run(reg, store, tmp_path, [reg.method("nanscores")])
    assert out.status == "failed"
    assert out.error.startswith("invalid output of plugin 'nanscores': nanscores: returned NaN in its scores (1 of ")
    store.close()


def test_views_of_one_cell_can_share_one_copy_and_the_source_stays_untouched():
    from coreset_bench.kinds import readonly

    src = _tensor()
    copy = readonly(src)
    assert copy is not src and readonly(copy) is copy  # one copy per cell: per-cell caches still hit
    views = [PrivacyView(copy, copy, 4, lambda x: x, [], np.zeros((0, 3), dtype=bool), [lambda x: x], 0, None) for _ in range(2)]
    assert views[0].x is views[1].x is copy
    views[0].x.zero_()
    assert torch.equal(src, _tensor())


def test_a_method_whose_class_is_not_importable_fails_its_cell_with_the_fix(reg, tmp_path):
    class Local(SelectionMethod):  # defined in a function: the worker cannot import it
        name = "local-method"

        def select(self, view):
            return np.arange(view.budget)

    class _LocalPlugin:
        @hookimpl
        def register_methods(self, register):
            register(Local())

    reg.register(_LocalPlugin(), name="local-plugin")
    store = Store(tmp_path / "r.db")
    (out,) = run(reg, store, tmp_path, [reg.method("local-method")])
    assert out.status == "failed"
    assert out.error.startswith("plugin 'local-method' cannot be sent to the contestant worker (")
    assert out.error.endswith("define its method class at module level of an importable module")
    store.close()
