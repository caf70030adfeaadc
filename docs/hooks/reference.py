"""Reference pages generated from the code at build time (an MkDocs hook; no network).

``mkdocs.yml`` lists this file under ``hooks:``; ``on_files`` adds these pages to the build,
nothing is written into ``docs/``:

* ``reference/methods.md``: every method in the plugin registry (``coreset_bench.registry``):
  name, kind, version, package, summary, parameters with defaults, the kind's own attributes
  (signals, exact_budget, role, ...), tracks and citation;
* ``reference/signals.md``: every signal of ``kinds.SIGNALS`` with shape, dtype, group and when
  the proxy run records it;
* ``reference/views.md``: every dataclass of ``coreset_bench.kinds`` (views, ``Selection``,
  ``TrainContext``, ``ThreatModel``) with each field's type and default, and the views' properties
  and methods;
* ``reference/tracks.md``: every track and profile (axes, seeds, settings, device, time-out);
* ``reference/cli.md``: every ``coreset-bench`` command and option, walked with click from
  ``typer.main.get_command``.

The same functions are used by ``tests/test_docs.py``, which checks that every built-in method,
signal, view field and command appears.
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import json
import os
import re
from typing import Any

PAGES = ("methods", "signals", "views", "tracks", "cli", "schema")

_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|])")


def text(value: Any) -> str:
    """Plugin- or code-supplied text, safe inside markdown (no markup, no HTML, one line)."""
    s = html.escape(" ".join(str(value).split()), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", s)


def code(value: Any) -> str:
    """``value`` as an inline code span (backticks inside are handled)."""
    s = " ".join(str(value).split()).replace("|", "\\|")
    fence = "``" if "`" in s else "`"
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def rst_to_md(doc: str) -> str:
    """Docstring text (reST double-backtick literals) as markdown, HTML escaped."""
    doc = html.escape(inspect.cleandoc(doc or ""), quote=False)
    return re.sub(r"``(.+?)``", r"`\1`", doc)


def doc_line(doc: str) -> str:
    """The first paragraph of a docstring on one line, for a table cell."""
    first = inspect.cleandoc(doc or "").split("\n\n")[0]
    return " ".join(rst_to_md(first).split()).replace("|", "\\|")


def _load() -> Any:
    os.environ.setdefault("CORESET_BENCH_THREADS", "1")
    from coreset_bench import registry

    registry.load_plugins()
    return registry


# ---- methods ------------------------------------------------------------------------------------


def kind_attributes(method: Any) -> dict[str, Any]:
    """The public data attributes a method's kind base adds to ``Method`` (``signals``,
    ``exact_budget``, ``weighted`` for selection, ``role`` for privacy, ...), with this method's values."""
    from coreset_bench.kinds import BASES, Method

    base = BASES.get(method.kind)
    out: dict[str, Any] = {}
    if base is None:
        return out
    for klass in base.__mro__:
        if klass is Method or not issubclass(klass, Method):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in vars(Method) or name == "kind" or callable(value) or isinstance(value, (property, classmethod, staticmethod)):
                continue
            out.setdefault(name, getattr(method, name))
    return dict(sorted(out.items()))


def _value(v: Any) -> str:
    if isinstance(v, (frozenset, set)):
        return code(", ".join(sorted(map(str, v))) or "(none)")
    if isinstance(v, (list, tuple)):
        return code(", ".join(map(str, v)) or "(none)")
    return code(json.dumps(v) if isinstance(v, (bool, int, float, type(None))) else v)


