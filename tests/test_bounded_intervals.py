"""Board intervals of bounded metrics (clipped to their declared range) and of 0/1 metrics
(Clopper-Pearson over cells); paired differences bounded by [−(hi − lo), hi − lo], not by the
metric's own range; tracks that declare nothing keep unbounded intervals."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest

from coreset_bench import registry as plugins
from coreset_bench.leaderboard import stats
from coreset_bench.leaderboard.board import build_board, metric_ranges
from coreset_bench.leaderboard.data import normalize_records
from coreset_bench.leaderboard.entries import entry_records, load_entries
from coreset_bench.leaderboard.render import fmt_interval, interval_title, render_site
from coreset_bench.leaderboard.stats import PROPORTION, UNBOUNDED, MetricRange
from coreset_bench.tracks.base import Profile, Track

ENTRIES = Path(__file__).resolve().parent.parent / "results" / "entries"
T975_DF2 = 4.302652729911275  # Student t, two-sided 95 %, 2 degrees of freedom (tables)
UNIT = MetricRange(0.0, 1.0)


def _one_point(vals):
    return {("p", r): v for r, v in enumerate(vals)}


# ---- stats ------------------------------------------------------------------------------------


def test_accuracy_near_100_percent_is_clipped_to_1_not_re_derived():
    """decentralized/quick@1's d-psgd (lr=0.3) showed 95.5 [91.0, 100.0x]: a t-interval of three
    accuracies near 1 ran past 100 %."""
    vals = _one_point([0.92, 0.97, 0.99])
    raw = stats.mean_over_points(vals, ["p"], [0, 1, 2])
    mean, sd = 0.96, math.sqrt(((0.92 - 0.96) ** 2 + 0.01**2 + 0.03**2) / 2)
    assert raw.mean == pytest.approx(mean) and raw.high == pytest.approx(mean + T975_DF2 * sd / math.sqrt(3)) and raw.high > 1.0
    iv = stats.mean_over_points(vals, ["p"], [0, 1, 2], UNIT)
    assert iv.high == 1.0 and iv.clipped and iv.defined
    assert iv.low == pytest.approx(raw.low) and iv.mean == raw.mean  # the low end is the t-interval's own
    assert iv.half_width == raw.half_width  # the raw half-width is kept, the shown ends are cut
    # a bounded metric whose interval lies inside its range is unchanged
    inside = stats.mean_over_points(_one_point([0.5, 0.55, 0.6]), ["p"], [0, 1, 2], UNIT)
    assert inside == stats.mean_over_points(_one_point([0.5, 0.55, 0.6]), ["p"], [0, 1, 2]) and not inside.clipped
    # open on one side: seconds >= 0 are clipped below only
    secs = stats.mean_over_points(_one_point([0.1, 0.2, 3.0]), ["p"], [0, 1, 2], MetricRange(0.0, None))
    assert secs.low == 0.0 and secs.high > 3.0


def test_clip_never_excludes_the_mean_and_leaves_undefined_intervals_alone():
    # values breaking the declaration (an "accuracy" of 1.2): shown as measured, not cut past the mean
    iv = stats.mean_over_points(_one_point([1.1, 1.2, 1.3]), ["p"], [0, 1, 2], UNIT)
    assert not iv.clipped and iv.contains(iv.mean) and iv.high > 1.2
    flat = stats.mean_over_points(_one_point([1.0, 1.0, 1.0]), ["p"], [0, 1, 2], UNIT)
    assert not flat.defined and "zero width" in flat.reason
    assert stats.clip(None, UNIT) is None


def test_clopper_pearson_known_answers():
    # k = 0 and k = n have closed forms: [0, 1 − (α/2)^(1/n)] and [(α/2)^(1/n), 1]
    for n in (1, 3, 9, 40):
        lo, hi = stats.proportion_interval(0, n)
        assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / n), rel=1e-9)
        lo, hi = stats.proportion_interval(n, n)
        assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / n), rel=1e-9)
    # 1 of 3 (published tables, e.g. Clopper & Pearson 1934 / Geigy tables): [0.0084, 0.9057]
    lo, hi = stats.proportion_interval(1, 3)
    assert lo == pytest.approx(0.0084, abs=1e-4) and hi == pytest.approx(0.9057, abs=1e-4)
    # symmetry: k of n mirrors n − k of n
    lo, hi = stats.proportion_interval(2, 9)
    lo2, hi2 = stats.proportion_interval(7, 9)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        stats.proportion_interval(4, 3)


def test_slo_met_gets_a_proportion_interval_not_a_143_percent_t_interval():
    """pooling/quick@1: slo_met (one 0/1 per cell) with per-seed values 0, 0, 1 got ±143 %."""
    vals = _one_point([0.0, 0.0, 1.0])
    old = stats.mean_over_points(vals, ["p"], [0, 1, 2])
    assert old.half_width == pytest.approx(T975_DF2 * math.sqrt(1 / 3) / math.sqrt(3)) and old.half_width > 1.43
    iv = stats.mean_over_points(vals, ["p"], [0, 1, 2], PROPORTION)
    assert iv.method == "proportion" and iv.n == 3 and iv.mean == pytest.approx(1 / 3)
    assert (iv.low, iv.high) == pytest.approx(stats.proportion_interval(1, 3))
    assert 0.0 <= iv.low < iv.mean < iv.high <= 1.0
    # over several points the cells are pooled: 3 points × 3 seeds, 2 successes
    pts = ["a", "b", "c"]
    cells = {(p, r): 0.0 for p in pts for r in range(3)}
    cells[("a", 0)] = cells[("c", 2)] = 1.0
    many = stats.bootstrap_mean(cells, {}, pts, [0, 1, 2], span=PROPORTION)
    assert many.n == 9 and many.mean == pytest.approx(2 / 9) and (many.low, many.high) == pytest.approx(stats.proportion_interval(2, 9))
    # every cell met: still an interval (never "exact" from 9 successes)
    assert stats.bootstrap_mean(dict.fromkeys(cells, 1.0), {}, pts, [0, 1, 2], span=PROPORTION).defined
    # a "0/1" metric with other values falls back to the clipped interval
    cells[("b", 1)] = 0.5
    fb = stats.bootstrap_mean(cells, {}, pts, [0, 1, 2], span=PROPORTION)
    assert fb.method == "t" and (not fb.defined or 0.0 <= fb.low <= fb.high <= 1.0)


def test_paired_differences_are_bounded_by_the_difference_range_not_the_metric_range():
    base = _one_point([0.0, 0.0, 0.5])
    top = _one_point([1.0, 1.0, 1.0])
    d = stats.paired_gain(top, base, ["p"], [0, 1, 2], span=UNIT)  # diffs 1, 1, 0.5: t runs past +1
    raw = stats.paired_gain(top, base, ["p"], [0, 1, 2])
    assert raw.high > 1.0 and d.high == 1.0 and d.low == pytest.approx(raw.low) and d.clipped
    # a negative difference of accuracies is not cut at 0 (the accuracy's own lower end)
    neg = stats.paired_gain(_one_point([0.5, 0.6, 0.7]), _one_point([0.9, 0.8, 0.75]), ["p"], [0, 1, 2], span=UNIT)
    assert neg.mean < 0 and neg.low < 0 and not neg.clipped
    # orientation ("min": baseline − method) keeps the symmetric bound
    dmin = stats.paired_gain(base, top, ["p"], [0, 1, 2], direction="min", span=UNIT)
    assert dmin.mean == pytest.approx(d.mean) and dmin.high == 1.0
    # a metric open on one side (idle_saving <= 1) has unbounded differences; [lo, hi] gives [−w, w]
    assert MetricRange(None, 1.0).difference() == UNBOUNDED
    assert MetricRange(-1.0, 1.0).difference() == MetricRange(-2.0, 2.0)
    assert PROPORTION.difference() == MetricRange(-1.0, 1.0)


def test_clipped_and_proportion_intervals_render_as_brackets_and_say_so():
    iv = stats.mean_over_points(_one_point([0.92, 0.97, 0.99]), ["p"], [0, 1, 2], UNIT)
    text = fmt_interval(iv, 100.0)
    assert text.startswith("96.00 [") and text.endswith(", 100.00]") and "±" not in text
    assert "clipped" in interval_title(iv)
    p = stats.mean_over_points(_one_point([0.0, 0.0, 1.0]), ["p"], [0, 1, 2], PROPORTION)
    assert fmt_interval(p, 100.0) == "33.33 [0.84, 90.57]"
    assert "1 of 3 cells" in interval_title(p) and "Clopper-Pearson" in interval_title(p)


# ---- declarations on tracks -------------------------------------------------------------------


class _Bare(Track):
    """A third-party track that declares no ranges."""

    name = "bounds-bare"
    contestant_kind = "selection"
    primary_metric = "acc"
    metric_directions = {"acc": "max", "ok": "max"}
    secondary_metrics = ("ok",)

    def profiles(self):
        return [Profile(self.name, "p", 1, axes={"dataset": ["d"]}, seeds=(0, 1, 2))]

    def run_cell(self, cell, method, ctx):  # pragma: no cover - never run here
        raise NotImplementedError


class _Declared(_Bare):
    name = "bounds-declared"
    metric_bounds = {"acc": (0.0, 1.0)}
    proportion_metrics = ("ok",)


def _records(track: Track, accs, oks):
    prof = track.profiles()[0]
    rows = []
    for m, (a3, o3) in {"m1": (accs, oks)}.items():
        for r, (a, o) in enumerate(zip(a3, o3)):
            rows.append({"key": f"{m}{r}", "track": track.name, "profile": prof.id, "method": m, "method_version": "1", "package": "x",
                         "params": {}, "axes": {"dataset": "d"}, "repeat": r, "status": "done", "metrics": {"acc": a, "ok": o},
                         "info": {}, "timings": {"total_s": 1.0}})
    return prof, normalize_records(rows)


def test_a_track_without_declarations_keeps_unbounded_intervals():
    bare, declared = _Bare(), _Declared()
    assert metric_ranges(bare) == {} and metric_ranges(object()) == {}  # a duck-typed track without the attributes
    prof, recs = _records(bare, [0.92, 0.97, 0.99], [0.0, 0.0, 1.0])
    old = build_board(bare, prof, recs).main.rows[0]
    assert old.score.high > 1.0 and not old.score.clipped and old.secondary["ok"].method == "t"
    prof, recs = _records(declared, [0.92, 0.97, 0.99], [0.0, 0.0, 1.0])
    board = build_board(declared, prof, recs)
    new = board.main.rows[0]
    assert new.score.high == 1.0 and new.score.mean == old.score.mean and board.ranges["acc"] == UNIT
    assert new.secondary["ok"].method == "proportion" and new.secondary["ok"].high < 1.0
    # deterministic
    assert build_board(declared, prof, recs).main.rows[0].secondary == new.secondary


def test_a_malformed_declaration_warns_and_is_left_unbounded():
    class Bad(_Bare):
        name = "bounds-bad"
        metric_bounds = {"acc": (1.0, 0.0), "ok": "zero to one", "t": (0.0, math.inf)}

    warnings: list[str] = []
    assert metric_ranges(Bad(), warnings) == {}
    assert len(warnings) == 3 and all("is shown unbounded" in w and "\n" not in w for w in warnings)
    prof, recs = _records(Bad(), [0.92, 0.97, 0.99], [0.0, 0.0, 1.0])
    board = build_board(Bad(), prof, recs)
    assert any("metric_bounds['acc']" in w for w in board.warnings) and board.main.rows[0].score.high > 1.0


def test_built_in_tracks_declare_their_ranges():
    tracks = plugins.tracks()
    for name in ("coreset", "decentralized", "instruction", "pooling", "privacy", "memorization", "video", "label-noise", "robustness"):
        t = tracks[name]
        r = metric_ranges(t)
        assert t.primary_metric in r, name  # every built-in primary metric has a declared range
        for m in (*t.secondary_metrics, *t.metric_directions):  # everything the board may show
            assert m in r, f"track {name}: declare the range of {m} in metric_bounds (or proportion_metrics)"
    assert metric_ranges(tracks["pooling"])["slo_met"] == PROPORTION
    assert metric_ranges(tracks["pooling"])["idle_saving"] == MetricRange(None, 1.0)
    assert metric_ranges(tracks["decentralized"])["mean_node_acc"] == UNIT
    assert metric_ranges(tracks["memorization"])["spearman"] == MetricRange(-1.0, 1.0)


def test_every_metric_the_committed_entries_hold_is_declared_by_its_track():
    """Issue 37: not only the shown metrics: every metric a built-in track emits (found in the
    committed entries) has a declared range, which the entry validator enforces."""
    import json

    tracks = plugins.tracks()
    seen: dict[str, set[str]] = {}
    for path in sorted(ENTRIES.rglob("*.json")):
        obj = json.loads(path.read_text())
        seen.setdefault(obj["track"], set()).update(m for c in obj["cells"] for m in c["metrics"])
    assert {"coreset", "pooling", "privacy", "memorization"} <= set(seen)
    for name, metrics in sorted(seen.items()):
        r = metric_ranges(tracks[name])
        missing = sorted(m for m in metrics if m not in r)
        assert not missing, f"track {name}: declare the range of {', '.join(missing)} in metric_bounds (or proportion_metrics)"
    # families: per-class accuracies of any class count, any attack's accuracy
    cs = metric_ranges(tracks["coreset"])
    assert cs["class_acc_97"] == UNIT and cs["class_apgd-ce_acc_3"] == UNIT and cs["eval_subset_clean_acc_60"] == UNIT
    assert cs["check_order_ok"] == PROPORTION and "n_points" not in cs
    assert metric_ranges(tracks["privacy"])["auc_se"] == MetricRange(0.0, 0.5)
    assert metric_ranges(tracks["memorization"])["score_q50"] == UNBOUNDED  # the proxy's own scale, declared open


# ---- the committed boards ---------------------------------------------------------------------


def _committed_board(pid: str):
    track = plugins.track(pid.split("/", 1)[0])
    prof = track.profile(pid.split("/", 1)[1])
    recs = []
    for path, obj in load_entries([ENTRIES / pid]).accepted:
        recs += entry_records(obj, str(path))
    assert recs, pid
    return build_board(track, prof, recs)


@pytest.mark.parametrize("pid", ["decentralized/quick@1", "pooling/quick@1"])
def test_committed_boards_have_no_interval_outside_the_metric_range(pid):
    board = _committed_board(pid)
    checked = 0
    for table in board.tables:
        for row in table.rows:
            named = [(board.primary, iv) for iv in (row.score, *row.cols)] + list(row.secondary.items())
            for m, iv in named:
                span = board.ranges.get(m, UNBOUNDED)
                if iv is None or not iv.defined or not span.bounded:
                    continue
                checked += 1
                lo, hi = iv.bounds()
                assert (span.low is None or lo >= span.low) and (span.high is None or hi <= span.high), (table.title, row.variant.label, m, iv)
            w = board.ranges.get(board.primary, UNBOUNDED).difference()
            for iv in (row.gain, row.vs_leader, *row.col_gain):
                if iv is not None and iv.defined and w.bounded:
                    assert w.low <= iv.low and iv.high <= w.high
    assert checked > 50
    if pid.startswith("pooling"):
        slo = [r.secondary["slo_met"] for r in board.main.rows]
        assert slo and all(iv.method == "proportion" and iv.n == 9 for iv in slo)


_CELL = re.compile(r'<td data-sort="([^"]+)"[^>]*>([^<]*)</td>')
_SHOWN = re.compile(r"^(\d+\.\d\d)(?: \[(-?\d+\.\d\d), (-?\d+\.\d\d)\]| ± (\d+\.\d\d))?(?: %)?$")


def test_rendered_decentralized_and_pooling_boards_show_no_interval_outside_0_100_percent(tmp_path):
    """The pages of the committed entries: every unsigned value shown in % (the cell's text is 100
    × its sort key; gains are signed, in pp) has its interval inside [0, 100]."""
    src = tmp_path / "entries"
    for pid in ("decentralized/quick@1", "pooling/quick@1"):
        shutil.copytree(ENTRIES / pid, src / pid)
    render_site(None, tmp_path / "site", entries_dirs=[src])
    seen = 0
    for page in ("decentralized-quick-v1.html", "pooling-quick-v1.html"):
        html = (tmp_path / "site" / page).read_text()
        for key, text in _CELL.findall(html):
            m = _SHOWN.match(text.replace("−", "-").strip())
            if m is None or abs(float(m.group(1)) - 100 * float(key)) > 0.006 or (m.group(2) is None and m.group(4) is None):
                continue
            mean = float(m.group(1))
            lo, hi = (float(m.group(2)), float(m.group(3))) if m.group(2) else (mean - float(m.group(4)), mean + float(m.group(4)))
            seen += 1
            assert 0.0 <= lo and hi <= 100.0, (page, text)
    assert seen > 50
    pooling = (tmp_path / "site" / "pooling-quick-v1.html").read_text()
    assert "Clopper-Pearson" in pooling and "±143" not in pooling
