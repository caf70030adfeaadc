"""The claim cards' page model (front page and track pages): each seed paper's claims as
``leaderboard.claims`` read them, and the link to the long readings."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from coreset_bench.claims import verdict_class


def claim_systems(cards: Sequence[Any], profile_href: Mapping[str, str], readings: str = "") -> list[dict[str, Any]]:
    """The claim cards' page model: one entry per system (in the cards' order), its paper, its
    distinct quotes and one row per claim and profile, as ``coreset_bench.claims`` computed them.
    ``readings``: the link to ``results/README.md`` (the system's anchor is appended)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for c in cards:
        cl = c.claim
        key = (cl.system, c.declared_by)
        s = out.get(key)
        if s is None:
            s = out[key] = {
                "system": cl.system,
                "anchor": cl.anchor,
                "declared_by": c.declared_by,
                "paper": cl.paper.as_dict(),
                "quotes": [],
                "rows": [],
                "readings": f"{readings}#{cl.anchor}" if readings else "",
            }
        if cl.quote not in s["quotes"]:
            s["quotes"].append(cl.quote)
        steps = [f"{st.label}: {c.num(st.mean, True)}" + (f" [{c.num(st.low)}, {c.num(st.high)}]" if st.defined else " (no interval)") for st in c.steps]
        s["rows"].append({
            "id": cl.id,
            "what": c.what(),
            "metric": cl.metric,
            "setting": ", ".join(f"{k}={v}" for k, v in cl.where.items()),
            "kind": cl.kind,
            "paper_number": cl.paper_number,
            "profile": c.profile,
            "profile_href": profile_href.get(c.profile, ""),
            "difference": c.difference_text(),
            "steps": steps,
            "claimed": c.amount_text(),
            "amount_word": "margin" if cl.kind == "non-inferiority" else "effect",
            "mde": c.mde_text(),
            "verdict": c.verdict,
            "verdict_cls": verdict_class(c.verdict),
            "reason": c.judgement.reason,
            "underpowered": bool(c.judgement.underpowered),
            "notes": list(c.notes),
        })
    return list(out.values())


def _readings_link(readings: str | os.PathLike[str] | None, out: Path) -> str:
    """The link from the site to the long readings (``results/README.md``): a URL as given; a
    file beside the site's directory (``results/site`` -> ``../README.md``) as a relative link,
    any other file copied into the site as ``readings.md`` (a link further out would spell a
    path of the machine that rendered it); "" when there is none."""
    if readings is None:
        return ""
    text = str(readings)
    if re.match(r"^https?://", text):
        return text
    path = Path(text)
    if not path.is_file():
        return ""
    rel = os.path.relpath(path.resolve(), out.resolve()).replace(os.sep, "/")
    if not rel.startswith("../../") and not os.path.isabs(rel):
        return rel
    from .data import public_text

    (out / "readings.md").write_text(public_text(path.read_text(encoding="utf-8")), encoding="utf-8")
    return "readings.md"
