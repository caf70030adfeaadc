"""The coreset track (``coreset_bench.tracks.coreset``), one package per track (issue 37):

- ``track``: ``CoresetTrack``, its profiles, view and evaluation;
- ``side_effects``: what else a coreset does: membership leakage, worst class, calibration, label-noise exposure (the old path ``coreset_bench.side_effects`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.coreset import CoresetTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from __future__ import annotations

from typing import Any

#: this package's modules: never looked up in ``track`` (``from coreset_bench.tracks.coreset import side_effects`` imports it)
_SUBMODULES = frozenset({'side_effects', 'track'})


def __getattr__(name: str) -> Any:
    """``coreset_bench.tracks.coreset.NAME`` is ``coreset_bench.tracks.coreset.track.NAME`` (the track module's names, its private ones too)."""
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import track

    try:
        return getattr(track, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
