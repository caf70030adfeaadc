"""coreset-bench: a benchmark suite for data-centric deep learning.

Third-party plugins import ``hookimpl`` from here::

    from coreset_bench import hookimpl
"""

from importlib.metadata import PackageNotFoundError, version as _version

import pluggy

try:
    __version__ = _version("coreset-bench")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

hookimpl = pluggy.HookimplMarker("coreset_bench")

__all__ = ["__version__", "hookimpl"]
