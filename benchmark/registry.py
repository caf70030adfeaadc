"""Typed facade over pluggy: loading, isolation and the registries the core reads.

Core code never calls hooks by string; it asks this module::

    from coreset_bench import plugins
    plugins.load_plugins()
    plugins.method("easycore")        # -> Method
    plugins.methods(kind="selection")
    plugins.track("coreset"), plugins.dataset("digits"), plugins.architecture("cnn-small")

Loading is idempotent. Each entry point of the ``coreset_bench`` group is imported and
registered inside its own try/except: a plugin that fails is listed with its error (``coreset-bench
plugins``) and the rest keep working. ``CORESET_BENCH_STRICT_PLUGINS=1`` makes such failures fatal.
``CORESET_BENCH_LOAD_PLUGINS`` (comma-separated entry-point names) is an allow-list,
``CORESET_BENCH_DISABLE_PLUGINS`` a block-list.

Built-in names are reserved: the entry points of the suite's own distribution (``coreset-bench``)
load before any third party's, whatever their names, and a name the suite registers (a method,
dataset, architecture or track) can never be taken by another package: the other package's
plugin fails to load, reported with both package names, and the built-in stays.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import os
import re
import threading
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .kinds import KINDS, Method, SelectionMethod, unknown_signals_error

ENTRY_POINT_GROUP = "coreset_bench"
#: the suite's own distribution; names it registers are reserved
BUILTIN_PACKAGE = "coreset-bench"


def is_builtin_package(package: str) -> bool:
    """Whether ``package`` (a distribution name, any spelling) is the suite itself."""
    return re.sub(r"[-_.]+", "-", package or "").lower() == BUILTIN_PACKAGE


class PluginError(Exception):
    """A plugin could not be loaded or registered (fatal only in strict mode)."""


class UnknownNameError(LookupError):
    """A name that no plugin registered; the message lists the closest known names."""


@dataclass
class PluginRecord:
    """One loaded (or failed) plugin module."""

    name: str
    module: str
    package: str
    package_version: str
    error: str | None = None
    objects: list[tuple[str, str]] = field(default_factory=list)  # (registry, name)


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _closest(name: str, known: Iterable[str]) -> str:
    known = sorted(set(known))  # each name once (a profile name has several versions)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{hint}known: {', '.join(known) if known else '(none)'}"


class Registry:
    """Name -> object registry of one sort (methods, datasets, ...), remembering who added what."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.items: dict[str, Any] = {}
        self.owner: dict[str, str] = {}

    def add(self, name: str, obj: Any, package: str) -> None:
        if not name:
            raise PluginError(f"{self.what} registered by {package} has no name")
        if name in self.items:
            first, builtin = self.owner[name], is_builtin_package(self.owner[name])
            if builtin or is_builtin_package(package):
                other = package if builtin else first
                raise PluginError(
                    f"{self.what} name {name!r} is reserved for the built-in of package {BUILTIN_PACKAGE!r}; "
                    f"package {other!r} cannot register it; rename its {self.what} "
                    f"(or disable that plugin with CORESET_BENCH_DISABLE_PLUGINS)"
                )
            raise PluginError(
                f"two {self.what}s named {name!r}: one from package {self.owner[name]!r}, "
                f"one from package {package!r}; uninstall or disable one of them "
                f"(CORESET_BENCH_DISABLE_PLUGINS)"
            )
        self.items[name] = obj
        self.owner[name] = package

    def get(self, name: str) -> Any:
        try:
            return self.items[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.what} {name!r}; {_closest(name, self.items)}") from None

    def remove_package_module(self, names: Iterable[str]) -> None:
        for n in names:
            self.items.pop(n, None)
            self.owner.pop(n, None)


