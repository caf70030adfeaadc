"""What the site publishes: only content-addressed files under the store's artifacts directory
whose sha256 matches their row, as plain copies (issue 24, item 8)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from coreset_bench.leaderboard.data import load_store_records
from coreset_bench.leaderboard.render import render_site
from coreset_bench.store import Store

from test_leaderboard import store, tiny  # noqa: F401  (fixtures: the tiny track and its store)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def forged(store, tmp_path):  # noqa: F811
    """A copy of the leaderboard store with forged artifact rows of the ``lbt-alpha`` runs."""
    res = tmp_path / "results"
    shutil.copytree(store.sqlite_path.parent, res)
    db = res / store.sqlite_path.name
    outside = tmp_path / "outside"
    outside.mkdir()
    arts = res / "artifacts"
    secrets = {}

    def secret(label: str) -> tuple[bytes, str]:
        data = f"secret {label} {os.getpid()}\n".encode()
        secrets[label] = data
        return data, _sha(data)

    forged_rows = []
    # 1. a content-addressed file with the right hash, but outside the results directory
    data, sha = secret("outside")
    (outside / f"{sha}.npy").write_bytes(data)
    forged_rows.append(("outside", sha, str(outside / f"{sha}.npy")))
    # 2. a system file, by its true hash
    host = Path("/etc/hostname")
    if host.is_file():
        secrets["hostname"] = host.read_bytes()
        forged_rows.append(("hostname", _sha(secrets["hostname"]), str(host)))
    # 3. inside the artifacts directory and named after the row's hash, but other bytes
    data, sha = secret("mismatch")
    wrong = sha[:2]
    (arts / wrong).mkdir(exist_ok=True)
    (arts / wrong / f"{sha}.npy").write_bytes(b"not the bytes the row claims\n")
    secrets["mismatch"] = b"not the bytes the row claims\n"
    forged_rows.append(("mismatch", sha, str(arts / wrong / f"{sha}.npy")))
    # 4. a symlink inside the artifacts directory pointing out of it (hash and name right)
    data, sha = secret("symlink")
    target = outside / f"{sha}.npy"
    target.write_bytes(data)
    (arts / sha[:2]).mkdir(exist_ok=True)
    (arts / sha[:2] / f"{sha}.npy").symlink_to(target)
    forged_rows.append(("symlink", sha, str(arts / sha[:2] / f"{sha}.npy")))
    # 5. a path that climbs out with '..'
    data, sha = secret("dotdot")
    (outside / f"{sha}.npy").write_bytes(data)
    forged_rows.append(("dotdot", sha, str(arts / "00" / ".." / ".." / ".." / "outside" / f"{sha}.npy")))

    con = sqlite3.connect(db)
    runs = [r[0] for r in con.execute("SELECT id FROM run WHERE method = 'lbt-alpha' AND status = 'done' ORDER BY id")]
    # 6. a row of a method rendered before lbt-alpha ('<script>...' sorts first) that claims the
    # hash of one of alpha's real subsets but points outside: refused, and alpha's copy still published
    legit_sha, legit_path = con.execute("SELECT sha256, path FROM artifact WHERE run_id = ?", (runs[-1],)).fetchone()
    shadow = outside / f"{legit_sha}.bin"  # not the name of the real file in the artifacts directory
    shadow.write_bytes(Path(legit_path).read_bytes())
    forged_rows.append(("shadow", legit_sha, str(shadow)))
    first = con.execute("SELECT id FROM run WHERE method LIKE '<script>%' AND status = 'done' ORDER BY id").fetchone()[0]
    runs = runs[: len(forged_rows) - 1] + [first]
    keys = {}
    for (label, sha, path), run_id in zip(forged_rows, runs, strict=True):
        con.execute("INSERT INTO artifact (run_id, kind, name, sha256, path, size) VALUES (?, 'indices', ?, ?, ?, 10)", (run_id, f"forged-{label}.npy", sha, path))
        keys[label] = con.execute("SELECT key FROM run WHERE id = ?", (run_id,)).fetchone()[0]
    con.commit()
    con.close()
    assert len(keys) == len(forged_rows)
    return db, secrets, keys


def test_site_publishes_only_checked_copies_from_the_results_directory(forged, tmp_path):
    db, secrets, keys = forged
    st = Store(db, create=False)
    try:
        legit = {a["sha256"] for r in load_store_records(st) for a in r.get("artifacts") or () if not a["name"].startswith("forged-")}
    finally:
        st.close()
    out = tmp_path / "site"
    report = render_site(db, out)
    # the rest renders: every legitimate subset file is published
    assert report.artifacts == len(legit) and (out / "lbtiny-small-v2.html").exists()
    published = [p for p in out.rglob("*") if p.is_file() or p.is_symlink()]
    contents = {p.read_bytes() for p in published if not p.is_symlink()}
    assert "outside the results directory" in next(w for w in report.warnings if "forged-shadow" in w)
    for label, data in secrets.items():
        assert data not in contents, f"the {label} file was published"
    assert not any(label in p.name for p in published for label in ("hostname",))
    # plain copies: no symlink, no hard link anywhere in the site
    for p in published:
        assert not p.is_symlink(), p
        assert os.lstat(p).st_nlink == 1, p
    files = list((out / "artifacts").rglob("*.npy"))
    assert {f.name[:64] for f in files} == legit
    for f in files:
        assert _sha(f.read_bytes()) == f.name[:64]
    # one one-line warning per rejected row, naming the run
    for label, key in keys.items():
        hits = [w for w in report.warnings if key in w and f"forged-{label}" in w]
        assert len(hits) == 1 and "\n" not in hits[0], (label, report.warnings)
    why = {label: next(w for w in report.warnings if f"forged-{label}" in w) for label in keys}
    assert "outside the results directory" in why["outside"]
    assert "sha256 is" in why["mismatch"]
    assert "outside the results directory" in why["symlink"]
    assert "'..'" in why["dotdot"]
    if "hostname" in why:
        assert "content-addressed" in why["hostname"]
    alpha = (out / "methods" / "lbt-alpha.html").read_text()
    for label in secrets:  # the row is still listed, without a download link
        sha = _sha(secrets[label]) if label != "mismatch" else None
        if sha:
            assert f'href="../artifacts/{sha[:2]}/{sha}' not in alpha


def test_rows_without_a_store_publish_no_files(store, tmp_path):  # noqa: F811
    """Rows handed over without a store name no results directory: nothing is copied from paths."""
    st = Store(store.sqlite_path, create=False)
    try:
        rows = load_store_records(st)
    finally:
        st.close()
    report = render_site(rows, tmp_path / "site")
    assert report.artifacts == 0 and not list((tmp_path / "site" / "artifacts").rglob("*.npy"))
    assert any("no results directory is known" in w for w in report.warnings)
    report = render_site(rows, tmp_path / "site2", artifacts_dir=store.artifacts_dir)
    assert report.artifacts > 0
