"""Noise-correction methods (kind ``noise-correction``): contestants of the ``label-noise`` track.
"""
