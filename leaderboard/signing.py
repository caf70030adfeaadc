"""Optional Ed25519 signatures on exported entries (the ``cryptography`` package).

An entry's ``cells_sha256`` is an unkeyed digest: anyone can edit a number and recompute it. A
signature binds the whole entry to a key. ``coreset-bench keys generate --out DIR`` writes
``DIR/<name>.key`` (PKCS#8 PEM, unencrypted, mode 0600) and ``DIR/<name>.pub`` (PEM public key);
``coreset-bench export --sign-key DIR/<name>.key`` adds a ``signature`` block to every entry::

    "signature": {
      "algorithm": "ed25519",
      "key_id": "sha256:<hex sha256 of the 32-byte raw Ed25519 public key>",
      "public_key": "<base64 of those 32 bytes>",
      "signature": "<base64 of the 64-byte Ed25519 signature>"
    }

What is signed (``signed_bytes``): the entry as parsed from its JSON file, *without* its
top-level ``signature`` key, serialized as ``json.dumps(entry, sort_keys=True,
separators=(",", ":"), ensure_ascii=True, allow_nan=False)`` (floats in Python's shortest
round-trip form), encoded as UTF-8 (ASCII), and prefixed with the domain tag
``b"coreset-bench/entry-signature/1\\n"`` (the ``1`` versions this serialization). Every key and
value of every field is covered, so changing a metric, a name, a timestamp or adding a field
breaks the signature; re-indenting the file or reordering its keys does not (same content).

``check_signature(obj, trust)`` (called by ``entries.load_entries`` before validation) returns the
entry without its signature block and who verified it: a malformed block or a signature that does
not verify is rejected (``EntryError``, one line) whether or not keys are trusted; a valid
signature counts as *verified* only when its key is among the trusted keys; with
``require_signed`` an entry that is not verified by a trusted key is rejected.

Pins (``PINS_FILE``, ``entry_digest``): the published entries of the repository are unsigned; their
content digests are listed in ``pinned-entries.txt``, shipped inside the package and written by
``coreset-bench entries pin results/entries``. ``Trust.pinned`` (default: that file) is what
``entries.vouch`` accepts, besides a trusted signature and the local store, for an entry that
claims a built-in row. Trusting the pins is trusting the installed coreset-bench itself.

This module imports ``errors`` only (no import circle with ``entries``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import EntryError

ALGORITHM = "ed25519"
DOMAIN = b"coreset-bench/entry-signature/1\n"
SIGNATURE_FIELD = "signature"
_BLOCK_FIELDS = {"algorithm", "key_id", "public_key", "signature"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SigningError(ValueError):
    """A key cannot be made, read or used; the message is one line naming the fix."""


# ---- canonical form and fingerprints ---------------------------------------------------------


def canonical_bytes(entry: Mapping[str, Any]) -> bytes:
    """The canonical serialization of ``entry`` without its top-level ``signature`` key."""
    body = {k: v for k, v in entry.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("utf-8")


def signed_bytes(entry: Mapping[str, Any]) -> bytes:
    """The bytes an entry's signature is over: the domain tag, then ``canonical_bytes``."""
    return DOMAIN + canonical_bytes(entry)


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public: Ed25519PublicKey) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key."""
    return "sha256:" + hashlib.sha256(_raw(public)).hexdigest()


# ---- key files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedKey:
    private_path: Path
    public_path: Path
    fingerprint: str


def generate_keypair(out_dir: str | os.PathLike[str], name: str = "coreset-bench") -> GeneratedKey:
    """Write ``<name>.key`` (mode 0600) and ``<name>.pub`` under ``out_dir``; never overwrites."""
    if not _NAME.match(name):
        raise SigningError(f"key name {name!r} is not a plain file name; use letters, digits, '.', '_' or '-'")
    out = Path(out_dir)
    priv_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    for p in (priv_path, pub_path):
        if p.exists() or p.is_symlink():
            raise SigningError(f"{p} already exists; pass another --out or --name (an existing key is never overwritten)")
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new key directory: owner only
    except OSError as exc:
        raise SigningError(f"cannot create {out} ({exc.strerror}); pass --out with a writable directory") from exc
    key = Ed25519PrivateKey.generate()
    priv_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        # O_EXCL: a file that appeared meanwhile is not overwritten; 0600 from the first byte
        fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(priv_pem)
        os.chmod(priv_path, 0o600)  # whatever the umask
        fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pub_pem)
    except OSError as exc:
        raise SigningError(f"cannot write the key files in {out} ({exc.strerror}); pass --out with a writable directory") from exc
    return GeneratedKey(priv_path, pub_path, fingerprint(key.public_key()))


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file that only its owner can read (mode 0600 or stricter)."""
    p = Path(path)
    try:
        st = p.stat()
        data = p.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read the signing key {p} ({exc.strerror}); pass --sign-key with the .key file of `coreset-bench keys generate`") from exc
    if b"PRIVATE KEY" not in data and b"PUBLIC KEY" in data:
        raise SigningError(f"{p} is a public key; pass the .key file of `coreset-bench keys generate` to --sign-key")
    if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
        raise SigningError(f"signing key {p} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); run `chmod 600 {p}`")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise SigningError(f"signing key {p} is encrypted; pass an unencrypted Ed25519 PEM key (as `coreset-bench keys generate` writes)") from exc
    except (ValueError, binascii.Error) as exc:
        raise SigningError(f"{p} is not a PEM private key; pass the .key file of `coreset-bench keys generate`") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"signing key {p} is not an Ed25519 key; make one with `coreset-bench keys generate`")
    return key


