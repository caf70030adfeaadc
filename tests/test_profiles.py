"""Coreset profiles: version 2 of the CIFAR profiles keeps each method's signal, version 1 is
unchanged, and a profile run on another dataset takes that dataset's threat model (issue 20,
items 5 and 6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coreset_bench import registry as P
from coreset_bench.testing import make_selection_view, validate_selection

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def track():
    P.load_plugins()
    return P.track("coreset")


# ---- threat model follows the data ---------------------------------------------------------------


def test_imagefolder_on_quick_runs_at_the_cifar_threat_model(track):
    prof = track.profile("quick:imagefolder:/x")
    assert prof.id == "coreset/quick:imagefolder:/x@2"
    rb = prof.settings["robust"]
    assert rb["eps"] == pytest.approx(8 / 255) and rb["step_size"] == pytest.approx(2 / 255)
    assert rb["attack_steps"] == 5 and rb["eval_steps"] == 20 and rb["beta"] == 6.0  # the profile's step counts
    assert "Threat model: L∞ 8/255 with 2/255 steps (from the dataset; the profile's own is L∞ 0.075)" in prof.description
    # the profile itself is untouched
    quick = track.profile("quick@1")
    assert quick.settings["robust"]["eps"] == 0.1 and quick.settings["robust"]["step_size"] == 0.025


def test_threat_model_follows_the_data_both_ways_and_in_every_track(track):
    to_digits = track.profile("cifar10-cpu:digits")
    assert to_digits.settings["robust"]["eps"] == 0.075 and to_digits.settings["robust"]["step_size"] == 0.01875
    assert "L∞ 0.075 with 0.01875 steps (from the dataset; the profile's own is L∞ 8/255)" in to_digits.description
    same = track.profile("cifar10-cpu:imagefolder:/jpeg")
    assert same.settings["robust"]["eps"] == pytest.approx(8 / 255)
    assert same.description.endswith("Threat model: L∞ 8/255 with 2/255 steps (from the dataset).")
    rob = P.track("robustness").profile("quick:cifar10")
    assert rob.settings["robust"]["eps"] == pytest.approx(8 / 255)


def test_a_dataset_without_a_threat_model_keeps_the_profiles(track):
    prof = track.profile("quick:no-such-dataset@1")
    assert prof.settings["robust"]["eps"] == 0.1
    assert "Threat model: L∞ 0.1 (the profile's; the dataset declares none)." in prof.description


def test_builtin_datasets_declare_their_threat_model():
    from coreset_bench import data as D

    assert D.threat_model("digits") == {"eps": 0.075, "step_size": 0.01875}
    for ref in ("cifar10", "cifar100", "imagefolder:/some/path"):
        assert D.threat_model(ref) == {"eps": pytest.approx(8 / 255), "step_size": pytest.approx(2 / 255)}
    assert D.threat_model("unknown-thing") is None
    assert D.threat_text(8 / 255) == "8/255" and D.threat_text(0.1) == "0.1"


def test_cli_profiles_show_the_dataset_threat_model(workdir):
    from typer.testing import CliRunner

    from coreset_bench.cli import app

    from PIL import Image

    tree = workdir / "x"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (tree / split / c).mkdir(parents=True)
            Image.new("RGB", (4, 4), (10, 20, 30)).save(tree / split / c / "0.png")
    res = CliRunner().invoke(app, ["run", "--plugin", "random", "--profile", "quick", "--dataset", f"imagefolder:{tree}", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert f"coreset/quick:imagefolder:{tree}@2" in res.output.replace("\n", "")
    assert "Threat model: L∞ 8/255 with 2/255 steps (from the dataset; the profile's own is L∞ 0.075)." in " ".join(res.output.split())


# ---- version 1 is unchanged ----------------------------------------------------------------------


def test_v1_profiles_keep_their_settings_and_cell_keys(track):
    for name in ("cifar10@1", "cifar100@1"):
        st = track.profile(name).settings
        assert st["checkpoints"] == [10, 20, 30, 40] and st["val_fraction"] == 0.02
        assert st["robust"]["eps"] == pytest.approx(8 / 255)
    cpu = track.profile("cifar10-cpu@1").settings
    assert cpu["val_fraction"] == 0.1 and cpu["max_train_per_class"] == 200 and cpu["proxy"]["epochs"] == 10
    # the committed quick@1 entry of random has exactly the cells (and keys) the profile makes now
    entry = json.loads((ROOT / "results/entries/coreset/quick@1/random@1.json").read_text())
    quick = track.profile("quick@1")
    keys = {c.key for c in track.cells(quick, P.method("random"))}
    assert keys == {c["key"] for c in entry["cells"]}


# ---- version 2 keeps each method's signal --------------------------------------------------------


@pytest.mark.parametrize("name,per_class,val", [("cifar10@2", 5000, 500), ("cifar100@2", 500, 50), ("cifar10-cpu@2", 250, 50)])
def test_v2_profiles_validation_per_class(track, name, per_class, val):
    st = track.profile(name).settings
    n = int(st.get("max_train_per_class") or per_class)
    assert n == per_class
    assert int(round(st["val_fraction"] * n)) == val >= 50


def _v2_epochs(track, name):
    st = track.profile(name).settings
    epochs = int(st["proxy"]["epochs"])
    ck = st["checkpoints"]
    return epochs, (list(range(1, epochs + 1)) if ck == "all" else list(ck))


@pytest.mark.parametrize("name", ["cifar10@2", "cifar100@2", "cifar10-cpu@2"])
def test_v2_checkpoints_give_tdds_el2n_and_grand_their_papers_epochs(track, name):
    """Run TDDS, EL2N and GraNd on signals laid out as the profile records them: TDDS sees the
    first 30 epochs one by one (windows of 10), EL2N and GraNd epochs 1-10; methods that read the
    final model get the last epoch."""
    epochs, ck = _v2_epochs(track, name)
    assert ck[-1] == epochs
    rng = np.random.default_rng(0)
    n, c = 40, 10
    sig = {
        "logits": rng.standard_normal((len(ck), n, c)).astype(np.float32),
        "embeddings": rng.standard_normal((len(ck), n, 4)).astype(np.float32),
        "checkpoint_epochs": np.asarray(ck),
    }
    view = make_selection_view(labels=np.arange(n) % c, num_classes=c, budget=8, signals=sig)
    seen = {}
    for m in ("tdds", "el2n", "grand"):
        meth = P.method(m)
        seen[m] = validate_selection(meth.select(view), view, meth).info
    assert seen["tdds"]["checkpoints"] == list(range(1, 31)) and seen["tdds"]["window"] == 10
    assert seen["el2n"]["checkpoints"] == list(range(1, 11))
    assert seen["grand"]["checkpoints"] == list(range(1, 11))


def test_v1_gpu_checkpoints_starved_tdds(track):
    """What version 1 gave (kept for its own boards): TDDS three points 10 epochs apart."""
    _, ck = _v2_epochs(track, "cifar10@1")
    rng = np.random.default_rng(0)
    sig = {"logits": rng.standard_normal((len(ck), 20, 10)).astype(np.float32), "checkpoint_epochs": np.asarray(ck)}
    view = make_selection_view(labels=np.arange(20) % 10, num_classes=10, budget=4, signals=sig)
    assert P.method("tdds").select(view).info["checkpoints"] == [10, 20, 30]


def test_v2_descriptions_say_what_they_keep(track):
    for name in ("cifar10@2", "cifar100@2", "cifar10-cpu@2"):
        d = track.profile(name).description
        assert "8/255" in d and "(from the dataset)" in d
        assert "every epoch" in d or "per-epoch" in d
        assert "validation" in d and "CCS beta and D2 mislabel ratio by budget" in d
    assert "50 validation images per class" in track.profile("cifar100@2").description
    assert track.profile("cifar10-cpu").version == 2 and track.profile("cifar100").version == 2


def test_profile_threat_models_do_not_depend_on_installed_plugins(fresh_plugins, monkeypatch):
    """Built-in profiles read the built-in datasets' threat models, so an allow-list without the
    dataset plugins (or a plugin environment of any kind) cannot change a profile's eps."""
    from coreset_bench import data as D
    from coreset_bench.tracks.coreset import _profiles

    monkeypatch.setattr(fresh_plugins, "dataset", lambda name: (_ for _ in ()).throw(LookupError(name)))
    got = {p.id: p.settings["robust"]["eps"] for p in _profiles()}
    assert got["coreset/cifar100@2"] == pytest.approx(8 / 255) and got["coreset/quick@1"] == 0.1
    assert D.threat_model("imagefolder:/x") == {"eps": pytest.approx(8 / 255), "step_size": pytest.approx(2 / 255)}
    with pytest.raises(ValueError, match="not a built-in dataset with a threat model"):
        D.builtin_threat_model("mnist")


