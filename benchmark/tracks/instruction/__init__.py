"""The instruction (text selection) track (``coreset_bench.tracks.instruction``), one package per track (issue 37):

- ``track``: ``InstructionTrack``, its profiles, view and evaluation;
- ``world``: the synthetic instruction world (the old path ``coreset_bench.instruction_world`` is an alias of it);
- ``lm``: the language models (the old path ``coreset_bench.lm`` is an alias of it).

The names of ``track`` are re-exported here (``from coreset_bench.tracks.instruction import InstructionTrack`` keeps
working), loaded on first use: importing a helper alone (the track's world, a layer below the
tracks) does not load the track.
"""

from __future__ import annotations

from typing import Any

#: this package's modules: never looked up in ``track`` (``from coreset_bench.tracks.instruction import lm`` imports it)
_SUBMODULES = frozenset({'lm', 'track', 'world'})


def __getattr__(name: str) -> Any:
    """``coreset_bench.tracks.instruction.NAME`` is ``coreset_bench.tracks.instruction.track.NAME`` (the track module's names, its private ones too)."""
    if name.startswith("__") or name in _SUBMODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import track

    try:
        return getattr(track, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
