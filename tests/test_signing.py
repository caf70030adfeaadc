"""Ed25519 signatures on exported entries (issue 24, item 13): keys, export --sign-key,
leaderboard --trusted-keys / --require-signed."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coreset_bench.leaderboard import cli as lb_cli
from coreset_bench.leaderboard.data import load_store_records
from coreset_bench.leaderboard.entries import EntryError, aggregate_cells, check_entry, export_entries, load_entry
from coreset_bench.leaderboard.entries import _cells_digest
from coreset_bench.leaderboard.render import render_site
from coreset_bench.leaderboard.signing import (
    SigningError,
    Trust,
    check_signature,
    fingerprint,
    generate_keypair,
    load_private_key,
    load_trusted_keys,
    sign_entry,
)

from test_leaderboard import _rows_of, store, tiny  # noqa: F401  (fixtures: the tiny track and its store)

REPO = Path(__file__).resolve().parents[1]


def _app() -> typer.Typer:
    app = typer.Typer()
    lb_cli.register(app)
    return app


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    alice = generate_keypair(d / "alice", "alice")
    mallory = generate_keypair(d / "mallory", "mallory")
    return alice, mallory


@pytest.fixture(scope="module")
def signed(store, keys, tmp_path_factory):  # noqa: F811
    alice, _ = keys
    out = tmp_path_factory.mktemp("signed")
    written, warnings = export_entries(load_store_records(store), out, sign_key=load_private_key(alice.private_path))
    assert warnings == []
    return out, {e.method: e.path for e in written}


def test_keys_generate_writes_a_private_key_only_its_owner_reads(tmp_path):
    res = CliRunner().invoke(_app(), ["keys", "generate", "--out", str(tmp_path / "k"), "--name", "lab"])
    assert res.exit_code == 0, res.output
    priv, pub = tmp_path / "k" / "lab.key", tmp_path / "k" / "lab.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in priv.read_bytes() and b"BEGIN PUBLIC KEY" in pub.read_bytes()
    fp = re.search(r"fingerprint (sha256:[0-9a-f]{64})", res.output).group(1)
    assert fp == fingerprint(load_private_key(priv).public_key())
    # never overwrites a key
    before = priv.read_bytes()
    res = CliRunner().invoke(_app(), ["keys", "generate", "--out", str(tmp_path / "k"), "--name", "lab"])
    assert res.exit_code == 1 and "already exists" in res.output and len(res.output.strip().splitlines()) == 1
    assert priv.read_bytes() == before
    # a private key others can read is refused, with the fix
    priv.chmod(0o644)
    with pytest.raises(SigningError, match="chmod 600"):
        load_private_key(priv)
    with pytest.raises(SigningError, match="private key"):
        load_trusted_keys([priv])
    with pytest.raises(SigningError, match="is a public key; pass the .key"):
        load_private_key(pub)


def test_sign_verify_round_trip(tiny, keys, signed):
    _, profile = tiny
    alice, _ = keys
    obj = load_entry(signed[1]["lbt-alpha"])
    sig = obj["signature"]
    assert sig["algorithm"] == "ed25519" and sig["key_id"] == alice.fingerprint
    trust = Trust(load_trusted_keys([alice.public_path]))
    body, verdict = check_signature(obj, trust)
    assert "signature" not in body and verdict.verified_by is not None and verdict.verified_by.name == "alice"
    assert check_entry(body, [profile]) is body
    # re-indenting the file keeps the content and the signature
    assert check_signature(json.loads(json.dumps(obj, indent=4, sort_keys=True)), trust)[1].verified_by is not None
    # re-signing is idempotent on the content
    assert sign_entry(obj, load_private_key(alice.private_path))["signature"]["key_id"] == alice.fingerprint


def _reject_reason(obj: dict, trust: Trust | None = None) -> str:
    with pytest.raises(EntryError) as exc:
        check_signature(obj, trust)
    return str(exc.value)


def test_a_forged_entry_with_recomputed_aggregates_is_rejected(tiny, keys, signed):
    _, profile = tiny
    alice, _ = keys
    obj = load_entry(signed[1]["lbt-alpha"])
    # a better metric with the digest and aggregates recomputed: valid without the signature
    forged = json.loads(json.dumps(obj))
    forged["cells"][0]["metrics"]["acc"] = 0.99
    forged["cells_sha256"] = _cells_digest(forged["cells"])
    forged["aggregates"] = aggregate_cells(forged["cells"], profile)
    assert check_entry({k: v for k, v in forged.items() if k != "signature"}, [profile])
    reason = _reject_reason(forged, Trust(load_trusted_keys([alice.public_path])))
    assert reason.startswith("bad signature by key " + alice.fingerprint) and "\n" not in reason
    assert _reject_reason(forged).startswith("bad signature")  # without trusted keys as well
    renamed = json.loads(json.dumps(obj))
    renamed["method"]["name"] = "lbt-alphb"
    assert _reject_reason(renamed).startswith("bad signature")
    # a broken signature block is a one-line reason, not a crash
    for field, value in (("signature", "AAAA"), ("algorithm", "rsa"), ("public_key", 7), ("key_id", "sha256:00"), ("extra", "x")):
        bad = json.loads(json.dumps(obj))
        bad["signature"][field] = value
        assert "\n" not in _reject_reason(bad)
    bad = json.loads(json.dumps(obj))
    bad["signature"] = "yes"
    assert _reject_reason(bad) == "signature is not an object"


def test_every_one_byte_change_of_the_content_is_rejected(keys, signed):
    """Flip each byte of a signed file: the result is unparsable, rejected, or the same content.

    With ``--require-signed`` every changed content is rejected; without it a flip that renames
    the ``signature`` key makes the entry unsigned (as deleting the block would), never verified.
    """
    alice, _ = keys
    trust = Trust(load_trusted_keys([alice.public_path]), require_signed=True)
    lenient = Trust(trust.keys)
    raw = signed[1]["lbt-gamma"].read_bytes()
    original = json.loads(raw)
    changed = 0
    for i in range(len(raw)):
        b = raw[i]
        repl = ord("0") + (b - ord("0") + 1) % 10 if chr(b).isdigit() else (b ^ 0x01 if b not in (0x20, 0x0A) else ord("x"))
        mutated = raw[:i] + bytes([repl]) + raw[i + 1 :]
        try:
            obj = json.loads(mutated)
        except (ValueError, UnicodeDecodeError):
            continue
        if obj == original:  # e.g. 'e' -> 'E' in an exponent: the same entry
            check_signature(obj, trust)
            continue
        changed += 1
        with pytest.raises(EntryError):
            check_signature(obj, trust)
        try:
            assert check_signature(obj, lenient)[1].verified_by is None
        except EntryError:
            pass
    assert changed > len(raw) // 3  # most flips parse and change a value: they were all rejected


def test_trusted_keys_badge_and_require_signed(store, keys, signed, tmp_path):  # noqa: F811
    alice, mallory = keys
    src, paths = signed
    entries = tmp_path / "entries"
    entries.mkdir()
    # alpha signed by alice (trusted), gamma signed by mallory (not trusted), beta unsigned
    (entries / "alpha.json").write_bytes(paths["lbt-alpha"].read_bytes())
    gamma = load_entry(paths["lbt-gamma"])
    (entries / "gamma.json").write_text(json.dumps(sign_entry(gamma, load_private_key(mallory.private_path))))
    unsigned = load_entry(paths["lbt-beta"])
    del unsigned["signature"]
    (entries / "beta.json").write_text(json.dumps(unsigned))
    app, runner = _app(), CliRunner()
    site = tmp_path / "site"
    res = runner.invoke(app, ["leaderboard", "--out", str(site), "--entries", str(entries), "--trusted-keys", str(alice.public_path.parent)])
    assert res.exit_code == 0, res.output
    page = (site / "lbtiny-small-v2.html").read_text()
    assert set(_rows_of(page, "d1")) == {"lbt-alpha", "lbt-gamma", "lbt-beta"}
    badges = re.findall(r'data-method="([^"]+)".*?</tr>', page, re.S)
    rows = dict(zip(badges, re.findall(r'data-method="[^"]+"(.*?)</tr>', page, re.S)))
    label = f"verified: alice · {alice.fingerprint[7:23]}"
    assert label in rows["lbt-alpha"] and "b-verified" in rows["lbt-alpha"]
    assert "b-verified" not in rows["lbt-gamma"] and "b-verified" not in rows["lbt-beta"]
    assert label in (site / "methods" / "lbt-alpha.html").read_text()
    assert re.search(r"warning: .*gamma\.json: signature by key sha256:[0-9a-f]{64} is valid but that key is not trusted", res.output)
    # --require-signed: the unsigned and the untrusted entries are rejected, one line each
    res = runner.invoke(app, ["leaderboard", "--out", str(site), "--entries", str(entries), "--trusted-keys", str(alice.public_path), "--require-signed"])
    assert res.exit_code == 0, res.output
    assert re.search(r"rejected .*beta\.json: unsigned, and --require-signed is set", res.output)
    assert re.search(r"rejected .*gamma\.json: signed by key sha256:[0-9a-f]{64}, which is not among the --trusted-keys", res.output)
    page = (site / "lbtiny-small-v2.html").read_text()
    assert _rows_of(page, "d1") == ["lbt-alpha"]
    # --require-signed alone, or a bad key file: a one-line error, nothing rendered
    res = runner.invoke(app, ["leaderboard", "--out", str(tmp_path / "s2"), "--entries", str(entries), "--require-signed"])
    assert res.exit_code == 1 and "needs --trusted-keys" in res.output and not (tmp_path / "s2").exists()
    res = runner.invoke(app, ["leaderboard", "--out", str(tmp_path / "s2"), "--entries", str(entries), "--trusted-keys", str(tmp_path / "nope.pub")])
    assert res.exit_code == 1 and "no such file" in res.output and not (tmp_path / "s2").exists()


def test_cli_export_signs(store, keys, tmp_path):  # noqa: F811
    alice, _ = keys
    app, runner = _app(), CliRunner()
    out = tmp_path / "entries"
    db = str(store.sqlite_path)
    res = runner.invoke(app, ["export", "--db", db, "--out", str(out), "--plugin", "lbt-alpha", "--sign-key", str(alice.private_path)])
    assert res.exit_code == 0, res.output
    assert f"signed 1 entries with key {alice.fingerprint}" in res.output
    [path] = out.rglob("*.json")
    assert check_signature(load_entry(path), Trust(load_trusted_keys([alice.public_path])))[1].verified_by is not None
    res = runner.invoke(app, ["export", "--db", db, "--out", str(tmp_path / "e2"), "--sign-key", str(alice.public_path)])
    assert res.exit_code == 1 and "pass the .key" in res.output and not (tmp_path / "e2").exists()


def test_committed_entries_render_without_keys(fresh_plugins, tmp_path):
    report = render_site(None, tmp_path / "site", entries_dirs=[REPO / "results" / "entries"])
    assert report.rejected == [] and report.records > 0
    assert "b-verified" not in "".join(p.read_text() for p in report.pages)


def test_a_signature_with_other_padding_bits_is_rejected(keys, signed):
    """Base64 has unused bits in its last character: a different string that decodes to the same
    signature is a changed entry, and is rejected (found by the byte-flip test, by chance)."""
    import base64

    obj = load_entry(signed[1]["lbt-alpha"])
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for field, data_char in (("signature", -3), ("public_key", -2)):  # 64 bytes: 'x==', 32 bytes: 'x='
        bad = json.loads(json.dumps(obj))
        text = bad["signature"][field]
        c = text[data_char]
        other = alphabet[alphabet.index(c) ^ 0b0001]  # an unused bit
        bad["signature"][field] = text[:data_char] + other + text[len(text) + data_char + 1 :]
        assert bad["signature"][field] != text
        assert base64.b64decode(bad["signature"][field]) == base64.b64decode(text)
        assert "not canonical base64" in _reject_reason(bad)
