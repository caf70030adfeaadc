"""The decentralized distillation track (``coreset_bench.tracks.decentralized``), one package per track (issue 37):

- ``track``: ``DecentralizedTrack``, its profiles, view and evaluation;
- ``network``: the network, topologies and partitions (the old path ``coreset_bench.decentralized`` is an alias of it);
- ``gloo``: one node per process over gloo (the old path ``coreset_bench.gossip_dist`` is an alias of it; ``python -m coreset_bench.tracks.decentralized.gloo``).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.decentralized import DecentralizedTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from __future__ import annotations

from typing import Any

#: this package's modules: never looked up in ``track`` (``from coreset_bench.tracks.decentralized import gloo`` imports it)
_SUBMODULES = frozenset({'gloo', 'network', 'track'})


def __getattr__(name: str) -> Any:
    """``coreset_bench.tracks.decentralized.NAME`` is ``coreset_bench.tracks.decentralized.track.NAME`` (the track module's names, its private ones too)."""
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import track

    try:
        return getattr(track, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
