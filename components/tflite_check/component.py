"""TFLiteCheck: the TFX component spec and its TFLiteModels artifact.

Sits between the Evaluator and the Pusher. Inputs: the Trainer's model, the Transform
graph, the examples (train for calibration, test for the check) and the Evaluator's
blessing (an unblessed model is not converted). Output: ``tflite_models``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.tflite_check import executor

MODEL_KEY = "model"
TRANSFORM_GRAPH_KEY = "transform_graph"
EXAMPLES_KEY = "examples"
MODEL_BLESSING_KEY = "model_blessing"
TFLITE_MODELS_KEY = executor.TFLITE_MODELS_KEY
CONFIG_KEY = executor.CONFIG_KEY
CODE_VERSION_KEY = "code_version"


class TFLiteModels(types.Artifact):
    """TFLite variants of one model and their check: ``<variant>.tflite``, ``labels.txt``, ``check.json``.

    ``check.json`` holds the input contract and, per variant, test accuracy, drop versus the
    SavedModel, size, mean latency, top-1 agreement and ``passed`` (pushed or not, and why).
    """

    TYPE_NAME = "TFLiteModels"


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


def _code_version() -> str:
    """Hash of the code this component runs (referenced by class path, which TFX's cache key misses)."""
    import inference
    from trainer import tflite_export

    root = Path(__file__).parents[2]
    sources = sorted([*Path(__file__).parent.glob("*.py"), *Path(inference.__file__).parent.glob("*.py"),
                      Path(tflite_export.__file__)])
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


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
    ):
        from lenspipe.config import TFLiteConfig

        checked = TFLiteConfig.model_validate(dict(config))  # a typo fails when the pipeline is built
        spec = TFLiteCheckSpec(
            model=model,
            transform_graph=transform_graph,
            examples=examples,
            model_blessing=model_blessing,
            config=json.dumps(checked.model_dump(), sort_keys=True),
            code_version=_code_version(),
            tflite_models=types.Channel(type=TFLiteModels),
        )
        super().__init__(spec=spec)
