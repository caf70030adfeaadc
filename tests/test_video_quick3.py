"""video/quick@3 (issue 35): the profile; WISE fitted on clips the backbones never trained on; the
reference's controls (anticurriculum as released, the I-frame teacher); the reference's IC
training (segment-averaged logits, cached multi-scale crops); the teachers' confidence; memory
order and threads of the new data path (held-out clips, crop bank)."""

import dataclasses

import numpy as np
import pytest
import torch

from coreset_bench import env as envmod
from coreset_bench import registry
from coreset_bench.tracks.video import data as VD
from coreset_bench.tracks.video import models as VM
from coreset_bench.kinds import ExitModel
from coreset_bench.plugins.distillation import _exits as X
from coreset_bench.plugins.distillation.wise import WISE
from coreset_bench.testing import make_exit_view
from coreset_bench.tracks.base import Cell, CellContext
from coreset_bench.tracks.video import _QUICK2, ORDER, VideoTrack, backbone_key


def _cell(track, m, profile="tiny@2", repeat=0):
    p = track.profile(profile)
    return Cell("video", p.id, m.name, m.version, dict(m.params), {"dataset": "synth-motion"}, repeat)


@pytest.fixture(scope="module")
def tiny2(tmp_path_factory):
    root = tmp_path_factory.mktemp("video3")
    return VideoTrack(), CellContext(results_dir=root / "r", cache_dir=root / "c", data_dir=None)


def _fx(track):
    (fx,) = track.__dict__["_memo"].values()
    return fx


# ---- the profile ------------------------------------------------------------------------------------
def test_quick3_is_the_default_with_60_ic_epochs_five_seeds_and_the_reference_ic_training():
    t = VideoTrack()
    p = t.profile(None)
    assert p.id == "video/quick@3" and tuple(p.seeds) == (0, 1, 2, 3, 4) and p.n_cells() == 5
    st = p.settings
    assert st["ic_epochs"] == 60 and st["ic_train_segments"] == "average"
    assert st["train_per_class"] == 50 and st["heldout_fraction"] == 0.2  # 40 kept per class: quick@2's training set size
    assert st["ic_augment"]["views"] == 4 and st["ic_augment"]["flip"] is False
    assert st["ic_augment"]["scales"]["iframe"] == [1.0, 0.875, 0.75, 0.66] and st["ic_augment"]["scales"]["mv"] == [1.0, 0.875, 0.75]
    for k in ("synth_version", "size", "q", "pools", "widths", "backbone_epochs", "backbone_lr", "backbone_batch_size", "ic_lr", "ic_milestones",
              "ic_batch_size", "test_per_class", "adam_eps", "weight_decay"):
        assert st[k] == _QUICK2[k], k
    rec = t.recipe(p)
    assert rec["ic_epochs"] == 60 and rec["train_segments"] == "average" and rec["augment_views"] == 4
    for old in ("quick@1", "quick@2", "accumulate@2", "tiny@1", "folder@1"):
        r = t.recipe(t.profile(old))
        assert "train_segments" not in r and "augment_views" not in r, old
        assert not t.profile(old).settings.get("heldout_fraction"), old


def test_the_held_out_fraction_is_in_quick3s_backbone_key_and_not_in_quick2s():
    t, m = VideoTrack(), registry.method("ce-exits")
    p3, p2 = t.profile("quick@3"), t.profile("quick@2")
    _, pay3 = backbone_key(p3, _cell(t, m, "quick@3"), "d", "cpu", threads=1)
    _, pay2 = backbone_key(p2, _cell(t, m, "quick@2"), "d", "cpu", threads=1)
    assert pay3["heldout"] == 0.2 and "heldout" not in pay2  # quick@2's cached backbones keep their key


