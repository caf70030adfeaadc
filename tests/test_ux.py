"""What a new user meets (issue 23): progress, honest summaries, early errors, interrupts,
discoverability, housekeeping, start-up and export. The CLI is driven through its typer app
(as ``tests/test_cli.py``) and, where the terminal or the process matters, through the real
``coreset-bench`` entry point in a subprocess or a pseudo-terminal."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from coreset_bench import cli, hookimpl
from coreset_bench.kinds import Param, ProvisioningMethod, SelectionMethod
from coreset_bench.progress import RunDisplay, eta_seconds, fmt_duration, fraction_metric
from coreset_bench.runner import Outcome, make_plan
from coreset_bench.store import Store
from cli_helpers import invoke, one_line_error


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)


class Stepped(SelectionMethod):
    """A selection method with declared parameter types and ranges (and one undeclared)."""

    name = "stepped"
    summary = "keeps the first samples; declares its parameters"
    citation = "Nobody. A Test Method. 2026."
    params = {"fraction": 1.0, "stride": 1, "mode": "first", "flag": False}
    param_specs = {
        "fraction": Param(float, min=0, max=1, min_open=True, help="share of the pool"),
        "stride": {"type": int, "min": 1},
        "mode": Param(str, choices=("first", "last")),
    }

    def select(self, view):
        return list(range(view.budget))


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        register(Stepped())


@pytest.fixture
def reg(fresh_plugins):
    fresh_plugins.register(_Plugin(), name="ux-plugin")
    return fresh_plugins


# ---- 3. bad input is rejected before any cell exists --------------------------------------


BAD_PARAMS = [
    ("fraction=-3", "parameter 'fraction': expected float in (0, 1], got -3.0"),
    ("fraction=0", "parameter 'fraction': expected float in (0, 1], got 0.0"),
    ("fraction=nan", "parameter 'fraction': expected a finite number"),
    ("stride=0", "parameter 'stride': expected int >= 1, got 0"),
    ("stride=1.5", "parameter 'stride': expected an integer, got '1.5'"),
    ("mode=middle", "parameter 'mode': expected one of 'first', 'last', got 'middle'"),
]


def test_declared_parameter_ranges_are_checked_up_front(reg, tmp_path):
    db = tmp_path / "r.db"
    for param, message in BAD_PARAMS:
        for extra in (["--dry-run"], []):
            line = one_line_error(invoke("run", "--plugin", "stepped", "--profile", "tiny", "--param", param, "--db", str(db), *extra))
            assert message in line, (param, line)
            assert not db.exists()  # nothing stored, not even an empty database


def test_a_valid_declared_parameter_passes_and_is_coerced(reg):
    m = reg.method("stepped").with_params(fraction="0.5", stride="2", mode="last", flag="yes")
    assert m.params == {"fraction": 0.5, "stride": 2, "mode": "last", "flag": True}


def test_builtin_cld_declares_its_ranges(tmp_path, monkeypatch):
    """The issue's own example: `--param epochs_used=-3` used to pass --dry-run and store 12 failed cells."""
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard,cld")
    from coreset_bench import registry

    registry.reset()
    try:
        registry.load_plugins()
        line = one_line_error(invoke("run", "--plugin", "cld", "--param", "epochs_used=-3", "--dry-run", "--db", str(tmp_path / "r.db")))
        assert "method 'cld', parameter 'epochs_used': expected float in (0, 1], got -3.0" in line
        assert not (tmp_path / "r.db").exists()
    finally:
        registry.reset()


OTHER_KINDS = [  # (entry point, method, kind, bad --param, the one-line error)
    ("pgd", "pgd", "attack", "steps=0", "method 'pgd', parameter 'steps': expected int >= 1 or none, got 0"),
    ("pgd", "pgd", "attack", "restarts=two", "method 'pgd', parameter 'restarts': expected an integer, got 'two'"),
    ("trades", "trades", "training", "beta=-1", "method 'trades', parameter 'beta': expected float >= 0, got -1.0"),
    ("dp-sgd", "dp-sgd", "training", "accountant=moments", "method 'dp-sgd', parameter 'accountant': expected one of 'prv', 'rdp', got 'moments'"),
    ("dp-sgd", "dp-sgd", "training", "accountant=gdp", "method 'dp-sgd', parameter 'accountant': 'gdp' is refused: Opacus's GDP accountant is a central-limit approximation that under-noises"),
    ("lira", "lira", "privacy", "center=mode", "method 'lira', parameter 'center': expected one of 'mean', 'median', got 'mode'"),
    ("verifix", "verifix", "noise-correction", "folds=1", "method 'verifix', parameter 'folds': expected int >= 2, got 1"),
    ("idkd", "idkd", "distillation", "tau=1.5", "method 'idkd', parameter 'tau': expected float in [0, 1], got 1.5"),
    ("pkd", "pkd", "distillation", "phase_fraction=0", "method 'pkd', parameter 'phase_fraction': expected float in (0, 1], got 0.0"),
    ("static", "static", "provisioning", "recalibrate=maybe", "method 'static', parameter 'recalibrate': expected a boolean (true/false), got 'maybe'"),
    ("intelligent-pooling", "intelligent-pooling", "provisioning", "ramp=-2", "method 'intelligent-pooling', parameter 'ramp': expected float >= 0 or none, got -2.0"),
]


