"""Claim cards (issue 32): the verdict rule on every branch, cards read from constructed boards
with the board's own paired intervals, third-party claims, the ``claims`` command, the rendered
front and profile pages, and the closing summary of ``run``."""

from __future__ import annotations

import json
import re
import sys
import types

import numpy as np
import pytest

from coreset_bench import claims as C
from coreset_bench import hookimpl, plugins, registry
from coreset_bench.claims import BEST_NON_SEED, FULL, MONOTONE, NON_INFERIORITY, RANDOM, SUPERIORITY, Claim, Difference, Paper, Row, Threshold
from coreset_bench.kinds import Selection, SelectionMethod
from coreset_bench.leaderboard import claims as LC
from coreset_bench.leaderboard.board import build_board
from coreset_bench.leaderboard.data import normalize_records
from coreset_bench.registry import PluginError
from coreset_bench.tracks.base import Cell, Profile, Track

# ---- 1. the rule, on hand-made differences ---------------------------------------------------


def D(mean: float, lo: float | None, hi: float | None, se: float | None = 0.01, label: str = "") -> Difference:
    return Difference(mean, lo, hi, se, label=label)


@pytest.mark.parametrize(
    ("diff", "effect", "verdict"),
    [
        (D(0.08, 0.03, 0.12), 0.07, C.SUPPORTED),  # excludes 0, reaches E
        (D(0.03, 0.01, 0.05), 0.07, C.SMALLER),  # excludes 0, wholly below E
        (D(-0.03, -0.05, -0.01), 0.07, C.CONTRADICTED),  # excludes 0 the other way
        (D(0.01, -0.02, 0.04), 0.07, C.NOT_REPRODUCED),  # includes 0, excludes E
        (D(0.04, -0.02, 0.10), 0.07, C.INCONCLUSIVE),  # includes 0 and E
        (D(0.04, -0.02, 0.10), None, C.INCONCLUSIVE),  # no E: includes 0
        (D(0.04, 0.01, 0.10), None, C.SUPPORTED),
        (D(0.04, None, None, None), 0.07, C.INCONCLUSIVE),  # no interval decides nothing
    ],
)
def test_superiority_verdicts(diff, effect, verdict):
    assert C.verdict(SUPERIORITY, diff, effect=effect).verdict == verdict


@pytest.mark.parametrize(
    ("diff", "verdict"),
    [
        (D(-0.005, -0.009, 0.002), C.SUPPORTED),  # low end >= -M
        (D(-0.010, -0.010, -0.002), C.SUPPORTED),  # exactly -M still supported
        (D(-0.03, -0.05, -0.02), C.CONTRADICTED),  # high end < -M
        (D(-0.01, -0.03, 0.01), C.INCONCLUSIVE),  # straddles -M
        (D(0.0, None, None, None), C.INCONCLUSIVE),
    ],
)
def test_non_inferiority_verdicts(diff, verdict):
    assert C.verdict(NON_INFERIORITY, diff, margin=0.01).verdict == verdict


def test_monotone_trend_verdicts():
    up = [D(0.1, 0.05, 0.15, label="a"), D(0.05, 0.01, 0.09, label="b")]
    first_last = D(0.15, 0.08, 0.22)
    assert C.verdict(MONOTONE, first_last, steps=up).verdict == C.SUPPORTED
    # a step that reverses with confidence contradicts, even when first-to-last rises
    rev = [D(0.2, 0.1, 0.3, label="a"), D(-0.05, -0.09, -0.01, label="b")]
    j = C.verdict(MONOTONE, first_last, steps=rev)
    assert j.verdict == C.CONTRADICTED and "step b" in j.reason
    assert C.verdict(MONOTONE, D(-0.1, -0.2, -0.05), steps=[]).verdict == C.CONTRADICTED
    assert C.verdict(MONOTONE, D(0.05, -0.02, 0.12), steps=up).verdict == C.INCONCLUSIVE
    assert C.verdict(MONOTONE, D(0.05, None, None, None), steps=up).verdict == C.INCONCLUSIVE
    # saturation: the largest earlier step minus the last one must exclude 0
    assert C.verdict(MONOTONE, first_last, steps=up, saturates=True, saturation=D(0.05, 0.01, 0.09)).verdict == C.SUPPORTED
    assert C.verdict(MONOTONE, first_last, steps=up, saturates=True, saturation=D(0.05, -0.01, 0.09)).verdict == C.SATURATION_NOT_SHOWN
    assert C.verdict(MONOTONE, first_last, steps=up, saturates=True, saturation=None).verdict == C.SATURATION_NOT_SHOWN


