"""The ``pooling`` track: cell protocol, metrics, flags, bad plugin output (tracks-phase2.md §5.6, §5.9 9-10)."""

import re
import time

import numpy as np
import pytest

from coreset_bench import registry
from coreset_bench.kinds import ProvisioningMethod
from coreset_bench.tracks.base import CellContext, CellFailure
from coreset_bench.tracks.pooling import BOUND, MISSED, PoolingTrack, slo_tolerance


@pytest.fixture(scope="module")
def track():
    return PoolingTrack()


def _ctx(tmp_path):
    return CellContext(results_dir=tmp_path, cache_dir=tmp_path / "cache", data_dir=None)


def _run(track, method, tmp_path, profile="tiny"):
    prof = track.profile(profile)
    (cell,) = track.cells(prof, method)[:1]
    return track.run_cell(cell, method, _ctx(tmp_path))


def test_track_is_registered_with_quick_default_and_ranks_intelligent_pooling():
    t = registry.track("pooling")
    assert t.default_profile == "quick" and t.profile(None).id == "pooling/quick@2"
    q2 = t.profile(None)
    assert q2.n_cells() == 20 and tuple(q2.seeds) == (0, 1, 2, 3, 4) and q2.salted
    assert {"synth-sessions:diurnal", "synth-sessions:hourly", "synth-sessions:overdispersed"} <= set(q2.axes["trace"])
    q1 = t.profile("quick@1")  # published: unchanged
    assert q1.n_cells() == 9 and q1.axes["trace"] == ["synth-sessions:diurnal", "synth-sessions:scheduled", "synth-sessions:bursty"] and not q1.salted
    assert "calib_days" not in q1.settings and q1.settings["refit_every"] == 2880
    assert t.accepts(registry.method("intelligent-pooling")) is None
    assert "pooling" in list(registry.tracks_for(registry.method("intelligent-pooling")))
    assert {p.name for p in t.profiles()} == {"tiny", "quick", "tradeoff", "leadtime", "azure"}


def test_static_lies_on_the_frontier_and_the_oracle_is_a_flagged_bound(track, tmp_path):
    st = _run(track, registry.method("static"), tmp_path)
    assert st.metrics["idle_saving"] == pytest.approx(0.0, abs=1e-9)  # a constant pool is a frontier point
    assert st.metrics["idle_saving_vs_static"] == 0.0
    orc = _run(track, registry.method("oracle"), tmp_path)
    assert orc.metrics["idle_saving"] > 0.9 and BOUND in orc.info["flags"]
    assert orc.metrics["hit_rate"] == pytest.approx(orc.info["hits"] / orc.info["requests"])
    names = {a.name for a in orc.artifacts}
    assert names == {"targets.npy", "ready.npy", "frontier.npy"}


def test_reactive_cell_metrics(track, tmp_path):
    r = _run(track, registry.method("reactive"), tmp_path)
    m = r.metrics
    assert set(track.secondary_metrics) <= set(m) and all(np.isfinite(v) for v in m.values())
    assert 0 < m["hit_rate"] <= 1 and m["slo_met"] in (0.0, 1.0)
    assert (MISSED in r.info["flags"]) == (m["slo_met"] == 0.0)
    assert m["idle_saving"] > 0  # a reactive pool beats the best constant pool at its hit rate


class _Bad(ProvisioningMethod):
    name = "bad-pool"
    version = "1"

    def __init__(self, how="nan"):
        super().__init__()
        self.how = how

    def with_params(self, **kw):
        return self

    def plan(self, view):
        out = np.full(view.horizon, 3.0)
        if self.how == "nan":
            out[2] = np.nan
        elif self.how == "negative":
            out[0] = -1
        elif self.how == "length":
            out = out[:-1]
        elif self.how == "slow":
            time.sleep(0.02)
        elif self.how == "peek":
            from coreset_bench.tracks.pooling.sim import synth_sessions

            synth_sessions("diurnal")
        elif self.how == "future" and view.future is not None:
            raise RuntimeError("a non-privileged method saw the future")
        return out

    def fit(self, view):
        view.info["future_none"] = view.future is None