@pytest.fixture
def builtin_plugins(monkeypatch):
    """The core plugins and the non-selection plugins of ``OTHER_KINDS``, from their entry points."""
    from coreset_bench import registry

    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", ",".join(["core", "random", "full", "standard", *dict.fromkeys(e for e, *_ in OTHER_KINDS)]))
    old = registry._manager
    registry.reset()
    registry.load_plugins()
    yield registry
    registry._manager = old


#: parameters that take a list or either a word or a number: checked by the method itself
UNDECLARED = {("intelligent-pooling", "quantiles"), ("ccs", "beta"), ("d2-pruning", "mis_ratio")}


def test_every_builtin_method_declares_the_parameters_it_reads(monkeypatch):
    """Every installed method (selection, attacks, privacy attacks, training, noise correction,
    distillation, provisioning) declares the types and ranges of its parameters; each default
    satisfies its own declaration."""
    from coreset_bench import registry

    monkeypatch.delenv("CORESET_BENCH_LOAD_PLUGINS", raising=False)
    old = registry._manager
    registry.reset()
    try:
        registry.load_plugins()
        assert [r.error for r in registry.records() if r.error] == []
        kinds = set()
        for m in registry.methods():
            kinds.add(m.kind)
            specs = m.param_spec_map()
            assert {k for k in m.params if (m.name, k) not in UNDECLARED} <= set(specs), (m.name, sorted(set(m.params) - set(specs)))
            assert all(specs[k].problem(m.params[k]) is None for k in specs), m.name
        assert {"selection", "attack", "training", "privacy", "noise-correction", "distillation", "provisioning"} <= kinds
    finally:
        registry._manager = old


@pytest.mark.parametrize("entry,name,kind,param,message", OTHER_KINDS, ids=[f"{k}-{n}-{p.split('=')[0]}" for _, n, k, p, _ in OTHER_KINDS])
def test_other_kinds_reject_bad_parameters_before_any_cell(builtin_plugins, tmp_path, entry, name, kind, param, message):
    assert builtin_plugins.method(name).kind == kind
    db = tmp_path / "r.db"
    for extra in (["--dry-run"], []):
        line = one_line_error(invoke("run", "--plugin", name, "--param", param, "--db", str(db), *extra))
        assert message in line, line
        assert not db.exists()  # nothing stored, not even an empty database


def test_other_kinds_accept_declared_values_with_their_types(builtin_plugins):
    assert builtin_plugins.method("dp-sgd").with_params(epsilon="inf").params["epsilon"] == float("inf")  # the sweep's non-private reference
    assert builtin_plugins.method("pgd").with_params(steps="none", step_size="0.01").params == {"steps": None, "step_size": 0.01, "restarts": 1, "random_start": True}
    assert builtin_plugins.method("intelligent-pooling").with_params(ramp="3").params["ramp"] == 3.0
    assert builtin_plugins.method("pkd").with_params(order="mv,own").params["order"] == "mv,own"
    res = invoke("plugins", "show", "lira")
    assert "center = 'median'  (str one of 'mean', 'median')" in res.stdout


def test_a_declaration_its_own_default_breaks_is_a_load_error(fresh_plugins):
    class Bad(SelectionMethod):
        name = "bad-decl"
        params = {"k": 0}
        param_specs = {"k": Param(int, min=1)}

        def select(self, view):
            return []

    class Undeclared(SelectionMethod):
        name = "undeclared-decl"
        params = {"k": 1}
        param_specs = {"j": Param(int)}

        def select(self, view):
            return []

    from coreset_bench.registry import PluginError

    for cls, msg in ((Bad, "the default of parameter 'k' breaks its own declaration (expected int >= 1, got 0)"), (Undeclared, "declares param_specs for j, which it has no default for")):

        class P:
            @hookimpl
            def register_methods(self, register, cls=cls):
                register(cls())

        with pytest.raises(PluginError, match=msg.replace("(", r"\(").replace(")", r"\)")):
            fresh_plugins.register(P(), name=f"p-{cls.name}")