def test_not_testable_and_power():
    j = C.verdict(SUPERIORITY, D(0.1, 0.05, 0.15), effect=0.07, not_testable="the seed row is flagged")
    assert (j.verdict, j.reason, j.mde, j.underpowered) == (C.NOT_TESTABLE, "the seed row is flagged", None, None)
    # MDE = 2.8 SE; underpowered when it exceeds E (or M), or when there is no SE
    j = C.verdict(SUPERIORITY, D(0.1, 0.05, 0.15, se=0.03), effect=0.07)
    assert j.mde == pytest.approx(0.084) and j.underpowered is True
    j = C.verdict(SUPERIORITY, D(0.1, 0.05, 0.15, se=0.02), effect=0.07)
    assert j.mde == pytest.approx(0.056) and j.underpowered is False
    assert C.verdict(NON_INFERIORITY, D(0.0, -0.005, 0.005, se=0.004), margin=0.01).underpowered is True
    assert C.verdict(NON_INFERIORITY, D(0.0, -0.005, 0.005, se=0.003), margin=0.01).underpowered is False
    assert C.verdict(SUPERIORITY, D(0.1, None, None, None), effect=0.07).underpowered is True
    assert C.verdict(SUPERIORITY, D(0.1, 0.05, 0.15), effect=None).underpowered is None


def test_the_rule_is_documented_where_it_is_defined():
    doc = " ".join(C.verdict.__doc__.split())
    for word in ("supported, smaller than claimed", "contradicted", "not reproduced", "inconclusive", "Not testable", "2.8", "80 %", "saturat", "underpowered"):
        assert word in doc, word


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "Bad Id"}, "lowercase"),
        ({"kind": "better"}, "kind 'better'"),
        ({"kind": NON_INFERIORITY, "effect": None}, "needs its margin"),
        ({"effect": -0.1}, "positive number"),
        ({"profiles": ("other/quick@1",)}, "is not a profile id of track 'cltrack'"),
        ({"comparator": "median"}, "must be a Row"),
        ({"kind": MONOTONE, "comparator": None}, "trend_axis"),
        ({"kind": MONOTONE, "trend_axis": "budget"}, "leave comparator unset"),
        ({"saturates": True}, "saturates applies to monotone-trend claims"),
    ],
)
def test_declarations_are_checked_with_one_line(change, message):
    with pytest.raises(C.ClaimError, match=re.escape(message)) as ei:
        Claim(**{**_CLAIM, **change})
    assert "\n" not in str(ei.value)
    with pytest.raises(C.ClaimError, match="arXiv id '25.1' is not of the form"):
        Paper("25.1", "t")
    with pytest.raises(C.ClaimError, match="needs its title"):
        Paper("2501.00001", " ")


# ---- 2. cards read from constructed boards ---------------------------------------------------

N = 200  # test points per cell
BUDGETS = (0.1, 0.3, 0.5)
SEEDS = (0, 1, 2)


class ClaimTrack(Track):
    name = "cltrack"
    summary = "A tiny track for the claim tests."
    contestant_kind = "selection"
    primary_metric = "acc"
    metric_directions = {"acc": "max"}
    metric_bounds = {"acc": (0.0, 1.0)}
    baseline_method = "random"

    def profiles(self):
        return [Profile("cltrack", "small", 1, axes={"dataset": ["d1"], "budget": list(BUDGETS)}, seeds=SEEDS)]

    def cells(self, profile, method):
        fixed = getattr(method, "fixed_fraction", None)
        if fixed is None:
            return super().cells(profile, method)
        return [Cell(c.track, c.profile, c.method, c.method_version, c.params, {**c.axes, "budget": float(fixed)}, c.repeat)
                for c in super().cells(profile, method) if c.axes["budget"] == BUDGETS[0]]

    def claims(self):
        return [Claim(**{**_CLAIM, "id": "cl-seed-track-claim"})]

    def run_cell(self, cell, method, ctx):  # results are written directly
        raise AssertionError("not run in these tests")


