"""Do the published privacy and memorization cells still get the same model banks? (issue 37)

A bank's key hashes every input of its models (dataset, universe, architecture, recipe, role,
number of models, the mask seed, checkpoints, mask scheme), and the committed entries record the
keys of the shadow and target banks each cell used (``info.shadow_bank``/``info.target_bank``).
This recomputes them with this checkout for every published digits cell (no training: seconds)
and compares; equal keys mean equal masks and identically trained banks. Full cells are checked
with ``benchmarks/pipeline_identity.py`` (a bank takes minutes to train).

    python benchmarks/privacy_bank_identity.py      # exit status 1 on any difference
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from coreset_bench import registry
    from coreset_bench.cells import Cell, CellContext

    tmp = Path(tempfile.mkdtemp(prefix="bank-identity-"))
    ctx = CellContext(results_dir=tmp, cache_dir=tmp / "cache", data_dir=None)  # no salt: what the published (unsalted) runs had
    seen, same, diff = set(), 0, 0
    for f in sorted((ROOT / "results" / "entries").glob("*/*/*.json")):
        e = json.loads(f.read_text())
        if e["track"] not in ("privacy", "memorization"):
            continue
        t = registry.track(e["track"])
        prof = t.profile(e["profile"]["id"])
        if any(str(d).startswith("cifar") for d in prof.axes["dataset"]):
            continue  # needs the CIFAR data; run it where --data-dir has it
        for c in e["cells"]:
            k = (prof.id, json.dumps(c["axes"], sort_keys=True), c["repeat"])
            if k in seen:
                continue
            seen.add(k)
            _, ss, _, ts, _ = t.bank_specs(Cell(t.name, prof.id, "any", 1, {}, c["axes"], c["repeat"]), ctx)
            ok = (ss.key, ts.key) == (c["info"]["shadow_bank"], c["info"]["target_bank"])
            same += ok
            diff += not ok
            print("identical" if ok else "DIFFERENT", prof.id, c["axes"], "repeat", c["repeat"], ss.key, ts.key)
    print(f"{same} (shadow, target) bank pairs identical to the committed entries, {diff} differ")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