def test_a_missing_image_folder_is_one_error_before_the_plan(reg, tmp_path):
    db = tmp_path / "r.db"
    for extra in ([], ["--dry-run"]):
        res = invoke("run", "--plugin", "random", "--profile", "tiny", "--dataset", f"imagefolder:{tmp_path / 'nope'}", "--db", str(db), *extra)
        line = one_line_error(res)
        assert f"imagefolder: {tmp_path / 'nope'} is not a directory" in line and "random" not in line
        assert not db.exists()
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    line = one_line_error(invoke("run", "--plugin", "random", "--profile", "tiny", "--dataset", f"imagefolder:{empty}", "--db", str(db)))
    assert "no images" in line and not db.exists()
    line = one_line_error(invoke("run", "--plugin", "random", "--profile", "tiny", "--dataset", "digitz", "--db", str(db)))
    assert "unknown dataset 'digitz'" in line and "digits" in line and not db.exists()


# ---- 2. the summary shows what this run ran --------------------------------------------------


def _store_done(store, plan, value):
    for p in plan.todo:
        store.claim(p.cell, p.method, {})
        store.finish(p.cell.key, metrics={"clean_acc": value, "autoattack_acc": value / 2}, timings={}, info={})


def _summary_text(monkeypatch, store, t, prof, plan, methods, dataset=None):
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=250))
    cli._summary(store, t, prof, plan, methods, None, dataset)
    return buf.getvalue()


def test_summary_groups_by_parameters_and_shows_only_this_invocations_cells(reg, tmp_path, monkeypatch):
    store = Store(tmp_path / "r.db")
    t = reg.track("coreset")
    prof = t.profile("tiny")
    _store_done(store, make_plan(t, prof, [reg.method("stepped")], store), 0.6)
    half = reg.method("stepped").with_params(fraction="0.5")
    _store_done(store, make_plan(t, prof, [half], store), 0.9)
    plan = make_plan(t, prof, [half], store)
    out = _summary_text(monkeypatch, store, t, prof, plan, [half])
    rows = [ln for ln in out.splitlines() if ln.startswith("  ")]
    # this run's setting (named by its parameters) and the references it is compared with
    assert [r.split()[0] for r in rows] == ["full", "random", "random", "stepped(fraction=0.5)", "stepped(fraction=0.5)"]
    assert all("n=1" in r for r in rows)  # two settings are never merged as if they were seeds
    assert "90.00 %" in out and not any(r.startswith("  stepped ") for r in rows)  # the default setting is not this run
    assert "mean ± std" in out and prof.id in out


def test_summary_after_an_all_failed_run_does_not_show_another_settings_numbers(reg, tmp_path, monkeypatch):
    store = Store(tmp_path / "r.db")
    t = reg.track("coreset")
    prof = t.profile("tiny")
    _store_done(store, make_plan(t, prof, [reg.method("stepped")], store), 0.6)
    half = reg.method("stepped").with_params(fraction="0.5")
    plan = make_plan(t, prof, [half], store, references=False)
    for p in plan.todo:
        store.claim(p.cell, p.method, {})
        store.fail(p.cell.key, "boom", None)
    out = _summary_text(monkeypatch, store, t, prof, plan, [half])
    assert "no finished cells of this run" in out and "60.00" not in out


def test_summary_of_a_derived_profile_does_not_show_the_base_profiles_results(reg, tmp_path, monkeypatch):
    store = Store(tmp_path / "r.db")
    t = reg.track("coreset")
    prof = t.profile("tiny")
    m = [reg.method("random")]
    _store_done(store, make_plan(t, prof, m, store), 0.6)
    plan = make_plan(t, prof, m, store, dataset=f"imagefolder:{tmp_path}")
    assert plan.profile.id.startswith("coreset/tiny:imagefolder:")
    out = _summary_text(monkeypatch, store, t, prof, plan, m, dataset=f"imagefolder:{tmp_path}")
    assert "no finished cells" in out and "60.00" not in out
    _store_done(store, plan, 0.7)
    out = _summary_text(monkeypatch, store, t, prof, plan, m, dataset=f"imagefolder:{tmp_path}")
    assert plan.profile.id in out and "70.00 %" in out and "60.00" not in out


# ---- 1. progress and time --------------------------------------------------------------------


def test_eta_weighs_cells_by_cost_hint():
    assert eta_seconds(10.0, 0.0, 5.0) is None  # nothing done: no estimate yet
    assert eta_seconds(10.0, 1.0, 5.0) == pytest.approx(40.0)
    assert eta_seconds(10.0, 4.0, 5.0) == pytest.approx(2.5)
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(None) == "?"
    assert fraction_metric([0.1, 1.0]) and not fraction_metric([0.5, 3.0]) and not fraction_metric([])


