"""Cached artifacts shared by concurrent cells: one process computes, the others wait and load.

Cells of one run execute side by side (``--jobs``, one per core by default on the CPU) and often
need the same expensive artifact: a proxy run's signals, a fixed model to attack, a bank of
shadow models. ``file_lock`` serializes the load-or-compute step per artifact with an advisory
``flock`` on a ``.lock`` file beside it (released by the OS when a worker dies or is killed on a
time-out), and ``replace_dir`` publishes a directory written elsewhere under the lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_for(path: Path):
    """The lock of the artifact at ``path`` (file or directory): ``NAME.lock`` beside it."""
    path = Path(path)
    return file_lock(path.parent / f"{path.name}.lock")


def temp_dir_for(path: Path) -> Path:
    """An empty private directory beside ``path`` to write its next version into."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def replace_dir(tmp: Path, path: Path) -> None:
    """Put the directory ``tmp`` in place of ``path`` (call while holding ``path``'s lock)."""
    if Path(path).exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
