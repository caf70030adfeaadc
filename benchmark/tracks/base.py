"""Tracks, profiles and cells: the fixed protocols the benchmark runs.

A *track* ranks methods of one kind (its contestants) under a fixed protocol. A *profile* is a
named, versioned matrix of the track (``coreset/quick@1``): axes (dataset, architecture,
budget, training recipe, ...) times seeds, plus fixed settings. A *cell* is one point of that
matrix for one method; its key is a content hash, and its seed derives from the key.

The harness, never the method, owns data splits, the training of evaluated models and the
evaluation.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# the nouns live below the tracks (``coreset_bench.cells``); re-exported here so every existing
# import (``from coreset_bench.tracks.base import Cell``) keeps working
from ..cells import (  # noqa: F401 - re-exported
    ArtifactOut,
    Cell,
    CellContext,
    CellFailure,
    CellResult,
    Profile,
    _dataset_threat,
    canonical_json,
    with_dataset,
)
from ..kinds import Method


class Track(ABC):
    """A benchmark protocol. Subclasses set the class attributes (declarations) and supply the
    pipeline's middle pieces, ``fixture``, ``view`` and ``evaluate`` (see ``run_cell``)."""

    name: str = ""
    """The track's name: the first part of its profile ids (``coreset/quick@2``) and of ``--track``."""
    summary: str = ""
    """One line on what the track ranks, shown by ``coreset-bench tracks`` and on the board."""
    contestant_kind: str = "selection"
    """The kind of method the track ranks (``kinds``: "selection", "training", "privacy", ...);
    ``accepts`` refuses any other."""
    fixtures: tuple[str, ...] = ()
    """Fixture kinds the track uses (informational)."""
    primary_metric: str = ""
    """The metric the board ranks by (``primary_for`` may vary it per profile); its direction is in
    ``metric_directions``."""
    metric_directions: Mapping[str, str] = {}
    """Metric name -> "max" (higher is better) or "min"."""
    secondary_metrics: tuple[str, ...] = ()
    """Metric names shown beside the primary one, in order."""
    metric_bounds: Mapping[str, tuple[float | None, float | None]] = {}
    """Metric name -> (low, high), the values it can take (None: open on that side), e.g. (0.0, 1.0)
    for an accuracy, (0.0, None) for seconds. The board clips the intervals of its means to this
    range (and paired differences to [−(high − low), high − low]); a metric not listed is unbounded
    (``leaderboard.stats.MetricRange``)."""
    proportion_metrics: tuple[str, ...] = ()
    """Metrics that are one 0/1 outcome per cell (e.g. "SLO met"): the board gives their mean a
    Clopper-Pearson interval for a proportion over the cells, not a t-interval over seeds."""
    metric_units: Mapping[str, str] = {}
    """Metric name (or an ``fnmatch`` family such as ``class_acc_*``) -> its unit, the board's only
    source of units (never guessed from the values): "%" for a fraction in [0, 1] shown in percent
    (its differences in percentage points, "pp"); any other text is printed after the number as is
    ("s", "MB", "h/day"); "" or absent: a plain number (a correlation, an AUC)."""
    metric_chance: Mapping[str, float] = {}
    """Metric -> the value that means no skill (a membership-inference AUC of 0.5, a correlation of 0):
    the board shows it as a chance row, and a row whose 95 % interval reaches it is "at floor"
    (shown, never ranked, never the leader). Accuracies need no entry: their floor is the constant
    classifier's, read from the cells (``info["chance_floor"]``)."""
    board_figures: tuple[str, ...] = ("budget-curves", "pareto")
    """The figures a profile page of this track draws, in order: names registered in
    ``leaderboard.figures.FIGURES`` ("budget-curves", "pareto", "pool-frontier", "epsilon-sweep",
    "proxy-score-sweep", "exit-frontier"); each is omitted when its cells hold nothing to show."""
    info_keys: frozenset[str] | None = None
    """The ``info`` keys a published entry's cell may carry (plus ``method_<key>``, the method's own
    ``info``); an unknown key is rejected by the entry validator. None: free-form."""
    baseline_method: str | None = None
    """The method a gain is measured against (e.g. "random"); None: no baseline."""
    reference_methods: tuple[str, ...] = ()
    """Reference methods the ranking needs, run when missing."""
    default_profile: str = "quick"
    """The profile ``run`` uses without ``--profile`` (the CPU-sized one users start with)."""
    modality: str = ""
    """Data modality a contestant must list in its ``modalities`` (selection tracks; "" = none
    required)."""
    role: str = ""
    """``role`` a contestant must declare (privacy and distillation tracks; "" = none required)."""
    hidden_data: bool = False
    """The track generates data a contestant must not rebuild (evaluation traces, held-out sets, hidden
    flags) from seeds it routes through ``CellContext.hidden_seed``: the runner then puts the
    store's salt in the context for every ``Profile.salted`` profile."""

    def accepts(self, method: Method) -> str | None:
        """None when this track can rank ``method``, else a one-line reason it cannot.

        Enforced: the method's kind is ``contestant_kind``; a non-empty ``method.tracks`` names
        this track; the method lists ``modality`` in its ``modalities`` (when the track sets one);
        the method's ``role`` equals ``role`` (when the track sets one). ``registry.tracks_for``
        skips tracks that refuse, and ``coreset-bench run --track`` exits with the reason.
        Subclasses may refuse more, and should call ``super().accepts`` first.
        """
        who = f"{method.name!r}"
        if method.kind != self.contestant_kind:
            return f"track {self.name!r} ranks {self.contestant_kind} methods; {who} is a {method.kind} method"
        if method.tracks and self.name not in method.tracks:
            return f"{who} takes part only in track(s) {', '.join(method.tracks)} (its `tracks` attribute); track {self.name!r} is not one of them"
        if self.modality:
            mods = sorted(getattr(method, "modalities", ()) or ())
            if self.modality not in mods:
                have = ", ".join(mods) if mods else "none"
                return (
                    f"track {self.name!r} ranks {self.modality} {self.contestant_kind} methods; {who} declares modalities {have} "
                    f"(add {self.modality!r} to its `modalities` if it handles {self.modality} data)"
                )
        if self.role:
            role = getattr(method, "role", "") or ""
            if role != self.role:
                has = f"has role {role!r}" if role else "declares no role"
                return f"{who} {has}; track {self.name!r} ranks {self.contestant_kind} methods with role {self.role!r}"
        return None

    def primary_for(self, profile: Profile) -> str:
        """The primary metric of ``profile`` (a track may vary it, e.g. clean accuracy where a
        profile runs no attacks)."""
        return self.primary_metric

    @abstractmethod
    def profiles(self) -> list[Profile]:
        """All profiles of this track (every version that can still be run)."""

    def profile(self, ref: str | None) -> Profile:
        """Resolve ``quick``, ``coreset/quick``, ``quick@1`` or ``coreset/quick@1``.

        A name ``NAME:DATASET`` (``coreset/quick:imagefolder:/data/x@1``) is the profile run on
        another dataset (``--dataset``): the same protocol, its own matrix and its own ranking.
        """
        from ..registry import UnknownNameError, _closest

        profs = self.profiles()
        if not profs:
            raise UnknownNameError(f"track {self.name!r} has no profiles")
        if ref is None:
            named = [p for p in profs if p.name == self.default_profile]
            return max(named, key=lambda p: p.version) if named else profs[0]
        name = ref.split("/", 1)[1] if ref.startswith(self.name + "/") else ref
        version = None
        if "@" in name:
            name, v = name.rsplit("@", 1)
            try:
                version = int(v)
            except ValueError:
                raise UnknownNameError(f"profile {ref!r}: the version after '@' must be an integer, e.g. {name}@1") from None
        dataset = None
        if ":" in name:
            name, dataset = name.split(":", 1)
        matches = [p for p in profs if p.name == name and (version is None or p.version == version)]
        if not matches:
            raise UnknownNameError(f"unknown profile {ref!r} of track {self.name!r}; {_closest(name, [p.name for p in profs])}")
        found = max(matches, key=lambda p: p.version)
        return with_dataset(found, dataset) if dataset else found

    def cells(self, profile: Profile, method: Method) -> list[Cell]:
        """Expand a profile for one method (cross product of axes times repeats)."""
        out = []
        for axes in profile.axis_points():
            if not self.applicable(profile, method, axes):
                continue
            for r in profile.seeds:
                out.append(
                    Cell(self.name, profile.id, method.name, method.version, dict(method.params), axes, int(r))
                )
        return out

    def splits(self, profile: Profile, dataset: str, ctx: CellContext) -> Any:
        """The profile's fixed, seeded splits of ``dataset`` (memoized in-process).

        Settings read: ``val_fraction`` (validation carved per class from training data),
        ``max_train_per_class`` and ``max_test`` (CPU-sized subsets), ``dataset_args`` (a loader
        argument per dataset name, e.g. ``{"digits": "test=0.3"}``: a larger held-out split). The
        split seed derives from the profile id and the dataset, never from the method or the repeat.
        """
        from .. import data as D

        cache = self.__dict__.setdefault("_splits_cache", {})
        key = f"{profile.id}|{dataset}|{ctx.data_dir}|{ctx.device}"
        if key not in cache:
            st = profile.settings
            loader_arg = dict(st.get("dataset_args", {})).get(dataset)
            ref = f"{dataset}:{loader_arg}" if loader_arg and ":" not in dataset else dataset
            ds = D.resolve(ref, ctx.data_dir, ctx.cache_dir)
            split_seed = int(hashlib.sha256(f"{profile.id}|{dataset}".encode()).hexdigest()[:8], 16) % (2**31)
            cache[key] = D.make_splits(
                ds,
                val_fraction=float(st.get("val_fraction", 0.1)),
                seed=split_seed,
                max_train_per_class=st.get("max_train_per_class"),
                max_test=st.get("max_test"),
                device=ctx.device,
            )
        return cache[key]

    def reference(self, profile: Profile, name: str) -> Method:
        """The instance of reference method ``name`` this profile runs (its parameters may be
        set by the profile's ``reference_params``, e.g. a CPU-sized AutoAttack)."""
        from ..registry import method as _method

        params = dict(profile.settings.get("reference_params", {}).get(name, {}))
        m = _method(name)
        return m.with_params(**params) if params else m

    def check_inputs(self, profile: Profile, data_dir: Path | None) -> None:
        """Up-front checks of the profile beyond its datasets (``check_dataset``), before any cell
        (``run`` and ``--dry-run``): raise ``ValueError`` with one line naming the fix. Default:
        nothing; the instruction track checks its model and the optional packages it needs."""

    def cost_hint(self, cell: Cell) -> float:
        """Relative expected cost of ``cell``; parallel executors start the costliest cells first
        (so no long cell is left running alone at the end). Only the order depends on it."""
        return 1.0

    def applicable(self, profile: Profile, method: Method, axes: Mapping[str, Any]) -> bool:
        """Whether ``method`` runs at ``axes`` (e.g. ``full`` runs only at budget 1.0)."""
        return True

    def check_dataset(self, ref: str, data_dir: Path | None) -> None:
        """Cheap up-front check of one value of the profile's dataset axis, before any cell
        exists (``run`` and ``--dry-run``): raise ``LookupError`` for an unknown name or
        ``ValueError`` (one line naming the fix) for missing data. The default checks the image
        datasets of ``coreset_bench.data``; tracks with their own data (video clips, instruction
        pools) override it."""
        from .. import data as D

        D.check(ref, data_dir)

    def load_dataset(self, ref: str, ctx: CellContext) -> None:
        """Decode one dataset of the profile once before the cells (the in-process memo serves
        every cell; forked workers inherit it). The default decodes an image dataset; tracks that
        cache their own data per cell make it a no-op."""
        from .. import data as D

        D.resolve(ref, ctx.data_dir, ctx.cache_dir)

    def prepare(self, profile: Profile, methods: Sequence[Method], ctx: CellContext) -> None:
        """Optional shared preparation before the cells of a run (e.g. warm a cache)."""

    # ---- the cell pipeline (issue 37) ----------------------------------------------------------
    private_cache: tuple[str, ...] = ()
    """Subdirectories of the cache holding this track's hidden data (model banks, noisy-label models):
    the contestant worker refuses to open them, as it refuses the dataset files."""
    blas_threads: bool = False
    """The contestant worker holds numpy's BLAS to the cell's torch thread count (the thread count
    changes the last bits of e.g. an eigendecomposition, and an unlimited BLAS beside another cell
    oversubscribes the cores); off by default."""

    def run_cell(self, cell: Cell, method: Method, ctx: CellContext) -> CellResult:
        """Run one cell through the pipeline the base class owns; tracks supply its middle pieces.

        1. ``accept(cell, method)``: the kind check and the method's parameters, from the cell, once;
        2. ``fixture(profile, cell, ctx)``: splits, world, fixed models, seeded and cached (the
           global torch generator is seeded with the cell's seed first; the contestant worker
           starts meanwhile);
        3. ``view(fixture, cell, method)``: the kind's view (a list: one call per view), holding
           no hidden truth; for a served kind, ``service(fixture, cell)`` answers its requests;
        4. the contest (``coreset_bench.contest``) of kind ``contest_kind(profile)``: the
           contestant in the contestant worker, which holds only the views (or, for an external
           kind, in the track's ``runner``); seeding, timing, one-line errors, the kind's output check;
        5. ``evaluate(fixture, cell, contest)``: metrics, timings, artifacts, info (a ``CellResult``);
        6. ``record``: finite metrics, the primary metric, the contest's time.

        All of it runs under ``env.cell_scope(ctx.device)`` (the cell's thread count and kernels),
        as the runner's executors do, so a direct call gives the numbers the CLI gives.

        A track that overrides ``run_cell`` instead runs its own code (the tracks not yet on the
        pipeline). Raise ``CellFailure`` for a failure the harness detected.
        """
        import torch

        from .. import contestant as C
        from .. import env as envmod
        from ..contest import KINDS, contest, tenant

        with envmod.cell_scope(str(ctx.device)):  # the runner enters it too: a direct call gets the CLI's numbers
            method = self.accept(cell, method)
            profile = self.profile(cell.profile)
            kind = self.contest_kind(profile)
            protected = self.protected(profile, cell, ctx)
            blas = max(1, torch.get_num_threads()) if self.blas_threads else None
            preload = self.worker_imports(profile)
            if kind not in KINDS or not KINDS[kind].external:
                C.prestart(device=str(ctx.device), protected=protected, tenant=tenant(method), blas=blas, preload=preload)  # boots while the fixture is built
            torch.manual_seed(cell.seed)
            fixture = self.fixture(profile, cell, ctx)
            views = self.view(fixture, cell, method)
            out = contest(method, views if isinstance(views, list) else [views], kind=kind, device=str(ctx.device), protected=protected,
                          service=self.service(fixture, cell), runner=self.runner(fixture, cell), blas=blas, preload=preload)
            return self.record(profile, cell, method, self.evaluate(fixture, cell, out), out)

    def contest_kind(self, profile: Profile) -> str:
        """The ``coreset_bench.contest.KINDS`` entry this profile's contest runs: the track's
        ``contestant_kind``, unless the kind's methods are called in another way here (the
        decentralized track: ``node-models``, one model per node over a served network, or
        ``node-models-gloo``, one process per node)."""
        return self.contestant_kind

    def service(self, fixture: Any, cell: Cell) -> Any:
        """The harness's side of the contest, for two sorts of kind. A served kind
        (``Kind.served``): a callable answering each request the contestant's view sends while it
        runs, in numbers (the decentralized track's byte-counting network). A driven kind
        (``Kind.drive``): the process that calls the contestant step by step (the pooling track's
        simulation, which holds the evaluation days). Default: None (the contestant gets its views
        and answers once per view)."""
        return None

    def runner(self, fixture: Any, cell: Cell) -> Any:
        """For an external kind (``Kind.external``): the callable that runs the contestant in
        processes the track starts instead of the contestant worker, ``(method, views, device=,
        protected=) -> (numbers per view, reports per view, seconds per view)``, raising
        ``CellFailure``; the contest checks what it returns as for any kind. Default: None."""
        return None

    def accept(self, cell: Cell, method: Method) -> Method:
        """The method this cell runs: ``method`` (the cell's method, by name) with the cell's
        parameters, after the kind check (``accepts``); ``CellFailure`` when it cannot run."""
        from ..contest import kind_for

        if cell.track != self.name:
            raise CellFailure(f"a cell of track {cell.track!r} was handed to track {self.name!r}")
        if method.name != cell.method:
            raise CellFailure(f"cell {cell.key} runs method {cell.method!r}, not {method.name!r}")
        reason = self.accepts(method)
        if reason:
            raise CellFailure(reason)
        kind = kind_for(self.contest_kind(self.profile(cell.profile)), method)
        if kind is not None and not isinstance(method, kind.method_class):
            raise CellFailure(f"plugin {method.name!r} declares kind {method.kind!r} but is not a {kind.method_class.__name__}")
        if dict(method.params) != dict(cell.params):
            try:
                method = method.with_params(**dict(cell.params))
            except ValueError as exc:
                raise CellFailure(str(exc)) from None
        return method

    def protected(self, profile: Profile, cell: Cell, ctx: CellContext) -> tuple[str, ...]:
        """What the contestant worker refuses to open for this cell: the dataset's files and this
        track's ``private_cache`` directories (and the directories above them); for a track with
        ``hidden_data``, also the results stores (``store_paths``), which hold the salt of its
        hidden data."""
        import os

        from ..contestant import protected_paths

        paths = set(protected_paths(str(cell.axes.get("dataset", "")), ctx.data_dir, ctx.cache_dir))
        paths.update(os.path.realpath(Path(ctx.cache_dir) / d) for d in self.private_cache)
        if self.hidden_data:
            paths.update(store_paths(ctx))
        return tuple(sorted(paths))

    def worker_imports(self, profile: Profile) -> tuple[str, ...]:
        """Modules the contestant worker imports before its guard: harness code this profile's
        views need there whose import starts a process or loads native code (which the guard
        refuses once it is on; e.g. ``transformers`` for the instruction track's Hugging Face
        models). Default: none."""
        return ()

    def fixture(self, profile: Profile, cell: Cell, ctx: CellContext) -> Any:
        """The cell's fixed world: splits, fixed models, banks (seeded, cached). Tracks on the
        pipeline override ``fixture``, ``view`` and ``evaluate``."""
        raise TypeError(f"track {self.name!r} is incomplete: define fixture, view and evaluate (the pipeline) or override run_cell")

    def view(self, fixture: Any, cell: Cell, method: Method) -> Any:
        """The view(s) the contestant receives (a list: the protocol function runs once per view)."""
        raise TypeError(f"track {self.name!r} is incomplete: it defines fixture but no view")

    def evaluate(self, fixture: Any, cell: Cell, contest: Any) -> CellResult:
        """The cell's metrics, timings, artifacts and info from the contest's checked outputs
        (``coreset_bench.contest.ContestResult``)."""
        raise TypeError(f"track {self.name!r} is incomplete: it defines fixture and view but no evaluate")

    def record(self, profile: Profile, cell: Cell, method: Method, result: CellResult, contest: Any) -> CellResult:
        """The last step: every metric a finite number (NaN allowed only in per-class ``class_*``
        metrics, for a class with no test point), the primary metric present and named in
        ``info``, the contest's time in ``timings["contest_s"]``."""
        import math

        if not isinstance(result, CellResult):
            raise CellFailure(f"track {self.name!r} evaluated plugin {method.name!r} to a {type(result).__name__}, not a CellResult")
        bad = [k for k, v in result.metrics.items() if not isinstance(v, (int, float)) or not (math.isfinite(v) or (math.isnan(v) and k.startswith("class_")))]
        if bad:
            raise CellFailure(f"plugin {method.name!r}: the cell's metrics are not finite numbers ({', '.join(f'{k}={result.metrics[k]!r}' for k in bad[:5])})")
        primary = self.primary_for(profile)
        if primary not in result.metrics:
            raise CellFailure(f"track {self.name!r} gave no {primary!r} (its primary metric) for plugin {method.name!r}")
        result.info.setdefault("primary_metric", primary)
        result.timings.setdefault("contest_s", float(contest.seconds))
        return result

    @staticmethod
    def uses_pipeline(track: "Track") -> bool:
        """Whether ``track`` runs its cells through the base class's pipeline (not its own ``run_cell``)."""
        return type(track).run_cell is Track.run_cell

    def claims(self) -> list[Any]:
        """The claims of this track's seed papers (``coreset_bench.claims.Claim``), judged on the
        board's cards by ``coreset_bench.claims.verdict``. Default: none. A third-party track may
        declare claims here too; a method package declares claims about its own method through the
        ``register_claims`` hook."""
        return []

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "contestants": self.contestant_kind,
            "modality": self.modality,
            "role": self.role,
            "fixtures": list(self.fixtures),
            "primary_metric": self.primary_metric,
            "profiles": [p.id for p in self.profiles()],
        }


#: the files SQLite keeps beside a database (its write-ahead log, shared memory and rollback journal)
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def store_paths(ctx: CellContext) -> set[str]:
    """The results-store files a contestant of a track with hidden data must not open (they hold
    the hidden-data salt, from which it could rebuild the hidden data): the store in use
    (``ctx.store_path``, wherever ``--db`` put it) and every ``.db``/``.sqlite`` file in
    ``ctx.results_dir`` (another database there may hold the same salt, e.g. a copy), each with
    its SQLite side files, as resolved paths."""
    import os

    files: list[Path] = []
    if ctx.store_path is not None:
        files.append(Path(ctx.store_path))
    rd = Path(ctx.results_dir)
    if rd.is_dir():
        files += [f for f in rd.iterdir() if f.is_file() and (".db" in f.name or ".sqlite" in f.name)]
    out: set[str] = set()
    for f in files:
        stem = os.path.realpath(f)
        for x in SQLITE_SIDE_FILES:
            stem = stem.removesuffix(x)
        out.update({stem, *(stem + x for x in SQLITE_SIDE_FILES)})
    return out
