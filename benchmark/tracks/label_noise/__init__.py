"""The label-noise track (``coreset_bench.tracks.label_noise``), one package per track (issue 37):

- ``track``: ``LabelNoiseTrack``, the noise injection, the verified set and the profiles.

The names of ``track`` are re-exported here (``from coreset_bench.tracks.label_noise import LabelNoiseTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from .._package import reexport_track

__getattr__ = reexport_track(__name__, ["track"])
