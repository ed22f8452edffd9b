"""PredictionsWriter: BulkInferrer's prediction logs as predictions.jsonl and predictions.csv."""

from components.predictions_writer.component import Predictions, PredictionsWriter

__all__ = ["Predictions", "PredictionsWriter"]
