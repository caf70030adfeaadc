"""The ``decentralized`` track end to end on ``tiny@1``: metrics, byte counts, determinism, the
hidden public-set flags, the detector scores and bad output failing its cell only."""

import numpy as np
import pytest
import torch

from coreset_bench import registry
from coreset_bench.kinds import DistillationMethod
from coreset_bench.tracks.base import CellContext, CellFailure
from coreset_bench.tracks.decentralized import DecentralizedTrack, make_ood


@pytest.fixture(scope="module")
def track():
    return registry.track("decentralized")


def _ctx(tmp_path):
    return CellContext(tmp_path, tmp_path / "cache", None)


def _cell(track, method):
    prof = track.profile("tiny")
    return track.cells(prof, method)[0]


def test_tiny_cell_reports_the_metrics_and_counts_the_bytes(track, tmp_path):
    m = registry.method("d-psgd").with_params(vmap=False)
    cell = _cell(track, m)
    a = track.run_cell(cell, m, _ctx(tmp_path))
    for k in ("mean_node_acc", "min_node_acc", "std_node_acc", "consensus_acc", "consensus_dist", "comm_mb_model", "comm_mb_labels", "label_overhead"):
        assert k in a.metrics
    assert 0.5 < a.metrics["mean_node_acc"] <= 1 and a.metrics["min_node_acc"] <= a.metrics["mean_node_acc"]
    assert "public_id_precision" not in a.metrics  # d-psgd has no detector
    # ring of 4: every round each of the 4 nodes sends its parameters to 2 neighbours
    n_params = sum(p.numel() for p in registry.architecture("mlp").build(1, 10, 8, [0.5], [0.5]).parameters())
    rounds = a.info["epochs"] * a.info["steps_per_epoch"]
    assert a.info["bytes"]["model"] == rounds * 4 * 2 * n_params * 4
    assert a.metrics["comm_mb_model"] == pytest.approx(rounds * 2 * n_params * 4 / 1e6)
    names = {x.name for x in a.artifacts}
    assert names == {"label_counts.npy", "W.npy", "node_acc.npy"}
    info = a.info
    assert info["public_size"] == 200 and info["public_id"] == 100 and len(info["node_sizes"]) == 4


def test_the_public_set_hides_which_samples_are_ood(track, tmp_path):
    prof = track.profile("tiny")
    m = registry.method("d-psgd")
    w = track.world(prof, "digits", 0.5, 4, 0, _ctx(tmp_path))
    view = track.make_view(prof, _cell(track, m), w, track_topology(), None, _ctx(tmp_path))
    assert not any(hasattr(view, k) for k in ("public_is_id", "ood", "is_ood"))
    assert w.public_is_id.sum() == 100 and len(view.public_x) == 200
    assert 0 < w.public_is_id[:100].mean() < 1  # mixed in at random positions, not ID first
    assert float(view.public_x.min()) >= 0 and float(view.public_x.max()) <= 1


def track_topology():
    from coreset_bench.tracks.decentralized.network import topology

    return topology("ring", 4)


def test_ood_images_noise_rotation_and_patch_shuffle():
    g = torch.Generator().manual_seed(0)
    gray = torch.rand(10, 1, 8, 8, generator=g)
    o = make_ood(gray, 6, seed=1)
    assert o.shape == (6, 1, 8, 8) and float(o.min()) >= 0 and float(o.max()) <= 1
    color = torch.rand(10, 3, 32, 32, generator=g)
    c = make_ood(color, 4, seed=1)
    assert c.shape == (4, 3, 32, 32)
    # a patch-shuffled image holds the pixels of one source image, moved
    src_sorted = {tuple(torch.sort(color[i].flatten()).values[:20].tolist()) for i in range(10)}
    assert all(tuple(torch.sort(c[k].flatten()).values[:20].tolist()) in src_sorted for k in (2, 3))
    assert torch.equal(make_ood(color, 4, seed=1), c)


