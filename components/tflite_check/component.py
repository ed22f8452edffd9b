"""TFLiteCheck: the TFX component spec and its TFLiteModels artifact.

Sits between the Evaluator and the Pusher. Inputs: the Trainer's model, the Transform
graph, the examples (train for calibration, test for the check) and the Evaluator's
blessing (an unblessed model is not converted). Output: ``tflite_models``.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.tflite_check import executor
from lenspipe.artifacts import TFLiteModels

MODEL_KEY = "model"
TRANSFORM_GRAPH_KEY = "transform_graph"
EXAMPLES_KEY = "examples"
MODEL_BLESSING_KEY = "model_blessing"
TFLITE_MODELS_KEY = executor.TFLITE_MODELS_KEY
CONFIG_KEY = executor.CONFIG_KEY
CODE_VERSION_KEY = "code_version"


class TFLiteCheckSpec(types.ComponentSpec):
    PARAMETERS = {
        CONFIG_KEY: ExecutionParameter(type=str),  # TFLiteConfig as JSON
        CODE_VERSION_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph),
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {TFLITE_MODELS_KEY: ChannelParameter(type=TFLiteModels)}


class TFLiteCheck(base_component.BaseComponent):
    """Builds the configured TFLite variants of a blessed model and checks each against it.

    Args:
      model, transform_graph, examples: the Trainer's, the Transform's and ExampleGen's outputs.
      model_blessing: the Evaluator's blessing; an unblessed model is not converted.
      config: the ``tflite`` config section (a mapping, validated again by the executor).
    """

    SPEC_CLASS = TFLiteCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        transform_graph: types.BaseChannel,
        examples: types.BaseChannel,
        config: Mapping[str, Any],
        model_blessing: Optional[types.BaseChannel] = None,
        code_version: str = "",
    ):
        from lenspipe.config import TFLiteConfig

        checked = TFLiteConfig.model_validate(dict(config))  # a typo fails when the pipeline is built
        spec = TFLiteCheckSpec(
            model=model,
            transform_graph=transform_graph,
            examples=examples,
            model_blessing=model_blessing,
            config=json.dumps(checked.model_dump(), sort_keys=True),
            code_version=code_version,
            tflite_models=types.Channel(type=TFLiteModels),
        )
        super().__init__(spec=spec)
