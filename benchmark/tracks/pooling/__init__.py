"""The pooling track (``coreset_bench.tracks.pooling``), one package per track (issue 37):

- ``track``: ``PoolingTrack``, its profiles, view and evaluation;
- ``sim``: the cluster-pool simulator, the demand traces and the plan check (the old path ``coreset_bench.pooling`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.pooling import PoolingTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from .._package import reexport_track

__getattr__ = reexport_track(__name__, ["sim", "track"])
