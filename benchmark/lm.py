"""Old path of ``coreset_bench.tracks.instruction.lm`` (moved beside its track, issue 37): this name is an alias
of that module (``sys.modules``), so imports, ``monkeypatch`` and objects pickled by either path
are one and the same. New code imports ``coreset_bench.tracks.instruction.lm``."""

import sys

from .tracks.instruction import lm as _moved

sys.modules[__name__] = _moved
