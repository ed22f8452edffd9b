"""Kubeflow without a cluster: the custom components' container commands from the compiled spec, run here.

Each step runs the command and arguments the spec gives its container, with ``{{$}}``
replaced by the ExecutorInput a Kubeflow launcher would pass (parameters resolved from the
task's inputs and the pipeline's runtime parameters, artifact URIs under a local root).
The entrypoints do not create local output folders (object stores need none): the
launcher's part, done here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import datasets
from tests.e2e.test_pipeline_e2e import lenspipe

pytestmark = pytest.mark.e2e

SPLITS = ("train", "eval", "test")


class Launcher:
    """Plays Kubeflow's launcher for one compiled PipelineJob on the local filesystem."""

    def __init__(self, job: dict, root: Path, parameters: dict[str, str]):
        self.spec = job["pipelineSpec"]
        self.root = root
        defaults = {k: v["defaultValue"] for k, v in self.spec["root"]["inputDefinitions"]["parameters"].items()}
        self.parameters = {**defaults, **parameters}

    def executor_input(self, task: str, artifacts: dict[str, list[dict]]) -> dict:
        spec_task = self.spec["root"]["dag"]["tasks"][task]
        component = self.spec["components"][spec_task["componentRef"]["name"]]
        values = {}
        for name, source in spec_task["inputs"].get("parameters", {}).items():
            if "componentInputParameter" in source:
                values[name] = self.parameters[source["componentInputParameter"]]
            else:
                values[name] = source["runtimeValue"]["constant"]
        outputs = {}
        for key, definition in component["outputDefinitions"]["artifacts"].items():
            uri = self.root / task / key
            uri.mkdir(parents=True, exist_ok=True)
            outputs[key] = {"artifacts": [{"name": key, "type": definition["artifactType"], "uri": str(uri)}]}
        inputs = {}
        for key, items in artifacts.items():
            artifact_type = component["inputDefinitions"]["artifacts"][key]["artifactType"]
            inputs[key] = {"artifacts": [{"name": key, "type": artifact_type, **item} for item in items]}
        return {
            "inputs": {"parameterValues": values, "artifacts": inputs},
            "outputs": {"artifacts": outputs, "outputFile": str(self.root / task / "executor_output.json")},
        }

    def container(self, task: str) -> dict:
        label = self.spec["components"][task]["executorLabel"]
        return self.spec["deploymentSpec"]["executors"][label]["container"]

    def run(self, task: str, artifacts: dict[str, list[dict]], hook: bool = False) -> subprocess.CompletedProcess:
        """Run the task's container command (or its pre-cache-check driver hook) as the spec says."""
        container = self.container(task)
        step = container["lifecycle"]["preCacheCheck"] if hook else container
        invocation = json.dumps(self.executor_input(task, artifacts))
        args = [invocation if a == "{{$}}" else a for a in step["args"]]
        command = [sys.executable if c == "python" else c for c in step["command"]]
        env = {**os.environ, **{e["name"]: e["value"] for e in container.get("env", [])}}
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=600, env=env)

    def output(self, task: str) -> dict:
        return json.loads((self.root / task / "executor_output.json").read_text())


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    root = tmp_path_factory.mktemp("kfp-local")
    data = datasets.write_digits(root / "data", per_class=3)
    job_file = root / "pipeline.json"
    result = lenspipe(
        "compile", "--target", "kubeflow", "--output", str(job_file),
        "--pipeline-root", str(root / "compiled-root"), "--data", str(root / "compile-time-data"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The runtime parameters a user would set when starting the run.
    return Launcher(
        json.loads(job_file.read_text()), root / "run",
        {"data_root": str(data), "serving_model_dir": str(root / "serving" / "digits")},
    )


def test_image_example_gen_driver_then_executor(launcher):
    driver = launcher.run("ImageExampleGen", {}, hook=True)
    assert driver.returncode == 0, driver.stderr[-3000:]
    resolved = launcher.output("ImageExampleGen")
    assert resolved["parameterValues"]["span"] == 0 and resolved["parameterValues"]["input_fingerprint"]
    executor = launcher.run("ImageExampleGen", {})  # reads the driver's output file, as in the pod
    assert executor.returncode == 0, executor.stderr[-3000:]
    examples = launcher.root / "ImageExampleGen" / "examples"
    files = {split: list((examples / f"Split-{split}").glob("*.gz")) for split in SPLITS}
    assert all(files.values()), files
    import tensorflow as tf

    count = sum(1 for split in SPLITS for f in files[split] for _ in tf.data.TFRecordDataset(str(f), "GZIP"))
    assert count == 30  # 3 digits of each of the 10 classes, from the data_root given at run time
    rejected = launcher.root / "ImageExampleGen" / "rejected" / "rejected.jsonl"
    assert rejected.is_file() and rejected.read_text() == ""
    out = launcher.output("ImageExampleGen")["artifacts"]
    assert set(out) == {"examples", "rejected"}


def _anomalies(path: Path, with_anomaly: bool) -> dict:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    for split in SPLITS:
        proto = anomalies_pb2.Anomalies()
        if with_anomaly and split == "train":
            proto.anomaly_info["height"].description = "Unexpectedly small value: 8."
        (path / f"Split-{split}").mkdir(parents=True, exist_ok=True)
        (path / f"Split-{split}" / "SchemaDiff.pb").write_bytes(proto.SerializeToString())
    return {"uri": str(path), "metadata": {"split_names": json.dumps(list(SPLITS))}}


def _gate_inputs(path: Path, with_anomaly: bool) -> dict:
    """DataGate's three inputs: anomalies, and statistics and examples that show the same classes in every split."""
    from tests.components.test_data_gate import write_splits

    write_splits(path, {split: [("cat", f"cat/{split}.png"), ("dog", f"dog/{split}.png")] for split in SPLITS})
    split_names = {"split_names": json.dumps(list(SPLITS))}
    return {
        "anomalies": [_anomalies(path / "anomalies", with_anomaly)],
        "statistics": [{"uri": str(path / "statistics"), "metadata": split_names}],
        "examples": [{"uri": str(path / "examples"), "metadata": split_names}],
    }


def test_data_gate_passes_clean_data_and_records_its_report(launcher, tmp_path):
    result = launcher.run("DataGate", _gate_inputs(tmp_path / "clean", with_anomaly=False))
    assert result.returncode == 0, result.stderr[-3000:]
    (report,) = launcher.output("DataGate")["artifacts"]["report"]["artifacts"]
    assert report["metadata"]["num_anomalies"] == 0
    assert (launcher.root / "DataGate" / "report" / "anomalies.txt").read_text() == ""


def test_data_gate_fails_the_step_on_an_anomaly(launcher, tmp_path):
    result = launcher.run("DataGate", _gate_inputs(tmp_path / "bad", with_anomaly=True))
    assert result.returncode != 0
    assert "data gate: 1 anomaly against the schema" in result.stderr
    assert "train: feature 'height': Unexpectedly small value: 8." in result.stderr


def test_versioned_pusher_pushes_to_the_serving_dir_given_at_run_time(launcher, tmp_path):
    import tensorflow as tf

    model = tmp_path / "model"
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.f = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(model / "Format-Serving"))
    blessing = {"uri": str(tmp_path / "blessing"), "metadata": {"blessed": 1, "current_model_id": 1}}
    result = launcher.run("VersionedPusher", {"model": [{"uri": str(model)}], "model_blessing": [blessing]})
    assert result.returncode == 0, result.stderr[-3000:]
    serving = Path(launcher.parameters["serving_model_dir"])
    assert sorted(p.name for p in serving.iterdir()) == ["1"]  # not the compile-time default
    loaded = tf.saved_model.load(str(serving / "1"))
    assert float(loaded.f(tf.constant([3.0]))[0]) == 6.0
    (pushed,) = launcher.output("VersionedPusher")["artifacts"]["pushed_model"]["artifacts"]
    assert pushed["metadata"]["pushed"] == 1 and pushed["metadata"]["pushed_version"] == "1"
