"""The privacy and memorization tracks (``coreset_bench.tracks.privacy``), one package per track (issue 37):

- ``track``: ``PrivacyTrack`` and ``MemorizationTrack`` (their shared base ``PrivacyBase``), the model banks and the profiles;
- ``metrics``: the membership and memorization metrics (the old path ``coreset_bench.privacy_metrics`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.privacy import PrivacyTrack, MemorizationTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from .._package import reexport_track

__getattr__ = reexport_track(__name__, ["metrics", "track"])
