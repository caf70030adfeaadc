"""The scripts that print the numbers quoted in results/README.md run on the committed entries
and print what the README quotes (a change to the board's statistics shows up here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_track_reading_prints_rows_intervals_and_pairs():
    out = _run("benchmarks/track_reading.py", "results/entries", "pooling/quick@1", "--percent",
               "--metrics", "idle_saving,hit_rate", "--pairs", "intelligent-pooling:ssa-pooling,nope:static")
    assert "# pooling/quick@1: 54 cells, 6 rows, seeds [0, 1, 2]" in out
    row = next(line for line in out.splitlines() if line.startswith("| intelligent-pooling |"))
    assert "9/9" in row and "[" in row  # an interval, not "no interval"
    assert "- intelligent-pooling − ssa-pooling: +" in out
    assert "- nope − static: missing row (nope)" in out


def test_track_reading_prints_clipped_and_proportion_intervals_as_the_readme_quotes():
    """results/README.md's instruction table quotes target exact match with intervals clipped at
    0 (they were [−1.1, 50.1], [−17.0, 53.2], [−1.8, 12.0]); slo_met is a proportion over cells."""
    out = _run("benchmarks/track_reading.py", "results/entries", "instruction/quick@1", "--percent", "--metrics", "target_em")
    for row in ("| bm25 | 9/9 | 24.47 [0.00, 50.08] |", "| embed-sim | 9/9 | 18.09 [0.00, 53.18] |", "| random | 9/9 | 5.11 [0.00, 12.02] |",
                "| trim | 9/9 | 14.53 [8.49, 20.56] |", "| less | 9/9 | 16.79 [2.37, 31.21] |", "| full | 9/9 | 3.06 [0.39, 5.73] |"):
        assert row in out
    out = _run("benchmarks/track_reading.py", "results/entries", "pooling/quick@1", "--percent", "--metrics", "slo_met")
    assert "| ssa-pooling | 9/9 | 11.11 [0.28, 48.25] |" in out  # Clopper-Pearson, 1 of 9 cells (t: 11.1 ± 47.8)
    assert "| oracle | 9/9 | 100.00 [66.37, 100.00] |" in out


def test_study_reading_shares_the_loader():
    out = _run("benchmarks/study_reading.py", "results/entries", "coreset/cifar10-study@1")
    assert out.startswith("# coreset/cifar10-study@1: 126 cells")
    assert "| easycore |" in out


def test_track_reading_pairs_rows_whose_labels_hold_commas():
    """A row run with several parameters is labelled ``deepfool (candidate_rank=head,
    candidates=3, max_iter=1)``: --pairs separated by semicolons pairs it (a comma split broke
    the label and reported a missing row)."""
    one = "deepfool (candidate_rank=head, candidates=3, max_iter=1)"
    exact = "deepfool (candidate_rank=logit, candidates=0, max_iter=50)"
    out = _run("benchmarks/track_reading.py", "results/entries", "coreset/quick@2", "--percent", "--metrics", "autoattack_acc",
               "--pairs", f"{one}:{exact}; {one}:random")
    assert f"- {one} − {exact}: " in out and f"- {one} − random: " in out
    assert "missing row" not in out


def test_side_effects_reading_prints_the_panel_the_readme_quotes():
    """results/README.md's quick@3 reading quotes the panel: EasyCore's LOSS-attack AUC +17.5
    [+10.8, +24.1] over random (standard training), TDDS's +9.1 [+5.2, +13.0]."""
    out = _run("benchmarks/side_effects_reading.py", "results/entries", "coreset/quick@3")
    assert out.startswith("# coreset/quick@3: side effects against random (342 cells)")
    std = out.split("training=trades")[0]
    easy = next(line for line in std.splitlines() if line.startswith("| easycore |"))
    assert "+17.5 [+10.8, +24.1] worse" in easy and "flagged:" in easy
    assert "+9.1 [+5.2, +13.0] worse" in next(line for line in std.splitlines() if line.startswith("| tdds |"))
    assert "| full |" in out and "reference" in out


def test_side_effects_reading_names_the_fix_for_a_profile_without_entries():
    out = subprocess.run([sys.executable, "benchmarks/side_effects_reading.py", "results/entries", "coreset/quick@1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "carry no side-effect metrics" in out.stderr.strip().splitlines()[-1]


def test_track_reading_prints_a_raw_difference_for_a_lower_is_better_metric():
    """--pairs prints A − B as its header says, also for a metric where lower is better (the
    membership TPR of the side effects): EasyCore's subsets leak more than random's on the study,
    so easycore − random is positive (it was printed with the sign of 'better', negative)."""
    out = _run("benchmarks/track_reading.py", "results/entries", "coreset/cifar10-study@2", "--percent",
               "--metrics", "mia_loss_tpr_at_1pct_fpr", "--pairs", "easycore:random;random:easycore")
    assert "(A − B over the points both ran; lower is better)" in out
    ab = next(line for line in out.splitlines() if line.startswith("- easycore − random: "))
    ba = next(line for line in out.splitlines() if line.startswith("- random − easycore: "))
    assert ab.split(": ")[1].startswith("+") and ba.split(": ")[1].startswith("-"), (ab, ba)
