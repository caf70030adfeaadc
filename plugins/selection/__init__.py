"""Selection methods (kind ``selection``): one module per method, contestants of the ``coreset`` track.

Private helpers shared by these methods: ``_ranking`` (score ranking, checkpoint rows, per-class top-k),
``_lastlayer`` (last-layer gradients), ``_greedy`` (greedy and submodular kernels).
"""