def test_amounts_are_never_shown_as_percent_however_small():
    """A pooling cell printed `idle_hours_per_day=10.00 %` for 0.1 idle hours a day: one value
    in [0, 1] made it look like a fraction. Amounts (per day, seconds, sizes) are never %."""
    assert not fraction_metric([0.1], "idle_hours_per_day") and not fraction_metric([0.2], "fit_s")
    assert fraction_metric([0.1], "hit_rate") and fraction_metric([0.5], "min_node_acc")
    buf = io.StringIO()
    d = RunDisplay(Console(file=buf, width=80), {"a": 1.0}, ["idle_saving", "idle_hours_per_day"], terminal=False)
    with d:
        d.on_done(Outcome(_Cell("a"), "done", metrics={"idle_saving": 0.9999, "idle_hours_per_day": 0.1}, seconds=1.0))
    assert "idle_saving=99.99 % idle_hours_per_day=0.1 " in buf.getvalue()


class _Cell:
    def __init__(self, key):
        self.key = key

    def label(self):
        return f"m budget={self.key}"


def test_terminal_display_shows_counts_failures_eta_and_the_current_step():
    buf = io.StringIO()
    con = Console(file=buf, force_terminal=True, width=160)
    now = [0.0]
    d = RunDisplay(con, {"a": 1.0, "b": 3.0, "c": 1.0}, ["clean_acc"], terminal=True, clock=lambda: now[0])
    with d:
        d.on_progress("a", "proxy", 0.5)
        now[0] = 10.0
        d.on_done(Outcome(_Cell("a"), "done", metrics={"clean_acc": 0.5}, seconds=10.0))
        d.on_progress("b", "AutoAttack", 0.0)
        assert d.eta() == pytest.approx(40.0)  # 10 s for cost 1, cost 4 left
        d._progress.refresh()
        now[0] = 20.0
        d.on_done(Outcome(_Cell("b"), "failed", error="boom"))
        d._progress.refresh()
    text = buf.getvalue()
    assert "1/3" in text and "2/3" in text
    assert "1 failed" in text and "~0:00:40 left" in text
    assert "proxy" in text and "AutoAttack" in text  # the step the cell is in
    assert "clean_acc=50.00 %" in text and "boom" in text
    assert d.failures and d.failed == 1 and d.done == 2


def test_plain_display_prints_one_line_per_cell_with_counters():
    buf = io.StringIO()
    con = Console(file=buf, width=80)  # a pipe: not a terminal, 80 columns
    now = [0.0]
    d = RunDisplay(con, {"a": 1.0, "b": 1.0}, ["autoattack_acc", "clean_acc"], terminal=False, clock=lambda: now[0])
    with d:
        now[0] = 5.0
        d.on_done(Outcome(_Cell("a" * 60), "done", metrics={"autoattack_acc": 0.25, "clean_acc": 0.875}, seconds=5.0))
        now[0] = 6.0
        d.on_done(Outcome(_Cell("b"), "failed", error="plugin 'm' failed: ValueError: x ± y"))
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2  # long lines are not wrapped at 80 columns
    assert lines[0].startswith("done   m budget=aaa") and "autoattack_acc=25.00 % clean_acc=87.50 % (5.0s)" in lines[0]
    assert lines[0].endswith("[1/2 cells, 0 failed, 0:00:05 elapsed, ~0:00:05 left]")
    assert lines[1].startswith("failed m budget=b: plugin 'm' failed: ValueError: x ± y [2/2 cells, 1 failed, 0:00:06 elapsed")


