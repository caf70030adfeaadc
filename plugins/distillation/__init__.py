"""Distillation methods (kind ``distillation``): contestants of the ``decentralized`` track (role
``decentralized``: ``d-psgd``, ``qgm``, ``idkd``, ``naive-kd``, sharing the loop in ``_gossip``)
and of the ``video`` track (role ``early-exit``).
"""
