"""The hidden-data salt (coreset_bench.salt): hidden generated data cannot be rebuilt from public
seeds inside a contestant, a run with the same salt reproduces bit for bit, the salt is stored
once per results database, recorded with every run and exported, and the board pairs only cells
of the same salt (issue 33 item 5, issue 37 item 3)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coreset_bench import hookimpl
from coreset_bench.kinds import ProvisioningMethod
from coreset_bench.salt import SaltError, hidden_seed, parse_salt, salt_id
from coreset_bench.store import Store

from cli_helpers import invoke, one_line_error

SALT_A = "0123456789abcdef0123456789abcdef"
SALT_B = "fedcba9876543210fedcba9876543210"


# ---- the seed formula --------------------------------------------------------------------------


def test_hidden_seed_is_the_public_seed_without_a_salt_and_a_salted_hash_with_one():
    assert hidden_seed("", 1234) == 1234
    a, b = hidden_seed(SALT_A, 1234), hidden_seed(SALT_B, 1234)
    assert a != 1234 and a != b and a == hidden_seed(SALT_A, 1234) and 0 <= a < 2**31
    assert hidden_seed(SALT_A, 1235) != a
    assert salt_id("") == "public" and salt_id(SALT_A) != salt_id(SALT_B) and SALT_A not in salt_id(SALT_A)


@pytest.mark.parametrize("text, want", [(None, None), ("", ""), ("public", ""), (" NONE ", ""), (SALT_A.upper(), SALT_A)])
def test_parse_salt_accepts_hex_and_public(text, want):
    assert parse_salt(text) == want


@pytest.mark.parametrize("bad", ["xyz", "0123", SALT_A + "00", "g" * 32])
def test_a_malformed_salt_is_one_line_naming_the_form(bad):
    with pytest.raises(SaltError, match="32 hex digits") as exc:
        parse_salt(bad)
    assert "\n" not in str(exc.value)


# ---- the store keeps one salt ----------------------------------------------------------------


def test_the_store_creates_its_salt_once_and_refuses_another(tmp_path):
    db = tmp_path / "r.db"
    s = Store(db)
    first = s.hidden_salt()
    assert len(first) == 32 and int(first, 16) >= 0
    assert s.hidden_salt() == first and s.hidden_salt(first) == first
    s.close()
    again = Store(db)
    assert again.hidden_salt() == first  # persisted with the database
    with pytest.raises(SaltError, match="pass --db with a new database"):
        again.hidden_salt(SALT_A if first != SALT_A else SALT_B)
    fresh = Store(tmp_path / "other.db")
    assert fresh.hidden_salt(SALT_A) == SALT_A and fresh.hidden_salt() == SALT_A  # a requested salt becomes the store's
    public = Store(tmp_path / "public.db")
    assert public.hidden_salt("") == "" and public.hidden_salt() == ""


# ---- a hostile contestant through the real CLI ---------------------------------------------------

TRACE = "synth-sessions:hourly"  # the trace of pooling/tiny@2


class TraceRebuilder(ProvisioningMethod):
    """Hostile: rebuilds the cell's trace from the public seed formula (switching the generator's
    guard off first, as a hostile plugin can) and plans the oracle's pools from its future."""

    name = "trace-rebuilder"
    summary = "test: rebuilds the evaluation trace from public seeds"

    def fit(self, view):
        from coreset_bench import data as D
        from coreset_bench.tracks.pooling import sim as PL
        from coreset_bench import registry
        from coreset_bench.tracks.pooling import PoolingTrack

        prof = registry.track("pooling").profile("tiny@2")
        seed = PoolingTrack.public_seed(prof, TRACE, 0)  # sha256(profile | trace | repeat): public strings
        saved = list(D._CONTESTANT)
        D._CONTESTANT.clear()
        try:
            rebuilt = PL.synth_sessions(TRACE.split(":")[1], days=int(prof.settings["days"]), seed=seed).demand
        finally:
            D._CONTESTANT[:] = saved
        h = np.asarray(view.history)
        self._future = rebuilt
        view.info["rebuilt"] = float(np.array_equal(rebuilt[: len(h)], h))

    def plan(self, view):
        f = self._future[view.t : view.t + view.horizon + 1].astype(np.float64)
        f = np.concatenate([f, np.zeros(view.horizon + 1 - len(f))])
        c = np.concatenate([[0.0], np.cumsum(f)])
        j = np.arange(view.horizon)
        return c[np.minimum(j + 1 + view.lead, len(f))] - c[np.minimum(j + 1, len(f))]


