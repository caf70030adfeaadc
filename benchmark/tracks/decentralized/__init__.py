"""The decentralized distillation track (``coreset_bench.tracks.decentralized``), one package per track (issue 37):

- ``track``: ``DecentralizedTrack``, its profiles, view and evaluation;
- ``network``: the network, topologies and partitions (the old path ``coreset_bench.decentralized`` is an alias of it);
- ``gloo``: one node per process over gloo (the old path ``coreset_bench.gossip_dist`` is an alias of it; ``python -m coreset_bench.tracks.decentralized.gloo``).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.decentralized import DecentralizedTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from .._package import reexport_track

__getattr__ = reexport_track(__name__, ["gloo", "network", "track"])
