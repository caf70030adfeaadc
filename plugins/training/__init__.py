"""Training methods (kind ``training``): fixtures of the coreset and privacy tracks (standard, TRADES,
PGD-AT, DP-SGD), and contestants where a track ranks them.
"""
