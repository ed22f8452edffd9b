"""Evaluator: TFX's Evaluator (TFMA, same spec and outputs) with one more optional input.

``classical_baseline`` (a ClassicalBaselineResult) puts the classical model's test
accuracy beside the CNN's on the blessing; with ``beat_baseline`` a CNN less accurate
than it is not blessed. Gating here, not after the Evaluator, keeps one blessing
artifact per model, so the Pusher and the next run's baseline resolver agree with it.
"""

from __future__ import annotations

from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components import Evaluator as TfxEvaluator
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils

from components.classical_baseline import ClassicalBaselineResult
from components.evaluator import executor

CLASSICAL_BASELINE_KEY = executor.CLASSICAL_BASELINE_KEY
BEAT_BASELINE_KEY = executor.BEAT_BASELINE_KEY
CODE_VERSION_KEY = executor.CODE_VERSION_KEY


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        BEAT_BASELINE_KEY: ExecutionParameter(type=int, optional=True),
        CODE_VERSION_KEY: ExecutionParameter(type=str, optional=True),  # keys the cache only
    }
    INPUTS = {
        **standard_component_specs.EvaluatorSpec.INPUTS,
        CLASSICAL_BASELINE_KEY: ChannelParameter(type=ClassicalBaselineResult, optional=True),
    }


class Evaluator(TfxEvaluator):
    """TFX's Evaluator with ``classical_baseline`` and ``beat_baseline``; raises like TFX's for bad arguments."""

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        eval_config: tfma.EvalConfig,
        baseline_model: Optional[types.BaseChannel] = None,
        schema: Optional[types.BaseChannel] = None,
        example_splits: Optional[List[str]] = None,
        classical_baseline: Optional[types.BaseChannel] = None,
        beat_baseline: bool = False,
        code_version: str = "",
    ):
        spec = EvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            fairness_indicator_thresholds=json_utils.dumps(None),
            example_splits=json_utils.dumps(example_splits),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            eval_config=eval_config,
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            schema=schema,
            classical_baseline=classical_baseline,
            beat_baseline=int(beat_baseline),
            code_version=code_version,
        )
        # TfxEvaluator.__init__ only builds its own spec, which lacks our input: skip it.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
