"""runtime.beam_args / --beam-arg: checked by Beam's own parser up front, handed to every Beam component.

The components that run Beam are read from the pipeline (their executor spec), never listed here.
"""

from __future__ import annotations

import json

import pytest

from lenspipe.config import ConfigError, load_config
from pipeline.runners import common

# What a Flink or Spark job server (or Beam's Python one) would be given; nothing connects here.
PORTABLE = [
    "--runner=PortableRunner",
    "--job_endpoint=jobs.internal:8099",
    "--environment_type=EXTERNAL",
    "--environment_config=workers.internal:50000",
    "--job_server_timeout=86400",
]


def beam_component_ids(pipeline) -> set[str]:
    from tfx.dsl.components.base.executor_spec import BeamExecutorSpec

    return {c.id for c in pipeline.components if isinstance(getattr(c, "executor_spec", None), BeamExecutorSpec)}


@pytest.fixture(scope="module")
def portable_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam-args")
    # With data.inference_root the pipeline also has the inference ExampleGen and BulkInferrer.
    return load_config(
        None, {"runtime.beam_args": PORTABLE, "runtime.work_dir": str(root / "work"), "data.inference_root": str(root)}
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--runnr=PortableRunner"], "--runnr: not a Beam pipeline option (did you mean --runner?)"),
        (["--job_endpont", "localhost:8099"], "--job_endpont: not a Beam pipeline option (did you mean --job_endpoint?)"),
        (["--direct_num_workers=two"], "argument --direct_num_workers: invalid int value: 'two'"),
        (["--runner=PortableRuner", "--job_server_timeout=60"], "--runner=PortableRuner: not a Beam runner (did you mean PortableRunner?)"),
        (["PortableRunner"], "'PortableRunner': not a --flag=value Beam option"),
        (["--runner=FlinkRunner", "--flink_master=flink:8081"], "--runner=FlinkRunner: add --job_server_timeout=SECONDS"),
    ],
)
def test_a_bad_beam_argument_is_a_config_error_naming_it(args, message):
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"runtime.beam_args": args})
    text = str(caught.value)
    assert text.startswith("runtime.beam_args: ") and message in text
    assert "\n" not in text


@pytest.mark.parametrize(
    "args",
    [
        PORTABLE,
        ["--runner", "DataflowRunner", "--project=p", "--region=europe-west4", "--temp_location=gs://b/tmp"],
        ["--runner=SparkRunner", "--spark_master_url=spark://spark:7077", "--job_server_timeout=86400"],
    ],
)
def test_runner_arguments_beam_knows_are_kept_as_given(args):
    assert load_config(None, {"runtime.beam_args": args}).runtime.beam_args == args


def test_the_environment_variable_takes_a_yaml_list():
    environ = {"LENSPIPE_RUNTIME__BEAM_ARGS": "[--direct_running_mode=multi_processing, --direct_num_workers=2]"}
    cfg = load_config(None, environ=environ)
    assert cfg.runtime.beam_args == ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def test_beam_arg_options_on_the_command_line(capsys):
    """`--beam-arg --flag=value` (as two words) is repeatable; a misspelt flag stops the CLI with one line."""
    import yaml

    from pipeline.cli import main

    argv = ["config"] + [word for arg in PORTABLE[:2] for word in ("--beam-arg", arg)] + ["--beam-arg=" + PORTABLE[4]]
    assert main(argv) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["runtime"]["beam_args"] == [PORTABLE[0], PORTABLE[1], PORTABLE[4]]
    with pytest.raises(SystemExit) as caught:
        main(["run", "--beam-arg", "--job_endpont=localhost:8099"])
    assert caught.value.code == (
        "lenspipe: config: runtime.beam_args: Value error, --job_endpont: not a Beam pipeline option "
        "(did you mean --job_endpoint?)"
    )


def test_every_beam_component_of_a_local_run_gets_the_arguments(portable_cfg):
    """What BeamDagRunner hands each executor: the compiled IR's Beam executable specs."""
    from tfx.dsl.compiler import compiler
    from tfx.proto.orchestration import executable_spec_pb2, pipeline_pb2

    pipeline = common.build_pipeline(portable_cfg, "/data/images", metadata=False)
    beam_ids = beam_component_ids(pipeline)
    deployment = pipeline_pb2.IntermediateDeploymentConfig()
    compiler.Compiler().compile(pipeline).deployment_config.Unpack(deployment)
    compiled = {}
    for node, spec in deployment.executor_specs.items():
        if spec.Is(executable_spec_pb2.BeamExecutableSpec.DESCRIPTOR):
            beam = executable_spec_pb2.BeamExecutableSpec()
            spec.Unpack(beam)
            compiled[node] = list(beam.beam_pipeline_args)
    assert set(compiled) == beam_ids
    assert {"ImageExampleGen", "StatisticsGen", "Transform", "Evaluator", "BulkInferrer"} <= beam_ids
    for node, args in compiled.items():
        assert args == common.beam_args(portable_cfg), node
        assert args[-len(PORTABLE):] == PORTABLE  # last: they win over the DirectRunner defaults


def test_every_beam_step_of_the_kubeflow_pipeline_gets_the_arguments(portable_cfg, tmp_path):
    from pipeline.runners import kubeflow

    out = kubeflow.compile_pipeline(portable_cfg, tmp_path / "pipeline.json", data_root="gs://bucket/images")
    executors = json.loads(out.read_text())["pipelineSpec"]["deploymentSpec"]["executors"]
    pipeline, _ = kubeflow.create_pipeline_for_kubeflow(portable_cfg, "gs://bucket/images")
    beam_ids = beam_component_ids(pipeline)
    assert beam_ids
    for node in beam_ids:  # TFX's Kubeflow compiler gives the pipeline's Beam args to every step
        args = executors[f"{node}_executor"]["container"]["args"]
        at = args.index(PORTABLE[0])
        assert args[at - 2:at + len(PORTABLE)] == common.beam_args(portable_cfg), node


def test_a_local_run_does_not_package_tfx_for_the_beam_workers(tmp_path, monkeypatch):
    """TFX alone copies its source into a new temp folder and builds an sdist per Beam executor; a local run does not."""
    import tempfile

    from tfx.components.statistics_gen.executor import Executor
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    args = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]

    def executor_args() -> list[str]:
        context = BaseBeamExecutor.Context(beam_pipeline_args=list(args), tmp_dir=str(tmp_path / "exec"))
        return Executor(context)._beam_pipeline_args  # pylint: disable=protected-access

    with common.without_tfx_ephemeral_package():
        inside = executor_args()
    assert not any(a.startswith("--extra_package") for a in inside) and inside[:2] == args
    assert list((tmp_path / "tmp").iterdir()) == []
    outside = executor_args()  # TFX's own behaviour, which the local runner switches off
    (package,) = [a.split("=", 1)[1] for a in outside if a.startswith("--extra_package=")]
    assert package.startswith(str(tmp_path / "tmp")) and package.endswith(".tar.gz")