def _method(name, **attrs):
    cls = type("M_" + re.sub(r"\W", "_", name), (SelectionMethod,), {"name": name, "summary": name, "version": "1", "params": {},
                                                                        "select": lambda self, view: Selection(np.arange(view.budget)), **attrs})
    return cls()


NAMES = ("cl-seed", "random", "cl-other", "cl-weak")
_CLAIM = dict(
    id="cl-seed-beats", system="ClSeed", paper=Paper("2501.00001", "ClSeed: a seed paper", 2025, "ICML"),
    quote="ClSeed beats every other method by 7 points.", track="cltrack", profiles=("cltrack/small@1",), metric="acc",
    seed=Row("cl-seed"), comparator=BEST_NON_SEED, kind=SUPERIORITY, effect=0.07, paper_number="+7 points",
)


def _package_claim(**kw):
    return Claim(**{**_CLAIM, "id": "cl-seed-package-claim", "system": "ClSeed (package)", "comparator": Row("random"), **kw})


def _plugin(with_claims=True):
    mod = types.ModuleType("cl_plugin")

    @hookimpl
    def register_tracks(register):
        register(ClaimTrack())

    @hookimpl
    def register_methods(register):
        for n in NAMES:
            register(_method(n))
        register(_method("full", fixed_fraction=1.0))

    @hookimpl
    def register_claims(register):
        register(_package_claim())

    mod.register_tracks, mod.register_methods = register_tracks, register_methods
    if with_claims:
        mod.register_claims = register_claims
    return mod


@pytest.fixture
def cl(monkeypatch):
    """A plugin manager holding only the claim track, its methods and one package claim."""
    old = registry._manager
    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "")
    monkeypatch.delenv("CORESET_BENCH_DISABLE_PLUGINS", raising=False)
    registry.reset()
    registry.load_plugins()
    plugins.register(_plugin(), name="cl_plugin", package="cl-package")
    track = plugins.track("cltrack")
    yield track, track.profiles()[0]
    registry._manager = old


def _bits(correct):
    return {"n": int(correct.size), "bits": np.packbits(correct.astype(bool), bitorder="little").tobytes().hex()}


def _base(b, r):
    return np.random.default_rng(1000 * r + int(b * 100)).random(N) < 0.5


def shifted(k):
    """The base correctness with k more points right (k < 0: wrong): +k/200 in every cell."""

    def fn(b, r):
        c = _base(b, r).copy()
        idx = np.flatnonzero(~c if k > 0 else c)[: abs(k)]
        c[idx] = k > 0
        return c

    return fn


def noisy(seed=7, flips=20):
    """The base with ``flips`` right->wrong and as many wrong->right: a zero-mean paired difference with spread."""

    def fn(b, r):
        c = _base(b, r).copy()
        rng = np.random.default_rng(seed + 10 * r + int(b * 100))
        right, wrong = np.flatnonzero(c), np.flatnonzero(~c)
        c[rng.choice(right, flips, replace=False)] = False
        c[rng.choice(wrong, flips, replace=False)] = True
        return c

    return fn


def by_budget(values):
    """Per-budget accuracy levels (a trend along the budget axis)."""

    def fn(b, r):
        rng = np.random.default_rng(99 + 10 * r + int(b * 100))
        return rng.random(N) < values[BUDGETS.index(b)]

    return fn


