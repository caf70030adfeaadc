"""The privacy and memorization tracks (``coreset_bench.tracks.privacy``), one package per track (issue 37):

- ``track``: ``PrivacyTrack`` and ``MemorizationTrack`` (their shared base ``PrivacyBase``), the model banks and the profiles;
- ``metrics``: the membership and memorization metrics (the old path ``coreset_bench.privacy_metrics`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.privacy import PrivacyTrack, MemorizationTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from __future__ import annotations

from typing import Any

#: this package's modules: never looked up in ``track`` (``from coreset_bench.tracks.privacy import metrics`` imports it)
_SUBMODULES = frozenset({'metrics', 'track'})


def __getattr__(name: str) -> Any:
    """``coreset_bench.tracks.privacy.NAME`` is ``coreset_bench.tracks.privacy.track.NAME`` (the track module's names, its private ones too)."""
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import track

    try:
        return getattr(track, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