def test_detector_scores_on_a_planted_case():
    is_id = np.array([True, False, True, False, True, True])
    out = DecentralizedTrack._detector_metrics([[0, 2, 4, 5], [0, 1, 2, 3, 4, 5]], is_id, 2, "x", {})
    assert out["public_id_precision"] == pytest.approx((1.0 + 4 / 6) / 2)
    assert out["public_id_recall"] == 1.0 and out["public_kept_frac"] == pytest.approx((4 / 6 + 1) / 2)
    with pytest.raises(CellFailure, match="unique public indices"):
        DecentralizedTrack._detector_metrics([[0, 9], []], is_id, 2, "x", {})
    with pytest.raises(CellFailure, match="one index list per node"):
        DecentralizedTrack._detector_metrics([[0]], is_id, 2, "x", {})


class _Short(DistillationMethod):
    name = "dec-short"
    role = "decentralized"

    def distill(self, view):
        return [view.model_factory() for _ in range(view.n - 1)]


class _NaN(DistillationMethod):
    name = "dec-nan"
    role = "decentralized"

    def distill(self, view):
        models = [view.model_factory() for _ in range(view.n)]
        with torch.no_grad():
            next(models[2].parameters()).fill_(float("nan"))
        return models


@pytest.mark.parametrize("method, message", [(_Short(), "returned 3 models for 4 nodes"), (_NaN(), "non-finite")])
def test_bad_output_fails_the_cell_naming_the_plugin(track, tmp_path, method, message):
    cell = _cell(track, method)
    with pytest.raises(CellFailure, match=f"plugin '{method.name}'.*{message}"):
        track.run_cell(cell, method, _ctx(tmp_path))


