"""Old path of ``coreset_bench.tracks.video.data`` (moved beside its track, issue 37): this name is an alias
of that module (``sys.modules``), so imports, ``monkeypatch`` and objects pickled by either path
are one and the same. New code imports ``coreset_bench.tracks.video.data``."""

import sys

from .tracks.video import data as _moved

sys.modules[__name__] = _moved