def records(methods, flags=None, per_point=True, floor=0.1, full=None):
    """Coreset-like records: ``methods[name](budget, repeat) -> correctness vector``."""
    rows = []
    for name, fn in methods.items():
        budgets = (1.0,) if name == "full" else BUDGETS
        for b in budgets:
            for r in SEEDS:
                c = fn(b, r)
                info = {"flags": list((flags or {}).get(name, [])), "chance_floor": floor}
                if per_point:
                    info["per_point"] = {"acc": _bits(c)}
                rows.append({"key": f"{name}|{b}|{r}", "track": "cltrack", "profile": "cltrack/small@1", "method": name, "method_version": "1",
                             "package": "cl-package", "params": {}, "axes": {"dataset": "d1", "budget": b}, "repeat": r, "status": "done",
                             "metrics": {"acc": float(c.mean())}, "info": info, "timings": {"total_s": 1.0}})
    return normalize_records(rows)


def card(cl, methods, claim=None, **kw):
    track, profile = cl
    board = build_board(track, profile, records(methods, **kw))
    return LC.card(claim or Claim(**_CLAIM), board), board


def test_a_card_is_the_boards_own_paired_interval(cl):
    c, board = card(cl, {"cl-seed": shifted(20), "random": lambda b, r: _base(b, r), "cl-weak": shifted(-10)})
    # the comparator is the best other row (random, not cl-weak), and the difference is the
    # board's gain of the seed row over it: the same paired hierarchical bootstrap, the same numbers
    seed_row = next(r for r in board.main.rows if r.variant.method == "cl-seed")
    assert c.comparator_label == "random (best non-seed row)"
    assert c.difference.mean == pytest.approx(0.10) and c.difference.method == "bootstrap"
    assert (c.difference.low, c.difference.high) == pytest.approx(seed_row.gain.bounds())
    assert c.difference.se == pytest.approx(seed_row.gain.se) and c.difference.se > 0
    assert c.judgement.mde == pytest.approx(2.8 * seed_row.gain.se)
    assert c.verdict == C.SUPPORTED and c.cells == 9
    assert c.difference_text().startswith("+10.00 [") and c.difference_text().endswith("points") and c.unit == "points"
    assert c.amount_text() == "+7.00 points"


@pytest.mark.parametrize(
    ("seed", "change", "verdict"),
    [
        (shifted(20), {"effect": 0.05}, C.SUPPORTED),
        (shifted(20), {"effect": 0.20}, C.SMALLER),
        (shifted(-20), {"effect": 0.05}, C.CONTRADICTED),
        (noisy(), {"effect": 0.50}, C.NOT_REPRODUCED),
        (noisy(), {"effect": 0.001}, C.INCONCLUSIVE),
        (noisy(), {"kind": NON_INFERIORITY, "effect": None, "margin": 0.20}, C.SUPPORTED),
        (shifted(-20), {"kind": NON_INFERIORITY, "effect": None, "margin": 0.02}, C.CONTRADICTED),
        (noisy(), {"kind": NON_INFERIORITY, "effect": None, "margin": 0.001}, C.INCONCLUSIVE),
    ],
)
def test_every_verdict_from_constructed_results(cl, seed, change, verdict):
    c, _ = card(cl, {"cl-seed": seed, "random": lambda b, r: _base(b, r)}, Claim(**{**_CLAIM, **change}))
    assert c.verdict == verdict, (c.difference, c.judgement)
    assert c.difference is not None and c.difference.defined


