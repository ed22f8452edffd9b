"""The pipeline on Beam's portability framework: PortableRunner, a job service, SDK workers in other processes.

Flink, Spark and Dataflow Runner v2 run Python pipelines this way (a job service, SDK workers
speaking the Fn API). Their job servers cannot be downloaded here; Beam's Python job service
(``local_job_service_main``) and an external worker pool (``worker_pool_main``) can be started, and
every Beam job of the run then executes in an SDK worker process the pool starts, as on a cluster:
nothing a component's Beam code needs may live only in the process that built the pipeline.

The Beam outputs are compared with a DirectRunner run of the same config on the same images. The
model gate is at 0 on purpose: this run trains for one epoch on 100 images, and the test is about
where Beam runs, not about accuracy (tests/e2e/test_pipeline_e2e.py gates on accuracy).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lenspipe.config import load_config
from tests.e2e.test_pipeline_e2e import lenspipe, summary_of

pytestmark = pytest.mark.e2e

PER_CLASS = 10
CONFIG = {
    "data.embedded_per_class": PER_CLASS,
    "image.height": 16,
    "image.width": 16,
    "image.channels": 1,
    "tuner.enabled": False,
    "trainer.epochs": 1,
    "evaluator.min_accuracy": 0.0,
    "classical.enabled": False,
    "explainer.enabled": False,
    "tflite.enabled": False,
    "serving_check.enabled": False,
}
START_TIMEOUT = 180  # seconds for the job service and the worker pool to listen (a busy 2-core machine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("localhost", port), timeout=1):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group (the pool's SDK workers are in it), SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class BeamServices:
    def __init__(self, root: Path):
        self.root = root
        self.job_log = root / "job-service.log"
        self.pool_log = root / "worker-pool.log"
        self.job_port = 0
        self.pool_port = _free_port()
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        # The pool starts each SDK worker as `python -c ...`, the first python on its PATH: this venv's.
        env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        port_file = self.root / "job-service.port"
        self.processes.append(self._spawn(
            [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
             "--port", "0", "--port_file", str(port_file), "--staging_dir", str(self.root / "staging")],
            self.job_log, env,
        ))
        self.processes.append(self._spawn(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={self.pool_port}"],
            self.pool_log, env,
        ))
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for process, log in zip(self.processes, (self.job_log, self.pool_log)):
                if process.poll() is not None:
                    raise RuntimeError(f"{log.name}: exited with {process.returncode}: {log.read_text()[-2000:]}")
            if port_file.is_file() and not self.job_port:
                self.job_port = int(port_file.read_text())
            if self.job_port and _listening(self.job_port) and _listening(self.pool_port):
                return
            time.sleep(0.5)
        raise RuntimeError(f"job service or worker pool not listening after {START_TIMEOUT} s")

    def _spawn(self, command: list[str], log: Path, env: dict) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.root, start_new_session=True
            )

    def stop(self) -> None:
        for process in self.processes:
            _stop(process)

    def beam_args(self) -> list[str]:
        return [
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{self.job_port}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{self.pool_port}",
            "--job_server_timeout=1200",
        ]

    def completed_jobs(self) -> list[str]:
        return re.findall(r"Completed job in [0-9.]+ seconds with state (\w+)\.", self.job_log.read_text())

    def started_workers(self) -> int:
        return self.pool_log.read_text().count("Starting worker with command")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("portable")


@pytest.fixture(scope="module")
def data(root) -> Path:
    from pipeline import datasets

    return datasets.write_digits(root / "digits", per_class=PER_CLASS)


@pytest.fixture(scope="module")
def services(root):
    beam = BeamServices(root)
    try:
        beam.start()
        yield beam
    finally:
        beam.stop()


@pytest.fixture(scope="module")
def portable_run(root, data, services):
    """The whole pipeline through `lenspipe run --beam-arg ...` on the job service."""
    work = root / "portable-work"
    args = ["run", "--work-dir", str(work), "--data", str(data)]
    for dotted, value in CONFIG.items():
        args += ["--set", f"{dotted}={str(value).lower() if isinstance(value, bool) else value}"]
    for arg in services.beam_args():
        args += ["--beam-arg", arg]
    result = lenspipe(*args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + services.job_log.read_text()[-3000:]
    return work, summary_of(work)


@pytest.fixture(scope="module")
def direct_run(root, data):
    """The same config on the DirectRunner, up to the last Beam component before training (a partial run)."""
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
    from tfx.orchestration.pipeline import RunOptions

    from pipeline.runners import common

    work = root / "direct-work"
    cfg = load_config(None, {**CONFIG, "runtime.work_dir": str(work), "data.root": str(data)})
    pipeline = common.build_pipeline(cfg, str(data))
    upstream_of_training = sorted(_beam_ids(pipeline) & _ancestors(_trainer(pipeline)))
    with common.without_tfx_ephemeral_package():  # as pipeline/runners/local.py runs it
        BeamDagRunner().run(pipeline, run_options=RunOptions(to_nodes=upstream_of_training))
    return work, upstream_of_training


def _trainer(pipeline):
    from tfx import v1 as tfx

    (trainer,) = [c for c in pipeline.components if isinstance(c, tfx.components.Trainer)]
    return trainer


def _ancestors(node) -> set[str]:
    seen, stack = set(), list(node.upstream_nodes)
    while stack:
        upstream = stack.pop()
        if upstream.id not in seen:
            seen.add(upstream.id)
            stack.extend(upstream.upstream_nodes)
    return seen


def _beam_ids(pipeline) -> set[str]:
    from tfx.dsl.components.base.executor_spec import BeamExecutorSpec

    return {c.id for c in pipeline.components if isinstance(getattr(c, "executor_spec", None), BeamExecutorSpec)}


def _pipeline_components(data: Path):
    from pipeline.runners import common

    cfg = load_config(None, {**CONFIG, "data.root": str(data)})
    return common.build_pipeline(cfg, str(data), metadata=False)


def _output(work: Path, component: str, key: str) -> Path:
    (uri,) = sorted((work / "pipelines" / "lenspipe" / component / key).iterdir())  # one execution per run
    return uri


def _examples(work: Path) -> dict[str, list[bytes]]:
    """Split name -> serialized tf.Examples, sorted by the image's path."""
    import tensorflow as tf

    from lenspipe import features

    out = {}
    for split_dir in sorted(_output(work, "ImageExampleGen", "examples").glob("Split-*")):
        records = [r.numpy() for r in tf.data.TFRecordDataset(sorted(map(str, split_dir.glob("*.gz"))), "GZIP")]
        path = lambda raw: tf.train.Example.FromString(raw).features.feature[features.PATH_KEY].bytes_list.value[0]  # noqa: E731
        out[split_dir.name.removeprefix("Split-")] = sorted(records, key=path)
    return out