_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


@dataclass(frozen=True)
class TrustedKey:
    name: str
    fingerprint: str
    public: Ed25519PublicKey = field(compare=False)


def _keys_of_file(p: Path) -> list[TrustedKey]:
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read trusted key file {p} ({exc.strerror}); pass --trusted-keys with a .pub file or a directory of them") from exc
    if b"PRIVATE KEY" in data:
        raise SigningError(f"{p} holds a private key; trust the public key instead (the .pub file)")
    blocks = _PEM_PUBLIC.findall(data)
    if not blocks:
        raise SigningError(f"{p} holds no PEM public key; pass the .pub file of `coreset-bench keys generate`")
    out = []
    for i, block in enumerate(blocks):
        try:
            pub = serialization.load_pem_public_key(block)
        except (ValueError, binascii.Error) as exc:
            raise SigningError(f"{p}: public key {i + 1} is not a valid PEM public key") from exc
        if not isinstance(pub, Ed25519PublicKey):
            raise SigningError(f"{p}: public key {i + 1} is not an Ed25519 key")
        name = p.stem if len(blocks) == 1 else f"{p.stem}-{i + 1}"
        out.append(TrustedKey(name, fingerprint(pub), pub))
    return out


def load_trusted_keys(paths: Iterable[str | os.PathLike[str]]) -> dict[str, TrustedKey]:
    """Trusted public keys by fingerprint, from PEM files or directories of ``*.pub``/``*.pem`` files.

    A key's name is its file's stem (``alice.pub`` -> ``alice``). An empty directory, a file that
    holds no public key or holds a private key is an error, never an empty trust set by accident.
    """
    keys: dict[str, TrustedKey] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".pub", ".pem") and f.is_file())
            if not files:
                raise SigningError(f"trusted key directory {p} holds no .pub or .pem file")
        elif p.exists():
            files = [p]
        else:
            raise SigningError(f"trusted keys {p}: no such file or directory")
        for f in files:
            for k in _keys_of_file(f):
                keys.setdefault(k.fingerprint, k)
    return keys


# ---- signing and verifying --------------------------------------------------------------------