def test_not_testable_when_the_seed_is_flagged_at_floor_or_a_row_is_missing(cl):
    base = {"random": lambda b, r: _base(b, r)}
    c, _ = card(cl, {"cl-seed": shifted(20), **base}, flags={"cl-seed": ["never-predicts-class"]})
    assert c.verdict == C.NOT_TESTABLE and "flagged: never-predicts-class (9 cells)" in c.judgement.reason
    # a flag that is the claim's own subject does not make it untestable
    c, _ = card(cl, {"cl-seed": shifted(20), **base}, Claim(**{**_CLAIM, "subject_flags": ("never-predicts-class",)}), flags={"cl-seed": ["never-predicts-class"]})
    assert c.verdict == C.SUPPORTED
    low = lambda b, r: np.random.default_rng(5 + r).random(N) < 0.05  # noqa: E731 - 5 % against a 10 % floor
    c, _ = card(cl, {"cl-seed": low, "random": low})
    assert c.verdict == C.NOT_TESTABLE and "at the constant-classifier floor (10.00 %)" in c.judgement.reason
    c, _ = card(cl, {"cl-seed": shifted(20), **base}, Claim(**{**_CLAIM, "comparator": Row("cl-other")}))
    assert c.verdict == C.NOT_TESTABLE and "no results of cl-other on cltrack/small@1" in c.judgement.reason
    c, _ = card(cl, {"cl-seed": shifted(20)})
    assert c.verdict == C.NOT_TESTABLE and "no other row" in c.judgement.reason
    c, _ = card(cl, {"random": lambda b, r: _base(b, r)})
    assert c.verdict == C.NOT_TESTABLE and "no results of cl-seed" in c.judgement.reason
    # best-non-seed never picks a flagged row or one of the seed system's own rows
    c, _ = card(cl, {"cl-seed": shifted(20), "cl-other": shifted(40), "cl-weak": shifted(30), **base},
                Claim(**{**_CLAIM, "system_methods": ("cl-other",)}), flags={"cl-weak": ["never-predicts-class"]})
    assert c.comparator_label == "random (best non-seed row)" and c.verdict == C.SUPPORTED
    assert LC.no_results_card(Claim(**_CLAIM), "cltrack/small@1").judgement.reason == "no results of cltrack/small@1"


def test_comparators_full_random_threshold_and_the_where_filter(cl):
    track, profile = cl
    methods = {"cl-seed": shifted(20), "random": lambda b, r: _base(b, r), "full": shifted(60)}
    # full runs at budget 1.0 only: each seed cell is paired with full's cell of the same setting
    c, _ = card(cl, methods, Claim(**{**_CLAIM, "comparator": FULL, "kind": NON_INFERIORITY, "effect": None, "margin": 0.5}))
    want = np.mean([shifted(20)(b, r).mean() - shifted(60)(1.0, r).mean() for b in BUDGETS for r in SEEDS])
    assert c.comparator_label == "full" and c.difference.mean == pytest.approx(want) and c.verdict == C.SUPPORTED
    assert c.difference.method == "bootstrap" and c.difference.low < want < c.difference.high
    c, _ = card(cl, methods, Claim(**{**_CLAIM, "comparator": RANDOM}))
    assert c.comparator_label == "random" and c.difference.mean == pytest.approx(0.10)
    # a fixed value: the seed row's own mean and interval, shifted
    c, board = card(cl, methods, Claim(**{**_CLAIM, "comparator": Threshold(0.5, "half"), "effect": None}))
    seed = next(v for v in board.variants if v.method == "cl-seed")
    mean = np.mean([seed.values("acc")[k] for k in seed.values("acc")])
    assert c.difference.mean == pytest.approx(mean - 0.5) and c.comparator_label == "half" and c.difference.defined
    # the where filter: only budget 0.1
    c, _ = card(cl, methods, Claim(**{**_CLAIM, "comparator": RANDOM, "where": {"budget": 0.1}}))
    assert c.cells == 3 and c.difference.mean == pytest.approx(0.10)
    c, _ = card(cl, methods, Claim(**{**_CLAIM, "where": {"budget": 0.7}}))
    assert c.verdict == C.NOT_TESTABLE and "no axis point" in c.judgement.reason


def test_a_monotone_trend_along_an_axis_with_its_steps_and_saturation(cl):
    trend = Claim(**{**_CLAIM, "kind": MONOTONE, "comparator": None, "effect": None, "trend_axis": "budget", "saturates": True})
    c, _ = card(cl, {"cl-seed": by_budget((0.3, 0.7, 0.75))}, trend)
    assert [s.label for s in c.steps] == ["budget 0.1 → 0.3", "budget 0.3 → 0.5"]
    assert c.difference.mean == pytest.approx(0.45, abs=0.05) and c.verdict == C.SUPPORTED, c.judgement
    assert any(n.startswith("saturation:") for n in c.notes)
    c, _ = card(cl, {"cl-seed": by_budget((0.3, 0.35, 0.75))}, trend)  # the rise is steepest at the end
    assert c.verdict == C.SATURATION_NOT_SHOWN
    c, _ = card(cl, {"cl-seed": by_budget((0.3, 0.8, 0.5))}, trend)  # the last step falls
    assert c.verdict == C.CONTRADICTED and "budget 0.3 → 0.5" in c.judgement.reason
    c, _ = card(cl, {"cl-seed": by_budget((0.8, 0.4, 0.3))}, Claim(**{**trend.__dict__, "trend": "decreasing"}))
    assert c.verdict == C.SUPPORTED
    # without per-point data and with 3 seeds of equal values, nothing is decided
    c, _ = card(cl, {"cl-seed": lambda b, r: by_budget((0.3, 0.7, 0.75))(b, 0)}, trend, per_point=False)
    assert c.verdict == C.INCONCLUSIVE and c.judgement.mde is None


