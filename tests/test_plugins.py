"""Plugin loading through entry points: isolation, environment switches, registries, params.

Each test builds real distributions on disk (``NAME-VERSION.dist-info`` with ``METADATA`` and
``entry_points.txt`` beside the plugin modules), so the entry points carry their distribution as
installed packages do, and loads them into a fresh ``PluginManager``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
import textwrap
import types
import uuid

import numpy as np
import pytest

from coreset_bench import hookimpl, registry
from coreset_bench.kinds import Selection, SelectionMethod
from coreset_bench.registry import ENTRY_POINT_GROUP, PluginError, PluginManager, UnknownNameError

METHOD_SRC = '''
import numpy as np
from coreset_bench import hookimpl
from coreset_bench.kinds import Selection, SelectionMethod

class M(SelectionMethod):
    name = {name!r}
    version = "3"
    summary = "test method"
    params = {{"k": 1, "flag": False, "lr": 0.1, "tag": "a", "opt": None}}

    def select(self, view):
        return Selection(np.arange(view.budget))

@hookimpl
def register_methods(register):
    register(M())
'''


class FakeEnv:
    """Writes plugin modules and distributions under one directory put on ``sys.path``."""

    def __init__(self, root, monkeypatch):
        self.root = root
        self.prefix = "cbt_" + uuid.uuid4().hex[:8]
        self.modules: list[str] = []
        monkeypatch.syspath_prepend(str(root))

    def module(self, short: str, source: str) -> str:
        name = f"{self.prefix}_{short}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        self.modules.append(name)
        return name

    def method_module(self, short: str, method_name: str) -> str:
        return self.module(short, METHOD_SRC.format(name=method_name))

    def dist(self, package: str, version: str, eps: dict[str, str]) -> None:
        info = self.root / f"{package.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in eps.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")

    def entry_points(self) -> list[md.EntryPoint]:
        return [ep for d in md.distributions(path=[str(self.root)]) for ep in d.entry_points if ep.group == ENTRY_POINT_GROUP]

    def cleanup(self) -> None:
        for m in self.modules:
            sys.modules.pop(m, None)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    for var in ("CORESET_BENCH_LOAD_PLUGINS", "CORESET_BENCH_DISABLE_PLUGINS", "CORESET_BENCH_STRICT_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    env = FakeEnv(tmp_path, monkeypatch)
    yield env
    env.cleanup()


def load(env: FakeEnv) -> PluginManager:
    pm = PluginManager()
    pm.load(env.entry_points())
    return pm


def by_name(pm: PluginManager) -> dict[str, registry.PluginRecord]:
    return {r.name: r for r in pm.records}


def test_good_plugin_loads_with_its_distribution(fake):
    mod = fake.method_module("good", "alpha")
    fake.dist("fake-good", "1.2.3", {"alpha": mod})
    pm = load(fake)
    m = pm.methods.get("alpha")
    assert isinstance(m, SelectionMethod) and m.version == "3"
    assert m.package == "fake-good"
    rec = by_name(pm)["alpha"]
    assert rec.error is None
    assert (rec.package, rec.package_version, rec.module) == ("fake-good", "1.2.3", mod)
    assert rec.objects == [("methods", "alpha")]
    assert pm.pm.get_plugin("alpha") is sys.modules[mod]


def test_broken_import_is_listed_and_the_others_keep_working(fake):
    good = fake.method_module("good", "alpha")
    bad = fake.module("bad", "import cbt_no_such_module_xyz\n")
    fake.dist("fake-mixed", "0.1", {"alpha": good, "broken": bad, "missing": f"{fake.prefix}_does_not_exist"})
    pm = load(fake)
    recs = by_name(pm)
    assert "ModuleNotFoundError" in recs["broken"].error and "cbt_no_such_module_xyz" in recs["broken"].error
    assert recs["broken"].package == "fake-mixed"
    assert "ModuleNotFoundError" in recs["missing"].error
    assert recs["alpha"].error is None
    assert pm.methods.get("alpha").name == "alpha"
    assert set(pm.methods.items) == {"alpha"}


def test_register_hook_that_raises_leaves_nothing_behind(fake):
    half = fake.module(
        "half",
        METHOD_SRC.format(name="half")
        + '''
class Other(M):
    name = "other"

@hookimpl
def register_tracks(register):
    raise RuntimeError("boom in register_tracks")
''',
    )
    # register_methods of `half` succeeds (methods come before tracks) and must be rolled back
    good = fake.method_module("good", "alpha")
    fake.dist("fake-half", "0.1", {"half": half, "alpha": good})
    pm = load(fake)
    rec = by_name(pm)["half"]
    assert rec.error == "RuntimeError: boom in register_tracks"
    assert rec.objects == []
    assert "half" not in pm.methods.items
    assert pm.pm.get_plugin("half") is None
    assert "alpha" in pm.methods.items


def test_register_with_an_object_of_the_wrong_type_is_an_error(fake):
    mod = fake.module(
        "wrong",
        '''
from coreset_bench import hookimpl
@hookimpl
def register_methods(register):
    register("not a method")
''',
    )
    fake.dist("fake-wrong", "0.1", {"wrong": mod})
    pm = load(fake)
    assert "not a coreset_bench.kinds.Method instance" in by_name(pm)["wrong"].error


def test_duplicate_method_names_name_both_packages(fake):
    a = fake.method_module("a", "dup")
    b = fake.method_module("b", "dup")
    fake.dist("first-pkg", "1.0", {"a": a})
    fake.dist("second-pkg", "2.0", {"b": b})
    pm = load(fake)
    recs = by_name(pm)
    assert recs["a"].error is None and pm.methods.get("dup").package == "first-pkg"
    err = recs["b"].error
    assert "PluginError" in err and "'dup'" in err
    assert "first-pkg" in err and "second-pkg" in err
    assert "CORESET_BENCH_DISABLE_PLUGINS" in err
    assert pm.pm.get_plugin("b") is None


def test_disable_plugins_block_list(fake, monkeypatch):
    a = fake.method_module("a", "alpha")
    b = fake.method_module("b", "beta")
    c = fake.module("c", "raise SystemError('must not be imported')\n")
    fake.dist("fake-abc", "0.1", {"a": a, "b": b, "c": c})
    monkeypatch.setenv("CORESET_BENCH_DISABLE_PLUGINS", " b , c ")
    pm = load(fake)
    assert set(by_name(pm)) == {"a"}
    assert set(pm.methods.items) == {"alpha"}
    assert c not in sys.modules


def test_load_plugins_allow_list(fake, monkeypatch):
    a = fake.method_module("a", "alpha")
    b = fake.method_module("b", "beta")
    c = fake.module("c", "raise SystemError('must not be imported')\n")
    fake.dist("fake-abc", "0.1", {"a": a, "b": b, "c": c})
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "b")
    pm = load(fake)
    assert set(by_name(pm)) == {"b"}
    assert set(pm.methods.items) == {"beta"}
    assert c not in sys.modules
    # an empty allow-list loads nothing
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "")
    assert load(fake).records == []


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_strict_mode_makes_a_broken_plugin_fatal(fake, monkeypatch, value):
    good = fake.method_module("good", "alpha")
    bad = fake.module("bad", "raise ImportError('needs libfoo')\n")
    fake.dist("fake-strict", "0.4", {"alpha": good, "bad": bad})
    monkeypatch.setenv("CORESET_BENCH_STRICT_PLUGINS", value)
    with pytest.raises(PluginError, match=r"plugin 'bad' \(fake-strict\) failed to load: ImportError: needs libfoo"):
        load(fake)


@pytest.mark.parametrize("value", ["0", "false", ""])
def test_strict_mode_off_values(fake, monkeypatch, value):
    bad = fake.module("bad", "raise ImportError('needs libfoo')\n")
    fake.dist("fake-strict", "0.4", {"bad": bad})
    monkeypatch.setenv("CORESET_BENCH_STRICT_PLUGINS", value)
    assert "needs libfoo" in by_name(load(fake))["bad"].error


MISSPELT = '''
from coreset_bench import hookimpl

@hookimpl
def register_method(register):  # should be register_methods
    pass
'''


def test_misspelt_hook_is_reported_by_check_pending(fake, monkeypatch):
    mod = fake.module("typo", MISSPELT)
    good = fake.method_module("good", "alpha")
    fake.dist("fake-typo", "0.1", {"typo": mod, "alpha": good})
    pm = load(fake)
    recs = by_name(pm)
    assert "register_method" in recs["check_pending"].error
    assert "alpha" in pm.methods.items
    monkeypatch.setenv("CORESET_BENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="register_method"):
        load(fake)


def test_hookimpl_with_wrong_arguments_is_reported(fake):
    mod = fake.module(
        "args",
        '''
from coreset_bench import hookimpl
@hookimpl
def register_methods(register, extra):
    pass
''',
    )
    fake.dist("fake-args", "0.1", {"args": mod})
    err = by_name(load(fake))["args"].error
    assert "PluginValidationError" in err and "extra" in err


def test_load_is_idempotent_and_reads_entry_points_once(fake, monkeypatch):
    mod = fake.method_module("good", "alpha")
    fake.dist("fake-good", "1.0", {"alpha": mod})
    calls = []

    def entry_points(*, group):
        calls.append(group)
        return fake.entry_points()

    monkeypatch.setattr(registry.md, "entry_points", entry_points)
    pm = PluginManager()
    pm.load()
    pm.load()
    pm.register(types.SimpleNamespace(__name__="ns"), name="ns")  # register() loads first: no-op now
    assert calls == [ENTRY_POINT_GROUP]
    assert [r.name for r in pm.records] == ["alpha", "ns"]
    assert list(pm.methods.items) == ["alpha"]


def test_core_loads_first(fake):
    # `core` registers the datasets, architectures and tracks other plugins may look up
    z = fake.method_module("z", "aaa")
    core = fake.method_module("core", "zzz")
    fake.dist("fake-order", "1.0", {"aaa": z, "core": core})
    assert [r.name for r in load(fake).records] == ["core", "aaa"]


class _RuntimeMethod(SelectionMethod):
    name = "runtime-method"
    params = {"k": 2}

    def select(self, view):
        return Selection(np.arange(view.budget))


class _RuntimePlugin:
    @hookimpl
    def register_methods(self, register):
        register(_RuntimeMethod())


def test_register_and_unregister_at_runtime():
    pm = PluginManager()
    pm.load([])
    rec = pm.register(_RuntimePlugin(), name="rt")
    assert rec.package == "(in-process)" and rec.objects == [("methods", "runtime-method")]
    assert pm.methods.get("runtime-method").package == "(in-process)"
    pm.unregister("rt")
    with pytest.raises(UnknownNameError):
        pm.methods.get("runtime-method")
    assert pm.pm.get_plugin("rt") is None and pm.records == []
    # the name can be registered again; a clash raises and leaves the first registration intact
    pm.register(_RuntimePlugin(), name="rt")
    with pytest.raises(PluginError, match="two methods named 'runtime-method'"):
        pm.register(_RuntimePlugin(), name="rt2")
    assert pm.pm.get_plugin("rt2") is None
    assert [r.name for r in pm.records] == ["rt"]
    assert pm.methods.get("runtime-method").name == "runtime-method"


def test_module_level_facade_register_unregister(monkeypatch):
    monkeypatch.setattr(registry, "_manager", PluginManager())
    registry.manager().load([])
    from coreset_bench import plugins as facade

    assert facade.method is registry.method
    facade.register(_RuntimePlugin(), name="rt")
    assert [m.name for m in facade.methods(kind="selection")] == ["runtime-method"]
    assert facade.methods(kind="attack") == []
    facade.unregister("rt")
    assert facade.methods() == []


def test_unknown_name_lists_close_matches():
    pm = PluginManager()
    pm.load([])
    for name in ("lowloss", "highloss", "easycore"):
        m = type("X", (_RuntimeMethod,), {"name": name})()
        pm.methods.add(name, m, "pkg")
    with pytest.raises(UnknownNameError) as ei:
        pm.methods.get("lowlos")
    msg = str(ei.value)
    assert msg.startswith("unknown method 'lowlos'; did you mean lowloss")
    assert "known: easycore, highloss, lowloss" in msg
    with pytest.raises(UnknownNameError) as ei:
        pm.methods.get("qqqqqq")
    assert "did you mean" not in str(ei.value) and "known: easycore" in str(ei.value)
    assert isinstance(ei.value, LookupError)


class _Params(SelectionMethod):
    name = "params"
    params = {"k": 1, "flag": False, "lr": 0.1, "tag": "a", "opt": None}

    def select(self, view):
        return Selection(np.arange(view.budget))


def test_with_params_coerces_cli_strings_to_the_default_types():
    base = _Params()
    m = base.with_params(k="7", flag="true", lr="1e-3", tag="b", opt="x")
    assert m.params == {"k": 7, "flag": True, "lr": 0.001, "tag": "b", "opt": "x"}
    assert type(m.params["k"]) is int and type(m.params["lr"]) is float
    for text, val in (("1", True), ("yes", True), ("on", True), ("0", False), ("False", False), ("off", False)):
        assert base.with_params(flag=text).params["flag"] is val
    assert base.params == {"k": 1, "flag": False, "lr": 0.1, "tag": "a", "opt": None}  # a copy, not in place
    assert m is not base and type(m) is type(base)
    assert base.with_params(k=3).params["k"] == 3  # non-strings pass through


def test_with_params_rejects_unknown_and_malformed_values():
    base = _Params()
    with pytest.raises(ValueError, match=r"method 'params' has no parameter nope, zz; known parameters: flag, k, lr, opt, tag"):
        base.with_params(nope="1", zz="2")
    with pytest.raises(ValueError, match=r"method 'params', parameter 'flag': expected a boolean \(true/false\), got 'maybe'"):
        base.with_params(flag="maybe")
    with pytest.raises(ValueError, match=r"parameter 'k': expected an integer, got 'seven'"):
        base.with_params(k="seven")
    with pytest.raises(ValueError, match="has no parameter"):
        _Params(bogus=1)


def test_builtins_load_without_the_dev_dependencies():
    """pytest, selenium, torchattacks and Ray are dev extras: a plain ``pip install coreset-bench``
    must load every built-in plugin and the CLI without them (the coreset track once imported its
    output check from the pytest kit, so without pytest no track or dataset loaded)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in {'pytest', '_pytest', 'selenium', 'torchattacks', 'ray'}:
                    raise ImportError('dev dependency ' + name + ' is not installed')
        sys.meta_path.insert(0, Block())
        from coreset_bench import plugins, cli
        import coreset_bench.leaderboard.render
        plugins.load_plugins()
        bad = [f'{r.name}: {r.error}' for r in plugins.records() if r.error]
        print(chr(10).join(bad))
        print(len(plugins.methods()), plugins.dataset('digits').name, plugins.track('coreset').name)
        sys.exit(1 if bad else 0)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORESET_BENCH_")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "digits coreset" in res.stdout