# ---- held-out split and crop bank ---------------------------------------------------------------------
def test_heldout_split_is_stratified_disjoint_and_seeded():
    y = np.repeat(np.arange(8), 50)
    kept, held = VD.heldout_split(y, 0.2, 7)
    assert len(held) == 80 and len(kept) == 320 and not set(kept) & set(held) and sorted([*kept, *held]) == list(range(400))
    assert all((y[held] == c).sum() == 10 for c in range(8))
    again = VD.heldout_split(y, 0.2, 7)
    assert np.array_equal(again[1], held) and not np.array_equal(VD.heldout_split(y, 0.2, 8)[1], held)
    k0, h0 = VD.heldout_split(y, 0.0, 7)
    assert len(h0) == 0 and np.array_equal(k0, np.arange(400))
    with pytest.raises(ValueError, match="holds out 0 of the 2 training clips of class 0"):
        VD.heldout_split(np.array([0, 0, 1, 1]), 0.2, 0)
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        VD.heldout_split(y, 1.0, 0)


def test_bilinear_resize_matches_torch_half_pixel_interpolation():
    a = np.random.default_rng(1).normal(size=(2, 3, 7, 9))
    want = torch.nn.functional.interpolate(torch.from_numpy(a), size=(16, 20), mode="bilinear", align_corners=False).numpy()
    assert np.allclose(VD._resize_bilinear(a, 16, 20), want, atol=1e-12)
    assert np.array_equal(VD._resize_bilinear(a, 7, 9), a)


def _clips(n=6, k=3, c=2, hw=16, seed=0):
    return VD.channels_last(np.random.default_rng(seed).normal(size=(n, k, c, hw, hw)).astype(np.float32))


def test_crop_bank_is_seeded_in_the_clip_memory_order_and_crops_each_clip_as_a_group():
    x = _clips()
    b = VD.crop_bank(x, views=3, seed=4)
    assert b.shape == (3, *x.shape) and b.dtype == np.float32
    assert np.array_equal(b, VD.crop_bank(x, views=3, seed=4)) and not np.array_equal(b, VD.crop_bank(x, views=3, seed=5))
    for v in range(3):  # every copy in the clip arrays' one memory order (channels last), as the features' inputs
        assert b[v].strides == VD.channels_last(b[v]).strides == x.strides
    assert not any(np.array_equal(b[v], x) for v in range(3))  # scales below 1 are drawn
    same = np.repeat(x[:, :1], 3, axis=1)  # a clip whose K segments are equal: one crop for the group
    bs = VD.crop_bank(VD.channels_last(same), views=2, seed=4)
    assert all(np.array_equal(bs[v, :, 0], bs[v, :, j]) for v in range(2) for j in (1, 2))
    assert np.array_equal(VD.crop_bank(x, views=2, scales=(1.0,), seed=4)[1], x)  # a full-frame "crop" is the clip
    const = VD.channels_last(np.full((2, 3, 2, 16, 16), 1.25, dtype=np.float32))
    assert np.array_equal(VD.crop_bank(const, views=2, seed=1), np.stack([const, const]))  # MV values are not rescaled


def test_crop_bank_flip_mirrors_and_negates_the_mv_x_component():
    x = _clips(n=20)
    b = VD.crop_bank(x, views=1, scales=(1.0,), flip=True, is_mv=True, seed=2)[0]
    mirrored = x[..., ::-1].copy()
    mirrored[:, :, 0] *= -1
    flipped = [i for i in range(20) if np.array_equal(b[i], mirrored[i])]
    kept = [i for i in range(20) if np.array_equal(b[i], x[i])]
    assert flipped and kept and len(flipped) + len(kept) == 20
    img = VD.crop_bank(x, views=1, scales=(1.0,), flip=True, is_mv=False, seed=2)[0]
    assert np.array_equal(img[flipped[0]], x[flipped[0]][..., ::-1])  # images: mirrored, values kept


# ---- the IC training of the reference: segment-averaged logits, augmented copies -------------------------
def _marked(view, **changes):
    return dataclasses.replace(view, generator=torch.Generator().manual_seed(0), info={}, **changes)


def _spy_teachers(monkeypatch):
    calls = []
    real = X.soft_cross_entropy

    def spy(student, teacher, temperature=1.0):
        calls.append((tuple(student.shape), teacher.detach().clone()))
        return real(student, teacher, temperature)

    monkeypatch.setattr(X, "soft_cross_entropy", spy)
    return calls