def test_an_underpowered_card(cl):
    c, _ = card(cl, {"cl-seed": noisy(), "random": lambda b, r: _base(b, r)}, Claim(**{**_CLAIM, "effect": 0.005}))
    assert c.judgement.mde > 0.005 and c.judgement.underpowered is True
    c, _ = card(cl, {"cl-seed": noisy(), "random": lambda b, r: _base(b, r)}, Claim(**{**_CLAIM, "effect": 0.5}))
    assert c.judgement.mde < 0.5 and c.judgement.underpowered is False


def test_an_ambiguous_row_names_the_parameter_to_choose(cl):
    track, profile = cl
    recs = records({"cl-seed": shifted(20), "random": lambda b, r: _base(b, r)})
    extra = [dict(r, key=r["key"] + "x", params={"k": 2}) for r in recs if r["method"] == "random"]
    extra += [dict(r, key=r["key"] + "y", params={"k": 3}) for r in recs if r["method"] == "random"]
    board = build_board(track, profile, [r for r in recs if r["method"] != "random"] + normalize_records(extra))
    c = LC.card(Claim(**{**_CLAIM, "comparator": RANDOM}), board)
    assert c.verdict == C.NOT_TESTABLE and "ambiguous" in c.judgement.reason and "k=2" in c.judgement.reason
    c = LC.card(Claim(**{**_CLAIM, "comparator": Row("random", {"k": 3})}), board)
    assert c.verdict == C.SUPPORTED


# ---- 3. declaring claims: tracks and packages ------------------------------------------------


def test_every_builtin_track_declares_its_seed_papers_claims(fresh_plugins):
    cs, problems = fresh_plugins.claims_and_problems()
    assert problems == []
    assert {c.system for c in cs} == set(C.SEED_SYSTEMS)
    tracks = fresh_plugins.tracks()
    for c in cs:
        t = tracks[c.track]
        known = {p.id for p in t.profiles()}
        assert set(c.profiles) <= known, (c.id, c.profiles)
        assert c.metric in t.metric_directions or c.kind == MONOTONE, (c.id, c.metric)
        assert c.paper.arxiv and c.paper.title and c.quote
    assert len({c.id for c in cs}) == len(cs)


def test_a_package_declares_claims_about_its_own_methods_only(cl):
    cs, problems = plugins.claims_and_problems()
    ids = {c.id: c for c in cs}
    assert {"cl-seed-track-claim", "cl-seed-package-claim"} <= set(ids) and problems == []
    assert plugins.claim_package("cl-seed-package-claim") == "cl-package" and plugins.claim_package("cl-seed-track-claim") == ""

    other = types.ModuleType("cl_other")

    @hookimpl
    def register_claims(register):
        register(_package_claim(id="cl-stolen"))  # about cl-seed, a method of cl-package

    other.register_claims = register_claims
    with pytest.raises(PluginError, match="claim 'cl-stolen' is about method 'cl-seed' of package 'cl-package'; a package declares claims about its own methods only"):
        plugins.register(other, name="cl_other", package="other-package")
    bad = types.ModuleType("cl_bad")

    @hookimpl
    def register_claims_bad(register):
        register({"id": "x"})

    bad.register_claims = register_claims_bad
    with pytest.raises(PluginError, match="not a coreset_bench.claims.Claim"):
        plugins.register(bad, name="cl_bad", package="cl-package")
    assert "cl-stolen" not in {c.id for c in plugins.claims()}


