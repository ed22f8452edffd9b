"""What every part of lenspipe shares: feature keys (features.py) and the typed config (config.py).

A leaf package: it imports nothing else of lenspipe's, so components/, transform/,
trainer/ and pipeline/ all depend on it and never on each other's internals.
"""

# lenspipe/artifacts.py
_ARTIFACTS = ("RejectedFiles", "DataGateReport", "ClassicalBaseline", "TFLiteModels", "Predictions", "Explanation")


def __getattr__(name: str):
    # Custom artifact types are imported by their TYPE_NAME ("lenspipe.RejectedFiles") in
    # Kubeflow's containers; resolved on first use so `import lenspipe` stays free of TFX.
    if name in _ARTIFACTS:
        from lenspipe import artifacts

        return getattr(artifacts, name)
    raise AttributeError(f"module 'lenspipe' has no attribute {name!r}")
