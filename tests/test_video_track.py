"""The video track: costs, cascade, WISE, PKD schedule, contestants, cell checks (spec §4.10 5-9)."""

import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from coreset_bench import registry
from coreset_bench.tracks.video import models as VM
from coreset_bench.kinds import ExitModel
from coreset_bench.plugins.distillation import _exits as X
from coreset_bench.testing import check_exit_method
from coreset_bench.tracks.base import Cell, CellContext, CellFailure
from coreset_bench.tracks.video import ORDER, VideoTrack, cascade, combine, frontier_metrics

CONTESTANTS = ("ce-exits", "pkd", "wise", "pkd-wise", "kd-final", "pkd-anti", "iframe-kd")


# ---- costs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("ch,hw,c", [(8, 16, 8), (16, 4, 5), (32, 2, 3)])
def test_head_flops_equal_the_analytic_count(ch, hw, c):
    pool = 4 if hw >= 4 else 1
    analytic = hw * hw * ch * ch * 9 + ch * pool * pool * c  # conv MACs + linear MACs
    assert VM.count_macs(VM.ic_head(ch, hw, c), torch.zeros(1, ch, hw, hw)) == analytic


def test_one_conv_layer_flops_match_analytic_macs():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert VM.count_macs(conv, torch.zeros(1, 3, 16, 16)) == 16 * 16 * 3 * 8 * 9


def test_cumulative_exit_costs_strictly_increase_and_switching_restarts_at_the_stem():
    per_mod, order = {}, [(m, k) for m in ORDER for k in (1, 2, 3, 4)] + [("fused", 4)]
    for m in ORDER:
        net = VM.TinyExitNet(VM.IN_CHANNELS[m], 5, (4, 8, 8, 16))
        stages, heads, shapes = VM.stage_costs(net, (VM.IN_CHANNELS[m], 16, 16), 5)
        assert shapes == [(4, 16), (8, 8), (8, 4)]
        per_mod[m] = (stages, heads)
    costs = VM.exit_costs(per_mod, order, 3, 5)
    assert len(costs) == 13 and (np.diff(costs) > 0).all()
    s, h = per_mod["mv"]
    assert costs[4] - costs[3] == 3 * (s[0] + h[0])  # mv IC1 = the res network in full + mv stage 1 + head 1
    assert costs[-1] - costs[-2] == 3 * 3 * 5


# ---- cascade and metrics ---------------------------------------------------------------------------
def test_cascade_extremes():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(20, 13, 4)), rng.integers(0, 4, 20)
    costs = np.arange(1, 14, dtype=float)
    front = cascade(z, y, costs, thetas=np.array([0.0, 1.01]))
    assert front[0, 1] == pytest.approx(1 / 13) and front[0, 2] == pytest.approx((z[:, 0].argmax(1) == y).mean())
    assert front[1, 1] == 1.0 and front[1, 2] == pytest.approx((z[:, 12].argmax(1) == y).mean())


def test_crafted_logits_give_the_hand_computed_frontier_and_auc():
    """Two exits (cost 1 and 4), two samples, C = 2. Sample 0: exit 0 confident (p .88) and
    right; sample 1: exit 0 unsure (p .62) and wrong, exit 1 right. theta <= .62: both leave at
    exit 0 (cost 1/4, acc .5); .62 < theta <= .88: sample 1 goes on (cost 5/8, acc 1); above:
    both at exit 1 (cost 1, acc 1)."""
    z = np.array([[[2.0, 0.0], [3.0, 0.0]], [[0.5, 0.0], [0.0, 3.0]]])
    y = np.array([0, 1])
    front = cascade(z, y, np.array([1.0, 4.0]))
    p0, p1 = 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-0.5))
    for th, c, a in front:
        if th <= p1:
            assert (c, a) == (0.25, 0.5)
        elif th <= p0:
            assert (c, a) == (0.625, 1.0)
        else:
            assert (c, a) == (1.0, 1.0)
    m = frontier_metrics(front, 2)
    # F(c): 0.5 (chance, no point) for c < .25; .5 on [.25, .625); 1 from .625: grid 0.05..1.00
    want = [0.5] * 12 + [1.0] * 8
    assert m["exit_auc"] == pytest.approx(np.mean(want))
    assert m["acc_at_25"] == 0.5 and m["acc_at_50"] == 0.5


