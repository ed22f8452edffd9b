"""Evaluator executor: TFX's TFMA run, then the CNN's test accuracy against the classical baseline's."""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import tensorflow_model_analysis as tfma
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as tfx_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from lenspipe import metrics

log = logging.getLogger("lenspipe.evaluator")

CLASSICAL_BASELINE_KEY = "classical_baseline"
BEAT_BASELINE_KEY = "beat_baseline"
CODE_VERSION_KEY = "code_version"
BASELINE_ACCURACY_PROPERTY = "classical_baseline_accuracy"  # on the blessing
CANDIDATE_ACCURACY_PROPERTY = "candidate_accuracy"
NOT_BLESSED_REASON_PROPERTY = "not_blessed_reason"
_ACCURACY = "accuracy"  # the metric name in pipeline.eval_config


def overall_accuracy(evaluation_uri: str) -> Optional[float]:
    """The candidate's accuracy on the overall slice, from TFMA's metrics."""
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for kv in metrics.metric_keys_and_values:
            key = kv.key
            if key.name == _ACCURACY and not key.is_diff and key.model_name in ("", "candidate") and not key.HasField("sub_key"):
                return kv.value.double_value.value
    return None


class Executor(tfx_executor.Executor):
    """TFX's Evaluator executor; then, given a classical baseline, records it and applies the gate."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        beat = bool(exec_properties.get(BEAT_BASELINE_KEY))
        super().Do(input_dict, output_dict, {k: v for k, v in exec_properties.items() if k not in (BEAT_BASELINE_KEY, CODE_VERSION_KEY)})
        baselines = input_dict.get(CLASSICAL_BASELINE_KEY) or []
        blessings = output_dict.get(standard_component_specs.BLESSING_KEY) or []
        if not baselines or not blessings:
            return
        from components.classical_baseline.component import ACCURACY_PROPERTY

        baseline_accuracy = baselines[0].get_float_custom_property(ACCURACY_PROPERTY)
        evaluation = artifact_utils.get_single_instance(output_dict[standard_component_specs.EVALUATION_KEY])
        accuracy = overall_accuracy(evaluation.uri)
        apply_baseline_gate(blessings[0], accuracy, baseline_accuracy, beat)


def apply_baseline_gate(blessing: Any, accuracy: Optional[float], baseline_accuracy: float, beat: bool) -> None:
    """Record both accuracies on ``blessing``; with ``beat``, un-bless a CNN below the baseline (files and property)."""
    blessing.set_float_custom_property(BASELINE_ACCURACY_PROPERTY, baseline_accuracy)
    if accuracy is None:
        return
    blessing.set_float_custom_property(CANDIDATE_ACCURACY_PROPERTY, accuracy)
    log.info("test accuracy: CNN %.4f, classical baseline %.4f", accuracy, baseline_accuracy)
    blessed = blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == constants.BLESSED_VALUE
    if beat and blessed and metrics.below(accuracy, baseline_accuracy):
        reason = (
            f"the CNN's test accuracy {accuracy:.4f} is below the classical baseline's {baseline_accuracy:.4f} "
            "(evaluator.beat_baseline)"
        )
        log.warning("not blessed: %s", reason)
        fileio.remove(os.path.join(blessing.uri, constants.BLESSED_FILE_NAME))
        io_utils.write_string_file(os.path.join(blessing.uri, constants.NOT_BLESSED_FILE_NAME), "")
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, constants.NOT_BLESSED_VALUE)
        blessing.set_string_custom_property(NOT_BLESSED_REASON_PROPERTY, reason)
