"""Capture what ``coreset-bench run`` shows on a terminal (issue 23, item 1), as a transcript.

Runs the command with a pseudo-terminal as its stdin/stdout/stderr (what a user's shell gives
it, so rich draws the live progress bar and the spinner), records every byte it writes, and turns
the stream into text: each redraw of the live display becomes one frame (the control sequences
that move the cursor and clear lines separate frames; colours are dropped), consecutive identical
frames are merged. The raw bytes can be kept too.

    python benchmarks/capture_progress.py --out docs/img/issue23/progress-transcript.txt -- \\
        coreset-bench run --plugin cld --profile tiny --db /tmp/capture.db
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path

CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
OSC = re.compile(r"\x1b\][^\x07]*\x07")
# cursor movement / line clearing: rich's live display redraws itself with these
SAME = re.compile(r"[\u2800-\u28ff]|\d+:\d\d:\d\d")
REDRAW = re.compile(r"\x1b\[(\d*)A|\x1b\[2K|\x1b\[\?25[lh]")


def capture(argv: list[str], env: dict[str, str], timeout: float, cwd: str | Path | None = None) -> tuple[int, bytes, float]:
    """Run ``argv`` with a pseudo-terminal as stdin/stdout/stderr; returns its exit status,
    every byte it wrote (control sequences included) and the wall time. A child still running at
    ``timeout`` is killed. ``tests/test_ux.py`` uses this too."""
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.time()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks), time.perf_counter() - t0


def frames(raw: bytes) -> list[str]:
    """The successive screens' new text: split where the live display redraws, colours dropped."""
    text = OSC.sub("", raw.decode("utf-8", "replace")).replace("\r\n", "\n")
    parts = REDRAW.split(text)
    out: list[str] = []
    last = None
    for part in parts:
        if part is None or part.isdigit() or part == "":
            continue
        clean = CSI.sub("", part).replace("\r", "")
        lines = [ln.rstrip() for ln in clean.split("\n")]
        block = "\n".join(ln for ln in lines if ln.strip())
        key = SAME.sub("", block)  # a new spinner glyph or another second elapsed: the same frame
        if block and key != last:
            out.append(block)
            last = key
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="the transcript (text)")
    ap.add_argument("--raw", type=Path, help="also keep the raw bytes here")
    ap.add_argument("--columns", type=int, default=110)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- the command to run")
    a = ap.parse_args()
    argv = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not argv:
        ap.error("give the command after --")
    env = dict(os.environ, TERM=os.environ.get("TERM", "xterm-256color"), COLUMNS=str(a.columns), LINES="40")
    code, raw, wall = capture(argv, env, a.timeout)
    if a.raw:
        a.raw.write_bytes(raw)
    head = [
        f"# {shlex.join(argv)}",
        f"# captured through a pseudo-terminal ({a.columns} columns) by benchmarks/capture_progress.py on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC;",
        f"# exit status {code}, {wall:.1f} s wall. Each block below is one redraw of the live display (colours dropped);",
        "# the bar is transient: at the end it is replaced by the finished cells' lines and the summary table.",
        "",
    ]
    body = []
    for i, f in enumerate(frames(raw)):
        body += [f"--- frame {i + 1}", f]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(head + body) + "\n")
    print(f"{a.out}: {len(body) // 2} frames, exit status {code}, {wall:.1f} s", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
