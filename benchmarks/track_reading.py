"""The numbers behind a written reading of any track's board (closing notes, ``results/README.md``).

For one profile, print every row (method and parameter setting) with the mean of the chosen
metrics over all of the profile's points and its 95 % interval (the board's paired hierarchical
bootstrap over seeds, and test points where the track stores them; clipped to the metric's
declared range, and Clopper-Pearson over cells for a 0/1 metric such as ``slo_met``), then the
same per point for the first metric, then the paired differences A − B asked for with
``--pairs`` (clipped to [−(hi − lo), hi − lo] for a bounded metric)::

    python benchmarks/track_reading.py results/entries decentralized/quick@1 \\
        --metrics mean_node_acc,min_node_acc,public_kept_frac \\
        --pairs "idkd:naive-kd,idkd:d-psgd,idkd:qgm,idkd(lr=0.5):naive-kd(lr=0.5)"

Rows are named by their board label (``qgm`` for the defaults, ``qgm(lr=0.5)`` for a setting).
Output is Markdown. A difference whose interval contains 0 is not shown to be a difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coreset_bench import registry as plugins
from coreset_bench.leaderboard.board import _test_group, build_board
from coreset_bench.leaderboard.entries import entry_records, load_entries
from coreset_bench.leaderboard.stats import Interval


def load_board(entries: Path, profile_ref: str):
    """(track, profile, records, board) of ``profile_ref`` (``track/name@version``) built from the
    accepted entries under ``entries``, with the board's own statistics."""
    track_name, _, prof_name = profile_ref.partition("/")
    track = plugins.track(track_name)
    profile = track.profile(prof_name)
    recs: list[dict] = []
    for path, obj in load_entries([entries]).accepted:
        if obj["profile"]["id"] == profile.id:
            recs += entry_records(obj, str(path))
    return track, profile, recs, build_board(track, profile, recs)


def fmt(iv: Interval | None, scale: float, signed: bool = False) -> str:
    if iv is None:
        return "—"
    s = f"{iv.mean * scale:+.2f}" if signed else f"{iv.mean * scale:.2f}"
    if iv.low is None or iv.high is None or not iv.defined:
        return s + " (no interval)"
    return f"{s} [{iv.low * scale:.2f}, {iv.high * scale:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("entries", type=Path)
    ap.add_argument("profile", help="track/name@version")
    ap.add_argument("--metrics", default="", help="comma-separated (default: the track's primary metric)")
    ap.add_argument("--pairs", default="", help="A:B row labels separated by commas, or by semicolons when a label holds a comma (e.g. 'deepfool (candidates=3, max_iter=1):deepfool'); prints A − B on the first metric")
    ap.add_argument("--percent", action="store_true", help="print values ×100")
    a = ap.parse_args()
    track, profile, recs, board = load_board(a.entries, a.profile)
    if not recs:
        raise SystemExit(f"no accepted entries of {profile.id} under {a.entries}")
    metrics = [m for m in a.metrics.split(",") if m] or [track.primary_for(profile)]
    direction = dict(track.metric_directions).get(metrics[0], "max")
    scale = 100.0 if a.percent else 1.0
    repeats = [int(r) for r in profile.seeds]
    by_label = {(v.label or v.method): v for v in board.variants}
    points = sorted({p for v in board.variants for p in v.points})
    groups = {p: _test_group(p) for p in points}
    print(f"# {profile.id}: {len(recs)} cells, {len(by_label)} rows, seeds {repeats}, {len(points)} points\n")
    print("## Over all points\n")
    print("| row | cells | " + " | ".join(metrics) + " |")
    print("|---|---|" + "---|" * len(metrics))
    for label, v in sorted(by_label.items()):
        own = sorted(v.points)
        vals = [v.interval(m, own, repeats, groups) for m in metrics]
        print(f"| {label} | {len(v.done)}/{len(v.expected)} | " + " | ".join(fmt(x, scale) for x in vals) + " |")
    print(f"\n## {metrics[0]} per point\n")
    labels = sorted(by_label)
    print("| point | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for p in points:
        cells = []
        for label in labels:
            v = by_label[label]
            cells.append(fmt(v.interval(metrics[0], [p], repeats, groups), scale) if p in v.points else "")
        print(f"| {', '.join(f'{k}={val}' for k, val in json.loads(p).items())} | " + " | ".join(cells) + " |")
    sep = ";" if ";" in a.pairs else ","  # row labels with several parameters hold commas
    pairs = [tuple(p.strip() for p in x.split(":", 1)) for x in a.pairs.split(sep) if ":" in x]
    if pairs:
        better = "higher" if direction == "max" else "lower"
        print(f"\n## Paired differences on {metrics[0]} (A − B over the points both ran; {better} is better)\n")
        for x, y in pairs:
            if x not in by_label or y not in by_label:
                print(f"- {x} − {y}: missing row ({', '.join(r for r in (x, y) if r not in by_label)})")
                continue
            common = sorted(by_label[x].points & by_label[y].points)
            # raw A − B whatever the metric's direction ("max" orients nothing), as the header says
            d = by_label[x].paired(by_label[y], metrics[0], common, repeats, "max", groups)
            print(f"- {x} − {y}: {fmt(d, scale, True)}")


if __name__ == "__main__":
    main()