def methods_page() -> str:
    from coreset_bench.kinds import KINDS

    registry = _load()
    lines = [
        "# Methods",
        "",
        "Generated at build time from the plugin registry (`coreset_bench.registry`) of the installed",
        "packages. Parameters are the defaults; `--param KEY=VALUE` overrides one, and the values are",
        "part of every cell key, as is the version (see [parameters and versions](../guide/parameters.md)).",
        "",
    ]
    failed = [r for r in registry.records() if r.error]
    if failed:
        lines += ["!!! warning \"Plugins that failed to load when this page was built\"", ""]
        lines += [f"    - {code(r.name)} ({text(r.package)}): {text(r.error)}" for r in failed]
        lines.append("")
    for kind in KINDS:
        ms = registry.methods(kind=kind)
        if not ms:
            continue
        lines += [f"## {kind}", "", "| method | version | summary |", "|---|---|---|"]
        lines += [f"| [{code(m.name)}](#{anchor(m.name)}) | {code(m.version)} | {text(m.summary)} |" for m in ms]
        lines.append("")
        for m in ms:
            lines += [f"### {text(m.name)} {{#{anchor(m.name)}}}", "", text(m.summary) or "(no summary)", ""]
            lines.append(f"- kind: {code(m.kind)}; version: {code(m.version)}; package: {code(m.package or '(in-process)')}")
            tracks = registry.tracks_for(m)
            lines.append(f"- tracks: {', '.join(f'[{code(t)}](tracks.md#{anchor(t)})' for t in tracks) if tracks else '(none: a fixture of other tracks)'}")
            if m.params:
                lines.append("- parameters (defaults): " + ", ".join(f"{code(k)} = {_value(v)}" for k, v in sorted(m.params.items())))
            else:
                lines.append("- parameters: (none)")
            for k, v in kind_attributes(m).items():
                lines.append(f"- {code(k)}: {_value(v)}")
            lines.append(f"- citation: {text(m.citation) if m.citation else '(none)'}")
            lines.append("")
    return "\n".join(lines)