def test_run_idkd_needs_no_further_arguments(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from coreset_bench import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.console, "width", 250)
    res = CliRunner().invoke(cli.app, ["run", "--track", "decentralized", "--plugin", "idkd", "--dry-run", "--db", str(tmp_path / "x.db")], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "decentralized/quick@2" in res.output and "40 cell(s) to run" in res.output  # 20 idkd + the 20 d-psgd reference cells (5 seeds)


def test_unknown_execution_fails_with_a_clear_message(track, tmp_path, monkeypatch):
    monkeypatch.setenv("CORESET_BENCH_DECENTRALIZED_EXECUTION", "mpi")
    m = registry.method("d-psgd")
    with pytest.raises(CellFailure, match="unknown decentralized execution 'mpi'"):
        track.run_cell(_cell(track, m), m, _ctx(tmp_path))


@pytest.mark.slow
def test_the_same_cell_twice_gives_the_same_numbers(track, tmp_path):
    m = registry.method("idkd").with_params(start_frac=0.5, every=1, tau=0.5)
    cell = _cell(track, m)
    a = track.run_cell(cell, m, _ctx(tmp_path))
    b = track.run_cell(cell, m, _ctx(tmp_path))
    assert {k: v for k, v in a.metrics.items() if k != "train_s"} == {k: v for k, v in b.metrics.items() if k != "train_s"}
    assert a.info["bytes"] == b.info["bytes"] and a.info["node_acc"] == b.info["node_acc"]


@pytest.mark.slow
def test_gloo_execution_of_a_tiny_cell_matches_the_simulation(track, tmp_path, monkeypatch):
    m = registry.method("d-psgd").with_params(vmap=False)
    cell = _cell(track, m)
    sim = track.run_cell(cell, m, _ctx(tmp_path))
    monkeypatch.setenv("CORESET_BENCH_DECENTRALIZED_EXECUTION", "gloo")
    real = track.run_cell(cell, m, _ctx(tmp_path))
    assert real.info["execution"] == "gloo" and sim.info["execution"] == "simulate"
    assert real.info["bytes"] == sim.info["bytes"]
    assert real.metrics["mean_node_acc"] == pytest.approx(sim.metrics["mean_node_acc"], abs=1 / 450)


def test_the_board_shows_the_detectors_kept_share_and_precision(tmp_path, monkeypatch):
    """IDKD's detector metrics reach the board: a tiny run through the CLI, rendered from the
    store, has the columns public_kept_frac and public_id_precision with IDKD's values."""
    import re

    from cli_helpers import invoke
    from coreset_bench.leaderboard.render import render_site
    from coreset_bench.store import Store

    monkeypatch.chdir(tmp_path)
    db = str(tmp_path / "r.db")
    res = invoke("run", "--track", "decentralized", "--profile", "tiny", "-p", "idkd", "--param", "lr=0.3", "--param", "tau=0.5", "--param", "start_frac=0.75", "--param", "every=1", "--db", db)
    assert res.exit_code == 0, res.stderr
    store = Store(tmp_path / "r.db")
    row = next(r for r in store.results(track="decentralized") if r["method"] == "idkd")
    kept, prec = row["metrics"]["public_kept_frac"], row["metrics"]["public_id_precision"]
    assert 0 < kept < 1 and 0.5 < prec <= 1  # the kept share is over the whole public set, half of it OOD
    render_site(store, tmp_path / "site")
    store.close()
    html = (tmp_path / "site" / "decentralized-tiny-v1.html").read_text()
    heads = re.findall(r'class="secondary">([a-z_]+)</th>', html)
    assert "public_kept_frac" in heads and "public_id_precision" in heads
    assert f'data-sort="{kept!r}"' in html or f'data-sort="{kept:.6g}"' in html or re.search(rf'data-sort="{kept:.4f}\d*"', html)


def test_private_classes_make_the_other_classes_the_public_sets_ood_half(track, tmp_path):
    """cifar10-cpu@2's recipe on digits: classes 0-4 private (relabelled 0..4, the only ones in
    the nodes and the test split), the public set's OOD half drawn from classes 5-9's images."""
    import dataclasses

    from coreset_bench import data as D

    base = track.profile("tiny")
    prof = dataclasses.replace(base, version=99, settings={**base.settings, "private_classes": [0, 1, 2, 3, 4], "public_per_class": 10})
    w = track.world(prof, "digits", 0.5, 4, 0, _ctx(tmp_path))
    ds = D.resolve("digits", None, None)
    assert w.num_classes == 5 and w.classes == ["0", "1", "2", "3", "4"] and w.public_ood.startswith("classes 5, 6")
    assert w.counts.shape == (4, 5) and all(int(y.max()) <= 4 for _, y in w.nodes)
    assert set(w.y_test.tolist()) == {0, 1, 2, 3, 4} and len(w.y_test) == int((ds.y_test < 5).sum())
    assert w.public_is_id.sum() == 50 and len(w.public_x) == 100
    flat = ds.x_train.flatten(1)
    for k in np.flatnonzero(~w.public_is_id)[:10]:  # each OOD sample is a training image of a class 5-9
        hit = torch.nonzero((flat == w.public_x[k].flatten()).all(1)).flatten()
        assert len(hit) and int(ds.y_train[hit[0]]) >= 5
    m = registry.method("d-psgd")
    view = track.make_view(prof, track.cells(prof, m)[0], w, track_topology(), None, _ctx(tmp_path))
    assert view.num_classes == 5 and view.model_factory()(view.public_x[:2]).shape == (2, 5)
    bad = dataclasses.replace(base, version=98, settings={**base.settings, "private_classes": list(range(10))})
    with pytest.raises(CellFailure, match="private_classes .* must name 2 to 9"):
        track.world(bad, "digits", 0.5, 4, 0, _ctx(tmp_path))


def test_the_track_runs_on_the_cell_pipeline_with_a_served_contest(track, monkeypatch):
    """No run_cell of its own: the base pipeline runs it; the contest kind follows the execution."""
    from coreset_bench.contest import KINDS
    from coreset_bench.tracks.base import Track
    from coreset_bench.tracks.decentralized import ENV_EXECUTION

    assert "run_cell" not in type(track).__dict__ and Track.uses_pipeline(track)
    prof = track.profile("tiny")
    assert track.contest_kind(prof) == "node-models" and KINDS["node-models"].served
    monkeypatch.setenv(ENV_EXECUTION, "gloo")
    assert track.contest_kind(prof) == "node-models-gloo" and KINDS["node-models-gloo"].external
