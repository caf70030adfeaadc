"""Hook specifications of coreset-bench, grouped by phase.

Every hook is *register-style* (as in simonw/llm): it receives a ``register`` callable and calls
it once per object it contributes, so one plugin module can add many objects. Implement any
subset of them with ``@coreset_bench.hookimpl`` and list the module under the ``coreset_bench``
entry-point group of your distribution::

    [project.entry-points.coreset_bench]
    mymethod = "mypackage.mymethod"

Core code never calls these by name: it goes through the typed facade in
``coreset_bench.registry`` (re-exported as ``coreset_bench.plugins``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("coreset_bench")

# ---- phase 1: data and models ---------------------------------------------------------------


@hookspec
def register_datasets(register: Callable[[Any], None]) -> None:
    """Register datasets: ``register(DatasetSpec(...))``.

    A dataset spec has a ``name`` and a ``load(ref, data_dir)`` function that returns
    in-memory tensors (see ``coreset_bench.data.DatasetSpec``).
    """


@hookspec
def register_architectures(register: Callable[[Any], None]) -> None:
    """Register model architectures: ``register(Architecture(name, build))``.

    ``build(in_channels, num_classes, image_size, mean, std)`` returns a ``torch.nn.Module`` that
    takes [0, 1] inputs, normalizes them itself, and exposes ``embed(x)`` (penultimate features)
    and ``head`` (the last linear layer) (see ``coreset_bench.models``).
    """


# ---- phase 2: methods -----------------------------------------------------------------------


@hookspec
def register_methods(register: Callable[[Any], None]) -> None:
    """Register method instances of any kind: ``register(MyMethod())``.

    The method's class derives from one of the bases in ``coreset_bench.kinds``. Two methods
    with one name are an error that names both packages.
    """


# ---- phase 3: benchmark protocols -----------------------------------------------------------


@hookspec
def register_tracks(register: Callable[[Any], None]) -> None:
    """Register tracks (benchmark protocols with their profiles): ``register(MyTrack())``.

    A track derives from ``coreset_bench.tracks.base.Track``.
    """


@hookspec
def register_claims(register: Callable[[Any], None]) -> None:
    """Register claims about your own methods: ``register(Claim(...))``.

    A claim (``coreset_bench.claims.Claim``) names the paper, the quoted claim, the track and
    profiles, the metric, the seed row (your method and its parameters), the comparator and the
    kind with the paper's number; ``coreset-bench claims`` and the leaderboard judge it by the
    same rule as the built-in tracks' claims (``coreset_bench.claims.verdict``). A package may
    declare claims only about methods it registers itself.
    """


# ---- phase 4: command line ------------------------------------------------------------------


@hookspec
def register_commands(app: Any) -> None:
    """Add commands to the ``coreset-bench`` typer application ``app``."""
