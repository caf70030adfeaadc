"""The command line, in-process through typer's CliRunner."""

from __future__ import annotations

import importlib.metadata as md
import json
import os

import numpy as np
import pytest
import typer

from coreset_bench import __version__, cli, hookimpl
from coreset_bench.kinds import SelectionMethod
from cli_helpers import invoke, one_line_error, runner


@pytest.fixture
def wide(monkeypatch):
    """Rich tables wide enough that names are not cut, and a one-core machine (fast tiny runs)."""
    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)


class Kaboom(SelectionMethod):
    name = "kaboom"
    summary = "always raises"

    def select(self, view):
        raise RuntimeError("kaboom inside select")


class _KaboomPlugin:
    @hookimpl
    def register_methods(self, register):
        register(Kaboom())


@pytest.fixture
def with_broken(monkeypatch, fresh_plugins):
    """The core plugins plus an entry point whose module does not exist."""
    real = md.entry_points
    broken = md.EntryPoint(name="broken", value="cbt_no_such_plugin_module", group="coreset_bench")
    monkeypatch.setattr(fresh_plugins.md, "entry_points", lambda *, group: [*real(group=group), broken])
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard,broken")
    fresh_plugins.reset()
    return fresh_plugins


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"coreset-bench {__version__}"


def test_plugins_table_and_json(fresh_plugins, wide):
    res = invoke("plugins")
    assert res.exit_code == 0
    for word in ("random", "full", "standard", "digits", "mlp", "coreset", "selection", "training", "track"):
        assert word in res.stdout
    res = invoke("plugins", "--json")
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    by = {r["name"]: r for r in rows}
    for r in rows:
        assert {"name", "kind", "version", "package", "tracks", "error"} <= set(r)
    assert (by["random"]["kind"], by["random"]["version"], by["random"]["package"]) == ("selection", "1", "coreset-bench")
    assert by["random"]["tracks"] == ["coreset", "instruction"] and by["random"]["error"] is None  # random serves both modalities
    assert by["standard"]["kind"] == "training" and by["standard"]["tracks"] == []
    assert by["coreset"]["kind"] == "track" and by["digits"]["kind"] == "dataset" and by["mlp"]["kind"] == "architecture"
    assert "easycore" not in by  # the allow-list holds


def test_plugins_lists_a_load_error_and_doctor_fails(with_broken, wide, tmp_path):
    rows = json.loads(invoke("plugins", "--json").stdout)
    (bad,) = [r for r in rows if r["error"]]
    assert bad["name"] == "broken" and bad["error"].startswith("ModuleNotFoundError") and "cbt_no_such_plugin_module" in bad["error"]
    assert any(r["name"] == "random" and r["error"] is None for r in rows)
    table = invoke("plugins")
    assert "ModuleNotFoundError" in table.stdout
    doc = invoke("doctor", "--db", str(tmp_path / "none.db"))
    assert doc.exit_code == 1
    assert "1 load error(s)" in doc.stdout and "broken" in doc.stdout


def test_strict_mode_makes_main_exit_2(with_broken, monkeypatch, capsys):
    monkeypatch.setenv("CORESET_BENCH_STRICT_PLUGINS", "1")
    # a command that loads plugins (they load lazily), not pytest's own argv
    monkeypatch.setattr("sys.argv", ["coreset-bench", "plugins"])
    with pytest.raises(SystemExit) as ei:
        cli.main()
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert "plugin 'broken'" in err and "failed to load" in err


def test_tracks(fresh_plugins, wide):
    res = invoke("tracks")
    assert res.exit_code == 0 and "coreset" in res.stdout and "coreset/tiny@1" in res.stdout
    t = {x["name"]: x for x in json.loads(invoke("tracks", "--json").stdout)}["coreset"]
    assert t["contestants"] == "selection" and "coreset/tiny@1" in t["profiles"]
    assert t["primary_metric"] == "autoattack_acc" and set(t["fixtures"]) == {"training", "attack"}