def sign_entry(entry: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``entry`` with a ``signature`` block over its JSON round trip (what a reader will parse)."""
    body = json.loads(json.dumps({k: v for k, v in entry.items() if k != SIGNATURE_FIELD}, allow_nan=False))
    pub = key.public_key()
    body[SIGNATURE_FIELD] = {
        "algorithm": ALGORITHM,
        "key_id": fingerprint(pub),
        "public_key": base64.b64encode(_raw(pub)).decode("ascii"),
        "signature": base64.b64encode(key.sign(signed_bytes(body))).decode("ascii"),
    }
    return body


# ---- pinned published entries -----------------------------------------------------------------

#: the digests of the published entries (``results/entries`` of the repository), shipped with the
#: package: an entry whose content digest is listed here is the published one, byte for byte
PINS_FILE = Path(__file__).with_name("pinned-entries.txt")
_PIN_LINE = re.compile(r"^(sha256:[0-9a-f]{64})(?:\s+(\S.*))?$")


def entry_digest(entry: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of ``canonical_bytes(entry)``: the entry's whole content (every field,
    the export time included) without its signature block."""
    return "sha256:" + hashlib.sha256(canonical_bytes(entry)).hexdigest()


def load_pins(path: str | os.PathLike[str]) -> frozenset[str]:
    """The digests listed in a pins file: one ``sha256:<hex> [path]`` per line, ``#`` comments."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SigningError(f"cannot read the pins file {p} ({exc.strerror}); write it with `coreset-bench entries pin`") from exc
    out = set()
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _PIN_LINE.match(line)
        if m is None:
            raise SigningError(f"{p} line {n} is not 'sha256:<64 hex> PATH'; write the file with `coreset-bench entries pin`")
        out.add(m.group(1))
    return frozenset(out)


def default_pins() -> frozenset[str]:
    """The pins shipped with this coreset-bench (``PINS_FILE``; none when it is absent)."""
    return load_pins(PINS_FILE) if PINS_FILE.is_file() else frozenset()


def pins_text(pins: Iterable[tuple[str, str]]) -> str:
    """The pins file for ``(path, digest)`` pairs, sorted by path."""
    head = (
        "# Content digests (signing.entry_digest) of the published entries under results/entries.\n"
        "# An entry listed here is accepted as the published one, also where it claims a built-in row\n"
        "# (package coreset-bench, a built-in method name, a privileged bound). Regenerate after every\n"
        "# export with: coreset-bench entries pin results/entries\n"
    )
    return head + "".join(f"{digest}  {path}\n" for path, digest in sorted(pins))


@dataclass(frozen=True)
class Trust:
    """What ``load_entries`` trusts: keys (and whether a trusted signature is required), and the
    digests of the published entries (``pinned``; default: those shipped with the package)."""

    keys: Mapping[str, TrustedKey] = field(default_factory=dict)
    require_signed: bool = False
    pinned: frozenset[str] = field(default_factory=default_pins)


@dataclass(frozen=True)
class Verdict:
    """The outcome for one accepted entry: who verified it (None: not verified) and a note."""

    verified_by: TrustedKey | None = None
    note: str = ""

    @property
    def label(self) -> str:
        """``<key name> · <first 16 hex of the fingerprint>``, or '' when not verified."""
        if self.verified_by is None:
            return ""
        return f"{self.verified_by.name} · {self.verified_by.fingerprint.split(':', 1)[1][:16]}"


def _b64(text: Any, size: int, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"signature.{what} is not a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"signature.{what} is not valid base64") from exc
    if len(raw) != size:
        raise ValueError(f"signature.{what} holds {len(raw)} bytes, not {size}")
    if base64.b64encode(raw).decode("ascii") != text:  # unused padding bits set: another string, same bytes
        raise ValueError(f"signature.{what} is not canonical base64")
    return raw


def verify_signature(entry: Mapping[str, Any]) -> Ed25519PublicKey:
    """The key whose valid signature ``entry`` carries; ``ValueError`` (one line) otherwise."""
    block = entry.get(SIGNATURE_FIELD)
    if not isinstance(block, dict):
        raise ValueError("signature is not an object")
    extra = sorted(set(block) - _BLOCK_FIELDS)
    missing = sorted(_BLOCK_FIELDS - set(block))
    if extra or missing:
        raise ValueError(f"signature block has {'unknown field ' + repr(extra[0]) if extra else 'no field ' + repr(missing[0])}")
    if block["algorithm"] != ALGORITHM:
        raise ValueError(f"signature algorithm {block['algorithm']!r} is not supported (only {ALGORITHM!r})")
    pub = Ed25519PublicKey.from_public_bytes(_b64(block["public_key"], 32, "public_key"))
    if block["key_id"] != fingerprint(pub):
        raise ValueError("signature.key_id is not the fingerprint of signature.public_key")
    sig = _b64(block["signature"], 64, "signature")
    try:
        data = signed_bytes(entry)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"the entry cannot be serialized canonically ({type(exc).__name__})") from exc
    try:
        pub.verify(sig, data)
    except InvalidSignature:
        raise ValueError(f"bad signature by key {block['key_id']}: the entry was changed after it was signed") from None
    return pub


def check_signature(obj: Any, trust: Trust | None) -> tuple[Any, Verdict]:
    """``(obj without its signature block, verdict)``; raises ``EntryError`` (one line) on rejection.

    A present signature block must be well-formed and verify, trusted keys or not. An entry is
    *verified* when its signature verifies under a key in ``trust.keys``; with
    ``trust.require_signed`` anything else is rejected.
    """
    trust = trust or Trust()
    if not isinstance(obj, dict) or SIGNATURE_FIELD not in obj:
        if trust.require_signed:
            raise EntryError("unsigned, and --require-signed is set; sign it with `coreset-bench export --sign-key KEY`")
        return obj, Verdict()
    try:
        pub = verify_signature(obj)
    except ValueError as exc:
        raise EntryError(" ".join(str(exc).split())) from None
    body = {k: v for k, v in obj.items() if k != SIGNATURE_FIELD}
    fp = fingerprint(pub)
    known = trust.keys.get(fp)
    if known is None:
        if trust.require_signed:
            raise EntryError(f"signed by key {fp}, which is not among the --trusted-keys; add its .pub file if you trust it")
        note = f"signature by key {fp} is valid but that key is not trusted; shown unverified" if trust.keys else ""
        return body, Verdict(None, note)
    return body, Verdict(known)