@pytest.mark.slow
def test_plain_output_is_one_unwrapped_line_per_cell_without_tables(reg, tmp_path):
    """Not a terminal (CliRunner, a pipe): no 80-column table, no wrapped `±`."""
    db = tmp_path / "r.db"
    res = invoke("run", "--plugin", "random", "--profile", "tiny", "--db", str(db), "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    done = [ln for ln in lines if ln.startswith("done ")]
    assert len(done) == 3
    for i, ln in enumerate(done, 1):
        assert f"[{i}/3 cells, 0 failed, " in ln and " elapsed, ~" in ln and ln.endswith("left]")
        assert "clean_acc=" in ln and " %" in ln
    assert not any(ch in res.stdout for ch in "┃│━─┏")  # no box drawing
    summary = [ln for ln in lines if ln.startswith("  ")]
    assert len(summary) == 3 and all("clean_acc=" in ln for ln in summary)
    assert any(ln.startswith("wall time ") and "results in sqlite:///" in ln for ln in lines)


def _run_in_pty(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 300.0) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin/stdout/stderr (what a user's shell gives it),
    through ``benchmarks/capture_progress.py``'s ``capture``; returns the exit status and
    everything it wrote (control sequences included)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("capture_progress", Path(__file__).resolve().parent.parent / "benchmarks" / "capture_progress.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    code, raw, _wall = mod.capture(argv, env, timeout, cwd=cwd)
    return code, raw.decode("utf-8", "replace")


@pytest.mark.slow
def test_a_terminal_gets_the_progress_bar_through_the_real_entry_point(tmp_path):
    """`coreset-bench run` on a (pseudo-)terminal: the live bar with cells done / total, failures,
    the time left, the step the running cell is in, then the summary table."""
    env = dict(_bench_env(tmp_path), TERM="xterm-256color", COLUMNS="120")
    code, out = _run_in_pty([*_entry_point(), "run", "--plugin", "random", "--profile", "tiny", "--db", str(tmp_path / "r.db"), "--device", "cpu"], env, tmp_path)
    assert code == 0, out
    assert "\x1b[" in out  # a terminal: colours and cursor control, not plain lines
    assert "loading dataset digits" in out  # the spinner while the data is decoded, before any cell
    assert "cells" in out and "0/3" in out and "0 failed" in out and "left" in out  # the live bar
    assert "  train" in out and "  evaluate" in out  # the step the running cell is in
    assert "clean_acc=" in out and "[1/3 cells" not in out  # finished cells, no plain counters
    import re

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "┏" in plain and "┃ method" in plain  # the summary is a table on a terminal


class FlakyPool(ProvisioningMethod):
    """A constant pool ``scale`` × the recent peak; ``explode`` makes every cell fail."""

    name = "flaky-pool"
    summary = "test provisioning method"
    params = {"scale": 1.0, "explode": False}
    param_specs = {"scale": Param(float, min=0, min_open=True)}

    def fit(self, view):
        if self.params["explode"]:
            raise RuntimeError("boom in fit")
        self._peak = float(np.max(view.history)) if len(view.history) else 1.0

    def plan(self, view):
        return np.full(view.horizon, float(np.ceil(self.params["scale"] * self._peak)))


class _PoolPlugin:
    @hookimpl
    def register_methods(self, register):
        register(FlakyPool())


@pytest.fixture
def pool_plugins(monkeypatch):
    from coreset_bench import registry

    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard,static,oracle")
    old = registry._manager
    registry.reset()
    registry.load_plugins()
    registry.register(_PoolPlugin(), name="ux-pool-plugin")
    yield registry
    registry._manager = old


def test_a_run_through_the_cli_prints_plain_lines_and_summarises_only_this_runs_setting(pool_plugins, tmp_path):
    """Items 1 and 2 through the command itself (a fast track): off a terminal one unwrapped line
    per finished cell with counters; the summary groups by parameter setting, shows only this
    invocation's cells (and its references), and an all-failed run shows no other setting's numbers."""
    db = str(tmp_path / "r.db")
    first = invoke("run", "--track", "pooling", "--profile", "tiny", "-p", "flaky-pool", "--db", db)
    assert first.exit_code == 0, first.stderr
    done = [ln for ln in first.stdout.splitlines() if ln.startswith("done ")]
    total = len(done)
    assert total >= 2 and all(f"[{i}/{total} cells, 0 failed, " in ln and ln.endswith("left]") for i, ln in enumerate(done, 1))
    assert all("idle_saving=" in ln and " %" in ln for ln in done)
    assert not any(ch in first.stdout for ch in "┃│━─┏")  # no table drawn into a pipe
    rows = [ln for ln in first.stdout.splitlines() if ln.startswith("  ")]
    assert any(r.startswith("  flaky-pool  n=1") for r in rows)

    second = invoke("run", "--track", "pooling", "--profile", "tiny", "-p", "flaky-pool", "--param", "scale=2", "--db", db)
    assert second.exit_code == 0, second.stderr
    rows = [ln for ln in second.stdout.splitlines() if ln.startswith("  ")]
    names = [r.split()[0] for r in rows]
    assert "flaky-pool(scale=2.0)" in names and "flaky-pool" not in names  # this setting, named; not the other one
    assert all("n=1" in r for r in rows)  # two settings are never merged as seeds

    failed = invoke("run", "--track", "pooling", "--profile", "tiny", "-p", "flaky-pool", "--param", "explode=true", "--db", db)
    assert failed.exit_code == 1
    assert "no finished cells of this run" in failed.stdout and "flaky-pool(scale" not in failed.stdout
    assert failed.stderr.count("boom in fit") == 1  # one failed cell, named once in the closing list


# ---- 4. Ctrl-C is not a failure ----------------------------------------------------------------
# ---- 4. Ctrl-C is not a failure ----------------------------------------------------------------


def _bench_env(tmp_path):
    env = dict(os.environ, CORESET_BENCH_LOAD_PLUGINS="core,random,full,standard", CORESET_BENCH_THREADS="1", CORESET_BENCH_JOBS="1", COLUMNS="80")
    env.pop("CORESET_BENCH_DB", None)
    return env


def _entry_point() -> list[str]:
    return [sys.executable, "-c", "import sys; from coreset_bench.cli import main; sys.argv[0] = 'coreset-bench'; main()"]


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])  # in-process, and the process pool a user gets by default
def test_ctrl_c_through_the_real_entry_point_marks_cells_interrupted_not_failed(tmp_path, jobs):
    import signal
    import sqlite3
    import time

    db = tmp_path / "r.db"
    env = dict(_bench_env(tmp_path), CORESET_BENCH_JOBS=jobs)
    proc = subprocess.Popen([*_entry_point(), "run", "--plugin", "random", "--profile", "tiny", "--db", str(db), "--device", "cpu"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # wait until cells are claimed (running) but not all finished
            if db.exists():
                try:
                    with sqlite3.connect(db) as con:
                        if con.execute("SELECT COUNT(*) FROM run WHERE status = 'running'").fetchone()[0]:
                            break
                except sqlite3.Error:
                    pass
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(db) as con:
        statuses = [r[0] for r in con.execute("SELECT status FROM run")]
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in statuses and "failed" not in statuses and "running" not in statuses, statuses
    assert "marked interrupted (not failed)" in err, (out, err)
    import re

    # the message counts what is stored: finished cells and the ones marked interrupted
    said = re.search(r"interrupted: (\d+) finished cell\(s\) are stored; (\d+) cut short(?: and (\d+) not yet started)?", err)
    assert said, err
    done, cut, waiting = int(said.group(1)), int(said.group(2)), int(said.group(3) or 0)
    assert (done, cut + waiting) == (statuses.count("done"), statuses.count("interrupted")), (err, statuses)
    assert cut <= int(jobs), err  # only the cells actually running were cut short (issue 38 item 10)
    # immediate feedback, before the workers are stopped and the cells marked
    assert re.search(r"Ctrl-C: stopping (\d+) running cell\(s\)", err) and err.index("Ctrl-C: stopping") < err.index("interrupted: "), err


def test_interrupted_cells_are_not_failures_in_doctor_or_results(reg, wide, tmp_path):
    db = tmp_path / "r.db"
    store = Store(db)
    t = reg.track("coreset")
    plan = make_plan(t, t.profile("tiny"), [reg.method("random")], store, references=False)
    for p in plan.todo:
        store.claim(p.cell, p.method, {})
        store.interrupt(p.cell.key, "interrupted (Ctrl-C)")
    doc = invoke("doctor", "--db", str(db))
    assert "0 done, 0 failed, 2 interrupted" in doc.stdout
    assert json.loads(invoke("results", "--json", "--db", str(db), "--status", "failed").stdout) == []
    assert {r["status"] for r in json.loads(invoke("results", "--json", "--db", str(db)).stdout)} == {"interrupted"}
    again = make_plan(t, t.profile("tiny"), [reg.method("random")], store, references=False)
    assert len(again.todo) == 2  # a rerun computes them


# ---- 7. start-up ------------------------------------------------------------------------------

_PROBE = (
    "import sys\n"
    "sys.argv = ['coreset-bench'] + sys.argv[1:]\n"
    "from coreset_bench.cli import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    print('LOADED', 'torch' in sys.modules, 'coreset_bench.registry' in sys.modules, file=sys.stderr)\n"
)


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["run", "--help"], ["results", "--db", "DB"]])
def test_version_help_and_results_import_neither_torch_nor_plugins(tmp_path, argv):
    """Through the real entry point (``main``): no plugin load, no torch import (the benchmark
    ``benchmarks/bench_startup.py`` measures the time; this pins the cause)."""
    db = tmp_path / "r.db"
    Store(db).close()
    res = subprocess.run([sys.executable, "-c", _PROBE, *[str(db) if a == "DB" else a for a in argv]], capture_output=True, text=True, env=_bench_env(tmp_path), timeout=300)
    assert res.returncode == 0, res.stderr
    assert "LOADED False False" in res.stderr
    if argv == ["--help"]:
        for cmd in ("run", "plugins", "results", "leaderboard", "export", "compare"):
            assert cmd in res.stdout


# ---- 5. discoverability ---------------------------------------------------------------------


def test_plugins_lists_one_line_per_plugin_at_80_columns(reg, monkeypatch):
    rows = json.loads(invoke("plugins", "--json").stdout)
    for terminal in (False, True):
        buf = io.StringIO()
        monkeypatch.setattr(cli, "console", Console(file=buf, width=80, force_terminal=terminal, color_system=None))
        assert invoke("plugins").exit_code == 0
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        body = [ln for ln in lines if ln.split() and ln.split()[0] in {r["name"] for r in rows}]
        assert len(body) == len(rows), buf.getvalue()  # one line each, never wrapped
        assert len(lines) <= len(rows) + 3
        if terminal:
            assert all(len(ln) <= 80 for ln in lines)
    stepped = next(ln for ln in body if ln.startswith("stepped"))
    assert "selection" in stepped and "coreset" in stepped and "keeps the first samples" in stepped
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=250))
    assert invoke("plugins", "--verbose").exit_code == 0
    assert "package" in buf.getvalue() and "version" in buf.getvalue() and "coreset-bench" in buf.getvalue()