def test_profiles(fresh_plugins, wide):
    res = invoke("profiles")
    assert res.exit_code == 0 and "coreset/tiny@1" in res.stdout and "coreset/quick@1" in res.stdout
    res = invoke("profiles", "coreset", "--json")
    items = {p["id"]: p for p in json.loads(res.stdout)}
    tiny = items["coreset/tiny@1"]
    assert tiny["axes"]["budget"] == [0.2, 0.5] and tiny["cells_per_method"] == 2 and tiny["seeds"] == [0]
    assert tiny["settings"]["train"]["steps"] == 40
    line = one_line_error(invoke("profiles", "coresett"))
    assert "unknown track 'coresett'" in line and "did you mean coreset" in line


def test_run_dry_run_results_and_doctor(fresh_plugins, wide, tmp_path):
    db = tmp_path / "res" / "r.db"
    res = invoke("run", "--plugin", "random", "--profile", "tiny", "--db", str(db), "--device", "cpu")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert "coreset/tiny@1: 3 cell(s) to run, 0 already done" in out  # random x 2 budgets + the full reference
    assert out.count("done   random") == 2 and out.count("done   full") == 1
    assert "mean ± std" in out and f"results in sqlite:///{db}" in out
    assert (tmp_path / "res" / "artifacts").is_dir()

    dry = invoke("run", "--plugin", "random", "--profile", "tiny", "--db", str(db), "--dry-run")
    assert dry.exit_code == 0
    assert "0 cell(s) to run, 3 already done" in dry.stdout
    assert dry.stdout.count(" done ") >= 3 and "todo" not in dry.stdout.split("\n", 1)[1]

    rows = json.loads(invoke("results", "--json", "--db", str(db)).stdout)
    assert len(rows) == 3
    for r in rows:
        assert {"key", "method", "track", "profile", "axes", "seed", "status", "metrics"} <= set(r)
        assert r["track"] == "coreset" and r["profile"] == "coreset/tiny@1" and r["status"] == "done"
        assert 0 <= r["metrics"]["clean_acc"] <= 1 and len(r["key"]) == 24
    budgets = sorted((r["method"], r["axes"]["budget"]) for r in rows)
    assert budgets == [("full", 1.0), ("random", 0.2), ("random", 0.5)]
    seeds = {r["axes"]["budget"]: r["seed"] for r in rows}
    assert len(set(seeds.values())) == 3
    only = json.loads(invoke("results", "--json", "--db", str(db), "--plugin", "full").stdout)
    assert [r["method"] for r in only] == ["full"] and only[0]["metrics"]["subset_size"] == 360

    table = invoke("results", "--db", str(db))
    assert table.exit_code == 0 and table.stdout.count("coreset/tiny@1") == 3 and "clean_acc=" in table.stdout

    doc = invoke("doctor", "--db", str(db))
    assert doc.exit_code == 0, doc.stdout
    assert "integrity ok" in doc.stdout and "m001_initial, m002_indexes" in doc.stdout
    assert "3 done, 0 failed, 0 interrupted (Ctrl-C; not failures), 0 running" in doc.stdout
    assert "0 load error(s)" in doc.stdout


def test_default_database_location(fresh_plugins, wide, workdir):
    doc = invoke("doctor")
    assert doc.exit_code == 0 and "no results database at results/coreset-bench.db" in doc.stdout
    res = invoke("run", "--plugin", "random", "--profile", "tiny", "--dry-run")
    assert res.exit_code == 0 and "3 cell(s) to run" in res.stdout
    assert not (workdir / "results").exists()  # a dry run writes nothing (issue 38 item 11)
    res = invoke("results", "--json")
    assert res.exit_code == 2 and "no results database at results/coreset-bench.db" in res.stderr