def test_every_beam_component_ran_as_a_job_on_the_job_service(portable_run, services, data):
    _, summary = portable_run
    pipeline = _pipeline_components(data)
    beam_ids = _beam_ids(pipeline)
    from tfx import v1 as tfx

    # Every component (the resolver is not an execution) ran: none was cached, none skipped.
    assert set(summary.executed) == {c.id for c in pipeline.components if not isinstance(c, tfx.dsl.Resolver)}
    assert beam_ids <= set(summary.executed)
    # One Beam job per Beam component, each in an SDK worker process the pool started.
    assert services.completed_jobs() == ["DONE"] * len(beam_ids)
    assert services.started_workers() == len(beam_ids)


def test_the_model_is_evaluated_on_every_test_image_blessed_and_pushed(portable_run):
    work, summary = portable_run
    assert summary.blessed is True
    assert summary.pushed is True and summary.pushed_version == "1"
    assert summary.overall is not None and summary.overall.count == summary.split_counts["test"]
    assert (work / "serving" / "lenspipe" / "1" / "saved_model.pb").is_file()


def test_the_same_examples_in_the_same_splits_as_the_direct_runner(portable_run, direct_run):
    portable, direct = _examples(portable_run[0]), _examples(direct_run[0])
    assert sum(len(v) for v in direct.values()) == 10 * PER_CLASS
    assert {k: len(v) for k, v in portable.items()} == {k: len(v) for k, v in direct.items()}
    assert portable == direct  # byte for byte, in path order
    assert portable_run[1].split_counts == {k: len(v) for k, v in direct.items()}


def test_the_same_statistics_as_the_direct_runner(portable_run, direct_run):
    import tensorflow_data_validation as tfdv

    portable_dir = _output(portable_run[0], "StatisticsGen", "statistics")
    direct_dir = _output(direct_run[0], "StatisticsGen", "statistics")
    splits = sorted(p.name for p in direct_dir.glob("Split-*"))
    assert splits == sorted(p.name for p in portable_dir.glob("Split-*")) and splits
    for split in splits:
        portable = tfdv.load_stats_binary(str(portable_dir / split / "FeatureStats.pb"))
        direct = tfdv.load_stats_binary(str(direct_dir / split / "FeatureStats.pb"))
        assert portable == direct, split


def test_the_transform_graphs_transform_the_same_images_the_same_way(portable_run, direct_run):
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    examples = [raw for records in _examples(direct_run[0]).values() for raw in records]
    outputs = []
    for work in (portable_run[0], direct_run[0]):
        graph = tft.TFTransformOutput(str(_output(work, "Transform", "transform_graph")))
        raw = tf.io.parse_example(tf.constant(examples), graph.raw_feature_spec())
        outputs.append({k: v.numpy() for k, v in graph.transform_raw_features(raw).items()})
    portable, direct = outputs
    assert set(portable) == set(direct) and portable
    for key in direct:
        if direct[key].dtype.kind == "f":
            np.testing.assert_allclose(portable[key], direct[key], rtol=1e-6, atol=1e-6, err_msg=key)
        else:
            np.testing.assert_array_equal(portable[key], direct[key], err_msg=key)