@pytest.mark.parametrize("order", ["builtin-first", "impostor-first"])
def test_a_third_party_cannot_take_a_builtin_name_whatever_the_load_order(fake, order):
    # the impostor's entry point name sorts before the built-in's: before the fix it loaded first,
    # took `random`, and the built-in failed to load
    builtin = fake.method_module("builtin", "random")
    impostor = fake.method_module("impostor", "random")
    fake.dist("coreset-bench", "0.1.0", {"random": builtin})
    fake.dist("evil-pkg", "6.6", {"aaa_random": impostor})
    eps = fake.entry_points()
    eps.sort(key=lambda e: e.name, reverse=(order == "builtin-first"))
    assert [e.name for e in eps][0] == ("random" if order == "builtin-first" else "aaa_random")
    pm = PluginManager()
    pm.load(eps)
    recs = by_name(pm)
    assert recs["random"].error is None
    assert pm.methods.get("random").package == "coreset-bench"
    assert pm.methods.get("random").__class__.__module__ == builtin
    err = recs["aaa_random"].error
    assert err is not None and "reserved" in err and "'random'" in err
    assert "coreset-bench" in err and "evil-pkg" in err
    assert pm.pm.get_plugin("aaa_random") is None


def test_a_runtime_plugin_cannot_take_a_builtin_name(fake):
    builtin = fake.method_module("builtin", "runtime-method")
    fake.dist("coreset_bench", "0.1.0", {"rm": builtin})  # any spelling of the distribution name
    pm = PluginManager()
    pm.load(fake.entry_points())
    with pytest.raises(PluginError, match="reserved for the built-in"):
        pm.register(_RuntimePlugin(), name="rt")
    assert pm.methods.get("runtime-method").package == "coreset_bench"