def test_run_with_a_failing_cell_exits_1_with_a_summary(fresh_plugins, wide, tmp_path):
    fresh_plugins.register(_KaboomPlugin(), name="kaboom-plugin")
    db = tmp_path / "r.db"
    res = invoke("run", "--plugin", "kaboom", "--profile", "coreset/tiny@1", "--no-references", "--db", str(db), "--device", "cpu")
    assert res.exit_code == 1
    assert "2 cell(s) failed:" in res.stderr
    assert res.stderr.count("plugin 'kaboom' failed: RuntimeError: kaboom inside select") == 2
    assert res.stdout.count("failed kaboom") == 2
    rows = json.loads(invoke("results", "--json", "--db", str(db), "--status", "failed").stdout)
    assert len(rows) == 2 and all("kaboom inside select" in r["error"] for r in rows)


MARKUP_ERROR = "boom [/bold] [red]x[/]"


class MarkupBoom(SelectionMethod):
    name = "markup-boom"
    summary = "a summary with [bold]markup[/] and a stray [/red] tag"

    def select(self, view):
        raise RuntimeError(MARKUP_ERROR)


class _MarkupPlugin:
    @hookimpl
    def register_methods(self, register):
        register(MarkupBoom())


def test_plugin_text_with_console_markup_is_printed_literally(fresh_plugins, wide, tmp_path):
    # before the fix the `[/bold]` of the error crashed the run (rich MarkupError) and left the
    # cells `running`
    fresh_plugins.register(_MarkupPlugin(), name="markup-plugin")
    db = tmp_path / "r.db"
    res = runner.invoke(cli.app, ["run", "--plugin", "markup-boom", "--profile", "coreset/tiny@1", "--no-references", "--db", str(db), "--device", "cpu"])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 1, (res.stdout, res.stderr)
    expected = f"plugin 'markup-boom' failed: RuntimeError: {MARKUP_ERROR}"
    assert res.stderr.count(expected) == 2 and res.stdout.count(expected) == 2
    rows = json.loads(invoke("results", "--json", "--db", str(db)).stdout)
    assert len(rows) == 2 and {r["status"] for r in rows} == {"failed"}
    assert all(r["error"] == expected for r in rows)
    table = invoke("results", "--db", str(db))
    assert table.exit_code == 0 and MARKUP_ERROR in table.stdout
    listing = invoke("plugins")
    assert listing.exit_code == 0 and MarkupBoom.summary in listing.stdout


def test_unknown_plugin_lists_close_names(fresh_plugins, tmp_path):
    line = one_line_error(invoke("run", "--plugin", "randon", "--db", str(tmp_path / "r.db")))
    assert line.startswith("Error: unknown method 'randon'; did you mean random?")
    assert "known: full, random, standard" in line
    assert not (tmp_path / "r.db").exists()


def test_unknown_profile(fresh_plugins, tmp_path):
    line = one_line_error(invoke("run", "--plugin", "random", "--profile", "tinyy", "--db", str(tmp_path / "r.db")))
    assert "unknown profile 'tinyy' of track 'coreset'; did you mean tiny" in line


@pytest.mark.parametrize(
    "param, message",
    [
        ("class_balanced", "--param 'class_balanced' is not KEY=VALUE"),
        ("nope=1", "method 'random' has no parameter nope; known parameters: class_balanced"),
        ("class_balanced=maybe", "parameter 'class_balanced': expected a boolean"),
    ],
)
def test_bad_param(fresh_plugins, tmp_path, param, message):
    line = one_line_error(invoke("run", "--plugin", "random", "--param", param, "--db", str(tmp_path / "r.db")))
    assert message in line


def test_param_is_part_of_the_cell_key(fresh_plugins, wide, tmp_path):
    db = str(tmp_path / "r.db")
    plain = invoke("run", "--plugin", "random", "--profile", "tiny", "--no-references", "--dry-run", "--db", db)
    balanced = invoke("run", "--plugin", "random", "--profile", "tiny", "--no-references", "--dry-run", "--db", db, "--param", "class_balanced=true")
    assert plain.exit_code == balanced.exit_code == 0
    keys = lambda out: {w for w in out.split() if len(w) == 24 and all(c in "0123456789abcdef" for c in w)}  # noqa: E731
    assert len(keys(plain.stdout)) == 2 and len(keys(balanced.stdout)) == 2
    assert not keys(plain.stdout) & keys(balanced.stdout)


