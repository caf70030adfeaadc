"""Which track takes which method (issue 15, items 1 and 2): ``Track.accepts``, ``modalities``,
``DistillationMethod.role``, ``tracks_for``, ``run --track`` refusals and ``check_pending``.

A dummy second selection track (text) and dummy distillation tracks are registered inside the
tests, as the four phase-2 tracks will be: nothing may be claimed by a track that cannot rank it.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from coreset_bench import cli, hookimpl
from coreset_bench.kinds import DistillationMethod, PrivacyMethod, Selection, SelectionMethod
from coreset_bench.tracks.base import Profile, Track

runner = CliRunner()


class ImageSel(SelectionMethod):
    name = "acc-image"
    summary = "image selection, modalities left at the default"

    def select(self, view):
        return Selection(np.arange(view.budget))


class TextSel(SelectionMethod):
    name = "acc-text"
    summary = "text-only selection"
    modalities = frozenset({"text"})

    def select(self, view):
        return Selection(np.arange(view.budget))


class NoModalities(SelectionMethod):
    name = "acc-nomod"
    summary = "declares no modality"
    modalities = frozenset()

    def select(self, view):
        return Selection(np.arange(view.budget))


class Decentral(DistillationMethod):
    name = "acc-dec"
    summary = "decentralized"
    role = "decentralized"

    def distill(self, view):
        return [view.model_factory() for _ in view.nodes]


class EarlyExit(DistillationMethod):
    name = "acc-exit"
    summary = "early exit"
    role = "early-exit"

    def distill(self, view):
        raise NotImplementedError


class NoRole(DistillationMethod):
    name = "acc-norole"
    summary = "a distillation method that forgot its role"

    def distill(self, view):
        raise NotImplementedError


class Proxy(PrivacyMethod):
    name = "acc-proxy"
    summary = "a memorization proxy with tracks left empty"
    role = "proxy"

    def score(self, view):
        return np.zeros(len(view.y))


class _Dummy(Track):
    def profiles(self):
        return [Profile(self.name, "quick", 1, {"budget": [0.5]})]

    def run_cell(self, cell, method, ctx):  # pragma: no cover - never reached: refused before any cell
        raise AssertionError("a refused method must not reach run_cell")


class TextTrack(_Dummy):
    name = "acc-instruction"
    contestant_kind = "selection"
    modality = "text"


class DecTrack(_Dummy):
    name = "acc-decentralized"
    contestant_kind = "distillation"
    role = "decentralized"


class VideoTrack(_Dummy):
    name = "acc-video"
    contestant_kind = "distillation"
    role = "early-exit"


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        for cls in (ImageSel, TextSel, NoModalities, Decentral, EarlyExit, NoRole, Proxy):
            register(cls())

    @hookimpl
    def register_tracks(self, register):
        for cls in (TextTrack, DecTrack, VideoTrack):
            register(cls())


@pytest.fixture
def phase2(fresh_plugins, monkeypatch):
    """The core plugins (all tracks, random, full) plus the dummy tracks and methods above."""
    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)
    fresh_plugins.register(_Plugin(), name="acc-test")
    yield fresh_plugins
    fresh_plugins.unregister("acc-test")


def test_tracks_for_claims_only_what_a_track_can_rank(phase2):
    tf = lambda n: phase2.tracks_for(phase2.method(n))  # noqa: E731
    assert tf("acc-image") == ["coreset"]
    assert tf("acc-text") == ["acc-instruction", "instruction"]  # and the built-in track
    assert tf("random") == ["acc-instruction", "coreset", "instruction"]  # modalities {"image", "text"}
    assert tf("full") == ["acc-instruction", "coreset", "instruction"]
    assert tf("acc-nomod") == []
    assert tf("acc-dec") == ["acc-decentralized", "decentralized"]  # and the built-in track
    assert tf("acc-exit") == ["acc-video", "video"]
    assert tf("acc-norole") == []
    assert tf("acc-proxy") == ["memorization"]  # role, not only `tracks`, keeps it off the privacy track


def test_default_modalities_and_roles():
    assert SelectionMethod.modalities == frozenset({"image"})
    assert DistillationMethod.role == ""
    from coreset_bench.plugins.selection.full import FullData
    from coreset_bench.plugins.selection.random_baseline import RandomSelection

    assert RandomSelection.modalities == FullData.modalities == frozenset({"image", "text"})


def test_accepts_reasons_are_one_line_and_name_the_fix(phase2):
    text, coreset = phase2.track("acc-instruction"), phase2.track("coreset")
    assert text.accepts(phase2.method("acc-text")) is None
    r = coreset.accepts(phase2.method("acc-text"))
    assert "\n" not in r and "declares modalities text" in r and "add 'image' to its `modalities`" in r
    r = phase2.track("acc-decentralized").accepts(phase2.method("acc-norole"))
    assert r == "'acc-norole' declares no role; track 'acc-decentralized' ranks distillation methods with role 'decentralized'"
    r = phase2.track("acc-decentralized").accepts(phase2.method("acc-exit"))
    assert "has role 'early-exit'" in r
    assert "ranks selection methods" in phase2.track("coreset").accepts(phase2.method("acc-dec"))

    class Narrow(ImageSel):
        name = "acc-narrow"
        tracks = ("robustness-only",)

    assert "takes part only in track(s) robustness-only" in coreset.accepts(Narrow())


def test_plugins_json_shows_accepted_tracks_and_refusals(phase2):
    res = runner.invoke(cli.app, ["plugins", "--json"], catch_exceptions=False)
    assert res.exit_code == 0
    by = {r["name"]: r for r in json.loads(res.stdout)}
    assert by["acc-text"]["tracks"] == ["acc-instruction", "instruction"] and "coreset" in by["acc-text"]["refused"]
    assert by["random"]["tracks"] == ["acc-instruction", "coreset", "instruction"] and by["random"]["refused"] == {}
    assert by["acc-image"]["tracks"] == ["coreset"] and "declares modalities image" in by["acc-image"]["refused"]["acc-instruction"]
    assert by["acc-dec"]["tracks"] == ["acc-decentralized", "decentralized"] and "acc-video" in by["acc-dec"]["refused"]
    assert by["acc-norole"]["tracks"] == [] and {"acc-decentralized", "acc-video", "decentralized"} <= set(by["acc-norole"]["refused"])
    assert by["acc-proxy"]["tracks"] == ["memorization"] and "privacy" in by["acc-proxy"]["refused"]


@pytest.mark.parametrize(
    "track, plugin, message",
    [
        ("acc-instruction", "acc-image", "declares modalities image (add 'text' to its `modalities` if it handles text data); run it on coreset"),
        ("coreset", "acc-text", "declares modalities text (add 'image' to its `modalities` if it handles image data); run it on acc-instruction"),
        ("acc-decentralized", "acc-exit", "'acc-exit' has role 'early-exit'; track 'acc-decentralized' ranks distillation methods with role 'decentralized'; run it on acc-video"),
        ("acc-video", "acc-norole", "'acc-norole' declares no role; track 'acc-video' ranks distillation methods with role 'early-exit'; no installed track ranks it"),
        ("privacy", "acc-proxy", "has role 'proxy'; track 'privacy' ranks privacy methods with role 'attack'; run it on memorization"),
    ],
)
def test_run_with_a_refused_method_exits_2_before_any_cell(phase2, tmp_path, track, plugin, message):
    db = tmp_path / "r.db"
    res = runner.invoke(cli.app, ["run", "--track", track, "--plugin", plugin, "--db", str(db)], catch_exceptions=False)
    assert res.exit_code == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], res.stderr
    assert not db.exists()  # refused before the store was opened: no cell was created


def test_run_without_track_picks_an_accepting_track_or_says_none_does(phase2, tmp_path):
    db = tmp_path / "r.db"
    res = runner.invoke(cli.app, ["run", "--plugin", "acc-text", "--db", str(db), "--dry-run"], catch_exceptions=False)
    assert res.exit_code == 0 and "acc-instruction" in res.stdout, res.stdout + res.stderr
    res = runner.invoke(cli.app, ["run", "--plugin", "acc-norole", "--db", str(db)], catch_exceptions=False)
    assert res.exit_code == 2 and "no track ranks distillation methods like 'acc-norole'" in res.stderr


def test_check_pending_reports_a_distillation_method_without_role(phase2):
    problems = phase2.check_pending()
    (norole,) = [p for p in problems if "acc-norole" in p]
    assert norole == "distillation method 'acc-norole' (in-process) declares no role; set role = 'decentralized' or 'early-exit'"
    (nomod,) = [p for p in problems if "acc-nomod" in p]
    assert "declares no modalities; set modalities = frozenset({'image'})" in nomod
    assert not [p for p in problems if "'acc-dec'" in p or "'acc-exit'" in p or "'acc-text'" in p or "'random'" in p]


def test_check_pending_runs_at_load_and_the_record_lists_it(fresh_plugins, monkeypatch, tmp_path):
    """A plugin package with a role-less distillation method: `plugins` shows the problem with its fix."""
    import importlib.metadata as md
    import sys

    mod = tmp_path / "cbt_norole_plugin.py"
    mod.write_text(
        "from coreset_bench import hookimpl\n"
        "from coreset_bench.kinds import DistillationMethod\n"
        "class M(DistillationMethod):\n"
        "    name = 'ext-norole'\n"
        "    def distill(self, view):\n"
        "        return []\n"
        "@hookimpl\n"
        "def register_methods(register):\n"
        "    register(M())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    real = md.entry_points
    ep = md.EntryPoint(name="ext", value="cbt_norole_plugin", group="coreset_bench")
    monkeypatch.setattr(fresh_plugins.md, "entry_points", lambda *, group: [*real(group=group), ep])
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard,ext")
    fresh_plugins.reset()
    try:
        recs = {r.name: r for r in fresh_plugins.records()}
        assert "distillation method 'ext-norole'" in recs["check_pending"].error
        assert "set role = 'decentralized' or 'early-exit'" in recs["check_pending"].error
        assert fresh_plugins.tracks_for(fresh_plugins.method("ext-norole")) == []
    finally:
        sys.modules.pop("cbt_norole_plugin", None)


def test_tracks_command_shows_what_each_track_requires(phase2):
    rows = {t["name"]: t for t in json.loads(runner.invoke(cli.app, ["tracks", "--json"], catch_exceptions=False).stdout)}
    assert (rows["coreset"]["modality"], rows["coreset"]["role"]) == ("image", "")
    assert (rows["acc-instruction"]["modality"], rows["privacy"]["role"], rows["acc-video"]["role"]) == ("text", "attack", "early-exit")
    res = runner.invoke(cli.app, ["tracks"], catch_exceptions=False)
    assert "selection (image)" in res.stdout and "privacy (attack)" in res.stdout and "distillation (decentralized)" in res.stdout


def test_run_without_track_picks_the_track_that_ranks_every_method(phase2, tmp_path):
    db = str(tmp_path / "r.db")
    res = runner.invoke(cli.app, ["run", "--plugin", "random", "--plugin", "acc-text", "--db", db, "--dry-run"], catch_exceptions=False)
    assert res.exit_code == 0 and "acc-instruction" in res.stdout and "coreset/" not in res.stdout, res.stdout + res.stderr
    res = runner.invoke(cli.app, ["run", "--plugin", "acc-image", "--plugin", "acc-text", "--db", db], catch_exceptions=False)
    assert res.exit_code == 2 and "no single track ranks all of acc-image, acc-text" in res.stderr
