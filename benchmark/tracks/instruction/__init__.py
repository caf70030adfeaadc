"""The instruction (text selection) track (``coreset_bench.tracks.instruction``), one package per track (issue 37):

- ``track``: ``InstructionTrack``, its profiles, view and evaluation;
- ``world``: the synthetic instruction world (the old path ``coreset_bench.instruction_world`` is an alias of it);
- ``lm``: the language models (the old path ``coreset_bench.lm`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.instruction import InstructionTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from .._package import reexport_track

__getattr__ = reexport_track(__name__, ["lm", "track", "world"])
