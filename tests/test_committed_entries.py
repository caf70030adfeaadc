"""Every committed entry under results/entries validates and renders with the installed plugins."""

from __future__ import annotations

from pathlib import Path

from coreset_bench.leaderboard.entries import load_entries
from coreset_bench.leaderboard.render import render_site

ENTRIES = Path(__file__).resolve().parent.parent / "results" / "entries"


def test_every_committed_entry_validates_and_renders(tmp_path):
    files = sorted(ENTRIES.rglob("*.json"))
    assert files, f"no committed entries under {ENTRIES}"
    loaded = load_entries([ENTRIES])
    assert loaded.rejected == []
    assert len(loaded.accepted) == len(files)
    report = render_site(None, tmp_path / "site", entries_dirs=[ENTRIES])
    assert report.rejected == []
    profiles = {obj["profile"]["id"] for _, obj in loaded.accepted}
    pages = {p.name for p in report.pages}
    for pid in profiles:
        track, rest = pid.split("/", 1)
        name, version = rest.split("@")
        page = f"{track}-{name}-v{version}.html"
        assert page in pages, (pid, sorted(pages))
        html = (tmp_path / "site" / page).read_text()
        assert "± 0.00" not in html  # no zero-width interval shown as exact
    assert not [w for w in report.warnings if "not rendered" in w]
