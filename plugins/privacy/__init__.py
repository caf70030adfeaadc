"""Privacy methods (kind ``privacy``): membership-inference attacks (``privacy`` track) and memorization
proxies (``memorization`` track).

Private helper shared by these methods and the privacy track: ``_mia`` (shadow statistics,
curvature estimators).
"""
