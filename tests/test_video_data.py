"""The video track's datasets: synth-motion (determinism, cache, acceptance rule) and video-folder."""

from pathlib import Path

import numpy as np
import pytest

from coreset_bench.tracks.video import codec as V
from coreset_bench.tracks.video import data as VD
TINY = {"classes": 4, "size": 32, "object_size": (8, 12)}
#: statistics of the v1 clips of test_synth_motion_v1_clips_are_unchanged (measured before v2 existed)
V1_PIXEL_MEAN = 104.69644758436415
V1_CENTRE_STD = 31.846252469924174


def test_segment_positions_skip_i_frames():
    assert VD.segment_positions(np.array([1] + [2] * 11)) == [3, 7, 11]
    assert VD.segment_positions(np.array(([1] + [2] * 11) * 2)) == [7, 15, 23]
    assert VD.segment_positions(np.array([1] + [2] * 11 + [1]), k=1) == [11]


def test_synth_motion_is_deterministic_cached_and_shaped(tmp_path):
    kw = dict(train_per_class=2, test_per_class=1, pools={"mv": 2, "res": 2, "iframe": 2}, **TINY)
    a = VD.synth_motion(3, cache_dir=tmp_path, **kw)
    b = VD.synth_motion(3, cache_dir=tmp_path, **kw)
    c = VD.synth_motion(3, cache_dir=None, **kw)
    assert not a.info["cached"] and b.info["cached"]
    for m in VD.MODALITIES:
        assert np.array_equal(a.train.x[m], b.train.x[m]) and np.array_equal(a.train.x[m], c.train.x[m])
    assert a.train.x["mv"].shape == (8, 3, 2, 16, 16) and a.train.x["res"].shape == (8, 3, 3, 16, 16)
    assert a.train.y.tolist() == [0, 1, 2, 3] * 2 and len(a.test) == 4
    d = VD.synth_motion(4, cache_dir=None, **kw)
    assert not np.array_equal(a.train.x["iframe"], d.train.x["iframe"])
    with pytest.raises(VD.VideoDataError, match="unknown synth-motion setting"):
        VD.synth_motion(0, colour=1)


def test_slide_classes_have_the_sign_of_their_motion():
    """Without camera pan, a slide-right clip's accumulated MVs at the object are positive in x,
    slide-left negative, slide-down positive in y."""
    cfg = {**VD.SYNTH_V1, "p_pan": 0.0, "p_distractor": 0.0}
    rng = np.random.default_rng(0)
    for cls, ch, sign in ((0, 0, 1), (1, 0, -1), (2, 1, -1), (3, 1, 1)):
        dec = V.decode(V.encode(VD.synth_clip(cls, rng, cfg)))
        mv, _ = V.representations(dec)
        field = mv[11, ..., ch]
        assert np.sign(field[np.abs(field) > 4].mean()) == sign, cls


def _write_clip(path: Path, seed: int, container: str):
    rng = np.random.default_rng(seed)
    frames = np.repeat(rng.integers(0, 255, (1, 24, 40, 3), dtype=np.uint8), 14, axis=0)
    frames = np.stack([np.roll(f, 2 * i, axis=1) for i, f in enumerate(frames)])
    path.write_bytes(V.encode(frames, container=container))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "vids"
    for ci, c in enumerate(("jump", "run")):
        (root / c).mkdir(parents=True)
        for j in range(3):
            _write_clip(root / c / f"v_{c}_g0{j}.{'avi' if j < 2 else 'mp4'}", 10 * ci + j, "avi" if j < 2 else "mp4")
    return root


def test_video_folder_reads_and_reencodes_a_class_tree(tree, tmp_path):
    ds = VD.video_folder(tree, size=32, cache_dir=tmp_path / "c", pools={"mv": 2, "res": 2, "iframe": 2})
    assert ds.classes == ["jump", "run"] and ds.num_classes == 2
    assert len(ds.train) == 4 and len(ds.test) == 2 and sorted(ds.test.y.tolist()) == [0, 1]
    assert ds.train.x["mv"].shape[1:] == (3, 2, 16, 16)
    again = VD.video_folder(tree, size=32, cache_dir=tmp_path / "c", pools={"mv": 2, "res": 2, "iframe": 2})
    assert again.info["cached"] and np.array_equal(again.train.x["res"], ds.train.x["res"])
    (tree / "splits").mkdir()
    (tree / "splits" / "trainlist01.txt").write_text("jump/v_jump_g00.avi 1\nrun/v_run_g00.avi 2\n")
    (tree / "splits" / "testlist01.txt").write_text("jump/v_jump_g01.avi\nrun/v_run_g01.avi\nrun/v_run_g02.mp4\n")
    sp = VD.video_folder(tree, size=32, cache_dir=None, pools={"mv": 2, "res": 2, "iframe": 2})
    assert len(sp.train) == 2 and len(sp.test) == 3
    ref = VD.resolve(f"video-folder:{tree}", seed=0, settings={"size": 32, "pools": {"mv": 2, "res": 2, "iframe": 2}}, cache_dir=None)
    assert len(ref.test) == 3