class _HostilePlugin:
    @hookimpl
    def register_methods(self, register):
        register(TraceRebuilder())


@pytest.fixture
def hostile(monkeypatch):
    from coreset_bench import registry

    monkeypatch.setenv("CORESET_BENCH_LOAD_PLUGINS", "core,random,full,standard,static,oracle,reactive")
    monkeypatch.delenv("CORESET_BENCH_HIDDEN_SALT", raising=False)
    old = registry._manager
    registry.reset()
    registry.load_plugins()
    registry.register(_HostilePlugin(), name="hostile-pool-plugin")
    yield registry
    registry._manager = old


def _cells(db, method):
    s = Store(db, read_only=True)
    try:
        out = {}
        for rec in s.results(method=method, status="done"):
            out[rec["key"]] = rec
        return out
    finally:
        s.close()


def _run(db, *extra, method="trace-rebuilder"):
    res = invoke("run", "--track", "pooling", "--profile", "tiny@2", "-p", method, "--db", str(db), "--no-references", *extra)
    assert res.exit_code == 0, (res.stdout, res.stderr)
    return res


def test_a_contestant_cannot_rebuild_the_evaluation_trace_from_public_seeds(hostile, tmp_path):
    """Through the real CLI: with the database's secret salt (the default) the public seed formula
    rebuilds another trace (the history does not match; planning from its "future" misses);
    with public seeds (``--hidden-salt public``, the behaviour before the salt) the same plugin
    rebuilds the evaluation trace bit for bit and plays the oracle. The second run shows that the
    test can fail."""
    salted = _run(tmp_path / "salted.db")
    assert "secret salt" in salted.stdout
    (cell,) = _cells(tmp_path / "salted.db", "trace-rebuilder").values()
    assert cell["info"]["method_rebuilt"] == [0.0]
    assert cell["metrics"]["hit_rate"] < 0.97
    assert len(cell["environment"]["hidden_salt"]) == 32  # recorded with the run

    public = _run(tmp_path / "public.db", "--hidden-salt", "public")
    assert "public seeds" in public.stdout
    (cell,) = _cells(tmp_path / "public.db", "trace-rebuilder").values()
    assert cell["info"]["method_rebuilt"] == [1.0]
    assert cell["metrics"]["hit_rate"] > 0.999 and cell["environment"]["hidden_salt"] == ""


def _comparable(rec):
    return {k: v for k, v in rec["metrics"].items() if k not in ("fit_s", "plan_s")}


def test_the_same_salt_reproduces_a_run_bit_for_bit_and_another_salt_does_not(hostile, tmp_path):
    _run(tmp_path / "a.db", "--hidden-salt", SALT_A, method="reactive")
    _run(tmp_path / "b.db", "--hidden-salt", SALT_A, method="reactive")
    _run(tmp_path / "c.db", "--hidden-salt", SALT_B, method="reactive")
    a, b, c = (next(iter(_cells(tmp_path / f"{n}.db", "reactive").values())) for n in "abc")
    assert _comparable(a) == _comparable(b) and a["info"]["pool_target"] == b["info"]["pool_target"]
    assert _comparable(a) != _comparable(c)
    # a process pool (forked workers) gets the salt too
    _run(tmp_path / "p.db", "--hidden-salt", SALT_A, "--jobs", "2", "--executor", "process", method="reactive")
    p = next(iter(_cells(tmp_path / "p.db", "reactive").values()))
    assert _comparable(p) == _comparable(a) and p["environment"]["hidden_salt"] == SALT_A
    # the default: a fresh random salt per database, recorded with each run, reproduces through --hidden-salt
    _run(tmp_path / "d.db", method="reactive")
    d = next(iter(_cells(tmp_path / "d.db", "reactive").values()))
    salt = d["environment"]["hidden_salt"]
    assert len(salt) == 32 and salt not in (SALT_A, SALT_B)
    _run(tmp_path / "e.db", "--hidden-salt", salt, method="reactive")
    e = next(iter(_cells(tmp_path / "e.db", "reactive").values()))
    assert _comparable(d) == _comparable(e)


