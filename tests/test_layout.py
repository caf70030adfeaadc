"""The layout that shows the tracks (issue 37, item 5): each track is a package
``coreset_bench.tracks.NAME`` holding its track (``track``) and its helpers beside it; the old
import paths keep working (the flat helper modules are aliases of the moved ones, the track
packages re-export their track module), and the wheel ships every package."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_DIRS = {"coreset_bench": ROOT / "benchmark", "coreset_bench.plugins": ROOT / "plugins", "coreset_bench.leaderboard": ROOT / "leaderboard"}

#: old flat path -> the module it moved to
MOVED = {
    "coreset_bench.pooling": "coreset_bench.tracks.pooling.sim",
    "coreset_bench.privacy_metrics": "coreset_bench.tracks.privacy.metrics",
    "coreset_bench.side_effects": "coreset_bench.tracks.coreset.side_effects",
    "coreset_bench.video": "coreset_bench.tracks.video.codec",
    "coreset_bench.video_data": "coreset_bench.tracks.video.data",
    "coreset_bench.video_models": "coreset_bench.tracks.video.models",
    "coreset_bench.decentralized": "coreset_bench.tracks.decentralized.network",
    "coreset_bench.gossip_dist": "coreset_bench.tracks.decentralized.gloo",
    "coreset_bench.instruction_world": "coreset_bench.tracks.instruction.world",
    "coreset_bench.lm": "coreset_bench.tracks.instruction.lm",
}
#: track package -> the track classes it re-exports
PACKAGES = {
    "coreset": ["CoresetTrack"],
    "robustness": ["RobustnessTrack"],
    "privacy": ["PrivacyTrack", "MemorizationTrack"],
    "label_noise": ["LabelNoiseTrack"],
    "pooling": ["PoolingTrack"],
    "video": ["VideoTrack"],
    "decentralized": ["DecentralizedTrack"],
    "instruction": ["InstructionTrack"],
}


@pytest.mark.parametrize("old,new", sorted(MOVED.items()))
def test_an_old_helper_path_is_the_moved_module_itself(old, new):
    a, b = importlib.import_module(old), importlib.import_module(new)
    assert a is b and sys.modules[old] is b
    # from-imports through the old path give the same objects
    parent, name = old.rsplit(".", 1)
    assert getattr(importlib.import_module(parent), name) is b


def test_a_pickle_that_names_the_old_path_loads_the_moved_object():
    from coreset_bench.tracks.pooling import sim
    from coreset_bench.tracks.privacy import metrics

    # protocol 0 by hand: GLOBAL 'module\nname' as an older pickle (or a plugin's) would name it
    assert pickle.loads(b"ccoreset_bench.pooling\nsimulate\n.") is sim.simulate
    assert pickle.loads(b"ccoreset_bench.privacy_metrics\nmembership_metrics\n.") is metrics.membership_metrics
    # and an object made through the old path pickles by the new one, and round-trips
    from coreset_bench.pooling import TraceError

    err = TraceError("no such trace")
    blob = pickle.dumps(err)
    assert b"coreset_bench.tracks.pooling.sim" in blob and b"coreset_bench.pooling\n" not in blob
    back = pickle.loads(blob)
    assert type(back) is sim.TraceError and back.args == ("no such trace",)


@pytest.mark.parametrize("pkg", sorted(PACKAGES))
def test_a_track_package_re_exports_its_track_module(pkg):
    package = importlib.import_module(f"coreset_bench.tracks.{pkg}")
    track = importlib.import_module(f"coreset_bench.tracks.{pkg}.track")
    for cls in PACKAGES[pkg]:
        assert getattr(package, cls) is getattr(track, cls)
        assert getattr(track, cls).__module__ == track.__name__
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        package.no_such_name  # noqa: B018


def test_old_track_imports_keep_working_private_names_included():
    from coreset_bench.tracks import label_noise as LN
    from coreset_bench.tracks.coreset import QUICK_TRAIN, _profiles
    from coreset_bench.tracks.coreset.track import QUICK_TRAIN as quick_train
    from coreset_bench.tracks.pooling import BOUND, slo_tolerance  # noqa: F401

    assert QUICK_TRAIN is quick_train and callable(_profiles)
    assert LN.inject_noise is importlib.import_module("coreset_bench.tracks.label_noise.track").inject_noise


def test_every_registered_track_of_a_package_lives_in_its_track_module():
    from coreset_bench import registry

    moved = {f"coreset_bench.tracks.{p}.track" for p in PACKAGES}
    where = {type(t).__module__ for t in registry.tracks().values()}
    assert moved <= where, sorted(moved - where)


def test_importing_a_helper_does_not_load_its_track():
    """A helper is a layer below the tracks (tests/test_import_structure.py): importing it, by its
    new path or its old one, runs the package's ``__init__`` but loads no track module."""
    helpers = [m for m in _all_modules() if m.startswith("coreset_bench.tracks.") and m.count(".") == 3 and not m.endswith(".track")]
    assert {"coreset_bench.tracks.pooling.sim", "coreset_bench.tracks.privacy.metrics"} <= set(helpers)
    code = f"""
import importlib, sys
for m in {[*helpers, *MOVED]!r}:
    importlib.import_module(m)
print(sorted(m for m in sys.modules if m.startswith("coreset_bench.tracks.") and m.endswith(".track")))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


def _all_modules() -> list[str]:
    out = []
    for pkg, d in _DIRS.items():
        for f in sorted(d.rglob("*.py")):
            parts = list(f.relative_to(d).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append(".".join([pkg, *parts]))
    return out


def test_pyproject_lists_every_package_so_the_wheel_ships_it():
    """``[tool.setuptools] packages`` is an explicit list: a package missing from it (a new track
    package, say) would be absent from a non-editable install."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for pkg, d in _DIRS.items():
        for init in d.rglob("__init__.py"):
            rel = init.parent.relative_to(d).parts
            if "__pycache__" not in rel and ".venv" not in rel:
                found.add(".".join([pkg, *rel]))
    assert found - listed == set(), f"add to pyproject.toml's packages: {sorted(found - listed)}"
    assert listed - found == set(), f"listed but not a package: {sorted(listed - found)}"
