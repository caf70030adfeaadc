"""The robustness track: attacks as contestants on fixed, cached models."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from coreset_bench import hookimpl, plugins
from coreset_bench.kinds import AttackMethod
from coreset_bench.runner import default_context, execute, make_plan
from coreset_bench.store import Store


class OutOfBall(AttackMethod):
    name = "out-of-ball"
    summary = "test: moves every pixel by 2 eps"

    def perturb(self, model, x, y, threat, generator):
        return (x + 2 * threat.eps).clamp(0, 1)


class Identity(AttackMethod):
    name = "no-attack"
    summary = "test: returns the clean inputs"

    def perturb(self, model, x, y, threat, generator):
        return x.clone()


def test_attacks_ranked_and_invalid_output_fails_its_cell(tmp_path):
    mod = types.ModuleType("rb_test_plugin")

    @hookimpl
    def register_methods(register):
        register(OutOfBall())
        register(Identity())

    mod.register_methods = register_methods
    plugins.register(mod, name="rb_test_plugin")
    try:
        store = Store(tmp_path / "r.db")
        track = plugins.track("robustness")
        prof = track.profile("tiny")
        methods = [plugins.method(n) for n in ("pgd", "fgsm", "no-attack", "out-of-ball")]
        plan = make_plan(track, prof, methods, store)
        # the reference (AutoAttack, CPU-sized by the profile) joins the run
        assert {p.method.name for p in plan.todo} == {"pgd", "fgsm", "no-attack", "out-of-ball", "autoattack"}
        assert plan.todo[-1].method.params["attacks"] == "apgd-ce"
        outs = {o.cell.method: o for o in execute(plan, store, default_context(tmp_path, "cpu", None))}
        assert outs["out-of-ball"].status == "failed" and "out-of-ball" in outs["out-of-ball"].error
        got = {m: o.metrics for m, o in outs.items() if o.status == "done"}
        clean = got["no-attack"]["clean_acc"]
        assert got["no-attack"]["robust_acc"] == pytest.approx(clean)
        # every attack sees the same fixed model and points
        assert all(g["clean_acc"] == pytest.approx(clean) for g in got.values())
        assert got["autoattack"]["robust_acc"] <= got["pgd"]["robust_acc"] + 1 / 40 + 1e-9
        assert got["pgd"]["robust_acc"] <= got["fgsm"]["robust_acc"] + 1 / 40 + 1e-9
        assert got["fgsm"]["robust_acc"] <= clean
        # every metric a cell emits is declared by the track, and within its range (issue 37)
        from coreset_bench.leaderboard.board import metric_ranges
        from coreset_bench.leaderboard.entries import value_problem

        ranges = metric_ranges(track)
        for g in got.values():
            assert "check_below_clean" in g
            for m, v in g.items():
                assert m in ranges and not value_problem(m, v, ranges, "robustness"), (m, v)
        # the fixture model was trained once and cached
        assert len(list((tmp_path / "cache" / "robustness").glob("*.pt"))) == 1
    finally:
        plugins.unregister("rb_test_plugin")
