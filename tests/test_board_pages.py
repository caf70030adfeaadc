"""The board's pages (issue 38 items 3-9, issue 37 item 6): no track names in the render modules,
the legend, declared units, one interval notation, paper links, and the front-page leader."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from coreset_bench import registry as plugins
from coreset_bench.leaderboard import common, figures
from coreset_bench.leaderboard.papers import paper_link, paper_of

ROOT = Path(__file__).resolve().parents[1]
RENDER_MODULES = ["render.py", "common.py", "front_page.py", "track_page.py", "method_page.py", "claims_page.py", "figures.py", "board.py", "artifacts.py"]


def test_render_modules_name_no_track():
    """The board knows no track by name: units, floors, figures and info keys are declarations."""
    names = sorted(plugins.tracks())
    assert "pooling" in names and "memorization" in names
    for mod in RENDER_MODULES:
        text = (ROOT / "leaderboard" / mod).read_text()
        for name in names:
            hits = re.findall(rf"[\"']{re.escape(name)}[\"']|track\.name\s*(?:==|in)", text)
            assert not hits, f"leaderboard/{mod} names track {name!r}: {hits}"


def test_every_track_declares_units_and_known_figures():
    for t in plugins.tracks().values():
        units = dict(t.metric_units)
        assert t.primary_metric in units or any(k for k in units if "*" in k), f"{t.name}: no unit declared for {t.primary_metric}"
        for f in t.board_figures:
            assert f in figures.FIGURES, f"{t.name} declares an unknown figure {f!r}"


def test_interval_notation_is_one():
    from coreset_bench.leaderboard.stats import Interval

    iv = Interval(mean=0.5, half_width=0.1, n=3)
    text = common.fmt_interval(iv, 100.0)
    assert text == "50.00 [40.00, 60.00]" and "±" not in text


def test_paper_links_are_addresses_never_searches():
    for m in plugins.methods():
        name = m if isinstance(m, str) else m.name
        link = paper_link(str(getattr(plugins.method(name), "citation", "") or ""))
        assert "scholar.google" not in link and "?q=" not in link, (name, link)
    assert paper_of(getattr(plugins.method("reactive"), "citation", "")) is None
    assert paper_of(getattr(plugins.method("oracle"), "citation", "")) is None
    p = paper_of(getattr(plugins.method("kcenter"), "citation", ""))
    assert p is not None and p.url == "https://arxiv.org/abs/1708.00489" and p.venue == "ICLR" and p.year == 2018


@pytest.fixture(scope="module")
def committed_site(tmp_path_factory):
    from coreset_bench.leaderboard.render import render_site

    out = tmp_path_factory.mktemp("board") / "site"
    render_site(None, out, entries_dirs=[ROOT / "results" / "entries"])
    return out


def test_committed_site_legend_units_and_rankable(committed_site):
    index = (committed_site / "index.html").read_text()
    assert 'class="legend"' in index and "at floor" in index and "b-bound" in index
    assert "scholar.google" not in index and "±" not in index
    mem = (committed_site / "memorization-cifar10-cpu-v1.html").read_text()
    # a correlation is a plain number, never percent; nothing leads when every row reaches 0
    assert "Nothing can be ranked on spearman" in mem and "chance (no skill)" in mem
    assert not re.search(r"0\.0065\d* \[[^\]]*\] %", mem) and "b-leader" not in mem.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    priv = (committed_site / "privacy-quick-v2.html").read_text()
    assert "chance (no skill)" in priv and "50.00 %" in priv


@pytest.mark.slow
def test_browser_front_page_leader_is_the_profile_tables(committed_site):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no headless Chromium on PATH (chromium, chromium-browser or google-chrome): the browser check needs one")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", (committed_site / "index.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    for track in ("coreset", "instruction"):
        part = dom.split(f'id="track-{track}"', 1)[1].split('<section class="track"', 1)[0]
        head = part.split('<table class="headline ranking"', 1)[1].split("</table>", 1)[0]
        leaders = re.findall(r'<tr class="[^"]*\bleader\b[^"]*" data-method="([^"]+)"', head)
        href = re.search(r'<a class="profile-link" href="([^"]+)">', part).group(1)
        profiles = part.split('<table class="plain profiles">', 1)[1].split("</table>", 1)[0]
        row = profiles.split(f'href="{href}"', 1)[1].split("</tr>", 1)[0]
        named = re.findall(r"<td>([^<>]+?) <span class=\"muted\">", row)
        assert len(leaders) <= 1
        if named:
            assert leaders == [named[0].strip()], (track, leaders, named)
        else:
            assert leaders == [], (track, leaders)
