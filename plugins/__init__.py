"""Built-in plugins of coreset-bench, loaded through the ``coreset_bench`` entry points like any
third-party plugin: one subpackage per kind (``selection``, ``training``, ``attack``, ``privacy``,
``noise_correction``, ``distillation``, ``provisioning``), one module per method inside it, and
``core`` (datasets, architectures, tracks).

For convenience the package also re-exports the plugin facade of ``coreset_bench.registry``
(``from coreset_bench import plugins; plugins.method("easycore")``). The facade cannot be a
module named ``coreset_bench/plugins.py`` because this package owns that import name.
"""

from coreset_bench.registry import (  # noqa: F401
    ENTRY_POINT_GROUP,
    PluginError,
    PluginManager,
    PluginRecord,
    Registry,
    UnknownNameError,
    _closest,
    add_commands,
    architecture,
    architectures,
    claim_package,
    claims,
    claims_and_problems,
    dataset,
    datasets,
    load_plugins,
    manager,
    method,
    methods,
    records,
    register,
    reset,
    track,
    tracks,
    tracks_for,
    unregister,
)
