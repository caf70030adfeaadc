"""The robustness track (``coreset_bench.tracks.robustness``), one package per track (issue 37):

- ``track``: ``RobustnessTrack`` and its profiles.

The names of ``track`` are re-exported here (``from coreset_bench.tracks.robustness import RobustnessTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from .._package import reexport_track

__getattr__ = reexport_track(__name__, ["track"])