def test_wise_with_one_hot_weights_equals_the_chosen_exit():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(30, 13, 5)), rng.integers(0, 5, 30)
    costs = np.linspace(1, 10, 13)
    chosen = [min(e, 3) for e in range(13)]
    combiner = [np.eye(e + 1)[chosen[e]] for e in range(13)]
    zc = combine(z, combiner)
    for e in range(13):
        assert np.array_equal(zc[:, e], z[:, chosen[e]])
    assert np.array_equal(cascade(combine(z, [np.eye(e + 1)[e] for e in range(13)]), y, costs), cascade(z, y, costs))


def test_wise_learns_to_weigh_the_informative_exit():
    g = torch.Generator().manual_seed(0)
    n, e_n, c = 200, 6, 4
    y = torch.randint(0, c, (n,), generator=g)
    z = torch.randn(n, e_n, c, generator=g, dtype=torch.float64)
    z[:, 3] = 5.0 * torch.nn.functional.one_hot(y, c).double()
    betas = X.fit_wise(z, y, init="last", l1=0.01)
    assert [b.shape for b in betas] == [(e + 1,) for e in range(e_n)]
    for e in range(3, e_n):
        assert betas[e][3] / betas[e].sum() > 0.9, (e, betas[e])
    assert all((b >= 0).all() for b in betas)
    # a strong l1 drives every weight to 0 (plain SGD on the subgradient: within lr * l1 of it)
    assert all(np.allclose(b, 0, atol=0.02) for b in X.fit_wise(z, y, init="ones", l1=10.0, lr=0.001, iters=500))
    # an anti-informative exit gets a negative weight, which the clip sets to 0
    z[:, 1] = -5.0 * torch.nn.functional.one_hot(y, c).double()
    raw = X.fit_wise(z, y, init="ones", l1=0.0, iters=100, clip_negative=False)
    clipped = X.fit_wise(z, y, init="ones", l1=0.0, iters=100)
    assert raw[2][1] < 0 and clipped[2][1] == 0.0


# ---- PKD -------------------------------------------------------------------------------------------
def test_pkd_schedule_and_loss():
    assert X.teacher_schedule(["mv", "res", "own"], 12, 1 / 6) == ["mv"] * 2 + ["res"] * 2 + ["own"] * 8
    assert X.teacher_schedule(["mv", "res", "own"], 300, 1 / 6) == ["mv"] * 50 + ["res"] * 50 + ["own"] * 200
    assert X.teacher_schedule(["own"], 5, 1 / 6) == ["own"] * 5
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 2.0, 0.0]])
    pt = torch.exp(t) / torch.exp(t).sum()
    want = -(pt * torch.log(torch.exp(s) / torch.exp(s).sum())).sum()
    assert X.soft_cross_entropy(s, t).item() == pytest.approx(want.item())
    t2 = torch.exp(t / 2) / torch.exp(t / 2).sum()
    assert X.soft_cross_entropy(s, t, 2.0).item() == pytest.approx(-(t2 * torch.log_softmax(s / 2, 1)).sum().item())


# ---- contestants ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CONTESTANTS)
def test_contestants_pass_the_conformance_kit(name):
    m = registry.method(name)
    assert m.role == "early-exit"
    out = check_exit_method(m, max_seconds=900.0)  # the kit's 120 s is for a free machine; this one is shared
    assert (out.combiner is not None) == ("wise" in name)


# ---- the track's cells ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    return VideoTrack(), CellContext(results_dir=root / "r", cache_dir=root / "c", data_dir=None)