def test_bad_trees_give_one_line_errors(tree, tmp_path):
    cases = []
    with pytest.raises(VD.VideoDataError, match="does not exist") as e:
        VD.video_folder(tmp_path / "nope")
    cases.append(e)
    solo = tmp_path / "solo"
    (solo / "a").mkdir(parents=True)
    with pytest.raises(VD.VideoDataError, match="at least 2") as e:
        VD.video_folder(solo)
    cases.append(e)
    (tree / "empty").mkdir()
    with pytest.raises(VD.VideoDataError, match="folder\(s\) empty in .* hold no") as e:
        VD.video_folder(tree)
    cases.append(e)
    (tree / "empty").rmdir()
    (tree / "splits").mkdir()
    (tree / "splits" / "trainlist01.txt").write_text("jump/missing.avi\n")
    with pytest.raises(VD.VideoDataError, match="needs both") as e:
        VD.video_folder(tree)
    cases.append(e)
    (tree / "splits" / "testlist01.txt").write_text("run/v_run_g00.avi\n")
    with pytest.raises(VD.VideoDataError, match="missing.avi") as e:
        VD.video_folder(tree)
    cases.append(e)
    for f in (tree / "splits").iterdir():
        f.unlink()
    (tree / "splits").rmdir()
    (tree / "run" / "v_run_g00.avi").write_bytes(b"garbage" * 100)
    with pytest.raises(V.VideoError, match="cannot decode") as e:
        VD.video_folder(tree, size=32)
    cases.append(e)
    with pytest.raises(VD.VideoDataError, match="needs a path") as e:
        VD.resolve("video-folder", seed=0, settings={}, cache_dir=None)
    cases.append(e)
    assert all("\n" not in str(c.value) for c in cases)


def test_synth_motion_v2_is_deterministic_and_differs_from_v1(tmp_path):
    """synth-motion@v2: same seed, same arrays (fresh, cached and uncached); its own cache file;
    not the v1 clips; v1 still the default version."""
    kw = dict(train_per_class=2, test_per_class=1, pools={"mv": 2, "res": 2, "iframe": 2}, **TINY)
    a = VD.synth_motion(3, cache_dir=tmp_path, version=2, **kw)
    b = VD.synth_motion(3, cache_dir=tmp_path, version=2, **kw)
    c = VD.synth_motion(3, cache_dir=None, version=2, **kw)
    v1 = VD.synth_motion(3, cache_dir=tmp_path, **kw)
    assert not a.info["cached"] and b.info["cached"] and not v1.info["cached"]
    assert a.info["version"] == 2 and v1.info["version"] == 1
    for m in VD.MODALITIES:
        assert np.array_equal(a.train.x[m], b.train.x[m]) and np.array_equal(a.train.x[m], c.train.x[m])
        assert np.array_equal(a.test.x[m], c.test.x[m])
    assert not np.array_equal(a.train.x["mv"], v1.train.x["mv"])
    names = sorted(f.name.split("-")[2] for f in (tmp_path / "video").glob("synth-motion-*.npz"))
    assert names == ["v1", "v2"]
    rng1, rng2 = np.random.default_rng(9), np.random.default_rng(9)
    assert np.array_equal(VD.synth_clip(5, rng1, VD.SYNTH_V2), VD.synth_clip(5, rng2, VD.SYNTH_V2))
    with pytest.raises(VD.VideoDataError, match="unknown synth-motion version 7"):
        VD.synth_motion(0, version=7)


def test_synth_motion_v1_clips_are_unchanged():
    """The settings added for v2 default to v1's values: v1 clips (pixels, before the codec) are
    those the committed quick@1 entries were measured on (pinned statistics; 1e-3 grey levels
    is far below the change of any draw or setting)."""
    rng = np.random.default_rng(0)
    clips = np.stack([VD.synth_clip(c, rng, VD.SYNTH_V1) for c in range(8)]).astype(np.float64)
    assert clips.shape == (8, 12, 64, 64, 3)
    assert abs(clips.mean() - V1_PIXEL_MEAN) < 1e-3, clips.mean()
    assert abs(clips[:, :, 16:48, 16:48].std() - V1_CENTRE_STD) < 1e-3, clips[:, :, 16:48, 16:48].std()