def test_plugins_show_prints_parameters_with_types_ranges_and_citation(reg, wide):
    res = invoke("plugins", "show", "stepped")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "stepped (selection)" in out and "citation: Nobody. A Test Method. 2026." in out and "tracks: coreset" in out
    assert "fraction = 1.0  (float in (0, 1])  share of the pool" in out
    assert "stride = 1  (int >= 1)" in out and "mode = 'first'  (str one of 'first', 'last')" in out
    assert "flag = False  (bool)" in out  # undeclared: the default's type
    data = json.loads(invoke("plugins", "show", "stepped", "--json").stdout)
    assert data["params"]["fraction"] == {"default": 1.0, "rule": "float in (0, 1]", "help": "share of the pool"}
    assert data["package"] and data["tracks"] == ["coreset"]
    line = one_line_error(invoke("plugins", "show", "steped"))
    assert "no plugin named 'steped'" in line and "stepped" in line


def test_profiles_show_the_conventions_without_json(reg, wide):
    res = invoke("profiles", "coreset")
    assert res.exit_code == 0
    block = res.stdout.split("coreset/tiny@1", 1)[1].split("coreset/", 1)[0]
    assert "budget: kept fraction of the training pool" in block
    assert "class balance: method's choice" in block
    assert "training: 40 optimizer steps" in block
    item = {p["id"]: p for p in json.loads(invoke("profiles", "coreset", "--json").stdout)}["coreset/tiny@1"]
    assert item["conventions"]["training"].startswith("40 optimizer steps")