def _cell(track, m, repeat=0):
    p = track.profile("tiny")
    return Cell("video", p.id, m.name, m.version, dict(m.params), {"dataset": "synth-motion"}, repeat)


def test_tiny_cell_runs_and_is_deterministic(tiny):
    track, ctx = tiny
    m = registry.method("pkd-wise")
    a = track.run_cell(_cell(track, m), m, ctx)
    track.__dict__.pop("_memo", None)  # the second run loads data and backbones from the cache
    b = track.run_cell(_cell(track, m), m, ctx)
    assert b.info["backbones_shared"] and b.info["data_cached"]
    for k, v in a.metrics.items():
        if k != "distill_s":
            assert v == b.metrics[k], k
    assert 0 <= a.metrics["exit_auc"] <= 1 and len(a.info["frontier_cost"]) == 101
    assert a.info["combiner"] and {x.name for x in a.artifacts} == {"frontier.npy", "exit_acc.npy", "beta.npy"}
    assert a.info["teachers"] == {"mv": 1, "res": 1, "own": 2}


class _Bad(X.EarlyExitMethod):
    name = "bad-exits"
    params = {"order": "ce", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": False, "how": "heads"}

    def distill(self, view):
        how = self.params["how"]
        if how == "raise":
            raise RuntimeError("boom")
        if how == "leak":
            from coreset_bench.tracks.video import data as video_data
            video_data.synth_motion(0)
        heads = {(m, k): view.head_factory(m, k) for m in view.modalities for k in (1, 2, 3)}
        if how == "heads":
            heads.pop(("mv", 2))
        if how == "nan":
            with torch.no_grad():
                heads[("res", 1)][-1].bias.fill_(float("nan"))
        if how == "backbone":
            for o in gc.get_objects():
                if isinstance(o, VM.TinyExitNet):
                    with torch.no_grad():
                        o.fc.bias.add_(1.0)
        combiner = None
        if how == "combiner":
            combiner = [np.ones(e + 2) for e in range(13)]
        return ExitModel(heads=heads, combiner=combiner)


@pytest.mark.parametrize("how,msg", [("heads", "exactly one head"), ("nan", "non-finite"), ("raise", "plugin 'bad-exits' failed: RuntimeError: boom"),
                                      ("leak", "tried to generate"), ("combiner", "combiner weights of exit 0")])
def test_bad_output_fails_only_its_cell_naming_the_plugin(tiny, how, msg):
    track, ctx = tiny
    m = _Bad(how=how)
    with pytest.raises(CellFailure, match=msg) as ei:
        track.run_cell(_cell(track, m), m, ctx)
    assert "bad-exits" in str(ei.value) and "\n" not in str(ei.value)
    good = registry.method("ce-exits")
    assert track.run_cell(_cell(track, good), good, ctx).metrics["exit_auc"] >= 0


def test_a_method_in_the_worker_cannot_reach_the_harness_backbones(tiny):
    """The contestant runs in the contestant worker: the harness's frozen networks are not in its
    memory (it gets copies through ``view.backbone_factory``), so changing every ``TinyExitNet``
    it finds changes nothing the harness evaluates with (it used to fail the cell in-process)."""
    track, ctx = tiny
    good = registry.method("ce-exits")
    before = track.run_cell(_cell(track, good), good, ctx)
    m = _Bad(how="backbone")
    r = track.run_cell(_cell(track, m), m, ctx)
    assert r.info["backbone_hash"] == before.info["backbone_hash"]
    assert {k: r.metrics[k] for k in r.metrics if k.endswith("_4")} == {k: before.metrics[k] for k in before.metrics if k.endswith("_4")}


def test_track_accepts_only_early_exit_distillation():
    track = VideoTrack()
    assert track.accepts(registry.method("pkd")) is None
    assert "role" in track.accepts(registry.method("random"))  or "distillation" in track.accepts(registry.method("random"))
    assert track.profile("quick").n_cells() == 5 and track.baseline_method == "ce-exits"


def test_quick2_is_on_synth_motion_v2_and_quick1_keeps_v1():
    """quick@2 and accumulate@2 generate synth-motion@v2 at the specification's input sizes;
    quick@1 and accumulate@1 keep v1 and their settings, so their committed cells stay valid.
    (quick@3, the default since issue 35, is tested in test_video_quick3.py.)"""
    from coreset_bench.tracks.video import _QUICK

    t = VideoTrack()
    q2, q1 = t.profile("quick@2"), t.profile("quick@1")
    assert t.profile("accumulate").id == "video/accumulate@2"
    for p in (q2, t.profile("accumulate@2")):
        assert p.settings["synth_version"] == 2 and p.settings["pools"] == {"mv": 4, "res": 2, "iframe": 2}
        assert p.settings["test_per_class"] == 30
    for p in (q1, t.profile("accumulate@1")):
        assert "synth_version" not in p.settings and dict(p.settings) == _QUICK
    assert _QUICK["pools"] == {"mv": 4, "res": 4, "iframe": 4} and _QUICK["test_per_class"] == 20
    # the data seed depends on the profile id: quick@2 draws its own clips
    assert t._data_seed(q2, "synth-motion", 0, True) != t._data_seed(q1, "synth-motion", 0, True)


# ---- determinism across processes and thread counts ------------------------------------------------------
class _Probe(X.EarlyExitMethod):
    """Records the torch thread count the method runs under; returns untrained heads (cheap)."""

    name = "probe-exits"
    params = {"order": "ce", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": False}

    def distill(self, view):
        view.info["probe_threads"] = torch.get_num_threads()  # it runs in the contestant worker: reported through view.info
        return ExitModel(heads={(m, k): view.head_factory(m, k) for m in view.modalities for k in (1, 2, 3)}, combiner=None)


def test_a_direct_run_cell_uses_the_tracks_thread_count_not_the_callers(tiny, monkeypatch):
    """The regression of "same cell, same seed, different numbers in another process": a script
    calling ``run_cell`` kept torch's default thread count (the cores), the CLI used 1, and the
    CPU's reductions split by thread count (quick@2's MV IC4: 0.679 with 1 thread, 0.708 with 2).
    Now the track enters ``cell_scope`` itself: features and the method run under
    CORESET_BENCH_THREADS (1 here) whatever the caller set, and the caller's count comes back."""
    track, ctx = tiny
    seen_features = []
    features = VM.features

    def spy(net, x, *a, **k):
        seen_features.append(torch.get_num_threads())
        return features(net, x, *a, **k)

    monkeypatch.setattr(VM, "features", spy)
    track.__dict__.pop("_memo", None)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        m = _Probe()
        r = track.run_cell(_cell(track, m), m, ctx)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(before)
    assert r.info["probe_threads"] == 1 and seen_features and set(seen_features) == {1}
    assert r.info["threads"] == 1 and len(r.info["backbone_hash"]) == 64


def test_backbones_trained_under_another_thread_count_are_not_reused(tiny, monkeypatch):
    """The thread count changes the trained bits, so it is part of the backbone cache key: a cache
    written with CORESET_BENCH_THREADS=1 does not serve a run with 2 (it used to, silently).
    (Training is cut to 0 epochs under 2 threads: the test is about the reuse, not the networks.)"""
    import json

    track, ctx = tiny
    m = _Probe()
    track.__dict__.pop("_memo", None)
    one = track.run_cell(_cell(track, m), m, ctx)  # trains or loads the 1-thread backbones
    trained = []
    build = VM.build_backbones

    def short(*a, **k):
        trained.append(torch.get_num_threads())
        return build(*a, **{**k, "epochs": 0})

    monkeypatch.setattr(VM, "build_backbones", short)
    monkeypatch.setenv("CORESET_BENCH_THREADS", "2")
    track.__dict__.pop("_memo", None)
    two = track.run_cell(_cell(track, m), m, ctx)
    assert trained == [2] and two.info["threads"] == 2 and not two.info["backbones_shared"]
    metas = [json.loads(f.read_text())["key"] for f in (Path(ctx.cache_dir) / "video" / "backbones").glob("*/meta.json")]
    assert {1, 2} <= {k.get("threads") for k in metas}
    monkeypatch.setenv("CORESET_BENCH_THREADS", "1")
    track.__dict__.pop("_memo", None)
    again = track.run_cell(_cell(track, m), m, ctx)
    assert trained == [2] and again.info["backbones_shared"] and again.info["backbone_hash"] == one.info["backbone_hash"]
    track.__dict__.pop("_memo", None)


def test_backbone_key_covers_every_setting_that_changes_the_backbones():
    """Data (generator version and settings, clip counts: all in the data key), repeat, axes,
    widths, epochs, lr, batch size, device, thread count, code revision and torch version: each
    changes the key; the same inputs give the same key."""
    import dataclasses

    from coreset_bench.tracks.video import BACKBONE_REVISION, backbone_key

    track = VideoTrack()
    p = track.profile("quick@2")
    m = registry.method("ce-exits")

    def cell(repeat=0, **axes):
        return Cell("video", p.id, m.name, m.version, dict(m.params), {"dataset": "synth-motion", **axes}, repeat)

    base, payload = backbone_key(p, cell(), "d0", "cpu", threads=1)
    assert base == backbone_key(p, cell(), "d0", "cpu", threads=1)[0]
    assert payload["v"] == BACKBONE_REVISION and payload["torch"] == torch.__version__ and payload["threads"] == 1
    keys = {
        "data": backbone_key(p, cell(), "d1", "cpu", threads=1)[0],
        "repeat": backbone_key(p, cell(1), "d0", "cpu", threads=1)[0],
        "axes": backbone_key(p, cell(accumulate=False), "d0", "cpu", threads=1)[0],
        "threads": backbone_key(p, cell(), "d0", "cpu", threads=2)[0],
        "profile": backbone_key(track.profile("quick@1"), cell(), "d0", "cpu", threads=1)[0],
    }
    for name, value in (("widths", [8, 16, 32, 64]), ("backbone_epochs", 21), ("backbone_lr", 0.04), ("backbone_batch_size", 16)):
        q = dataclasses.replace(p, settings={**p.settings, name: value})
        keys[name] = backbone_key(q, cell(), "d0", "cpu", threads=1)[0]
    assert base not in keys.values() and len(set(keys.values())) == len(keys), keys


def test_backbone_training_does_not_depend_on_modality_order_or_global_rng():
    """Each network is seeded on its own: training the modalities in another order, after other
    code consumed the global RNG, gives bit-identical networks."""
    g = torch.Generator().manual_seed(0)
    x = {m: torch.randn(12, 2, VM.IN_CHANNELS[m], 8, 8, generator=g) for m in ORDER}
    y = torch.arange(12) % 3
    kw = dict(widths=(4, 4, 8, 8), epochs=2, lr=0.05, batch_size=4, seed=5)
    a, _ = VM.build_backbones(x, y, 3, modalities=ORDER, **kw)
    torch.rand(100)
    b, _ = VM.build_backbones(x, y, 3, modalities=tuple(reversed(ORDER)), **kw)
    for m in ORDER:
        assert VM.param_hash({m: a[m]}) == VM.param_hash({m: b[m]}), m


_CHILD = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[2]))  # the caller's count must not matter
from coreset_bench import registry
from coreset_bench.tracks.base import Cell, CellContext
from coreset_bench.tracks.video import VideoTrack
t, m = VideoTrack(), registry.method("pkd-wise")
p = t.profile("tiny")
cell = Cell("video", p.id, m.name, m.version, dict(m.params), {"dataset": "synth-motion"}, 0)
r = t.run_cell(cell, m, CellContext(results_dir=sys.argv[1], cache_dir=sys.argv[1], data_dir=None))
print(json.dumps({"metrics": {k: v for k, v in r.metrics.items() if k != "distill_s"}, "hash": r.info["backbone_hash"],
                  "shared": r.info["backbones_shared"], "cached": r.info["data_cached"], "front": r.info["frontier_acc"],
                  "teacher": r.info["teacher_ptrue"]}))
