"""Old path of ``coreset_bench.tracks.coreset.side_effects`` (moved beside its track, issue 37): this name is an alias
of that module (``sys.modules``), so imports, ``monkeypatch`` and objects pickled by either path
are one and the same. New code imports ``coreset_bench.tracks.coreset.side_effects``."""

import sys

from .tracks.coreset import side_effects as _moved

sys.modules[__name__] = _moved