def test_a_database_refuses_a_salt_other_than_its_own_and_a_malformed_one(hostile, tmp_path, monkeypatch):
    _run(tmp_path / "a.db", "--hidden-salt", SALT_A, method="static")
    line = one_line_error(invoke("run", "--track", "pooling", "--profile", "tiny@2", "-p", "reactive", "--db", str(tmp_path / "a.db"), "--hidden-salt", SALT_B))
    assert "pass --db with a new database" in line and salt_id(SALT_A) in line and SALT_A not in line
    monkeypatch.setenv("CORESET_BENCH_HIDDEN_SALT", "nothex")
    line = one_line_error(invoke("run", "--track", "pooling", "--profile", "tiny@2", "-p", "reactive", "--db", str(tmp_path / "n.db")))
    assert "32 hex digits" in line


def test_published_profiles_keep_public_seeds(hostile, tmp_path):
    """pooling/quick@1 (its entries are published) seeds from public strings whatever the salt:
    its cells reproduce the committed entries."""
    from coreset_bench import registry
    from coreset_bench.runner import hidden_salt_for, make_plan

    t = registry.track("pooling")
    s = Store(tmp_path / "r.db")
    plan = make_plan(t, t.profile("quick@1"), [registry.method("static")], s, references=False)
    assert hidden_salt_for(plan, s, SALT_A) == ""
    plan2 = make_plan(t, t.profile("quick@2"), [registry.method("static")], s, references=False)
    assert hidden_salt_for(plan2, s, SALT_A) == SALT_A


def test_every_committed_entry_without_a_salt_belongs_to_an_unsalted_profile():
    """An entry exported before the salt existed reproduces only from public seeds: its profile
    must stay unsalted (or its cells would no longer reproduce)."""
    from pathlib import Path

    from coreset_bench import registry

    root = Path(__file__).resolve().parent.parent / "results" / "entries"
    checked = 0
    for f in sorted(root.rglob("*.json")):
        obj = json.loads(f.read_text())
        t = registry.track(obj["track"])
        if not getattr(t, "hidden_data", False) or "hidden_salt" in obj["provenance"]:
            continue
        prof = t.profile(obj["profile"]["id"])
        assert not prof.salted, f"{f}: exported without a salt, but {prof.id} is salted"
        checked += 1
    assert checked >= 4  # pooling, instruction, video and decentralized entries


# ---- export and the board ----------------------------------------------------------------------


def test_the_salt_is_exported_and_the_board_pairs_only_cells_of_one_salt(hostile, tmp_path):
    from coreset_bench import registry
    from coreset_bench.leaderboard.board import build_board
    from coreset_bench.leaderboard.data import load_store_records
    from coreset_bench.leaderboard.entries import entry_records, export_entries, load_entries

    _run(tmp_path / "a.db", "--hidden-salt", SALT_A, "--seeds", "0", method="reactive")
    res = invoke("run", "--track", "pooling", "--profile", "tiny@2", "-p", "static", "--db", str(tmp_path / "a.db"), "--no-references")
    assert res.exit_code == 0, res.stderr
    written, _ = export_entries(Store(tmp_path / "a.db", read_only=True), tmp_path / "entries")
    assert written
    for e in written:
        obj = json.loads(e.path.read_text())
        assert obj["provenance"]["hidden_salt"] == SALT_A
    # the board: reactive computed with salt A, static with salt B (another database): a warning
    _run(tmp_path / "b.db", "--hidden-salt", SALT_B, method="static")
    t = registry.track("pooling")
    recs_a = [r for r in load_store_records(Store(tmp_path / "a.db", read_only=True)) if r["method"] == "reactive"]
    recs_b = load_store_records(Store(tmp_path / "b.db", read_only=True))
    board = build_board(t, t.profile("tiny@2"), recs_a + recs_b)
    assert any("2 hidden-data salts" in w for w in board.warnings), board.warnings
    assert not any("salts" in w for w in build_board(t, t.profile("tiny@2"), recs_a).warnings)
    # entries read back carry their salt to the records (built-in rows: vouched for by the store
    # that reproduces them)
    loaded = load_entries([tmp_path / "entries"], local=load_store_records(Store(tmp_path / "a.db", read_only=True)))
    assert loaded.accepted and all(r["environment"]["hidden_salt"] == SALT_A for _, obj in loaded.accepted for r in entry_records(obj, "x"))


