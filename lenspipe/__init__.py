"""What every part of lenspipe shares: feature keys (features.py) and the typed config (config.py).

A leaf package: it imports nothing else of lenspipe's, so components/, transform/,
trainer/ and pipeline/ all depend on it and never on each other's internals.
"""
