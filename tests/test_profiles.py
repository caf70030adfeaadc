"""Coreset profiles: a profile run on another dataset takes that dataset's threat model (issue 20,
item 6)."""

from __future__ import annotations

import pytest

from coreset_bench import registry as P


@pytest.fixture(scope="module")
def track():
    P.load_plugins()
    return P.track("coreset")


# ---- threat model follows the data ---------------------------------------------------------------


def test_imagefolder_on_quick_runs_at_the_cifar_threat_model(track):
    prof = track.profile("quick:imagefolder:/x")
    assert prof.id == "coreset/quick:imagefolder:/x@1"
    rb = prof.settings["robust"]
    assert rb["eps"] == pytest.approx(8 / 255) and rb["step_size"] == pytest.approx(2 / 255)
    assert rb["attack_steps"] == 5 and rb["eval_steps"] == 20 and rb["beta"] == 6.0  # the profile's step counts
    assert "Threat model: L∞ 8/255 with 2/255 steps (from the dataset; the profile's own is L∞ 0.1)" in prof.description
    # the profile itself is untouched
    quick = track.profile("quick@1")
    assert quick.settings["robust"]["eps"] == 0.1 and quick.settings["robust"]["step_size"] == 0.025


def test_threat_model_follows_the_data_both_ways_and_in_every_track(track):
    to_digits = track.profile("cifar10-cpu:digits")
    assert to_digits.settings["robust"]["eps"] == 0.1 and to_digits.settings["robust"]["step_size"] == 0.025
    assert "L∞ 0.1 with 0.025 steps (from the dataset; the profile's own is L∞ 8/255)" in to_digits.description
    same = track.profile("cifar10-cpu:imagefolder:/jpeg")
    assert same.settings["robust"]["eps"] == pytest.approx(8 / 255)
    assert same.description.endswith("Threat model: L∞ 8/255 with 2/255 steps (from the dataset).")
    rob = P.track("robustness").profile("quick:cifar10")
    assert rob.settings["robust"]["eps"] == pytest.approx(8 / 255)


def test_a_dataset_without_a_threat_model_keeps_the_profiles(track):
    prof = track.profile("quick:no-such-dataset")
    assert prof.settings["robust"]["eps"] == 0.1
    assert "Threat model: L∞ 0.1 (the profile's; the dataset declares none)." in prof.description


def test_builtin_datasets_declare_their_threat_model():
    from coreset_bench import data as D

    assert D.threat_model("digits") == {"eps": 0.1, "step_size": 0.025}
    for ref in ("cifar10", "cifar100", "imagefolder:/some/path"):
        assert D.threat_model(ref) == {"eps": pytest.approx(8 / 255), "step_size": pytest.approx(2 / 255)}
    assert D.threat_model("unknown-thing") is None
    assert D.threat_text(8 / 255) == "8/255" and D.threat_text(0.1) == "0.1"


def test_cli_profiles_show_the_dataset_threat_model(workdir):
    from typer.testing import CliRunner

    from coreset_bench.cli import app

    res = CliRunner().invoke(app, ["run", "--plugin", "random", "--profile", "quick", "--dataset", "imagefolder:/x", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "coreset/quick:imagefolder:/x@1" in res.output.replace("\n", "")
    assert "Threat model: L∞ 8/255 with 2/255 steps (from the dataset; the profile's own is L∞ 0.1)." in " ".join(res.output.split())