# ---- 4. the command, the board, the run summary ----------------------------------------------


def _store(tmp_path, recs):
    from coreset_bench.store import Store

    st = Store(tmp_path / "cl.db")
    track = plugins.track("cltrack")
    prof = track.profiles()[0]
    for r in recs:
        m = plugins.method(r["method"])
        cell = Cell("cltrack", prof.id, m.name, m.version, {}, dict(r["axes"]), r["repeat"])
        st.start(cell, m, {"device": "cpu"})
        st.finish(cell.key, metrics=r["metrics"], timings=r["timings"], info=r["info"])
    return st


def _main(monkeypatch, capsys, *argv):
    """``coreset-bench ARGV`` through the console script's entry point, ``coreset_bench.cli:main``."""
    from coreset_bench import cli

    monkeypatch.setattr(sys, "argv", ["coreset-bench", *argv])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_claims_command_prints_the_cards_as_json(cl, tmp_path, monkeypatch, capsys):
    from coreset_bench.leaderboard.entries import export_entries

    st = _store(tmp_path, records({"cl-seed": shifted(20), "random": lambda b, r: _base(b, r)}))
    code, out, err = _main(monkeypatch, capsys, "claims", "--json", "--db", str(tmp_path / "cl.db"), "--track", "cltrack")
    assert code == 0, err
    cards = {c["id"]: c for c in json.loads(out)}
    assert set(cards) == {"cl-seed-track-claim", "cl-seed-package-claim"}
    t = cards["cl-seed-track-claim"]
    assert t["verdict"] == "supported" and t["unit"] == "points" and t["difference"] == pytest.approx(10.0)
    assert t["interval"][0] < 10.0 < t["interval"][1] and t["effect"] == pytest.approx(7.0) and t["mde"] > 0
    assert t["comparator_row"] == "random (best non-seed row)" and t["declared_by"] == "track cltrack"
    assert t["paper"]["url"] == "https://arxiv.org/abs/2501.00001" and t["underpowered"] in (True, False)
    assert cards["cl-seed-package-claim"]["declared_by"] == "cl-package"
    # the same cards from exported entries
    written, _ = export_entries(st, tmp_path / "entries")
    st.close()
    assert written
    code, out2, err = _main(monkeypatch, capsys, "claims", "--json", "--entries", str(tmp_path / "entries"), "--track", "cltrack")
    assert code == 0, err
    again = {c["id"]: c for c in json.loads(out2)}
    assert again["cl-seed-track-claim"]["interval"] == pytest.approx(t["interval"])
    # plain text: one line per card; an unknown track is one error line
    code, text, err = _main(monkeypatch, capsys, "claims", "--entries", str(tmp_path / "entries"), "--track", "cltrack")
    assert code == 0 and "verdict: supported" in text and "+10.00 [" in text
    code, _, err = _main(monkeypatch, capsys, "claims", "--track", "nope", "--entries", str(tmp_path / "entries"))
    assert code == 1 and err.strip().startswith("error: unknown track 'nope'")


def test_the_front_page_and_the_profile_page_lead_with_the_cards(cl, tmp_path):
    from coreset_bench.leaderboard.render import render_site

    readme = tmp_path / "README.md"
    readme.write_text("# readings\n")
    recs = records({"cl-seed": shifted(20), "random": lambda b, r: _base(b, r)})
    render_site(recs, tmp_path / "site", readings=readme)
    index = (tmp_path / "site" / "index.html").read_text()
    assert index.index('id="claims"') < index.index('class="track"')  # the cards come first
    card_html = index.split('<article class="claim-card" id="claim-clseed">', 1)[1].split("</article>", 1)[0]
    assert "“ClSeed beats every other method by 7 points.”" in card_html
    assert '<a class="paper" href="https://arxiv.org/abs/2501.00001" rel="noopener">ClSeed: a seed paper</a>' in card_html
    assert '<a class="profile-link" href="cltrack-small-v1.html">cltrack/small@1</a>' in card_html
    assert re.search(r"\+10\.00 \[\d+\.\d\d, \d+\.\d\d\] points", card_html) and "+7.00 points" in card_html
    assert 'class="badge verdict v-supported"' in card_html and '<a class="readings" href="../README.md#claim-clseed">' in card_html
    # the package's claim has its own section, judged the same way
    other = index.split('id="other-claims"', 1)[1]
    assert "declared by package cl-package" in other and "random" in other
    page = (tmp_path / "site" / "cltrack-small-v1.html").read_text()
    assert page.index('class="claim-card"') < page.index('class="board"') and "v-supported" in page