@pytest.mark.parametrize("how, needle", [
    ("nan", "not finite"), ("negative", "negative pool sizes"), ("length", r"shape \(9,\), expected \(10,\)"),
    ("peek", "tried to generate the pooling trace"), ("slow", "over the 0.005s budget"),
])
def test_bad_plugin_output_fails_only_its_cell_naming_the_plugin(track, tmp_path, how, needle, monkeypatch):
    if how == "slow":
        orig = track.profile

        def prof(ref):
            p = orig(ref)
            return type(p)(p.track, p.name, p.version, p.axes, p.seeds, {**p.settings, "plan_timeout_s": 0.005}, p.description)

        monkeypatch.setattr(track, "profile", prof)
    with pytest.raises(CellFailure, match=needle) as exc:
        _run(track, _Bad(how), tmp_path)
    assert "bad-pool" in str(exc.value)
    monkeypatch.undo()  # the profile's own plan time budget again
    ok = _run(track, registry.method("static"), tmp_path)  # the next cell is unaffected
    assert ok.metrics["hit_rate"] > 0


def test_non_privileged_methods_never_see_the_future(track, tmp_path):
    r = _run(track, _Bad("future"), tmp_path)  # plan() raises if it gets view.future
    assert r.info["method_future_none"] == [True] and r.metrics["hit_rate"] > 0 and BOUND not in r.info["flags"]


@pytest.mark.slow
def test_intelligent_pooling_meets_the_target_on_unseen_diurnal_days(track, tmp_path):
    """On the easy control the hit rate on unseen days meets the target within the tolerance the
    board flags by (``slo_met``: one place, ``slo_tolerance``), not a looser test threshold."""
    prof = track.profile("quick@2")
    m = registry.method("intelligent-pooling")
    cell = next(c for c in track.cells(prof, m) if c.axes["trace"] == "synth-sessions:diurnal" and c.repeat == 0)
    r = track.run_cell(cell, m, _ctx(tmp_path))
    assert r.metrics["slo_met"] == 1.0, (r.metrics["hit_rate"], prof.settings["slo_tolerance"])
    assert r.metrics["hit_rate"] >= 0.99 - slo_tolerance(prof) and MISSED not in r.info["flags"]
    assert r.info["tuner_at_bound"] == 0  # the decision window leaves the tuner inside its range here


def test_the_flag_and_slo_met_use_the_profiles_tolerance(track, tmp_path, monkeypatch):
    """A cell is flagged exactly when hit_rate < target - slo_tolerance (the same number the
    slow test reads): with a tolerance of 1 nothing is flagged, with 0 the reactive cell's
    miss below 100 % is."""
    orig = track.profile

    def with_tol(tol):
        def prof(ref):
            p = orig(ref)
            return type(p)(p.track, p.name, p.version, p.axes, p.seeds, {**p.settings, "slo_tolerance": tol}, p.description, salted=p.salted)

        return prof

    monkeypatch.setattr(track, "profile", with_tol(1.0))
    loose = _run(track, registry.method("reactive"), tmp_path)
    assert loose.metrics["slo_met"] == 1.0 and MISSED not in loose.info["flags"] and loose.info["slo_threshold"] == pytest.approx(0.99 - 1.0)
    monkeypatch.setattr(track, "profile", with_tol(0.0))
    strict = _run(track, registry.method("reactive"), tmp_path)
    assert strict.metrics["hit_rate"] < 0.99 + 0.01  # not a perfect pool
    assert (strict.metrics["slo_met"] == 1.0) == (strict.metrics["hit_rate"] >= 0.99) and (MISSED in strict.info["flags"]) == (strict.metrics["hit_rate"] < 0.99)