def test_built_in_methods_live_in_the_subpackage_of_their_kind():
    """Issue 15: plugins/ is grouped by kind; a method module sits in the subpackage named after
    the kind of every method it registers (entry points and method names are unchanged)."""
    import importlib.metadata as md

    from coreset_bench import registry

    registry.load_plugins()
    eps = {ep.name: ep.value for ep in md.entry_points(group="coreset_bench") if ep.value.startswith("coreset_bench.plugins.")}
    assert eps["core"] == "coreset_bench.plugins.core"
    by_module: dict[str, set[str]] = {}
    for m in registry.methods():
        if m.package == "coreset-bench":
            by_module.setdefault(type(m).__module__, set()).add(m.kind)
    assert len(by_module) >= 40
    for module, kinds in by_module.items():
        parts = module.split(".")
        assert parts[:2] == ["coreset_bench", "plugins"] and len(parts) == 4, module
        assert kinds == {parts[2].replace("_", "-")}, (module, kinds)
    for name, value in eps.items():
        if name != "core":
            assert value.count(".") == 3, (name, value)


# ---- unknown signals: reported at load time and by the kit, with the valid names and shapes ----

BAD_SIGNAL_SRC = '''
import numpy as np
from coreset_bench import hookimpl
from coreset_bench.kinds import Selection, SelectionMethod

class Guess(SelectionMethod):
    name = "guess"
    summary = "asks for a signal that does not exist"
    signals = frozenset({"loss", "grad_norm"})

    def select(self, view):
        return Selection(np.arange(view.budget))

@hookimpl
def register_methods(register):
    register(Guess())
'''


