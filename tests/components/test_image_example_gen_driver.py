"""The driver Airflow's legacy launcher uses: every output of ImageExampleGen gets a URI, not only examples."""

from __future__ import annotations

from components.image_example_gen.component import EXAMPLES_KEY, REJECTED_KEY, ImageExampleGen
from components.image_example_gen.driver import ImageExampleGenDriver
from tfx.components.example_gen.driver import FileBasedDriver
from tfx.orchestration import data_types


def test_driver_prepares_examples_and_rejected(tmp_path):
    component = ImageExampleGen(input_base=str(tmp_path / "data"))
    pipeline_info = data_types.PipelineInfo("p", str(tmp_path / "root"), run_id="r1")
    component_info = data_types.ComponentInfo("ImageExampleGen", "ImageExampleGen", pipeline_info)
    # What resolve_exec_properties adds before outputs are prepared.
    exec_properties = {**component.exec_properties, "span": 0, "version": None, "input_fingerprint": "f"}
    args = ({}, component.outputs, exec_properties, 7, pipeline_info, component_info)

    stock = FileBasedDriver(metadata_handle=None)._prepare_output_artifacts(*args)
    assert set(stock) == {EXAMPLES_KEY}  # what fails under Airflow: KeyError 'rejected' in the executor

    prepared = ImageExampleGenDriver(metadata_handle=None)._prepare_output_artifacts(*args)
    assert set(prepared) == {EXAMPLES_KEY, REJECTED_KEY}
    (rejected,) = prepared[REJECTED_KEY]
    assert rejected.uri == str(tmp_path / "root" / "ImageExampleGen" / REJECTED_KEY / "7")
    assert rejected.type_name == "lenspipe.RejectedFiles"
    (examples,) = prepared[EXAMPLES_KEY]
    assert examples.uri.endswith("/ImageExampleGen/examples/7")
