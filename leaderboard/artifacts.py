"""Subset and weight files of the rows, published into the site as content-addressed copies."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

COPIED_ARTIFACT_KINDS = {"indices", "weights"}


class _Artifacts:
    """Publishes artifact files into the site as plain copies, content-addressed.

    Only a file that (after resolving symlinks) lies under one of ``roots`` (the results directory
    of the store and its artifacts directory), is named ``<sha256><ext>`` after the row's hash,
    is a regular file and whose bytes hash to the row's ``sha256`` is published; the copy is
    hashed while it is written, so what lands in the site is what was checked. Anything else is
    skipped with a one-line warning naming the row. Files are never hard-linked or symlinked.
    """

    def __init__(self, out: Path, roots: Iterable[str | os.PathLike[str]] = ()) -> None:
        self.out = out
        self.roots = [os.path.realpath(r) for r in roots]
        self.done: dict[str, str] = {}
        self.failed: set[tuple[str, str]] = set()
        self.dirs: set[str] = set()
        self.count = 0
        self.warnings: list[str] = []

    def href(self, art: Mapping[str, Any], row: str = "") -> str | None:
        """The site-relative path of the artifact's file, copied on first use; None if unavailable."""
        sha = art.get("sha256") or ""
        if not isinstance(sha, str):
            sha = ""
        path = art.get("path")
        if self.done.get(sha) is not None:  # published already (by a row that passed the checks)
            return self.done[sha]
        if (sha, str(path)) in self.failed:
            return None
        href = None
        if art.get("kind") in COPIED_ARTIFACT_KINDS and path:
            what = f"artifact {art.get('kind')} {str(art.get('name') or '')!r} of run {row or '?'}"
            problem = self._refuse(str(path), sha)
            if problem is None:
                suffix = "".join(ch for ch in os.path.splitext(str(art.get("name") or ""))[1] if ch.isalnum() or ch == ".")[:10] or ".bin"
                sub = f"artifacts/{sha[:2]}"
                if sub not in self.dirs:
                    os.makedirs(self.out / sub, exist_ok=True)
                    self.dirs.add(sub)
                rel = f"{sub}/{sha}{suffix}"
                problem = "not found"  # no candidate exists
                # the file's place in the artifacts directory (a moved results directory, or a
                # relative path recorded from another working directory), else the recorded path
                candidates = [os.path.join(r, sha[:2], os.path.basename(str(path))) for r in self.roots] + [str(path)]
                for src in candidates:
                    problem = self._publish(src, sha, os.path.join(self.out, rel))
                    if problem is None or problem != "not found":
                        break
                if problem is None:
                    href = rel
                    self.count += 1
            if problem == "not found":
                problem = f"its file is missing (neither {path!r} nor a file of that name in the artifacts directory)"
            if problem is not None:
                self.warnings.append(" ".join(f"{what} not published: {problem}".split()))
        if href is not None:
            self.done[sha] = href
        else:  # a refused row never stops another row with the same hash from being published
            self.failed.add((sha, str(path)))
        return href

    @staticmethod
    def _refuse(path: str, sha: str) -> str | None:
        """Why a row's recorded path is refused before touching the file system (None: fine)."""
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            return "its sha256 is not 64 lowercase hex digits"
        if ".." in path.replace("\\", "/").split("/"):
            return f"its path {path!r} contains '..'"
        if not os.path.basename(path).startswith(sha):
            return f"its path {path!r} is not a content-addressed file named after its sha256"
        return None

    def _inside(self, real: str) -> bool:
        return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots)

    def _publish(self, src: str, sha: str, dest: str) -> str | None:
        """Copy ``src`` to ``dest`` if it is a regular file under the roots with hash ``sha``."""
        if not os.path.lexists(src):
            return "not found"
        real = os.path.realpath(src)
        if not self.roots or not self._inside(real):
            where = "no results directory is known" if not self.roots else f"it resolves to {real}, outside the results directory"
            return f"{where}; only files under the results directory are published"
        if not os.path.basename(real).startswith(sha):
            return f"it resolves to {real}, which is not named after its sha256"
        try:
            # no symlink at the last step (checked above, raced here), no blocking on a FIFO
            fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            return f"cannot open {real} ({exc.strerror})"
        tmp = f"{dest}.part{os.getpid()}"
        try:
            with os.fdopen(fd, "rb") as fh:
                if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    return f"{real} is not a regular file"
                h = hashlib.sha256()
                with open(tmp, "xb") as out:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
                        out.write(chunk)
            if h.hexdigest() != sha:
                os.unlink(tmp)
                return f"the file's sha256 is {h.hexdigest()[:16]}…, not the row's {sha[:16]}…"
            os.replace(tmp, dest)
            return None
        except OSError as exc:
            if os.path.exists(tmp):
                os.unlink(tmp)
            return f"cannot copy {real} ({exc.strerror})"
