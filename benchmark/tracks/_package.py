"""What every built-in track package's ``__init__`` does (issue 37's layout): re-export the names
of its ``track`` module, loaded on first use.

``coreset_bench.tracks.NAME.X`` is ``coreset_bench.tracks.NAME.track.X`` (the track module's names,
its private ones too), so ``from coreset_bench.tracks.pooling import PoolingTrack`` keeps working;
the package's own modules (``track`` and the track's helpers, its world) are never looked up in
``track``, and importing a helper alone does not load the track (tests/test_layout.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any


def reexport_track(package: str, submodules: Iterable[str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of track package ``package`` whose modules are ``submodules``."""
    own = frozenset(submodules) | {"track"}

    def __getattr__(name: str) -> Any:
        if name.startswith("__") or name in own:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        track = importlib.import_module(f"{package}.track")
        try:
            return getattr(track, name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    __getattr__.__doc__ = f"``{package}.NAME`` is ``{package}.track.NAME``."
    return __getattr__
