"""Provisioning methods (kind ``provisioning``): contestants of the ``pooling`` track.

``intelligent-pooling`` (SSA + MLP quantile forecast, newsvendor LP, auto-tuned), its ablations
``ssa-pooling`` and ``seasonal-pooling``, ``reactive``; the baseline ``static`` and the bound
``oracle`` (privileged: sees the future, never ranked). Shared helpers: ``_pooling``.
"""
