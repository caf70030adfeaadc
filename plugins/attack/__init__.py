"""Attack methods (kind ``attack``): fixtures of the coreset track's evaluation and contestants of the
``robustness`` track.
"""