def test_segment_averaged_training_averages_the_students_and_the_teachers_logits_over_segments(monkeypatch):
    """recipe train_segments "average": the loss gets (B, C) student logits and the teacher's logits
    averaged over the K segments (segment s of the marked teacher holds s, so the mean is (K-1)/2;
    one random segment would give an integer)."""
    base = make_exit_view(train_segments="average")
    k = base.final_logits_train["res"].shape[1]
    marks = {m: torch.arange(k, dtype=torch.float32)[None, :, None].expand_as(base.final_logits_train[m]).contiguous() for m in base.modalities}
    view = _marked(base, final_logits_train=marks)
    calls = _spy_teachers(monkeypatch)
    X.train_ics(view, ["own"] * 3)
    assert calls and all(torch.all(t == (k - 1) / 2) for _, t in calls)
    assert all(s[1] == view.num_classes and s[0] <= view.recipe["batch_size"] for s, _ in calls)
    calls.clear()
    X.train_ics(_marked(make_exit_view(), final_logits_train=marks), ["own"] * 3)  # the default: one random segment
    vals = torch.cat([t.flatten() for _, t in calls])
    assert set(vals.unique().tolist()) == set(range(k))


def _copy_marked_view(n_views=3, train_segments="average"):
    """A kit view whose augmented copy v of every clip has stage features all equal to v + 1 and
    final logits all equal to 10 (v + 1), so a student's input and a teacher's logits name their copy."""
    base = make_exit_view(aug_views=n_views, train_segments=train_segments)
    feats = {m: tuple(torch.arange(1, n_views + 1, dtype=torch.float32).reshape(-1, *[1] * (f.dim() - 1)).expand_as(f).contiguous()
                      for f in base.feats_train_aug[m]) for m in base.modalities}
    logits = {m: (10 * torch.arange(1, n_views + 1, dtype=torch.float32)).reshape(-1, 1, 1, 1).expand_as(base.final_logits_train_aug[m]).contiguous()
              for m in base.modalities}
    return _marked(base, feats_train_aug=feats, final_logits_train_aug=logits)