class PluginManager:
    """The facade. One module-level instance (``_manager``) backs the functions below."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        self.methods = Registry("method")
        self.datasets = Registry("dataset")
        self.architectures = Registry("architecture")
        self.tracks = Registry("track")
        self.claims = Registry("claim")
        self.loaded = False
        self._lock = threading.RLock()

    # -- loading ----------------------------------------------------------------------------
    def load(self, entry_points: Iterable[md.EntryPoint] | None = None) -> None:
        with self._lock:
            if self.loaded:
                return
            self.loaded = True
            strict = os.environ.get("CORESET_BENCH_STRICT_PLUGINS", "") not in {"", "0", "false"}
            allow = _env_list("CORESET_BENCH_LOAD_PLUGINS")
            block = _env_list("CORESET_BENCH_DISABLE_PLUGINS") or set()
            eps = list(entry_points) if entry_points is not None else list(md.entry_points(group=ENTRY_POINT_GROUP))
            # the suite's own entry points first (``core`` first of all), so a third party can
            # never take a built-in name, whatever its entry point is called
            eps.sort(key=lambda e: (0 if _ep_package(e)[0] else 1, 0 if e.name == "core" else 1, e.name))
            for ep in eps:
                if allow is not None and ep.name not in allow:
                    continue
                if ep.name in block:
                    continue
                _builtin, package, pversion = _ep_package(ep)
                rec = PluginRecord(ep.name, ep.value, package, pversion)
                try:
                    module = ep.load()
                    self._register_module(module, rec)
                except Exception as exc:  # isolation: one broken plugin is reported, not fatal
                    rec.error = f"{type(exc).__name__}: {exc}"
                    rec.traceback = traceback.format_exc()  # type: ignore[attr-defined]
                    self.records.append(rec)
                    if strict:
                        self.loaded = False  # nothing half-loaded survives a strict failure
                        raise PluginError(f"plugin {ep.name!r} ({package}) failed to load: {rec.error}") from exc
                    continue
                self.records.append(rec)
            problems = self.check_pending()
            if problems:
                if strict:
                    raise PluginError("; ".join(problems))
                self.records.append(PluginRecord("check_pending", "-", "-", "-", error="; ".join(problems)))

    def check_pending(self) -> list[str]:
        """Problems no single registration catches, one line each: hook implementations that
        match no hook (pluggy's ``check_pending``, e.g. a misspelt hook) and methods whose
        declarations no track can use (a distillation method without a valid ``role``, a
        selection method without ``modalities``). Each message says the fix."""
        problems: list[str] = []
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            problems.append(str(exc).splitlines()[0] if str(exc) else repr(exc))
        for m in sorted(self.methods.items.values(), key=lambda m: m.name):
            problems.extend(_declaration_problems(m))
        return problems

    def register(self, module: Any, name: str | None = None, package: str = "(in-process)") -> PluginRecord:
        """Register a plugin module or object at run time (tests and notebooks use this).

        Errors propagate; remove it again with ``unregister(name)``.
        """
        with self._lock:
            self.load()
            rec = PluginRecord(name or getattr(module, "__name__", repr(module)), getattr(module, "__name__", "?"), package, "")
            self._register_module(module, rec)
            self.records.append(rec)
            return rec

    def unregister(self, name: str) -> None:
        with self._lock:
            for rec in [r for r in self.records if r.name == name]:
                for reg_name, obj_name in rec.objects:
                    getattr(self, reg_name).remove_package_module([obj_name])
                plugin = self.pm.get_plugin(name)
                if plugin is not None:
                    self.pm.unregister(plugin)
                self.records.remove(rec)

    def _register_module(self, module: Any, rec: PluginRecord) -> None:
        # pluggy validates the hookimpl signatures; a misspelt hook is reported by check_pending
        self.pm.register(module, name=rec.name)
        added: list[tuple[str, str]] = []
        try:
            for hook_name, reg_name in (
                ("register_datasets", "datasets"),
                ("register_architectures", "architectures"),
                ("register_methods", "methods"),
                ("register_tracks", "tracks"),
                ("register_claims", "claims"),
            ):
                registry: Registry = getattr(self, reg_name)
                collected: list[Any] = []
                # this module's implementations only (pluggy resolves specname= and arguments)
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin is module:
                        impl.function(**{a: collected.append for a in impl.argnames})
                for obj in collected:
                    if reg_name == "methods":
                        _check_method(obj, rec)
                        obj.package = rec.package
                    if reg_name == "claims":
                        _check_claim(obj, rec, self.methods)
                        registry.add(obj.id, obj, rec.package)
                        added.append((reg_name, obj.id))
                        continue
                    registry.add(obj.name, obj, rec.package)
                    added.append((reg_name, obj.name))
        except Exception:
            for reg_name, obj_name in added:
                getattr(self, reg_name).remove_package_module([obj_name])
            self.pm.unregister(name=rec.name)
            raise
        rec.objects = added

    # -- commands ---------------------------------------------------------------------------
    def add_commands(self, app: Any) -> None:
        self.load()
        for rec in self.records:
            if rec.error:
                continue
            plugin = self.pm.get_plugin(rec.name)
            fn = getattr(plugin, "register_commands", None)
            if fn is None:
                continue
            try:
                fn(app)
            except Exception as exc:
                rec.error = f"register_commands: {type(exc).__name__}: {exc}"


def _ep_package(ep: md.EntryPoint) -> tuple[bool, str, str]:
    """(is the suite's own, distribution name, distribution version) of an entry point."""
    dist = getattr(ep, "dist", None)
    package = dist.name if dist is not None else "?"
    pversion = dist.version if dist is not None else "?"
    return is_builtin_package(package), package, pversion


def _check_method(obj: Any, rec: PluginRecord) -> None:
    if not isinstance(obj, Method):
        raise PluginError(f"{rec.name}: register_methods got {obj!r}, not a coreset_bench.kinds.Method instance")
    if obj.kind not in KINDS:
        raise PluginError(f"{rec.name}: method {obj.name!r} has unknown kind {obj.kind!r}; kinds: {', '.join(KINDS)}")
    if not obj.name:
        raise PluginError(f"{rec.name}: a method of kind {obj.kind!r} has no name")
    problem = _param_spec_problem(obj)
    if problem:
        raise PluginError(f"{rec.name}: {problem}")
    if isinstance(obj, SelectionMethod):
        # reported when the plugin loads (`coreset-bench plugins`), not only when its cells run
        problem = unknown_signals_error(obj.name, obj.signals)
        if problem:
            raise PluginError(f"{rec.name}: {problem}")


def _check_claim(obj: Any, rec: PluginRecord, methods: Registry) -> None:
    """A registered claim is a ``Claim`` about a method the same package registers."""
    from .claims import Claim

    if not isinstance(obj, Claim):
        raise PluginError(f"{rec.name}: register_claims got {obj!r}, not a coreset_bench.claims.Claim instance")
    seed = obj.seed.method
    if seed not in methods.items:
        raise PluginError(f"{rec.name}: claim {obj.id!r} is about method {seed!r}, which no plugin registers; register the method first (register_methods)")
    owner = methods.owner.get(seed, "")
    if owner != rec.package:
        raise PluginError(
            f"{rec.name}: claim {obj.id!r} is about method {seed!r} of package {owner!r}; a package declares claims about its own methods only"
        )


def _param_spec_problem(m: Method) -> str | None:
    """What is wrong with ``m.param_specs`` (a name without a default, a default it rejects)."""
    try:
        specs = m.param_spec_map()
    except (TypeError, ValueError) as exc:
        return f"method {m.name!r} has a malformed param_specs entry ({exc})"
    unknown = sorted(set(specs) - set(m.params))
    if unknown:
        return f"method {m.name!r} declares param_specs for {', '.join(unknown)}, which it has no default for in params"
    for k, spec in specs.items():
        problem = spec.problem(m.params[k])
        if problem:
            return f"method {m.name!r}: the default of parameter {k!r} breaks its own declaration ({problem})"
    return None


def _declaration_problems(m: Method) -> list[str]:
    from .kinds import ROLES

    out = []
    pkg = (m.package or "in-process").strip("()")
    roles = ROLES.get(m.kind)
    role = getattr(m, "role", "")
    if roles and role not in roles:
        options = " or ".join(repr(r) for r in roles)
        what = f"declares role {role!r}, which no track ranks" if role else "declares no role"
        out.append(f"{m.kind} method {m.name!r} ({pkg}) {what}; set role = {options}")
    if m.kind == "selection" and not getattr(m, "modalities", None):
        out.append(f"selection method {m.name!r} ({pkg}) declares no modalities; set modalities = frozenset({{'image'}}) or frozenset({{'text'}})")
    return out


_manager = PluginManager()


def manager() -> PluginManager:
    return _manager


def reset() -> None:
    """Forget everything loaded (tests use this together with monkeypatched environment)."""
    global _manager
    _manager = PluginManager()


def load_plugins() -> PluginManager:
    _manager.load()
    return _manager


def register(module: Any, name: str | None = None, package: str = "(in-process)") -> PluginRecord:
    return _manager.register(module, name=name, package=package)


def unregister(name: str) -> None:
    _manager.unregister(name)


def records() -> list[PluginRecord]:
    load_plugins()
    return list(_manager.records)


def check_pending() -> list[str]:
    """``PluginManager.check_pending`` of the loaded plugins (one line per problem, with the fix)."""
    load_plugins()
    return _manager.check_pending()


def method(name: str) -> Method:
    load_plugins()
    return _manager.methods.get(name)


def methods(kind: str | None = None) -> list[Method]:
    load_plugins()
    out = [m for m in _manager.methods.items.values() if kind is None or m.kind == kind]
    return sorted(out, key=lambda m: m.name)


def dataset(name: str) -> Any:
    load_plugins()
    return _manager.datasets.get(name)


def datasets() -> dict[str, Any]:
    load_plugins()
    return dict(_manager.datasets.items)


def architecture(name: str) -> Any:
    load_plugins()
    return _manager.architectures.get(name)


def architectures() -> dict[str, Any]:
    load_plugins()
    return dict(_manager.architectures.items)


def track(name: str) -> Any:
    load_plugins()
    return _manager.tracks.get(name)


def tracks() -> dict[str, Any]:
    load_plugins()
    return dict(_manager.tracks.items)


def claims_and_problems(tracks: Any = None) -> tuple[list[Any], list[str]]:
    """Every claim: the tracks' (``Track.claims()``, by track name; ``tracks``: a name -> track
    mapping, default the installed ones), then those that packages register
    (``register_claims``) about those tracks, with a line per track whose ``claims()`` failed or
    per duplicate id (the first one stays)."""
    load_plugins()
    from .claims import Claim

    out: list[Any] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    track_map = dict(_manager.tracks.items) if tracks is None else dict(tracks)
    for name, t in sorted(track_map.items()):
        fn = getattr(t, "claims", None)
        if fn is None:
            continue
        try:
            declared = list(fn() or ())
        except Exception as exc:  # a broken third-party track must not hide the other claims
            problems.append(f"track {name!r}: claims() failed: {type(exc).__name__}: {exc}")
            continue
        for c in declared:
            if not isinstance(c, Claim):
                problems.append(f"track {name!r}: claims() returned {c!r}, not a coreset_bench.claims.Claim")
                continue
            if c.id in seen:
                problems.append(f"claim id {c.id!r} is declared twice ({seen[c.id]} and track {name!r}); the first is kept")
                continue
            seen[c.id] = f"track {name!r}"
            out.append(c)
    for cid, c in sorted(_manager.claims.items.items()):
        if c.track not in track_map:
            if tracks is None:
                problems.append(f"claim {cid!r} of package {_manager.claims.owner[cid]!r} is about track {c.track!r}, which is not installed")
            continue
        if cid in seen:
            problems.append(f"claim id {cid!r} of package {_manager.claims.owner[cid]!r} is already declared by {seen[cid]}; rename it")
            continue
        seen[cid] = f"package {_manager.claims.owner[cid]!r}"
        out.append(c)
    return out, problems


def claims() -> list[Any]:
    """Every claim (``claims_and_problems`` without the problems)."""
    return claims_and_problems()[0]


def claim_package(claim_id: str) -> str:
    """The package that registered ``claim_id`` through ``register_claims``, "" for a track's."""
    return _manager.claims.owner.get(claim_id, "")


def tracks_for(m: Method) -> list[str]:
    """Names of the tracks in which ``m`` is a contestant: those whose ``accepts(m)`` is None."""
    out = []
    for t in tracks().values():
        if _refusal(t, m) is None:
            out.append(t.name)
    return sorted(out)


def _refusal(t: Any, m: Method) -> str | None:
    """``t.accepts(m)``; a track object without ``accepts`` (not a ``Track`` subclass) falls back to
    the kind and ``tracks`` rules, and a track whose ``accepts`` raises refuses with the error."""
    accepts = getattr(t, "accepts", None)
    if accepts is None:
        if t.contestant_kind != m.kind:
            return f"track {t.name!r} ranks {t.contestant_kind} methods"
        if m.tracks and t.name not in m.tracks:
            return f"{m.name!r} takes part only in track(s) {', '.join(m.tracks)}"
        return None
    try:
        reason = accepts(m)
    except Exception as exc:  # a broken third-party track must not break `plugins` or `run`
        return f"track {t.name!r} failed to decide whether it ranks {m.name!r}: {type(exc).__name__}: {exc}"
    return str(reason).splitlines()[0] if reason else None


def refusal(track_name: str, m: Method) -> str | None:
    """Why track ``track_name`` cannot rank ``m`` (one line), or None when it can."""
    return _refusal(track(track_name), m)


def add_commands(app: Any) -> None:
    _manager.add_commands(app)
