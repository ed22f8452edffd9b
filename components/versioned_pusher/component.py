"""VersionedPusher: TFX's Pusher with TF Serving–friendly versions.

Same spec, inputs, push_destination and output properties as
``tfx.components.Pusher`` (so anything reading pushed/pushed_version works), but
the executor numbers versions 1, 2, 3 ... and renames a complete copy into place.
An optional ``tflite_models`` input (TFLiteCheck) adds the variants that passed their
check under ``<version>/assets.extra/tflite/``, inside the same rename.
"""

from typing import Any, Optional

from tfx import types
from tfx.components import Pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from components.tflite_check import TFLiteModels
from components.versioned_pusher import executor


class VersionedPusherSpec(types.ComponentSpec):
    PARAMETERS = standard_component_specs.PusherSpec.PARAMETERS
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        executor.TFLITE_MODELS_KEY: ChannelParameter(type=TFLiteModels, optional=True),
    }
    OUTPUTS = standard_component_specs.PusherSpec.OUTPUTS


class VersionedPusher(Pusher):
    """Pusher whose versions are consecutive integers, published by rename."""

    SPEC_CLASS = VersionedPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: Optional[types.BaseChannel] = None,
        infra_blessing: Optional[types.BaseChannel] = None,
        push_destination: Any = None,
        tflite_models: Optional[types.BaseChannel] = None,
        custom_config: Optional[dict] = None,
    ):
        if push_destination is None:
            raise ValueError("VersionedPusher needs push_destination (a filesystem base directory)")
        spec = VersionedPusherSpec(
            model=model,
            model_blessing=model_blessing,
            infra_blessing=infra_blessing,
            push_destination=push_destination,
            custom_config=json_utils.dumps(custom_config),
            tflite_models=tflite_models,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
        )
        base_component.BaseComponent.__init__(self, spec=spec)
