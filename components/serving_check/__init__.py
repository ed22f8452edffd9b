"""ServingCheck: serve the candidate with `lenspipe serve` and compare its answers before any push."""

from components.serving_check.component import ServingCheck, read_result

__all__ = ["ServingCheck", "read_result"]