"""


def _children(tmp_path, threads, data_from=()):
    """Run the tiny pkd-wise cell (tiny@2: held-out clips, cached crops, segment-averaged
    training, WISE on the held-out clips) in fresh processes at once, one per entry of ``threads`` (the
    torch thread count each caller sets), each with its own cache: empty, or holding only a copy
    of the clip files ``data_from``. Their outputs: metrics, backbone hash, frontier."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    env = {**os.environ, "CORESET_BENCH_THREADS": "1"}
    procs = []
    for i, n in enumerate(threads):
        d = tmp_path / f"p{i}"
        (d / "video").mkdir(parents=True)
        for f in data_from:
            shutil.copy(f, d / "video" / f.name)
        procs.append(subprocess.Popen([sys.executable, "-c", _CHILD, str(d), str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert not any(o["shared"] for o in outs)  # each process trained its own backbones
    return outs


def test_tiny_cell_backbones_and_metrics_are_deterministic_across_processes(tiny, tmp_path):
    """The fast variant (one child process): this process's tiny pkd-wise cell and a fresh
    process's, whose caller set 2 torch threads and whose cache holds only a copy of the clips
    (so it trains its own backbones), agree bit for bit: backbones, metrics, frontier, and the
    teachers' confidence (which covers the held-out clips' features)."""
    track, ctx = tiny
    m = registry.method("pkd-wise")
    here = track.run_cell(_cell(track, m), m, ctx)
    clips = sorted((Path(ctx.cache_dir) / "video").glob("synth-motion-*.npz"))
    assert clips
    (child,) = _children(tmp_path, (2,), clips)
    assert child["cached"] and child["hash"] == here.info["backbone_hash"]
    assert child["metrics"] == {k: v for k, v in here.metrics.items() if k != "distill_s"}
    assert child["front"] == here.info["frontier_acc"] and child["teacher"] == here.info["teacher_ptrue"]


@pytest.mark.slow
def test_tiny_cell_is_deterministic_across_processes_with_empty_caches(tmp_path):
    """Two fresh processes with empty caches (clips generated, backbones trained in each; their
    callers set 1 and 2 torch threads): the same backbone bits, metrics and frontier (the old
    same-process test only reloaded the cache)."""
    a, b = _children(tmp_path, (1, 2))
    assert not a["cached"] and not b["cached"]
    assert a["hash"] == b["hash"] and a["metrics"] == b["metrics"] and a["front"] == b["front"]


def test_backbone_key_on_cuda_names_the_gpu_and_the_kernel_mode(monkeypatch):
    """On CUDA the host threads do not touch the numbers; the GPU model and deterministic kernels
    (CORESET_BENCH_NONDETERMINISTIC) do. Checked without a GPU (the name is stubbed)."""
    from coreset_bench.tracks.video import backbone_key

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.delenv("CORESET_BENCH_NONDETERMINISTIC", raising=False)
    track, m = VideoTrack(), registry.method("ce-exits")
    p = track.profile("folder")
    cell = Cell("video", p.id, m.name, m.version, dict(m.params), {"dataset": "video-folder:videos"}, 0)
    k, payload = backbone_key(p, cell, "d0", "cuda")
    assert payload["device"] == "cuda" and payload["gpu"] == "Fake GPU" and payload["deterministic"] is True and "threads" not in payload
    assert k != backbone_key(p, cell, "d0", "cpu", threads=1)[0]
    monkeypatch.setenv("CORESET_BENCH_NONDETERMINISTIC", "1")
    assert backbone_key(p, cell, "d0", "cuda")[0] != k
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Other GPU")
    monkeypatch.delenv("CORESET_BENCH_NONDETERMINISTIC")
    assert backbone_key(p, cell, "d0", "cuda")[0] != k