@pytest.mark.parametrize("train_segments", ["average", "random"])
def test_augmented_copies_pair_each_student_with_the_teacher_networks_own_copy(monkeypatch, train_segments):
    """Each epoch draws one cached copy per clip and network; a head trains on its network's copy,
    the own teacher is the same copy, and a cross-modal teacher (here the MV network for every
    head) is the copy drawn for the MV network (the reference crops each modality independently)."""
    view = _copy_marked_view(train_segments=train_segments)
    seen = []  # (modality, per-sample copy of the student's input)
    factory = view.head_factory

    def heads(m, k):
        h = factory(m, k)
        h.register_forward_pre_hook(lambda mod, args, m=m: seen.append((m, args[0][:, 0, 0, 0].detach().clone())))
        return h

    view = dataclasses.replace(view, head_factory=heads)
    calls = _spy_teachers(monkeypatch)
    kseg = view.final_logits_train["res"].shape[1]
    for target in ("own", "mv"):
        seen.clear()
        calls.clear()
        X.train_ics(view, [target] * 3)
        assert len(seen) == len(calls) == 3 * 9 * -(-view.n // view.recipe["batch_size"])
        for b in range(0, len(calls), 9):  # one batch: the 9 heads in order res1..3, mv1..3, iframe1..3
            copies, teachers = {}, []
            for j in range(9):
                m, x = seen[b + j]
                if train_segments == "average":
                    x = x.reshape(-1, kseg)
                    assert torch.all(x == x[:, :1])  # every segment of a clip from the same copy
                    x = x[:, 0]
                assert torch.equal(copies.setdefault(m, x), x)  # the three heads of a network: the same copies
                teachers.append(calls[b + j][1][:, 0] / 10)
            for j, t in enumerate(teachers):
                assert torch.equal(t, copies[view.modalities[j // 3]] if target == "own" else copies["mv"]), (target, j)
        drawn = torch.cat([x for _, x in seen]).unique().tolist()
        assert drawn == [1.0, 2.0, 3.0]  # all copies drawn
    # the networks' copies are drawn independently (not one copy index for all networks)
    assert any(not torch.equal(seen[b][1], seen[b + 3][1]) for b in range(0, len(seen), 9))


# ---- the reference's controls ----------------------------------------------------------------------------
def _spy_lrs(monkeypatch):
    lrs = []
    real = torch.optim.Adam.step

    def step(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return real(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    return lrs


def _teacher_marks(view):
    marks = {"res": 1.0, "mv": 2.0, "iframe": 3.0}
    return marks, {m: torch.full_like(view.final_logits_train[m], marks[m]) for m in view.modalities}


def _per_epoch(values, epochs):
    per = len(values) // epochs
    assert per * epochs == len(values)
    return [values[e * per: (e + 1) * per] for e in range(epochs)]


def test_pkd_anti_is_the_reference_anticurriculum(monkeypatch):
    """pkd-anti@2 = train_freeze_backbone_IC_KD_anticurriculum.py with run_training_KD_anticurriculum.sh:
    teachers own IC4 (epochs 0-49) -> residual network (50-99) -> MV network (100-149) of 150, lr
    x0.1 at epochs 50 and 100. Pinned on the schedule, the steps and the optimizers' actual lr and
    teachers epoch by epoch."""
    m = registry.method("pkd-anti")
    assert m.version == "2"
    assert m.schedule(150) == ["own"] * 50 + ["res"] * 50 + ["mv"] * 50 and m.milestones(150, {"milestones": [0.5, 0.667, 0.833]}) == [50, 100]
    assert m.schedule(60) == ["own"] * 20 + ["res"] * 20 + ["mv"] * 20 and m.milestones(60, {}) == [20, 40]
    base = make_exit_view()
    marks, logits = _teacher_marks(base)
    view = _marked(base, final_logits_train=logits, recipe={**base.recipe, "ic_epochs": 6, "milestones": [0.5]})
    lrs, calls = _spy_lrs(monkeypatch), _spy_teachers(monkeypatch)
    out = m.with_params().distill(view)
    assert isinstance(out, ExitModel) and out.combiner is None and view.info["lr_steps"] == [2, 4]
    lr0 = view.recipe["lr"]["res"]
    for e, epoch_lrs in enumerate(_per_epoch(lrs, 6)):
        assert all(lr == pytest.approx(lr0 * (1, 0.1, 0.01)[e // 2], rel=1e-9) for lr in epoch_lrs), (e, epoch_lrs)
    for e, epoch_calls in enumerate(_per_epoch(calls, 6)):
        for j, (_, t) in enumerate(epoch_calls):
            head_mod = view.modalities[(j % 9) // 3]
            want = {0: marks[head_mod], 1: marks["res"], 2: marks["mv"]}[e // 2]
            assert torch.all(t == want), (e, j)
    # version 1's harsher schedule stays reachable as parameters
    old = m.with_params(order="iframe,res,mv", phase_fraction=1 / 6, lr_steps="recipe")
    assert old.schedule(12) == ["iframe"] * 2 + ["res"] * 2 + ["mv"] * 8 and old.milestones(12, {"milestones": [0.5, 0.667, 0.833]}) == [6, 8, 10]


@pytest.mark.parametrize("aug", [False, True])
def test_iframe_kd_distils_every_exit_of_every_network_from_the_iframe_network(monkeypatch, aug):
    """iframe-kd = train_freeze_backbone_IC_KD_iframe.py: every IC of the residual, MV and
    I-frame networks distils from the I-frame network's logits in every epoch (lr x0.1 at 1/3 and
    2/3); kd-final (self-distillation) distils each network's ICs from that network's own."""
    base = make_exit_view(aug_views=2 if aug else 0, train_segments="average" if aug else None)
    marks, logits = _teacher_marks(base)
    changes = {"final_logits_train": logits}
    if aug:
        changes["final_logits_train_aug"] = {m: torch.full_like(base.final_logits_train_aug[m], marks[m]) for m in base.modalities}
    view = _marked(base, **changes)
    calls = _spy_teachers(monkeypatch)
    m = registry.method("iframe-kd")
    m.with_params().distill(view)
    assert calls and all(torch.all(t == marks["iframe"]) for _, t in calls)
    assert view.info["teachers"] == {"iframe": 3} and view.info["lr_steps"] == [1, 2]
    calls.clear()
    registry.method("kd-final").with_params().distill(_marked(base, **changes))
    assert all(torch.all(t == marks[base.modalities[(j % 9) // 3]]) for j, (_, t) in enumerate(calls))


def test_lr_steps_param_is_checked():
    spec = registry.method("iframe-kd").param_specs["lr_steps"]
    assert spec.problem("1/3,2/3") is None and spec.problem("recipe") is None and spec.problem("0.5") is None
    assert "fraction" in spec.problem("2/3,3/2") and "fractions" in spec.problem("a/b")


# ---- WISE on held-out clips ---------------------------------------------------------------------------------
class _WiseSpy(WISE):
    """``wise`` that records the logits and labels its weights are fitted on in ``view.info``
    (it runs in the contestant worker: what it sees comes back through the cell's info)."""

    name = "wise-spy"

    def distill(self, view):
        from unittest import mock

        fits = []
        fit = X.fit_wise

        def spy_fit(z, y, **k):
            fits.append((z.detach().tolist(), y.detach().tolist()))
            return fit(z, y, **k)

        with mock.patch.object(X, "fit_wise", spy_fit):
            out = super().distill(view)
        view.info["fits"] = fits
        return out


def test_wise_weights_never_see_the_clips_the_backbones_trained_on(tiny2, monkeypatch):
    """tiny@2 holds 2 of 12 training clips per class out. The backbones train on the kept clips
    only, and WISE's weights are fitted on logits of exactly the held-out clips (their IC4 column
    is the frozen networks' logits on those clips' inputs); with wise_fit=train (the reference)
    they are fitted on the backbones' own training clips, which the check tells apart."""
    track, ctx = tiny2
    trained_on = {}
    build = VM.build_backbones

    def spy_build(x, y, *a, **k):
        trained_on.update({m: t.detach().cpu().numpy().copy() for m, t in x.items()})
        return build(x, y, *a, **k)

    monkeypatch.setattr(VM, "build_backbones", spy_build)
    track.__dict__.pop("_memo", None)
    m = _WiseSpy()
    r = track.run_cell(_cell(track, m), m, ctx)
    fits = [(torch.tensor(z), torch.tensor(y)) for z, y in r.info["fits"]]  # recorded in the contestant worker
    fx = _fx(track)
    ds, held = fx["ds"], fx["held_idx"]
    kept = np.setdiff1d(np.arange(len(ds.train)), held)
    assert len(held) == 2 * ds.num_classes and r.info["n_heldout"] == len(held) and r.info["n_train"] == len(kept)
    assert r.info["wise_fit"] == {"clips": "heldout", "n": len(held)}
    assert trained_on  # a fresh cache: this process trained the backbones, on the kept clips, none of the held-out ones
    for mod in ORDER:
        assert np.array_equal(trained_on[mod], ds.train.x[mod][kept])
        x_held = ds.train.x[mod][held]
        assert not (trained_on[mod][:, None] == x_held[None]).reshape(len(kept), len(held), -1).all(-1).any()
    (z, y), = fits
    order = [f"{a}{b}" for a, b in fx["order"]]
    assert z.shape[:2] == (len(held), len(order)) and torch.equal(y, torch.from_numpy(ds.train.y[held]))

    def final_logits(mod, idx):
        with envmod.cell_scope("cpu"):
            return VM.features(fx["nets"][mod], torch.from_numpy(VD.channels_last(ds.train.x[mod][idx])))[1].mean(1)

    for mod in ORDER:
        assert torch.allclose(z[:, order.index(f"{mod}4")], final_logits(mod, held), atol=1e-5), mod
    # the teachers' confidence on the kept and the held-out clips, from the same logits
    for split, idx in (("train", kept), ("heldout", held)):
        p = torch.softmax(final_logits("iframe", idx).double(), 1)[torch.arange(len(idx)), torch.from_numpy(ds.train.y[idx])]
        assert r.info["teacher_ptrue"]["iframe"][split] == pytest.approx(float(p.mean()), abs=1e-4)
    assert set(r.info["teacher_ptrue"]["res"]) == {"train", "heldout", "test"}
    # the reference's rule (wise_fit=train) fits on the backbones' training clips: the check above would fail
    mt = m.with_params(wise_fit="train")
    rt = track.run_cell(_cell(track, mt), mt, ctx)
    (zt, yt), = [(torch.tensor(z), torch.tensor(y)) for z, y in rt.info["fits"]]
    assert rt.info["wise_fit"] == {"clips": "train", "n": len(kept)} and zt.shape[0] == len(kept)
    assert torch.allclose(zt[:, order.index("iframe4")], final_logits("iframe", kept), atol=1e-5)


def test_wise_on_a_profile_without_held_out_clips_fits_on_the_training_clips():
    view = make_exit_view()
    m = registry.method("pkd-wise").with_params()
    out = m.distill(view)
    assert view.info["wise_fit"] == {"clips": "train", "n": view.n} and len(out.combiner) == 13
    view = make_exit_view(heldout=6)
    m.distill(view)
    assert view.info["wise_fit"] == {"clips": "heldout", "n": 6}


# ---- memory order and threads of the new data path -----------------------------------------------------------
class _Layout(X.EarlyExitMethod):
    """Records the thread count and, for every tensor of the view, its strides and a checksum."""

    name = "layout-exits"
    params = {"order": "ce", "phase_fraction": 1 / 6, "temperature": 1.0, "wise": False}

    def distill(self, view):
        rec = {"threads": torch.get_num_threads()}
        for name in ("feats_train", "feats_heldout", "feats_train_aug"):
            for m in view.modalities:
                for k, f in enumerate(getattr(view, name)[m]):
                    rec[f"{name}/{m}{k + 1}"] = (tuple(f.shape), f.stride(), float(f.double().sum()))
        for name in ("final_logits_train", "final_logits_heldout", "final_logits_train_aug"):
            for m in view.modalities:
                f = getattr(view, name)[m]
                rec[f"{name}/{m}"] = (tuple(f.shape), f.stride(), float(f.double().sum()))
        view.info["layout"] = rec  # it runs in the contestant worker: reported through the cell's info
        return ExitModel(heads={(m, k): view.head_factory(m, k) for m in view.modalities for k in (1, 2, 3)}, combiner=None)


def test_new_data_path_has_one_memory_order_fresh_or_cached_and_runs_under_the_cell_threads(tmp_path, monkeypatch):
    """The last cross-process defect of this track was memory layout (fresh clips channels-last,
    cached ones contiguous). The held-out and augmented features must come out with the same
    strides and values whether the clips and backbones are fresh or cached, each held-out and
    augmented copy with the per-clip strides of the training features, and every features pass
    (training, test, held-out, each copy) under the cell's thread count, not the caller's."""
    track = VideoTrack()
    ctx = CellContext(results_dir=tmp_path, cache_dir=tmp_path, data_dir=None)
    threads = []
    features = VM.features

    def spy(net, x, *a, **k):
        threads.append(torch.get_num_threads())
        return features(net, x, *a, **k)

    monkeypatch.setattr(VM, "features", spy)
    m = _Layout()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fresh = track.run_cell(_cell(track, m), m, ctx)
        track.__dict__.pop("_memo", None)
        cached = track.run_cell(_cell(track, m), m, ctx)
    finally:
        torch.set_num_threads(before)
    assert not fresh.info["data_cached"] and cached.info["data_cached"] and cached.info["backbones_shared"]
    a, b = fresh.info["layout"], cached.info["layout"]  # as the worker saw them
    assert a == b  # strides, shapes and values
    assert a["threads"] == 1 and set(threads) == {1}
    views = track.profile("tiny@2").settings["ic_augment"]["views"]
    assert len(threads) == 2 * 3 * (3 + views)  # per run and network: training, test, held-out clips, each copy
    for m_ in ORDER:
        for k in (1, 2, 3):
            _, st_tr, _ = a[f"feats_train/{m_}{k}"]
            shp_ho, st_ho, _ = a[f"feats_heldout/{m_}{k}"]
            shp_aug, st_aug, _ = a[f"feats_train_aug/{m_}{k}"]
            assert st_ho == st_tr and st_aug[1:] == st_tr, (m_, k, st_tr, st_ho, st_aug)
            assert shp_aug[0] == views and st_aug[0] == shp_aug[1] * st_aug[1]  # copies stacked densely
            assert st_tr[2] == 1  # channels last within each segment, as the clip arrays
    assert fresh.info["augment_views"] == views and fresh.info["n_heldout"] == 8