def test_a_method_asking_for_an_unknown_signal_is_a_load_error_listing_the_known_ones(fake):
    bad = fake.module("guess", BAD_SIGNAL_SRC)
    good = fake.method_module("good", "alpha")
    fake.dist("fake-guess", "0.1", {"guess": bad, "alpha": good})
    pm = load(fake)
    err = by_name(pm)["guess"].error
    assert err is not None and "'grad_norm'" in err and "'loss'" not in err.split("known signals")[0]
    # every known signal is listed with its shape
    for name, shape in (("loss", "(E, N) float32"), ("logits", "(K, N, C) float32"), ("input_grad_norm", "(E, N) float32"), ("checkpoint_epochs", "(K,) int64")):
        assert f"{name} {shape}" in err
    assert "\n" not in err
    assert "guess" not in pm.methods.items and "alpha" in pm.methods.items


def test_plugins_command_lists_the_unknown_signal_as_a_load_problem(fake, monkeypatch):
    from typer.testing import CliRunner

    from coreset_bench import cli

    fake.dist("fake-guess", "0.1", {"guess": fake.module("guess", BAD_SIGNAL_SRC)})
    monkeypatch.setattr(registry, "_manager", load(fake))
    rows = __import__("json").loads(CliRunner().invoke(cli.app, ["plugins", "--json"]).stdout)
    (row,) = [r for r in rows if r["name"] == "guess"]
    assert row["kind"] == "?" and "unknown signal(s) 'grad_norm'" in row["error"] and "loss (E, N) float32" in row["error"]