def test_a_flagged_seed_is_shown_as_not_testable_on_the_board(cl, tmp_path):
    from coreset_bench.leaderboard.render import render_site

    recs = records({"cl-seed": shifted(20), "random": lambda b, r: _base(b, r)}, flags={"cl-seed": ["never-predicts-class"]})
    render_site(recs, tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'class="badge verdict v-not-testable"' in index and "the seed row cl-seed is flagged: never-predicts-class (9 cells)" in index


class ClaimTestRandom(SelectionMethod):
    name = "claimtest-random"
    version = "1"
    summary = "A uniform random subset (a test package's own method)."
    modalities = frozenset({"image"})

    def select(self, view):
        return Selection(np.sort(view.rng.choice(view.n, size=view.budget, replace=False)))


def test_the_run_summary_ends_with_the_card_of_the_runs_claims(fresh_plugins, tmp_path, monkeypatch, capsys):
    mod = types.ModuleType("claimtest_plugin")

    @hookimpl
    def register_methods(register):
        register(ClaimTestRandom())

    @hookimpl
    def register_claims(register):
        common = dict(system="ClaimTest", paper=Paper("", "a test package"), quote="as good as full data, within 50 points", track="coreset",
                      metric="clean_acc", seed=Row("claimtest-random"), kind=NON_INFERIORITY, margin=0.5,
                      subject_flags=("never-predicts-class", "subset-class-coverage"))
        register(Claim(id="claimtest-vs-full", profiles=("coreset/tiny@1",), comparator=FULL, **common))
        register(Claim(id="claimtest-elsewhere", profiles=("coreset/quick@2",), comparator=RANDOM, **common))

    mod.register_methods, mod.register_claims = register_methods, register_claims
    fresh_plugins.register(mod, name="claimtest", package="claimtest-package")
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    code, out, err = _main(monkeypatch, capsys, "run", "--plugin", "claimtest-random", "--profile", "coreset/tiny@1", "--db", str(tmp_path / "r.db"), "--device", "cpu")
    assert code == 0, out + err
    from coreset_bench.store import Store

    # each row is marked as the board marks it: its cells' flags (random subsets of tiny MLPs
    # may never predict a class)
    st = Store(tmp_path / "r.db", create=False, read_only=True)
    flags = {r["axes"]["budget"]: r["info"].get("flags") for r in st.results(method="claimtest-random")}
    st.close()
    rows = {float(re.search(r"budget=([\d.]+)", ln).group(1)): ln for ln in out.splitlines() if ln.startswith("  claimtest-random")}
    assert set(rows) == set(flags) == {0.2, 0.5}
    for b, ln in rows.items():
        for f in flags[b]:
            assert f"board: flagged: " in ln and f"{f} (1 of 1 cells)" in ln, ln
        assert ("board: flagged" in ln) == bool(flags[b])
    tail = out.split("coreset/tiny@1: this run's cells", 1)[1]
    assert "claim claimtest-vs-full (ClaimTest, a test package): “as good as full data, within 50 points”" in tail
    m = re.search(r"coreset/tiny@1 · clean_acc: claimtest-random − full = ([−+\d.]+) \[", tail)
    assert m, tail
    assert "verdict: supported" in tail
    assert "claim claimtest-elsewhere" in tail and "decided on coreset/quick@2, not on this run's profile coreset/tiny@1" in tail
    assert tail.index("claim claimtest-vs-full") > tail.index("claimtest-random")
