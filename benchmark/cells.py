"""The nouns of a run: profiles, cells, what a cell gets and what it returns.

A *profile* is a named, versioned matrix of a track (``coreset/quick@1``): axes (dataset,
architecture, budget, training recipe, ...) times seeds, plus fixed settings. A *cell* is one
point of that matrix for one method; its key is a content hash, and its seed derives from the
key. ``CellContext`` is what the runner hands a track for one cell, ``CellResult`` what the
track's pipeline returns, ``CellFailure`` the one-line reason a cell failed for a cause the
harness detected.

These live below the tracks (``coreset_bench.tracks.base`` re-exports them): the core (runner,
store, signals, the contest) imports them from here and never imports a track module.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ArtifactOut", "Cell", "CellContext", "CellFailure", "CellResult", "Profile", "canonical_json", "with_dataset"]


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Profile:
    """A versioned matrix of a track.

    ``axes``: ordered mapping axis -> list of values (the cross product is the matrix).
    ``seeds``: repeat indices; each repeat gets its own seed derived from the cell key.
    ``settings``: fixed protocol values (epochs, batch size, eval subset size, ...).
    ``timeout_s``: per-cell wall-clock limit (None: no limit).
    ``salted``: the seeds of hidden generated data (tracks with ``Track.hidden_data``) are salted
    with the results store's secret (``coreset_bench.salt``); False only for profile versions
    published before the salt, whose entries must keep reproducing (their hidden data follows
    from public seeds).
    """

    track: str
    name: str
    version: int
    axes: Mapping[str, Sequence[Any]]
    seeds: Sequence[int] = (0,)
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    timeout_s: float | None = None
    device: str = "cpu"
    salted: bool = True

    @property
    def id(self) -> str:
        """``track/name@version``"""
        return f"{self.track}/{self.name}@{self.version}"

    @property
    def short(self) -> str:
        return f"{self.track}/{self.name}"

    def n_cells(self) -> int:
        n = len(self.seeds)
        for v in self.axes.values():
            n *= len(v)
        return n

    def axis_points(self) -> list[dict[str, Any]]:
        names = list(self.axes)
        return [dict(zip(names, combo)) for combo in itertools.product(*(self.axes[n] for n in names))]


def salted_successors(profiles: Sequence[Profile], names: Sequence[str], note: str) -> list[Profile]:
    """``profiles``, all marked unsalted (defined before the hidden-data salt: their hidden data
    follows from public seeds, so their published entries keep reproducing), each newest version
    of the profiles ``names`` followed by its salted successor: the same matrix and settings, the
    next version number, its description extended by ``note`` (``{version}``: the version it
    follows)."""
    out = [dataclasses.replace(p, salted=False) for p in profiles]
    for name in names:
        base = max((p for p in out if p.name == name), key=lambda p: p.version)
        out.insert(
            out.index(base) + 1,
            dataclasses.replace(base, version=base.version + 1, salted=True, description=f"{base.description} {note.format(version=base.version)}"),
        )
    return out


def with_dataset(profile: Profile, dataset: str) -> Profile:
    """``profile`` run on ``dataset`` instead of its own (a derived profile, own id and ranking).

    The threat model follows the data: where the profile attacks (settings ``robust`` with an
    ``eps``), the derived profile takes the ``eps`` and ``step_size`` the new dataset declares
    (``data.threat_model``: 8/255 with 2/255 steps for CIFAR and image folders, 0.1 with 0.025 for
    digits) and keeps the profile's step counts and TRADES beta; a dataset that declares none keeps
    the profile's. The description says which. The profile itself is returned unchanged."""
    if "dataset" not in profile.axes:
        raise ValueError(f"profile {profile.id} has no dataset axis; --dataset does not apply")
    if list(profile.axes["dataset"]) == [dataset]:
        return profile
    settings, note = _dataset_threat(profile.settings, dataset)
    return Profile(
        profile.track,
        f"{profile.name}:{dataset}",
        profile.version,
        {**profile.axes, "dataset": [dataset]},
        profile.seeds,
        settings,
        f"{profile.description} Run on {dataset}.{note}",
        profile.timeout_s,
        profile.device,
        profile.salted,
    )


