"""The documentation site (issue 25): generated references cover the code, the guide's example
packages work as written, and the site builds strictly.

The guide's files are the fenced blocks with a ``title="PATH"`` on docs/guide/index.md and
docs/guide/provisioning.md; the tests write them to disk as the reader would and run them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", DOCS / "hooks" / "reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def pages():
    return _hook().generate()


def guide_files(page: str) -> dict[str, str]:
    """PATH -> text of every fenced block with ``title="PATH"`` on a guide page."""
    text = (DOCS / "guide" / page).read_text()
    blocks = re.findall(r'^```\w+ title="([^"]+)"\n(.*?)^```$', text, flags=re.S | re.M)
    return dict(blocks)


# ---- the generated references cover the code ----------------------------------------------------


def test_every_builtin_method_is_in_the_method_reference(pages):
    from coreset_bench import registry

    page = pages["reference/methods.md"]
    methods = registry.methods()
    assert len(methods) > 40
    for m in methods:
        assert f"### {_hook().text(m.name)} {{#" in page, m.name
        for k in m.params:
            assert f"`{k}` = " in page, (m.name, k)
    assert "!!! warning" not in page  # no built-in failed to load


def test_every_signal_with_its_shape_is_in_the_signal_reference(pages):
    from coreset_bench.kinds import SIGNALS, signal_shape

    page = pages["reference/signals.md"]
    for name in SIGNALS:
        assert f"| `{name}` | `{signal_shape(name)}` |" in page


def test_every_view_field_is_in_the_view_reference(pages):
    from coreset_bench import kinds

    page = pages["reference/views.md"]
    classes = _hook().kind_dataclasses()
    assert {"SelectionView", "InstructionView", "PrivacyView", "NoiseView", "DecentralizedView", "ExitView", "ExitModel", "ProvisioningView", "Selection"} <= {c.__name__ for c in classes}
    for cls in classes:
        section = page.split(f"## {cls.__name__} ", 1)[1].split("\n## ", 1)[0]
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in section, (cls.__name__, f.name)
    assert "`class_budgets()" in page and "`labels`" in page
    assert kinds.SelectionView.__doc__.split(".")[0] in page


def test_every_cli_command_and_option_is_in_the_cli_reference(pages):
    hook = _hook()
    page = pages["reference/cli.md"]
    commands = hook.walk_commands(hook.cli_command())
    names = {" ".join(p) for p, _c in commands}
    assert {"run", "plugins", "tracks", "profiles", "results", "doctor", "leaderboard", "export", "keys", "keys generate", "entries check", "entries pin"} <= names
    for path, cmd in commands:
        assert f"## {' '.join(path)} {{#" in page
        for p in cmd.params:
            for opt in getattr(p, "opts", []):
                if opt.startswith("-"):
                    assert opt in page, (path, opt)
            assert getattr(p, "help", None), f"coreset-bench {' '.join(path)}: option {p.name} has no help text"


def test_every_track_profile_and_store_table_is_referenced(pages):
    from coreset_bench import registry

    for t in registry.tracks().values():
        for p in t.profiles():
            assert f"### {p.id} " in pages["reference/tracks.md"]
    for table in ("run", "metric", "artifact"):
        assert f"## {table}\n" in pages["reference/schema.md"]
    assert "`heartbeat`" in pages["reference/schema.md"]


def test_plugin_text_cannot_inject_markup():
    hook = _hook()
    assert hook.text("<script>x</script> *a* [b](c) | d") == "&lt;script&gt;x&lt;/script&gt; \\*a\\* \\[b\\](c) \\| d"


# ---- the guide's selection package, as written -------------------------------------------------


def _write(files: dict[str, str], root: Path) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _install(root: Path, monkeypatch, fresh_plugins) -> dict:
    """Make ``root`` an installed distribution: dist-info with its entry points on sys.path."""
    proj = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    eps = proj["entry-points"]["coreset_bench"]
    info = root / "site" / f"{proj['name'].replace('-', '_')}-{proj['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {proj['name']}\nVersion: {proj['version']}\n")
    (info / "entry_points.txt").write_text("[coreset_bench]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
    monkeypatch.syspath_prepend(str(root / "site"))
    monkeypatch.syspath_prepend(str(root))
    # the core plugins, the pooling track's references (static, oracle) and the package's own
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard,static,oracle," + ",".join(eps))
    fresh_plugins.reset()
    return proj


def _pytest(root: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORESET_BENCH_") and k != "PYTEST_ADDOPTS"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root, env=env, capture_output=True, text=True, timeout=600)


def test_the_guide_selection_package_works_as_written(tmp_path, monkeypatch, fresh_plugins):
    files = guide_files("index.md")
    assert set(files) == {"pyproject.toml", "hardest_method.py", "tests/test_hardest.py"}
    root = tmp_path / "coreset-bench-hardest"
    _write(files, root)

    # its own tests (the kit, the contestant worker) pass
    proc = _pytest(root)
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout + proc.stderr

    from coreset_bench import cli

    cli._add_builtin_commands()  # leaderboard, export, ...: registered as main() registers them
    _install(root, monkeypatch, fresh_plugins)
    monkeypatch.chdir(tmp_path)  # results/ paths are relative to the working directory
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    runner = CliRunner()
    rows = json.loads(runner.invoke(cli.app, ["plugins", "--json"]).stdout)
    (row,) = [r for r in rows if r["name"] == "hardest"]
    assert (row["kind"], row["version"], row["package"], row["tracks"], row["error"]) == ("selection", "1", "coreset-bench-hardest", ["coreset"], None)

    db = tmp_path / "try.db"
    res = runner.invoke(cli.app, ["run", "--plugin", "hardest", "--profile", "tiny", "--no-references", "--db", str(db), "--device", "cpu"])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert res.stdout.count("done   hardest") == 2

    res = runner.invoke(cli.app, ["export", "--plugin", "hardest", "--out", "results/entries", "--db", str(db)])
    assert res.exit_code == 0, res.stdout + res.stderr
    (entry_path,) = list((tmp_path / "results" / "entries").rglob("*.json"))
    entry = json.loads(entry_path.read_text())
    assert entry["method"]["name"] == "hardest" and entry["method"]["package"] == "coreset-bench-hardest"
    assert entry["coverage"]["done"] == 2

    res = runner.invoke(cli.app, ["leaderboard", "--entries", "results/entries", "--out", "results/site", "--db", str(db)])
    assert res.exit_code == 0 and "0 entries rejected" in res.stdout, res.stdout + res.stderr
    assert any("hardest" in p.read_text() for p in (tmp_path / "results" / "site").rglob("*.html"))


# ---- the guide's provisioning package, as written ----------------------------------------------


def test_the_guide_provisioning_package_works_as_written(tmp_path, monkeypatch, fresh_plugins):
    files = guide_files("provisioning.md")
    assert set(files) == {"pyproject.toml", "ewma_pool.py", "tests/test_ewma_pool.py"}
    # the package's own tests run the kit's conformance check, not a hand-written one
    assert "check_provisioning_method(EwmaPool())" in files["tests/test_ewma_pool.py"]
    root = tmp_path / "coreset-bench-ewma-pool"
    _write(files, root)
    proc = _pytest(root)
    assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout + proc.stderr

    from coreset_bench import cli
    from coreset_bench.testing import check_provisioning_method

    _install(root, monkeypatch, fresh_plugins)
    rows = json.loads(CliRunner().invoke(cli.app, ["plugins", "--json"]).stdout)
    (row,) = [r for r in rows if r["name"] == "ewma-pool"]
    assert (row["kind"], row["package"], row["error"]) == ("provisioning", "coreset-bench-ewma-pool", None)
    assert row["tracks"] == ["pooling"]  # the pooling track ranks it, as the guide's note says
    import numpy as np

    from coreset_bench.kinds import ProvisioningView

    # the method as loaded through its entry point passes the kit, and plans with the extended view
    m = fresh_plugins.method("ewma-pool")
    assert check_provisioning_method(m).hit_rate > 0.85
    view = ProvisioningView(history=np.full(8, 4.0), horizon=7, step_seconds=60.0, seed=0, t=8, lead=2, decision_every=5, max_pool=10)
    plan = np.asarray(m.plan(view))
    assert plan.shape == (7,) and (plan == 10).all()  # ceil(1.5 x 4 x 3) = 18, clipped to max_pool

    # run, export and publish, as the guide's last section says
    import re

    cmds = [c.split("#")[0].split() for c in re.findall(r"^coreset-bench (.+)$", (REPO / "docs" / "guide" / "provisioning.md").read_text(), re.M)]
    run_cmd = next(c for c in cmds if c[0] == "run")
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "p.db"
    runner = CliRunner()
    res = runner.invoke(cli.app, [*run_cmd, "--no-references", "--db", str(db)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli.app, [*next(c for c in cmds if c[0] == "export"), "--db", str(db)])
    assert res.exit_code == 0, res.output
    entries = list((tmp_path / "results" / "entries" / "pooling").rglob("ewma-pool@*.json"))
    assert len(entries) == 1, res.output
    res = runner.invoke(cli.app, [*next(c for c in cmds if c[0] == "leaderboard"), "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "ewma-pool" in (tmp_path / "results" / "site" / "methods" / "ewma-pool.html").read_text()


# ---- the site builds strictly -------------------------------------------------------------------


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]' (CI installs it and runs mkdocs build --strict)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = (tmp_path / "site" / "reference" / "methods" / "index.html").read_text()
    assert "easycore" in html and "verifix" in html
    assert "class_budgets" in (tmp_path / "site" / "reference" / "api" / "index.html").read_text()


# ---- the guide's track package, as written -------------------------------------------------------


def test_the_guide_track_package_works_as_written(tmp_path, monkeypatch, fresh_plugins):
    files = guide_files("tracks.md")
    assert set(files) == {"pyproject.toml", "centroid_track.py", "tests/test_centroid_track.py"}
    # the track supplies the pipeline's three pieces and nothing else
    assert "def run_cell" not in files["centroid_track.py"]
    assert all(f"    def {piece}(" in files["centroid_track.py"] for piece in ("fixture", "view", "evaluate"))
    root = tmp_path / "coreset-bench-centroid"
    _write(files, root)
    # its own tests: the track through the command line, and a method that reaches for the test split
    proc = _pytest(root)
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout + proc.stderr

    from coreset_bench import cli

    cli._add_builtin_commands()  # leaderboard, export, ...: registered as main() registers them
    _install(root, monkeypatch, fresh_plugins)
    rows = json.loads(CliRunner().invoke(cli.app, ["tracks", "--json"]).stdout)
    (row,) = [r for r in rows if r["name"] == "centroid"]
    assert row["primary_metric"] == "centroid_acc" and row["profiles"] == ["centroid/tiny@1"]
