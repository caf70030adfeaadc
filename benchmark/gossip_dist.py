"""Old path of ``coreset_bench.tracks.decentralized.gloo`` (moved beside its track, issue 37): this name is an alias
of that module (``sys.modules``), so imports, ``monkeypatch`` and objects pickled by either path
are one and the same, and ``python -m coreset_bench.gossip_dist`` runs it. New code imports ``coreset_bench.tracks.decentralized.gloo``."""

import sys

if __name__ == "__main__":  # python -m coreset_bench.gossip_dist ...: the moved module's command line
    import runpy

    runpy.run_module("coreset_bench.tracks.decentralized.gloo", run_name="__main__", alter_sys=True)
else:
    from .tracks.decentralized import gloo as _moved

    sys.modules[__name__] = _moved
