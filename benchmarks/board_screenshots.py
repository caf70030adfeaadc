"""Headless-Chromium screenshots of a rendered board, as committed under ``docs/img/board/``.

    cd /tmp && coreset-bench leaderboard --entries <repo>/results/entries --out /tmp/site
    python benchmarks/board_screenshots.py /tmp/site docs/img/board --prefix after

Three pages at 1400 and 400 px wide, each shot 1600 px tall: the front page from its first
track's headline table (``#track-coreset``: above it sit the legend and the claim cards, which
fill the first 7,000 px at 1400 px and 17,000 at 400), and the top of two track pages. A shot
that starts at an anchor is cut from a screenshot of the whole page up to there (a headless
screenshot of a scrolled page comes out blank): a copy of the page whose anchored section has a
magenta outline (which changes no layout) gives the section's row in the screenshot, and the
same rows are cut from a screenshot of the unmarked page. PNGs are reduced to 256 colours when
that keeps them under 300 KB.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SHOTS = (  # (page, anchor or None, file stem)
    ("index.html", "track-coreset", "index"),
    ("coreset-quick-v2.html", None, "coreset-quick-v2"),
    ("memorization-cifar10-cpu-v1.html", None, "memorization-cifar10-cpu-v1"),
)
WIDTHS = (1400, 400)
HEIGHT = 1600
MARK = (255, 0, 255)
LIMIT = 300_000


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("no headless Chromium on PATH (chromium, chromium-browser or google-chrome)")


def _shot(chromium: str, page: Path, width: int, height: int, dest: Path) -> Image.Image:
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
                    f"--screenshot={dest}", page.as_uri()], check=True, capture_output=True, timeout=600)
    return Image.open(dest).convert("RGB")


def _marked_row(img: Image.Image) -> int | None:
    a = np.asarray(img).astype(int)
    hit = (np.abs(a - np.array(MARK)).sum(axis=2) < 40).any(axis=1)
    rows = np.flatnonzero(hit)
    return int(rows[0]) if rows.size else None


def _save(img: Image.Image, dest: Path) -> int:
    img.save(dest, optimize=True)
    if dest.stat().st_size > LIMIT:
        img.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(dest, optimize=True)
    return dest.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site", type=Path, help="a rendered site (coreset-bench leaderboard --out DIR)")
    ap.add_argument("out", type=Path, help="directory the PNGs are written to")
    ap.add_argument("--prefix", default="after", help="file name prefix (before/after)")
    args = ap.parse_args(argv)
    chromium = _chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="board-shots-") as tmp_s:
        tmp = Path(tmp_s)
        marked_site = tmp / "site"
        shutil.copytree(args.site, marked_site)
        for page, anchor, stem in SHOTS:
            if not (args.site / page).is_file():
                raise SystemExit(f"{args.site / page} does not exist: render the committed entries into {args.site} first")
            if anchor is not None:
                text = (marked_site / page).read_text(encoding="utf-8")
                style = f"<style>#{anchor}{{outline:2px solid rgb{MARK};outline-offset:0}}</style>"
                (marked_site / page).write_text(text.replace("</head>", style + "</head>", 1), encoding="utf-8")
            for width in WIDTHS:
                dest = args.out / f"{args.prefix}-{stem}-{width}.png"
                if anchor is None:
                    img = _shot(chromium, args.site / page, width, HEIGHT, tmp / "shot.png")
                else:
                    tall = 20_000
                    while True:
                        row = _marked_row(_shot(chromium, marked_site / page, width, tall, tmp / "marked.png"))
                        if row is None:
                            raise SystemExit(f"#{anchor} not found in a {tall} px screenshot of {page} at {width} px")
                        if row + HEIGHT <= tall:
                            break
                        tall = row + HEIGHT + 100
                    top = max(0, row - 8)
                    img = _shot(chromium, args.site / page, width, tall, tmp / "tall.png").crop((0, top, width, top + HEIGHT))
                size = _save(img, dest)
                print(f"{dest}: {img.width}x{img.height}, {size / 1000:.0f} KB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
