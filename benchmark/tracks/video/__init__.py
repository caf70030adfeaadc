"""The video (early-exit distillation) track (``coreset_bench.tracks.video``), one package per track (issue 37):

- ``track``: ``VideoTrack``, its profiles, view and evaluation;
- ``codec``: the MPEG-4 compressed domain (the old path ``coreset_bench.video`` is an alias of it);
- ``data``: the clips and their generators (the old path ``coreset_bench.video_data`` is an alias of it);
- ``models``: the early-exit backbones (the old path ``coreset_bench.video_models`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.video import VideoTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from .._package import reexport_track

__getattr__ = reexport_track(__name__, ["codec", "data", "models", "track"])