def test_v2_settings_change_only_tuned_knobs():
    """v2 keeps the specification's fixed parts: classes, frames, frame size, the appearance
    cue (shape probability, hue spread) and the slide speeds' meaning; it is frozen."""
    for k in ("classes", "frames", "size", "p_shape", "hue_sd"):
        assert VD.SYNTH_V2[k] == VD.SYNTH_V1[k], k
    assert set(VD.SYNTH_V1) | set(VD.SYNTH_V1_IMPLICIT) == set(VD.SYNTH_V2)
    assert VD.SYNTH_VERSIONS[1] is VD.SYNTH_V1 and VD.SYNTH_VERSIONS[2] is VD.SYNTH_V2


def _quick_ce_cell(tmp_path_factory, profile: str = "quick@1", repeat: int = 0):
    from coreset_bench import registry
    from coreset_bench.tracks.base import Cell, CellContext
    from coreset_bench.tracks.video import VideoTrack

    track, m = VideoTrack(), registry.method("ce-exits")
    p = track.profile(profile)
    cell = Cell("video", p.id, m.name, m.version, dict(m.params), {"dataset": "synth-motion"}, repeat)
    root = tmp_path_factory.mktemp("accept")
    return track.run_cell(cell, m, CellContext(results_dir=root, cache_dir=root, data_dir=None)).metrics


def _rule_violations(r: dict, mods=("res", "mv", "iframe")) -> list[str]:
    """The acceptance rule of tracks-phase2.md §4.4 on a ce-exits cell's metrics."""
    finals = {mod: r[f"ic_acc_{mod}_4"] for mod in ("res", "mv", "iframe")}
    out = [f"{mod} final {a:.3f} outside [0.40, 0.92]" for mod, a in finals.items() if not 0.40 <= a <= 0.92]
    if not r["final_acc"] > max(finals.values()):
        out.append(f"fused {r['final_acc']:.3f} not above every modality {finals}")
    out += [f"{mod} IC1 {r[f'ic_acc_{mod}_1']:.3f} not 10 points below IC4 {r[f'ic_acc_{mod}_4']:.3f}"
            for mod in mods if r[f"ic_acc_{mod}_1"] > r[f"ic_acc_{mod}_4"] - 0.10]
    return out


def test_rule_violations_name_each_part():
    good = {"ic_acc_res_1": 0.5, "ic_acc_res_4": 0.7, "ic_acc_mv_1": 0.4, "ic_acc_mv_4": 0.6, "ic_acc_iframe_1": 0.3, "ic_acc_iframe_4": 0.8, "final_acc": 0.9}
    assert _rule_violations(good) == []
    assert _rule_violations({**good, "ic_acc_res_1": 0.65}) == ["res IC1 0.650 not 10 points below IC4 0.700"]
    assert len(_rule_violations({**good, "final_acc": 0.75})) == 1
    assert len(_rule_violations({**good, "ic_acc_iframe_4": 0.95, "ic_acc_iframe_1": 0.3})) == 2  # outside, and above the fused


