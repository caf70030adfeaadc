"""Distillation methods (kind ``distillation``): contestants of the ``decentralized`` (role
``decentralized``) and ``video`` (role ``early-exit``) tracks. Empty until those tracks land.
"""