def test_bad_seeds(fresh_plugins, tmp_path):
    line = one_line_error(invoke("run", "--plugin", "random", "--seeds", "0,x", "--db", str(tmp_path / "r.db")))
    assert "--seeds '0,x' is not a comma-separated list of integers" in line


def test_corrupt_db_file(fresh_plugins, tmp_path):
    db = tmp_path / "r.db"
    content = np.random.default_rng(0).bytes(2048)
    db.write_bytes(content)
    line = one_line_error(invoke("run", "--plugin", "random", "--profile", "tiny", "--db", str(db)))
    assert f"{db} is not an SQLite database" in line
    line = one_line_error(invoke("results", "--db", str(db)))
    assert "is not an SQLite database" in line
    assert db.read_bytes() == content


def test_results_without_a_database(fresh_plugins, tmp_path):
    line = one_line_error(invoke("results", "--db", str(tmp_path / "absent.db")))
    assert "no results database at" in line
    assert not (tmp_path / "absent.db").exists()


def test_plugin_commands_are_added_through_the_hook(fresh_plugins):
    class _Cmd:
        @hookimpl
        def register_commands(self, app):
            @app.command("hello")
            def hello(name: str = "world") -> None:
                print(f"hello {name}")

    fresh_plugins.register(_Cmd(), name="cmd-plugin")
    app = typer.Typer()

    @app.command()
    def other() -> None:  # a group needs two commands to dispatch by name
        pass

    fresh_plugins.add_commands(app)
    res = runner.invoke(app, ["hello", "--name", "bench"])
    assert res.exit_code == 0 and res.stdout.strip() == "hello bench"


def test_run_without_profile_uses_the_quick_profile(tmp_path):
    res = invoke("run", "--plugin", "random", "--dry-run", "--db", str(tmp_path / "r.db"))
    assert res.exit_code == 0, res.output
    # quick@2 (issue 20): 2 budgets x 2 recipes x 3 seeds for random, plus 2 x 3 for full
    assert "coreset/quick@2" in res.output and "18 cell(s) to run" in res.output


def test_numbers_do_not_depend_on_jobs_or_the_callers_threads(fresh_plugins, wide, monkeypatch, tmp_path):
    """A CPU cell always runs with one torch thread (unless CORESET_BENCH_THREADS says otherwise):
    thread counts change the last bits of float reductions, so an in-process run from a caller
    with several threads and the default pooled run (one cell per core) must store the same
    numbers, and record the thread count the cells really used."""
    import torch

    monkeypatch.delenv("CORESET_BENCH_THREADS")
    monkeypatch.delenv("CORESET_BENCH_JOBS")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    torch.set_num_threads(2)
    a = invoke("run", "--plugin", "random", "--profile", "tiny", "--db", str(tmp_path / "a.db"), "--device", "cpu", "--jobs", "1")
    assert a.exit_code == 0, a.stderr
    assert torch.get_num_threads() == 2  # the caller's count is restored after the cells
    assert "(1 torch thread(s) per cell)" in a.stdout
    b = invoke("run", "--plugin", "random", "--profile", "tiny", "--db", str(tmp_path / "b.db"), "--device", "cpu")
    assert b.exit_code == 0, b.stderr
    assert "(2 cells side by side, 1 torch thread(s) per cell)" in b.stdout

    def numbers(db):
        rows = json.loads(invoke("results", "--json", "--db", str(db)).stdout)
        assert all(r["environment"]["threads"] == 1 for r in rows)
        return {r["key"]: {k: v for k, v in r["metrics"].items() if not k.endswith("_s")} for r in rows}

    na, nb = numbers(tmp_path / "a.db"), numbers(tmp_path / "b.db")
    assert len(na) == 3 and na == nb


