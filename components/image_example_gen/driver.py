"""ImageExampleGen's driver for TFX's legacy launcher (Airflow): prepares every output, not only examples.

FileBasedDriver._prepare_output_artifacts returns just ``examples``; the launcher then
hands the executor an output dict without ``rejected`` and it fails with KeyError. The
IR-based launchers (local, Kubeflow) prepare outputs themselves and never call this.
"""

from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.example_gen.driver import FileBasedDriver
from tfx.dsl.components.base import base_driver
from tfx.orchestration import data_types


class ImageExampleGenDriver(FileBasedDriver):
    """FileBasedDriver (span, fingerprint, cache) that also gives the other outputs a URI."""

    def _prepare_output_artifacts(
        self,
        input_artifacts: dict[str, list[types.Artifact]],
        output_dict: dict[str, types.Channel],
        exec_properties: dict[str, Any],
        execution_id: int,
        pipeline_info: data_types.PipelineInfo,
        component_info: data_types.ComponentInfo,
    ) -> dict[str, list[types.Artifact]]:
        result = super()._prepare_output_artifacts(
            input_artifacts, output_dict, exec_properties, execution_id, pipeline_info, component_info
        )
        others = {key: channel for key, channel in output_dict.items() if key not in result}
        result.update(
            base_driver.BaseDriver._prepare_output_artifacts(  # the generic one: a URI per output
                self, input_artifacts, others, exec_properties, execution_id, pipeline_info, component_info
            )
        )
        return result
