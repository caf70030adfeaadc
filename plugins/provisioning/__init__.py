"""Provisioning methods (kind ``provisioning``): contestants of the ``pooling`` track. Empty until
that track lands.
"""
