"""The pooling track (``coreset_bench.tracks.pooling``), one package per track (issue 37):

- ``track``: ``PoolingTrack``, its profiles, view and evaluation;
- ``sim``: the cluster-pool simulator, the demand traces and the plan check (the old path ``coreset_bench.pooling`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.pooling import PoolingTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from __future__ import annotations

from typing import Any

#: this package's modules: never looked up in ``track`` (``from coreset_bench.tracks.pooling import sim`` imports it)
_SUBMODULES = frozenset({'sim', 'track'})


def __getattr__(name: str) -> Any:
    """``coreset_bench.tracks.pooling.NAME`` is ``coreset_bench.tracks.pooling.track.NAME`` (the track module's names, its private ones too)."""
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import track

    try:
        return getattr(track, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
