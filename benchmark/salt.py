"""The hidden-data salt: a per-store secret mixed into the seeds of hidden generated data.

Tracks that generate the data they evaluate on (the pooling track's demand traces, the
instruction world, synth-motion clips, the decentralized track's public set with its hidden
out-of-distribution flags) derive each seed from public strings (profile id, dataset, repeat).
A contestant that knows the formula could rebuild the evaluation data, future and flags
included, without calling a guarded generator. So the harness mixes a secret into those seeds:

* ``new_salt()``: 128 random bits (``secrets.token_hex(16)``), created once per results store
  (``Store.hidden_salt``) the first time a profile with hidden data runs there;
* ``hidden_seed(salt, public)`` = the first 31 bits of sha256(salt bytes | "|" | the public
  seed as a decimal string); with the empty salt it is the public seed itself (profile versions
  published before the salt keep their data, ``Profile.salted`` False);
* the salt in effect is recorded with every run (``environment.hidden_salt``), exported in
  entries' provenance, and ``run --hidden-salt HEX`` (env ``CORESET_BENCH_HIDDEN_SALT``)
  reproduces a published run exactly.

The salt reaches tracks through ``CellContext.hidden_salt`` on the harness side; it is never in
a view. What it does not stop: a contestant that reads the harness's memory or the store's
file (which holds the salt) while it runs in the harness process; closing that is the job of
the contestant worker, not of the seed.
"""

from __future__ import annotations

import hashlib
import re
import secrets

#: the environment variable ``run --hidden-salt`` defaults to
ENV = "CORESET_BENCH_HIDDEN_SALT"
#: hex digits of a salt (128 bits)
HEX_DIGITS = 32
_HEX = re.compile(r"^[0-9a-f]{32}$")


class SaltError(ValueError):
    """A salt given on the command line or in the environment is malformed, or differs from the
    store's; the message says what is expected."""


def new_salt() -> str:
    """A fresh random 128-bit salt as 32 lower-case hex digits."""
    return secrets.token_hex(HEX_DIGITS // 2)


def parse_salt(text: str | None, *, where: str = "--hidden-salt") -> str | None:
    """``None`` (not given), ``""`` (public seeds: ``''``, ``none`` or ``public``) or a salt of 32
    hex digits (case and surrounding spaces ignored); anything else is a one-line ``SaltError``."""
    if text is None:
        return None
    t = text.strip().lower()
    if t in ("", "none", "public"):
        return ""
    if not _HEX.match(t):
        raise SaltError(f"{where} must be {HEX_DIGITS} hex digits (a 128-bit salt, as `coreset-bench results --json` shows in environment.hidden_salt) or 'public' for the public seeds; got {text!r}")
    return t


def hidden_seed(salt: str, public_seed: int | str) -> int:
    """The seed of hidden generated data: ``public_seed`` itself with the empty salt, else the
    first 31 bits of sha256(salt | public seed)."""
    if not salt:
        return int(public_seed)
    digest = hashlib.sha256(bytes.fromhex(salt) + b"|" + str(public_seed).encode()).hexdigest()
    return int(digest[:8], 16) % (2**31)


def salt_id(salt: str) -> str:
    """A short public name of a salt (``"public"`` for the empty one): tells runs of different
    salts apart without showing the salt."""
    if not salt:
        return "public"
    return hashlib.sha256(b"coreset-bench hidden salt|" + salt.encode()).hexdigest()[:12]
