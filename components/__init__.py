"""Custom TFX components of lenspipe, one folder each: component.py (spec) + executor.py."""
