"""The coreset track (``coreset_bench.tracks.coreset``), one package per track (issue 37):

- ``track``: ``CoresetTrack``, its profiles, view and evaluation;
- ``side_effects``: what else a coreset does: membership leakage, worst class, calibration, label-noise exposure (the old path ``coreset_bench.side_effects`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.coreset import CoresetTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from .._package import reexport_track

__getattr__ = reexport_track(__name__, ["side_effects", "track"])