def anchor(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-") or "x"


# ---- signals ------------------------------------------------------------------------------------

_WHEN = {
    "dynamics": "after every proxy epoch (a separate eval-mode pass without augmentation); `train_correct` during the epoch's training batches; `proxy_model` at the end",
    "input_grad": "after every proxy epoch, in the same eval-mode pass; computed only when a method asks for it",
    "checkpoints": "at the profile's checkpoint epochs, from the same eval-mode pass as the dynamics (no extra pass); computed only when a method asks for one of this group",
}


def signals_page() -> str:
    from coreset_bench.kinds import SIGNALS, signal_shape
    from coreset_bench.signals import GROUPS

    lines = [
        "# Signals",
        "",
        "Generated from `coreset_bench.kinds.SIGNALS` and `coreset_bench.signals.GROUPS`. A selection",
        "method lists the names it reads in `signals`; the harness computes those groups once per",
        "proxy run (one standard-training run on the full pool, cached on disk and shared by every",
        "method) and hands the method only the declared names (`view.signals[name]`, read-only numpy",
        "arrays). A name not in this table is a load error (`coreset-bench plugins`).",
        "",
        "Shapes: E = proxy epochs, K = checkpoint epochs, N = pool size, Nv = validation size,",
        "C = classes, D = embedding width. Epoch axis 0 is the first epoch; `[-1]` the last.",
        "",
        "| signal | shape, dtype | group | what it holds |",
        "|---|---|---|---|",
    ]
    for name, desc in SIGNALS.items():
        what = desc.split(":", 1)[1].strip() if ":" in desc else desc
        lines.append(f"| {code(name)} | {code(signal_shape(name))} | {code(GROUPS[name])} | {text(what)} |")
    lines += ["", "When each group is recorded:", ""]
    for g in sorted(set(GROUPS.values())):
        lines.append(f"- {code(g)} ({', '.join(code(n) for n, gg in GROUPS.items() if gg == g)}): {_WHEN.get(g, '')}")
    lines.append("")
    return "\n".join(lines)


# ---- views and other dataclasses ------------------------------------------------------------------


def kind_dataclasses() -> list[type]:
    """Every dataclass defined in ``coreset_bench.kinds``, in source order."""
    from coreset_bench import kinds

    out = [obj for _n, obj in vars(kinds).items() if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and obj.__module__ == kinds.__name__]
    return sorted(out, key=lambda c: inspect.getsourcelines(c)[1])


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return code(repr(f.default))
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return code(f"{f.default_factory.__name__}()")  # type: ignore[misc]
    return "required"


def views_page() -> str:
    lines = [
        "# Views and data classes",
        "",
        "Generated from the dataclasses of `coreset_bench.kinds`. A view is what a method's",
        "function receives; views are frozen, their numpy arrays read-only and their tensors the",
        "view's own copies. The [guide](../guide/contracts.md) explains each kind's contract.",
        "",
    ]
    for cls in kind_dataclasses():
        lines += [f"## {cls.__name__} {{#{anchor(cls.__name__)}}}", "", rst_to_md(cls.__doc__ or ""), "", "| field | type | default |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            lines.append(f"| {code(f.name)} | {code(f.type if isinstance(f.type, str) else getattr(f.type, '__name__', f.type))} | {_default(f)} |")
        extras = []
        for name, member in vars(cls).items():
            if name.startswith("_"):
                continue
            if isinstance(member, property):
                extras.append((name, "property", member.fget.__doc__ or ""))
            elif inspect.isfunction(member):
                sig = f"{name}{inspect.signature(member)}".replace("(self)", "()").replace("(self, ", "(")
                extras.append((sig.replace("'", ""), "method", member.__doc__ or ""))
        if extras:
            lines += ["", "| member | | |", "|---|---|---|"]
            lines += [f"| {code(n)} | {k} | {doc_line(d)} |" for n, k, d in extras]
        lines.append("")
    return "\n".join(lines)


# ---- tracks -------------------------------------------------------------------------------------


def tracks_page() -> str:
    registry = _load()
    lines = [
        "# Tracks and profiles",
        "",
        "Generated from the installed tracks (`coreset-bench tracks`, `coreset-bench profiles`). A",
        "profile id is `track/name@version`; results of different versions are never ranked together.",
        "",
    ]
    for t in registry.tracks().values():
        d = t.describe()
        lines += [f"## {text(t.name)} {{#{anchor(t.name)}}}", "", text(t.summary), ""]
        lines.append(f"- contestants: {code(t.contestant_kind)} methods; fixtures: {', '.join(code(f) for f in d.get('fixtures', [])) or '(none)'}")
        lines.append(f"- primary metric: {code(t.primary_metric)}; also shown: {', '.join(code(m) for m in t.secondary_metrics) or '(none)'}")
        lines.append(f"- reference methods run with every contestant: {', '.join(code(m) for m in t.reference_methods) or '(none)'}")
        from coreset_bench.leaderboard.board import metric_ranges

        ranges = metric_ranges(t)
        shown = [m for m in (t.primary_metric, *t.secondary_metrics) if m in ranges]
        if shown:
            lines.append(
                "- declared ranges (board intervals are clipped to them; yes/no metrics get a Clopper-Pearson interval over cells): "
                + ", ".join(f"{code(m)} " + ("yes/no per cell" if ranges[m].proportion else text(ranges[m].text())) for m in shown)
            )
        lines.append("")
        for p in t.profiles():
            lines += [f"### {text(p.id)} {{#{anchor(p.id)}}}", "", text(p.description), ""]
            lines.append(f"- device: {code(p.device)}; cells per method: {p.n_cells()}; seeds (repeats): {code(', '.join(map(str, p.seeds)))}; time-out per cell: {code(p.timeout_s) if p.timeout_s else 'none'}")
            lines.append("- axes: " + "; ".join(f"{code(k)} = {code(', '.join(map(str, v)))}" for k, v in p.axes.items()))
            if p.settings:
                lines.append("- settings: " + ", ".join(f"{code(k)} = {code(json.dumps(v, default=str))}" for k, v in p.settings.items()))
            lines.append("")
    return "\n".join(lines)


# ---- command line -------------------------------------------------------------------------------


def cli_command() -> Any:
    """The click command of ``coreset-bench``, with the leaderboard and plugin commands added."""
    import typer

    from coreset_bench import cli

    _load()
    cli._add_plugin_commands()
    return typer.main.get_command(cli.app)


def walk_commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) of every command below ``cmd``, groups included, in name order.

    Duck-typed: typer builds its commands with its own copy of click (``typer._click``)."""
    out = []
    if isinstance(getattr(cmd, "commands", None), dict):
        for name in sorted(cmd.commands):
            sub = cmd.commands[name]
            out.append((path + (name,), sub))
            out += walk_commands(sub, path + (name,))
    return out


def _param_row(p: Any, cmd: Any, name: str) -> str:
    """One table row: click's own help record (``-j, --jobs <int range>``, help with ``[default: ...]``)."""
    ctx = cmd.context_class(cmd, info_name=name)
    record = p.get_help_record(ctx)
    opts, help_text = record if record else (p.name, "")
    if getattr(p, "param_type_name", "") == "argument":
        opts = f"{opts} (argument)"
    return f"| {code(opts)} | {text(help_text)} |"


def cli_page() -> str:
    root = cli_command()
    lines = [
        "# Command line",
        "",
        "Generated from the typer application (`coreset_bench.cli.app`, with the `leaderboard`, `entries`,",
        "`export` and `keys` commands and any plugin's `register_commands`). Every command takes",
        "`--help`.",
        "",
        f"`coreset-bench [--version] COMMAND`: {text(root.help or '')}",
        "",
    ]
    for path, cmd in walk_commands(root):
        name = " ".join(path)
        lines += [f"## {name} {{#{anchor(name)}}}", "", f"`coreset-bench {name}`: " + doc_line(cmd.help or ""), ""]
        params = [p for p in cmd.params if p.name != "help"]
        if hasattr(cmd, "commands"):
            lines.append("Subcommands: " + ", ".join(f"[{code(name + ' ' + s)}](#{anchor(name + ' ' + s)})" for s in sorted(cmd.commands)))
            lines.append("")
        if params:
            lines += ["| option | help |", "|---|---|"]
            lines += [_param_row(p, cmd, path[-1]) for p in params]
            lines.append("")
    return "\n".join(lines)


# ---- store schema -------------------------------------------------------------------------------


def schema_page() -> str:
    """Tables and columns of the store, from the SQLModel tables and the migration list."""
    from coreset_bench import store

    tables = {"run": store.Run, "metric": store.Metric, "artifact": store.Artifact}
    lines = [
        "# Store schema",
        "",
        "Generated from the SQLModel tables of `coreset_bench.store` and its migrations. JSON columns",
        "are text holding JSON.",
        "",
    ]
    for name, model in tables.items():
        lines += [f"## {name}", "", rst_to_md(model.__doc__ or "") if model.__doc__ and "SQLModel" not in model.__doc__ else "", "", "| column | type | nullable | key / index |", "|---|---|---|---|"]
        for col in model.__table__.columns:
            flags = []
            if col.primary_key:
                flags.append("primary key")
            if col.foreign_keys:
                flags.append("references " + ", ".join(fk.target_fullname for fk in col.foreign_keys))
            if col.unique:
                flags.append("unique")
            if col.index:
                flags.append("index")
            lines.append(f"| {code(col.name)} | {code(str(col.type))} | {'yes' if col.nullable else 'no'} | {', '.join(flags)} |")
        lines.append("")
    lines += ["## Migrations", "", "Applied in order and recorded in `_migrations` (name, applied_at):", ""]
    for mname, fn in store.MIGRATIONS:
        lines.append(f"- {code(mname)}: {doc_line(fn.__doc__ or '')}")
    lines.append("")
    return "\n".join(lines)


GENERATORS = {"schema": schema_page, "methods": methods_page, "signals": signals_page, "views": views_page, "tracks": tracks_page, "cli": cli_page}


def generate() -> dict[str, str]:
    """``reference/<page>.md`` -> markdown, for every generated page."""
    return {f"reference/{name}.md": GENERATORS[name]() for name in PAGES}


# ---- mkdocs hook ----------------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for src_uri, content in generate().items():
        files.append(File.generated(config, src_uri, content=content))
    return files