@pytest.fixture(scope="module")
def quick_ce(tmp_path_factory):
    return _quick_ce_cell(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("repeat", [0, 1])
def test_synth_motion_v2_acceptance_rule(tmp_path_factory, repeat):
    """synth-motion@v2 with the quick@2 backbones (seeds 0 and 1, cross-entropy exits): the whole
    rule, in every network: each final accuracy in [0.40, 0.92], the fused accuracy above every
    modality, IC1 at least 10 points below IC4."""
    r = _quick_ce_cell(tmp_path_factory, "quick@2", repeat)
    assert _rule_violations(r) == [], {k: round(v, 3) for k, v in r.items() if k.startswith("ic_acc") or k == "final_acc"}


@pytest.mark.slow
def test_synth_motion_acceptance_rule(quick_ce):
    """The record of synth-motion@v1 (quick@1, seed 0, cross-entropy exits): each modality's
    final accuracy in [0.40, 0.92], the fused accuracy above every modality, IC1 at least 10
    points below IC4 in the MV and I-frame networks."""
    from coreset_bench.tracks.video import ORDER

    r = quick_ce
    finals = {mod: r[f"ic_acc_{mod}_4"] for mod in ORDER}
    assert all(0.40 <= a <= 0.92 for a in finals.values()), finals
    assert r["final_acc"] > max(finals.values()), (r["final_acc"], finals)
    assert all(r[f"ic_acc_{mod}_1"] <= r[f"ic_acc_{mod}_4"] - 0.10 for mod in ("mv", "iframe")), r


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the record of v1: the residual network's IC1 is within 10 points of its IC4 on synth-motion@v1 with quick@1's 16x16 inputs (2.5 and 3.8 points measured); synth-motion@v2 with quick@2 meets the whole rule (test_synth_motion_v2_acceptance_rule)")
def test_synth_motion_acceptance_rule_residual_exits(quick_ce):
    assert quick_ce["ic_acc_res_1"] <= quick_ce["ic_acc_res_4"] - 0.10


#: statistics of the v2 clips of test_synth_motion_v2_clips_are_frozen (measured on the generator
#: the committed quick@2 entries were run on; a fresh quick@2 ce-exits cell reproduces them bit for bit)
V2_PIXEL_MEAN = 101.05173238118489
V2_CENTRE_STD = 34.30221127061842


def test_synth_motion_v2_clips_are_frozen():
    """The data key holds the generator's settings but not its code, so the code of a frozen
    version must not move: pinned pixel statistics of v2 (as v1's), before the codec."""
    rng = np.random.default_rng(0)
    clips = np.stack([VD.synth_clip(c, rng, VD.SYNTH_V2) for c in range(8)]).astype(np.float64)
    assert abs(clips.mean() - V2_PIXEL_MEAN) < 1e-3, clips.mean()
    assert abs(clips[:, :, 16:48, 16:48].std() - V2_CENTRE_STD) < 1e-3, clips[:, :, 16:48, 16:48].std()


def test_synth_key_changes_with_everything_the_clips_are_made_from():
    base = dict(version=2, train_per_class=40, test_per_class=30, q=4, accumulate=True, segments=3, pools={"mv": 4, "res": 2, "iframe": 2})
    cfg = dict(VD.SYNTH_V2)
    k0 = VD.synth_key(0, cfg, **base)
    assert k0 == VD.synth_key(0, dict(cfg), **{**base, "pools": {"iframe": 2, "res": 2, "mv": 4}})
    changed = {
        "seed": VD.synth_key(1, cfg, **base),
        "version": VD.synth_key(0, cfg, **{**base, "version": 1}),
        "object_size": VD.synth_key(0, {**cfg, "object_size": (12, 18)}, **base),
        "p_pan": VD.synth_key(0, {**cfg, "p_pan": 0.4}, **base),
        "train": VD.synth_key(0, cfg, **{**base, "train_per_class": 41}),
        "test": VD.synth_key(0, cfg, **{**base, "test_per_class": 20}),
        "q": VD.synth_key(0, cfg, **{**base, "q": 2}),
        "accumulate": VD.synth_key(0, cfg, **{**base, "accumulate": False}),
        "segments": VD.synth_key(0, cfg, **{**base, "segments": 4}),
        "pools": VD.synth_key(0, cfg, **{**base, "pools": {"mv": 4, "res": 4, "iframe": 4}}),
    }
    assert k0 not in changed.values() and len(set(changed.values())) == len(changed), changed


def test_fresh_and_cached_clips_have_the_same_values_and_memory_order(tmp_path, tree):
    """The regression of "same cell, different numbers": fresh builds were channels-last (a
    transpose of the codec's (H, W, C) maps), cached loads contiguous, and torch's CPU convolutions
    round differently in the two orders (quick@2's MV IC4: 0.679 trained on fresh clips, 0.704 on
    the same clips from the cache). Now both come out in one order, synth-motion and video-folder."""
    kw = dict(train_per_class=1, test_per_class=1, pools={"mv": 2, "res": 2, "iframe": 2}, **TINY)
    fresh = VD.synth_motion(3, cache_dir=tmp_path, **kw)
    cached = VD.synth_motion(3, cache_dir=tmp_path, **kw)
    f2 = VD.video_folder(tree, size=32, cache_dir=tmp_path / "c", pools={"mv": 2, "res": 2, "iframe": 2})
    c2 = VD.video_folder(tree, size=32, cache_dir=tmp_path / "c", pools={"mv": 2, "res": 2, "iframe": 2})
    assert not fresh.info["cached"] and cached.info["cached"] and not f2.info["cached"] and c2.info["cached"]
    for a, b in ((fresh, cached), (f2, c2)):
        for split in ("train", "test"):
            for m in VD.MODALITIES:
                x, y = getattr(a, split).x[m], getattr(b, split).x[m]
                assert np.array_equal(x, y) and x.strides == y.strides, (split, m, x.strides, y.strides)
                assert x.transpose(0, 1, 3, 4, 2).flags.c_contiguous  # channels last
    with pytest.raises(ValueError, match="N, K, C, H, W"):
        VD.channels_last(np.zeros((2, 3, 4)))