def test_results_json_help_matches_its_output(reg, tmp_path):
    Store(tmp_path / "r.db").close()
    assert "JSON array" in " ".join(invoke("results", "--help").stdout.split())
    assert isinstance(json.loads(invoke("results", "--json", "--db", str(tmp_path / "r.db")).stdout), list)


# ---- 6. housekeeping and comparison -------------------------------------------------------------


def _two_settings(reg, db, seeds=(0, 1, 2)):
    store = Store(db)
    t = reg.track("coreset")
    prof = t.profile("tiny")
    for m, base in ((reg.method("stepped"), 0.60), (reg.method("stepped").with_params(fraction="0.5"), 0.55)):
        plan = make_plan(t, prof, [m], store, seeds=list(seeds), references=False)
        for p in plan.todo:
            store.claim(p.cell, p.method, {})
            store.finish(p.cell.key, metrics={"clean_acc": base + 0.01 * p.cell.repeat + (0.002 if p.cell.axes["budget"] == 0.5 else 0.0)}, timings={}, info={})
    return store, t, prof


def test_compare_prints_the_paired_difference_per_cell_with_an_interval(reg, wide, tmp_path):
    db = tmp_path / "r.db"
    _two_settings(reg, db)
    res = invoke("compare", "stepped:fraction=0.5", "stepped", "--db", str(db))
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("coreset/tiny@1: clean_acc, stepped:fraction=0.5 − stepped (paired by seed")
    cells = [ln for ln in lines if "budget=" in ln]
    assert len(cells) == 2 and all("n=3" in ln and "-5.00 pp" in ln for ln in cells)  # the same paired gap at every seed
    assert "(no interval" in cells[0]  # zero spread: no fake "± 0"
    data = json.loads(invoke("compare", "stepped:fraction=0.5", "stepped", "--db", str(db), "--json").stdout)
    assert data[0]["overall"]["mean"] == pytest.approx(-0.05) and data[0]["overall"]["n"] == 3
    line = one_line_error(invoke("compare", "stepped:fraction=2", "stepped", "--db", str(db)))
    assert "parameter 'fraction': expected float in (0, 1]" in line
    line = one_line_error(invoke("compare", "stepped:stride=3", "stepped", "--db", str(db)))
    assert "no finished runs of stepped:stride=3" in line


