"""The error an entry is rejected with (a leaf module: ``entries`` and ``signing`` both raise it)."""

from __future__ import annotations


class EntryError(ValueError):
    """An entry was rejected; the message is a one-line reason."""
