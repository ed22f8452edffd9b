"""Runners: one small module per orchestrator; each supplies paths, metadata and Beam args."""
