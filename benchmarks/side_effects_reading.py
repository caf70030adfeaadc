"""The numbers behind a written side-effects reading (issue 40's part of ``results/README.md``).

Prints, as Markdown, the side-effects panel of a coreset profile's page: per setting (training
recipe), per method, the paired difference to ``random`` of the robust accuracy, the membership
AUCs, the worst-class accuracies, the calibration error and (noisy pools) the kept-noise share,
each the mean over the setting's budgets and seeds with the board's 95 % interval, in percentage
points; ``better``/``worse`` where the interval excludes 0; the row's flags and floors.

    python benchmarks/side_effects_reading.py results/entries coreset/quick@3
    python benchmarks/side_effects_reading.py results/entries coreset/cifar10-study@2

The numbers are the panel's own (``coreset_bench.leaderboard.side_effects.panel`` on the board
the leaderboard builds from the same entries), so the page and this text never disagree.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from coreset_bench.leaderboard.side_effects import panel
from track_reading import load_board


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("entries", type=Path)
    ap.add_argument("profile", help="track/name@version, e.g. coreset/quick@3")
    a = ap.parse_args()
    _track, profile, recs, board = load_board(a.entries, a.profile)
    if not recs:
        raise SystemExit(f"error: no accepted entry of {a.profile} under {a.entries}; export and pin the run first")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "figures").mkdir()  # the panel draws its figure there (the page's layout)
        model = panel(board, "reading", Path(tmp))
    if model is None:
        raise SystemExit(f"error: {profile.id}'s cells carry no side-effect metrics (a profile version before issue 40?)")
    print(f"# {profile.id}: side effects against {model['baseline']} ({len(recs)} cells)\n")
    heads = [h["label"] for h in model["headers"]]
    for t in model["tables"]:
        print(f"## {t['title']}\n")
        print("| method | " + " | ".join(heads) + " | flags |")
        print("|---" * (len(heads) + 2) + "|")
        for r in t["rows"]:
            cells = [c["text"] + (f" {c['cls']}" if c["cls"] else "") for c in r["cells"]]
            flags = "; ".join(b[0] for b in r["badges"])
            print(f"| {r['label']} | " + " | ".join(cells) + f" | {flags} |")
        print()


if __name__ == "__main__":
    main()