# ---- coreset/cifar10-study@1 (issue 21) ---------------------------------------------------------


def test_cifar10_study_profile_meets_the_issue(track):
    """A pool of at least 10,000 class-balanced images, at least 50 validation images per class,
    the full test set for clean accuracy, at least 500 points for PGD and AutoAttack at 8/255,
    budgets 0.1 and 0.3, standard and TRADES training, 3 seeds."""
    from coreset_bench import data as D

    p = track.profile("cifar10-study@1")
    assert p.id == "coreset/cifar10-study@1"
    st = p.settings
    labels = np.repeat(np.arange(10), 5000)  # the JPEG copy's training split
    base = D.per_class_subsample(labels, st["max_train_per_class"], 1)
    val = D.stratified_split(labels[base], st["val_fraction"], 0)
    assert np.bincount(labels[base][val]).tolist() == [100] * 10
    assert len(base) - len(val) == 10_000
    assert "max_test" not in st
    assert st["eval_subset"] >= 500 and "autoattack" not in st.get("attack_subsets", {})
    assert st["attacks"] == ["pgd", "autoattack"] and st["attack_params"]["autoattack"]["attacks"] == "apgd-ce,apgd-t"
    assert (st["robust"]["eps"], st["robust"]["step_size"]) == (8 / 255, 2 / 255)
    assert p.axes == {"dataset": ["cifar10-jpeg"], "arch": ["cnn-small"], "budget": [0.1, 0.3], "training": ["standard", "trades"]}
    assert tuple(p.seeds) == (0, 1, 2)
    assert st["checkpoints"] == "all" and st["proxy"]["epochs"] >= 10
    assert "3 target classes" in p.description and "10,000" in p.description