def test_paired_comparisons_leave_out_cells_of_another_salt():
    """Four repeats of two methods: paired over all four when every cell has one salt; with the
    baseline's repeats 0 and 1 computed on another salt only repeats 2 and 3 pair (n = 2: the
    interval is undefined), and the paired mean is that of the matching repeats."""
    from coreset_bench.leaderboard.board import Variant

    def variant(name, values, salts):
        v = Variant(name, "1", {}, "")
        for r, (x, salt) in enumerate(zip(values, salts)):
            v.done[("p", r)] = {"metrics": {"m": x}, "info": {}, "environment": {"hidden_salt": salt}, "status": "done"}
            v.expected.add(("p", r))
        return v

    a = variant("a", [0.5, 0.7, 0.6, 0.9], [SALT_A] * 4)
    same = variant("b", [0.4, 0.5, 0.5, 0.6], [SALT_A] * 4)
    mixed = variant("c", [0.4, 0.5, 0.5, 0.6], [SALT_B, SALT_B, SALT_A, SALT_A])
    full = a.paired(same, "m", ["p"], [0, 1, 2, 3], "max", {})
    assert full is not None and full.n == 4 and full.mean == pytest.approx(np.mean([0.1, 0.2, 0.1, 0.3]))
    part = a.paired(mixed, "m", ["p"], [0, 1, 2, 3], "max", {})
    assert part is not None and part.n == 2 and part.mean == pytest.approx(np.mean([0.1, 0.3])) and part.half_width is None


# ---- every track with hidden generated data routes its seed through the salt ---------------------


def test_every_hidden_data_track_declares_it_and_seeds_through_the_context(monkeypatch, tmp_path):
    from coreset_bench import registry
    from coreset_bench.tracks.base import CellContext

    names = {n for n, t in registry.tracks().items() if getattr(t, "hidden_data", False)}
    assert {"pooling", "instruction", "video", "decentralized"} <= names
    public = CellContext(tmp_path, tmp_path / "cache", None)
    salted = CellContext(tmp_path, tmp_path / "cache", None, hidden_salt=SALT_A)
    assert SALT_A not in repr(salted)  # never printed with the context

    # instruction: the world (its task ids, noise flags and test sets)
    ins = registry.track("instruction")
    prof = ins.profile("tiny")
    wa = ins.data(prof, "synth-instruct", 0, public)
    wb = ins.data(prof, "synth-instruct", 0, salted)
    assert not np.array_equal(wa.pool.ids, wb.pool.ids)
    assert np.array_equal(ins.data(prof, "synth-instruct", 0, salted).pool.ids, wb.pool.ids)

    # decentralized: the public set and its hidden OOD flags
    dec = registry.track("decentralized")
    dprof = dec.profile("tiny")
    a = dec.world(dprof, "digits", 0.5, 4, 0, public)
    b = dec.world(dprof, "digits", 0.5, 4, 0, salted)
    assert a.public_seed != b.public_seed and b.public_seed == salted.hidden_seed(a.public_seed)
    assert not np.array_equal(np.asarray(a.public_is_id), np.asarray(b.public_is_id))

    # video: the synth-motion clips (the generator itself is costly: the seed it receives is checked)
    from coreset_bench.tracks.video import data as VD
    seen = []
    monkeypatch.setattr(VD, "resolve", lambda ref, *, seed, **kw: seen.append(seed) or "ds")
    vid = registry.track("video")
    vprof = vid.profile("tiny")
    (cell,) = vid.cells(vprof, registry.method("ce-exits"))[:1]
    vid.dataset(vprof, cell, public)
    vid.dataset(vprof, cell, salted)
    assert seen[1] == salted.hidden_seed(seen[0]) != seen[0]


@pytest.mark.parametrize("call", ["synth_rate", "resolve_trace", "counts_csv"])
def test_every_pooling_generator_entry_point_is_guarded(call, tmp_path):
    from coreset_bench.tracks.pooling import sim as PL
    from coreset_bench.data import LeakageError, contestant_guard

    f = tmp_path / "c.csv"
    f.write_text("timestamp,count\n2026-01-05T00:00:00,1\n2026-01-05T00:01:00,2\n")
    fn = {
        "synth_rate": lambda: PL.synth_rate("hourly", 2, np.random.default_rng(0)),
        "resolve_trace": lambda: PL.resolve_trace("synth-sessions:overdispersed", days=2),
        "counts_csv": lambda: PL.load_counts_csv(f),
    }[call]
    fn()  # outside a contestant: fine
    with contestant_guard("peeker"), pytest.raises(LeakageError, match="peeker"):
        fn()