def test_tiny_run_renders_the_pool_frontier_figure(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from coreset_bench import cli

    cli._add_plugin_commands()  # the leaderboard command, as main() registers it
    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "x.db")
    r = CliRunner().invoke(cli.app, ["run", "--track", "pooling", "--profile", "tiny", "-p", "reactive", "--db", db, "--jobs", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli.app, ["leaderboard", "--db", db, "--out", str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    svg = tmp_path / "site" / "figures" / "pooling-tiny-v2-pool-frontier.svg"
    text = svg.read_text()
    assert "static frontier (hindsight)" in text and "reactive" in text and "oracle" in text
    page = (tmp_path / "site" / "pooling-tiny-v2.html").read_text()
    assert "pooling-tiny-v2-pool-frontier.svg" in page
    # no coreset columns on a pooling board (no subset is selected), and seconds are not percentages
    heads = re.findall(r"<th [^>]*>(.*?)</th>", page)
    assert "total" in heads and "plan_s" in heads and not {"selection", "subset size"} & set(heads), heads
    assert "= budget" not in page
    method = (tmp_path / "site" / "methods" / "reactive.html").read_text()
    mheads = re.findall(r"<th[^>]*>(.*?)</th>", method)
    assert "plan_s (s)" in mheads and "plan_s (%)" not in mheads and "subset size" not in mheads and "selection" not in mheads
    assert re.search(r"<td>k [0-9.]+; tuner at a bound in [01]/1 fits[^;<]*; pool p50 [0-9.]+ / p95 [0-9.]+ / max [0-9.]+</td>", method), "the realized k, the tuner's bound and pool sizes"


def test_cells_store_what_the_method_realized(track, tmp_path):
    """The method's view.info of every fit is stored per cell as method_<key> lists (e.g. the
    auto-tuned cost ratio), with the fit days and a summary of the pool sizes."""
    r = _run(track, registry.method("reactive"), tmp_path)
    info = r.info
    assert info["fit_day"] == [0.0] and len(info["method_k"]) == 1 and info["method_k"][0] >= 0
    pt = info["pool_target"]
    assert pt["p05"] <= pt["p50"] <= pt["p95"] <= pt["max"] and pt["mean"] > 0 and info["pool_ready_mean"] > 0
    st = _run(track, registry.method("static"), tmp_path)
    assert st.info["pool_target"]["p05"] == st.info["pool_target"]["max"] == st.info["method_static_pool"][0]


class _BlasProbe(ProvisioningMethod):
    name = "blas-probe"
    version = "1"

    def with_params(self, **kw):
        return self

    def fit(self, view):
        import os

        from coreset_bench import contestant

        # the worker measured its BLAS at boot, before the guard (which refuses threadpoolctl's ctypes)
        view.info["blas"] = max(contestant.BLAS_AT_BOOT) if contestant.BLAS_AT_BOOT else None
        view.info["env"] = os.environ.get("OPENBLAS_NUM_THREADS")

    def plan(self, view):
        return np.full(view.horizon, 3.0)


def test_cells_hold_numpy_blas_to_the_cell_thread_count(track, tmp_path, monkeypatch):
    import torch
    from threadpoolctl import threadpool_limits

    m = _BlasProbe()
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what the runner's cell scope sets on the CPU
    try:
        with threadpool_limits(limits=2, user_api="blas"):  # what OpenBLAS takes on a 2-core machine
            r = _run(track, m, tmp_path)
    finally:
        torch.set_num_threads(before)
    # the method runs in the contestant worker: its BLAS there is held to the cell's thread count
    assert r.info["method_blas"] == [1.0] and r.info["method_env"] == ["1"]


def test_same_intelligent_pooling_cell_same_numbers(track, tmp_path):
    m = registry.method("intelligent-pooling")
    a, b = _run(track, m, tmp_path), _run(track, m, tmp_path)
    timing = {"fit_s", "plan_s"}
    assert {k: v for k, v in a.metrics.items() if k not in timing} == {k: v for k, v in b.metrics.items() if k not in timing}
    assert a.info["method_rho"] == b.info["method_rho"] and a.info["pool_target"] == b.info["pool_target"]


class _CalibProbe(ProvisioningMethod):
    """Records the calibration the harness hands it and reports a tuner pinned at its floor."""

    name = "calib-probe"
    version = "1"

    def with_params(self, **kw):
        return self

    def fit(self, view):
        view.info["seen"] = str((view.calib_days, view.tune_margin))
        view.info["tune_bound"] = "floor"
        view.info["rho"] = 1.0

    def plan(self, view):
        return np.full(view.horizon, 5.0)


def test_every_method_gets_the_profiles_calibration_and_a_pinned_tuner_is_counted(track, tmp_path):
    """tiny@2 (as quick@2): history Monday-Wednesday, Thursday served; the fit is asked to
    calibrate on the last 2 weekdays (1, 2) aiming 0.2 points above the target; the cell records
    those days (from the evaluation start) and counts the fit whose tuner sat at a bound."""
    prof = track.profile("tiny@2")
    assert prof.settings["calib_days"] == 2 and prof.settings["tune_margin"] == 0.002 and prof.settings["refit_every"] == 1440
    m = _CalibProbe()
    r = _run(track, m, tmp_path, profile="tiny@2")
    assert r.info["method_seen"] == [str(((1, 2), 0.002))]
    assert r.info["calib_days"] == [[-2, -1]] and r.info["tuner_at_bound"] == 1 and r.info["tuner_at_floor"] == 1
    assert r.info["tune_aim"] == pytest.approx(0.992) and r.info["slo_threshold"] == pytest.approx(0.988)
    text = PoolingTrack.realized_text(r.info)
    assert "rho 1" in text and "tuner at a bound in 1/1 fits (1 floor, 0 ceiling)" in text and "tune_bound" not in text
    st = _run(track, registry.method("static"), tmp_path, profile="tiny@1")  # a profile without calibration: none passed
    assert "calib_days" not in st.info and "tuner_at_bound" not in st.info