def test_strict_mode_stops_on_an_unknown_signal(fake, monkeypatch):
    monkeypatch.setenv("CORESET_BENCH_STRICT_PLUGINS", "1")
    fake.dist("fake-guess", "0.1", {"guess": fake.module("guess", BAD_SIGNAL_SRC)})
    with pytest.raises(PluginError, match="unknown signal.*grad_norm"):
        load(fake)


def test_the_kit_rejects_an_unknown_signal_listing_the_known_ones_with_shapes():
    from coreset_bench.testing import check_selection_method

    class Guess(SelectionMethod):
        name = "guess"
        signals = frozenset({"logit"})

        def select(self, view):
            return Selection(np.arange(view.budget))

    with pytest.raises(AssertionError) as ei:
        check_selection_method(Guess())
    msg = str(ei.value)
    assert "'logit'" in msg and "logits (K, N, C) float32" in msg and "loss (E, N) float32" in msg


def test_reading_an_undeclared_signal_lists_the_known_ones_with_shapes():
    from coreset_bench.kinds import Signals

    with pytest.raises(KeyError) as ei:
        Signals({"loss": np.zeros((2, 3), np.float32)}, method="m")["logits"]
    assert "add it to the method's `signals`" in str(ei.value) and "logits (K, N, C) float32" in str(ei.value)
