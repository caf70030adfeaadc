"""The leaderboard: statistics, portable entries and the static site.

* ``stats``: intervals (paired hierarchical bootstrap, t fallback), paired gains, ties, mean ranks.
* ``board``: the ranking model of one track profile (rows, columns, coverage, ties).
* ``entries``: export of one JSON entry per (method, profile), and validation of entries.
* ``signing``: optional Ed25519 signatures of entries (keys, sign, verify against trusted keys),
  and the pins of the published entries.
* ``errors``: ``EntryError``, the one-line rejection both ``entries`` and ``signing`` raise.
* ``render``: ``render_site(store_or_rows, out_dir, entries_dirs=...)``, the static HTML site.
* ``cli``: ``register(app)`` adds the ``leaderboard``, ``export``, ``keys`` and ``entries`` commands to a typer app.

Modules are imported on use (``render`` pulls in matplotlib), so importing this package is cheap.
"""
