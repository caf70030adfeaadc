"""Public text: what a published page, an entry or a listing may say about this project's
development (``public_text``). Light on purpose: the listing commands use it without importing
the store or torch."""

from __future__ import annotations

import re as _re

_ISSUE_PAREN = _re.compile(r"\s*[(\[]\s*(?:see\s+)?issues?\s+#?\d+(?:\s*(?:,|and|items?|item)\s*#?\d+)*\s*[)\]]", _re.I)
_ISSUE_BARE = _re.compile(r"(?:\s+(?:of|in|from|see|per)\s+|\b)issues?\s+#?\d+(?:\s+items?\s+\d+(?:\s*(?:,|and)\s*\d+)*)?\b", _re.I)
_DIRTY = _re.compile(r"\b([0-9a-f]{7,40})-dirty\b")
_ABS_PATH = _re.compile(
    r"(?<![\w.:/~])(?:/(?:home|work|tmp|root|Users|mnt|scratch|var|opt|srv|private|data)/[^\s\"'<>,;)]*"
    r"|/[\w.@+-]+(?:/[\w.@+-]+){2,}/?"  # any other absolute path three or more folders deep (/check/work/x.json)
    r"|[A-Za-z]:\\\\Users\\\\[^\s\"'<>,;)]*)"
)


def public_text(text: str) -> str:
    """``text`` as a public page or entry may show it: no issue-tracker numbers of this project's
    development (``(issue 21)``, ``of issue 21``), no ``-dirty`` commit suffix (provenance keeps
    the bare commit and ``git_tree``), no machine-specific absolute path (``/home/me/x/y.db`` ->
    ``y.db``). Text without any of them is returned unchanged."""
    if not text or not isinstance(text, str):
        return text
    if "ssue" not in text and "ISSUE" not in text and "-dirty" not in text and "/" not in text and "\\\\" not in text:
        return text
    out = _ISSUE_PAREN.sub("", text)
    out = _ISSUE_BARE.sub("", out)
    out = _DIRTY.sub(r"\1 (modified tree)", out)
    out = _ABS_PATH.sub(lambda m: m.group(0).rstrip("/\\\\").replace("\\\\", "/").rsplit("/", 1)[-1], out)
    return out