def test_thread_and_job_defaults(monkeypatch):
    from coreset_bench import env

    monkeypatch.delenv("CORESET_BENCH_THREADS")
    monkeypatch.delenv("CORESET_BENCH_JOBS")
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(env, "total_memory", lambda: 64 * 2**30)
    assert env.cell_threads("cpu") == 1 and env.cell_threads("cuda") == 8
    assert env.default_jobs("cpu", 100) == 8 and env.default_jobs("cpu", 3) == 3 and env.default_jobs("cuda:0", 100) == 1
    monkeypatch.setenv("CORESET_BENCH_THREADS", "4")
    assert env.cell_threads("cpu") == 4 and env.default_jobs("cpu", 100) == 2
    monkeypatch.setenv("CORESET_BENCH_JOBS", "3")
    assert env.default_jobs("cpu", 100) == 3
    monkeypatch.delenv("CORESET_BENCH_JOBS")
    monkeypatch.delenv("CORESET_BENCH_THREADS")
    monkeypatch.setattr(env, "total_memory", lambda: 5 * 2**30)  # 5 GiB: two 2-GiB workers of 8 cores
    assert env.default_jobs("cpu", 100) == 2
    monkeypatch.setattr(env, "total_memory", lambda: 2**30)
    assert env.default_jobs("cpu", 100) == 1
    monkeypatch.setenv("CORESET_BENCH_THREADS", "many")
    with pytest.raises(ValueError, match="CORESET_BENCH_THREADS='many' is not an integer"):
        env.cell_threads("cpu")


def test_bad_thread_variable_is_a_one_line_error(fresh_plugins, monkeypatch, tmp_path):
    monkeypatch.setenv("CORESET_BENCH_THREADS", "two")
    res = invoke("run", "--plugin", "random", "--profile", "tiny", "--db", str(tmp_path / "r.db"), "--device", "cpu")
    assert "CORESET_BENCH_THREADS='two' is not an integer" in one_line_error(res)
    assert not (tmp_path / "r.db").exists() or json.loads(invoke("results", "--json", "--db", str(tmp_path / "r.db")).stdout) == []


def test_doctor_reports_parallelism_and_a_bad_thread_variable(fresh_plugins, wide, monkeypatch, tmp_path):
    monkeypatch.delenv("CORESET_BENCH_JOBS")
    doc = invoke("doctor", "--db", str(tmp_path / "none.db"))
    assert doc.exit_code == 0, doc.stdout
    assert "cell(s) side by side by default on cpu, 1 torch thread(s) each" in doc.stdout
    monkeypatch.setenv("CORESET_BENCH_THREADS", "lots")
    bad = invoke("doctor", "--db", str(tmp_path / "none.db"))
    assert bad.exit_code == 1 and "CORESET_BENCH_THREADS='lots' is not an integer" in bad.stdout


def test_cell_scope_sets_and_restores_the_numeric_settings(monkeypatch):
    """Cells on CUDA run with deterministic kernels (no GPU needed to check the switches)."""
    import torch

    from coreset_bench import env

    monkeypatch.delenv("CORESET_BENCH_NONDETERMINISTIC", raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.set_num_threads(2)
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    with env.cell_scope("cuda:0"):
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        assert torch.get_num_threads() == 1  # CORESET_BENCH_THREADS=1 from conftest
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == before
    assert torch.get_num_threads() == 2
    with env.cell_scope("cpu"):
        assert not torch.are_deterministic_algorithms_enabled()  # CPU kernels are deterministic already
    monkeypatch.setenv("CORESET_BENCH_NONDETERMINISTIC", "1")
    with env.cell_scope("cuda"):
        assert not torch.are_deterministic_algorithms_enabled()
    assert env.environment("cuda")["deterministic"] is False and env.environment("cpu")["deterministic"] is True
    torch.set_num_threads(1)