def test_compare_clips_a_difference_of_accuracies_to_plus_minus_100_pp(reg, wide, tmp_path):
    """Per-seed differences 100, 100, 50 pp: the t-interval over 3 seeds runs to +155 pp, but a
    difference of two accuracies lies in [−100, 100] pp (the track declares clean_acc in [0, 1])."""
    db = tmp_path / "r.db"
    store = Store(db)
    t = reg.track("coreset")
    prof = t.profile("tiny")
    for m, accs in ((reg.method("stepped"), (0.0, 0.0, 0.5)), (reg.method("stepped").with_params(fraction="0.5"), (1.0, 1.0, 1.0))):
        plan = make_plan(t, prof, [m], store, seeds=[0, 1, 2], references=False)
        for p in plan.todo:
            store.claim(p.cell, p.method, {})
            store.finish(p.cell.key, metrics={"clean_acc": accs[p.cell.repeat]}, timings={}, info={})
    store.close()
    data = json.loads(invoke("compare", "stepped:fraction=0.5", "stepped", "--metric", "clean_acc", "--db", str(db), "--json").stdout)
    assert data[0]["overall"]["mean"] == pytest.approx(5 / 6)
    assert data[0]["overall"]["high"] == 1.0 and data[0]["overall"]["low"] == pytest.approx(5 / 6 - 4.302652729911275 * (0.5 / math.sqrt(3)) / math.sqrt(3))
    assert all(c["interval"]["high"] <= 1.0 for c in data[0]["cells"])
    res = invoke("compare", "stepped:fraction=0.5", "stepped", "--metric", "clean_acc", "--db", str(db))
    assert res.exit_code == 0 and "+100.00] pp" in res.stdout


def test_results_prune_removes_failed_runs_or_a_parameter_setting(reg, wide, tmp_path):
    db = tmp_path / "r.db"
    store, t, prof = _two_settings(reg, db, seeds=(0,))
    bad = make_plan(t, prof, [reg.method("stepped").with_params(stride="2")], store, references=False)
    for i, p in enumerate(bad.todo):
        store.claim(p.cell, p.method, {})
        (store.fail if i == 0 else store.interrupt)(p.cell.key, "boom", *([None] if i == 0 else []))
    assert len(store.runs()) == 6
    line = one_line_error(invoke("results", "prune", "--db", str(db)))
    assert "name what to remove" in line
    dry = invoke("results", "prune", "--failed", "--dry-run", "--db", str(db))
    assert "2 run(s) would be removed" in dry.stdout and len(store.runs()) == 6
    res = invoke("results", "prune", "--failed", "--db", str(db))
    assert res.exit_code == 0 and "removed 2 run(s)" in res.stdout
    assert {r.status for r in store.runs()} == {"done"} and len(store.runs()) == 4
    res = invoke("results", "prune", "--plugin", "stepped", "--param", "fraction=0.5", "--db", str(db))
    assert "removed 2 run(s)" in res.stdout
    assert [json.loads(r.params)["fraction"] for r in store.runs()] == [1.0, 1.0]


# ---- 8. export leaves unchanged entries alone -------------------------------------------------


def test_export_does_not_rewrite_unchanged_entries_and_names_the_setting_in_warnings(reg, wide, tmp_path):
    cli._add_builtin_commands()  # what main() adds: leaderboard, export, keys
    db = tmp_path / "r.db"
    store, t, prof = _two_settings(reg, db, seeds=(0,))
    out = tmp_path / "entries"
    first = invoke("export", "--out", str(out), "--db", str(db))
    assert first.exit_code == 0, first.stderr
    files = sorted(out.rglob("*.json"))
    assert len(files) == 2
    before = {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    import time

    time.sleep(1.1)  # a rewrite would carry a new export time
    again = invoke("export", "--out", str(out), "--db", str(db))
    assert again.exit_code == 0 and again.stdout.count("(unchanged)") == 2
    assert {f: (f.read_bytes(), f.stat().st_mtime_ns) for f in files} == before
    # a changed result changes the entry: it is written again (and only it)
    key = make_plan(t, prof, [reg.method("stepped")], store, references=False).done[0].cell.key
    assert store.delete([key]) == 1
    third = invoke("export", "--out", str(out), "--db", str(db))
    assert third.stdout.count("(unchanged)") == 1
    changed = [f for f in files if f.read_bytes() != before[f][0]]
    assert len(changed) == 1 and "-" not in changed[0].name  # the default setting's file
    # a setting with no finished cell: the warning names its parameters
    failed = make_plan(t, prof, [reg.method("stepped").with_params(stride="4")], store, references=False)
    store.claim(failed.todo[0].cell, failed.todo[0].method, {})
    store.fail(failed.todo[0].cell.key, "boom", None)
    res = invoke("export", "--out", str(out), "--db", str(db))
    assert "warning: stepped(stride=4) on coreset/tiny@1: no finished cells" in res.stderr
