"""The numbers behind a written reading of a coreset board (issue 21's ``results/README.md``).

For every setting (training recipe) and budget of a profile, and for each metric (AutoAttack,
PGD and clean accuracy), print each method's mean with its 95 % paired hierarchical bootstrap
interval (the board's statistics), its flags, and the paired differences that decide the papers'
claims: each *contender* minus the best *baseline* at that point (best by mean; the baselines
are the strongest methods of ``quick@2`` and ``random``) and minus ``random``.

    python benchmarks/study_reading.py results/entries coreset/cifar10-study@1 \\
        --contenders easycore,easycore-balanced,easycore-hard,cld,ltc \\
        --baselines submodular-graphcut,herding,submodular-facility-location,d2-pruning,random

Output is Markdown. The intervals are the board's (same seeds, same test points, same
replicates), so a difference whose interval contains 0 is not shown to be a difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coreset_bench.leaderboard.board import _test_group
from coreset_bench.leaderboard.stats import Interval
from track_reading import load_board

METRICS = ("autoattack_acc", "pgd_acc", "clean_acc")


def fmt(iv: Interval | None, signed: bool = False) -> str:
    if iv is None:
        return "—"
    s = f"{iv.mean * 100:+.1f}" if signed else f"{iv.mean * 100:.1f}"
    lo, hi = iv.low, iv.high
    if lo is None or hi is None or not iv.defined:
        return s + " (no interval)"
    return f"{s} [{lo * 100:.1f}, {hi * 100:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("entries", type=Path)
    ap.add_argument("profile")
    ap.add_argument("--contenders", default="easycore,easycore-balanced,easycore-hard,cld,ltc")
    ap.add_argument("--baselines", default="submodular-graphcut,herding,submodular-facility-location,d2-pruning,random")
    a = ap.parse_args()
    contenders = [m for m in a.contenders.split(",") if m]
    baselines = [m for m in a.baselines.split(",") if m]
    _track, profile, recs, board = load_board(a.entries, a.profile)
    by_name = {}
    for v in board.variants:
        by_name.setdefault(v.method, v)
    repeats = [int(r) for r in profile.seeds]
    direction = "max"
    print(f"# {profile.id}: {len(recs)} cells, seeds {repeats}\n")
    for table in board.tables:
        if table.kind != "setting":
            continue
        print(f"## {table.title}\n")
        for col in table.columns:
            pts = list(col.points)
            groups = {p: _test_group(p) for p in pts}
            label = json.loads(pts[0]).get("budget", col.label)
            print(f"### budget {label}\n")
            print("| method | " + " | ".join(METRICS) + " | flags |")
            print("|---|" + "---|" * (len(METRICS) + 1))
            rows = []
            for name in contenders + baselines + ["full"]:
                v = by_name.get(name)
                if v is None:
                    continue
                own = pts if name != "full" else _full_points(v, table)
                vals = [v.interval(m, own, repeats, {p: _test_group(p) for p in own}) for m in METRICS]
                fl = v.flags([k for k in v.done if k[0] in own])
                rows.append((name, vals, fl))
            for name, vals, fl in rows:
                print(f"| {name} | " + " | ".join(fmt(x) for x in vals) + " | " + (", ".join(f"{k} ({n})" for k, n in sorted(fl.items())) or "") + " |")
            print()
            for m in METRICS:
                base_means = {b: by_name[b].interval(m, pts, repeats, groups) for b in baselines if b in by_name}
                base_means = {b: iv for b, iv in base_means.items() if iv is not None}
                if not base_means:
                    continue
                best = max(base_means, key=lambda b: base_means[b].mean)
                parts = []
                for c in contenders:
                    if c not in by_name:
                        continue
                    d_best = by_name[c].paired(by_name[best], m, pts, repeats, direction, groups)
                    d_rand = by_name[c].paired(by_name["random"], m, pts, repeats, direction, groups) if "random" in by_name else None
                    parts.append(f"{c} − {best}: {fmt(d_best, True)}; − random: {fmt(d_rand, True)}")
                print(f"- **{m}** (best baseline: {best}): " + " · ".join(parts))
            print()


def _full_points(v, table) -> list[str]:
    """The full-data reference runs at budget 1.0 only: its points in this table's setting."""
    out = []
    for p, _r in v.done:
        ax = json.loads(p)
        if all(ax.get(k) == val for k, val in table.setting.items()):
            out.append(p)
    return sorted(set(out))


if __name__ == "__main__":
    main()
