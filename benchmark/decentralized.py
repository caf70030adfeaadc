"""Old path of ``coreset_bench.tracks.decentralized.network`` (moved beside its track, issue 37): this name is an alias
of that module (``sys.modules``), so imports, ``monkeypatch`` and objects pickled by either path
are one and the same. New code imports ``coreset_bench.tracks.decentralized.network``."""

import sys

from .tracks.decentralized import network as _moved

sys.modules[__name__] = _moved