def _dataset_threat(settings: Mapping[str, Any], dataset: str) -> tuple[Mapping[str, Any], str]:
    """(settings with ``dataset``'s threat model, a sentence saying which threat model applies)."""
    from .data import threat_model, threat_text

    rb = settings.get("robust")
    if not isinstance(rb, Mapping) or "eps" not in rb:
        return settings, ""
    tm = threat_model(dataset)
    if tm is None:
        return settings, f" Threat model: L∞ {threat_text(rb['eps'])} (the profile's; the dataset declares none)."
    note = f" Threat model: L∞ {threat_text(tm['eps'])} with {threat_text(tm['step_size'])} steps (from the dataset"
    if float(rb["eps"]) != tm["eps"] or float(rb.get("step_size", tm["step_size"])) != tm["step_size"]:
        note += f"; the profile's own is L∞ {threat_text(rb['eps'])}"
    return {**settings, "robust": {**rb, **tm}}, note + ")."


@dataclass(frozen=True)
class Cell:
    """One point of a profile's matrix for one method."""

    track: str
    profile: str  # profile id, e.g. "coreset/quick@1"
    method: str
    method_version: str
    params: Mapping[str, Any]
    axes: Mapping[str, Any]
    repeat: int

    @property
    def key(self) -> str:
        payload = {
            "track": self.track,
            "profile": self.profile,
            "method": f"{self.method}@{self.method_version}",
            "params": dict(self.params),
            "axes": dict(self.axes),
            "repeat": self.repeat,
        }
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:24]

    @property
    def seed(self) -> int:
        """The cell's seed: derived from everything in the key except the method.

        Two methods at the same axes and repeat share the seed, so their differences are
        paired (same splits, same training noise), and gain-over-random can be computed
        per seed. Repeats differ.
        """
        payload = {"profile": self.profile, "axes": dict(self.axes), "repeat": self.repeat}
        return int(hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:8], 16) % (2**31 - 1)

    def label(self) -> str:
        ax = " ".join(f"{k}={v}" for k, v in self.axes.items())
        return f"{self.method} {ax} repeat={self.repeat}"


@dataclass
class ArtifactOut:
    """An artifact a cell produced: ``data`` is bytes (stored content-addressed on disk)."""

    kind: str
    name: str
    data: bytes

    @classmethod
    def npy(cls, kind: str, name: str, array: Any) -> "ArtifactOut":
        """An array stored as a ``.npy`` file (no pickles)."""
        import io

        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.asarray(array), allow_pickle=False)
        return cls(kind, name, buf.getvalue())


@dataclass
class CellResult:
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)
    artifacts: list[ArtifactOut] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class CellFailure(Exception):
    """A cell failed for a reason the harness detected (invalid plugin output, time-out)."""


@dataclass
class CellContext:
    """What the runner hands a track for one cell."""

    results_dir: Path
    cache_dir: Path
    data_dir: Path | None
    device: str = "cpu"
    progress: Callable[[str, float], None] = lambda what, frac: None
    #: union of the signals every method of this run declared: the first proxy run computes
    #: them all, so later methods are served from the cache instead of recomputing a union
    prefetch_signals: frozenset[str] = frozenset()
    #: the secret salt in effect for hidden generated data ("" = public seeds); harness side
    #: only, never put in a view (``coreset_bench.salt``)
    hidden_salt: str = field(default="", repr=False)
    #: the results store's database file when it is SQLite (None: a server database, or a
    #: context built outside a run); ``Track.protected`` keeps it, with its journal files, out
    #: of the contestant worker's reach for a track with hidden data, wherever ``--db`` put it
    store_path: Path | None = None

    def hidden_seed(self, public_seed: int | str) -> int:
        """The seed of hidden generated data (evaluation traces, held-out worlds, test clips,
        hidden flags) from its public seed: the public seed itself without a salt, else a hash
        of the salt and it (``coreset_bench.salt.hidden_seed``). Every track that generates data
        a contestant must not rebuild routes that seed through here."""
        from .salt import hidden_seed

        return hidden_seed(self.hidden_salt, public_seed)

    @property
    def salt_id(self) -> str:
        """A short public name of the salt in effect (``"public"`` without one), for memo keys
        and messages."""
        from .salt import salt_id

        return salt_id(self.hidden_salt)
