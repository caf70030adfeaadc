"""The video (early-exit distillation) track (``coreset_bench.tracks.video``), one package per track (issue 37):

- ``track``: ``VideoTrack``, its profiles, view and evaluation;
- ``codec``: the MPEG-4 compressed domain (the old path ``coreset_bench.video`` is an alias of it);
- ``data``: the clips and their generators (the old path ``coreset_bench.video_data`` is an alias of it);
- ``models``: the early-exit backbones (the old path ``coreset_bench.video_models`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.video import VideoTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from __future__ import annotations

from typing import Any

#: this package's modules: never looked up in ``track`` (``from coreset_bench.tracks.video import models`` imports it)
_SUBMODULES = frozenset({'codec', 'data', 'models', 'track'})


def __getattr__(name: str) -> Any:
    """``coreset_bench.tracks.video.NAME`` is ``coreset_bench.tracks.video.track.NAME`` (the track module's names, its private ones too)."""
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import track

    try:
        return getattr(track, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
