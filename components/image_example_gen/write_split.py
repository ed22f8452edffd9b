"""Writes one output split as TFX's ExampleGen does, without TFX's Reshuffle before the write.

Same files as ``tfx.components.example_gen.write_split.WriteSplit`` (gzipped TFRecords named
``data_tfrecord-SSSSS-of-NNNNN.gz`` in the split folder, TFX's ``num_instances`` counter), but
in the order the examples arrive: on the local Beam runner a Reshuffle is a group-by-key that
holds every example in memory until the read is done, and its random keys make the order in the
files differ from run to run.
"""

from __future__ import annotations

import posixpath

import apache_beam as beam
from tfx.components.example_gen import write_split as tfx_write_split

LOCAL_RUNNERS = frozenset(
    {"directrunner", "switchingdirectrunner", "bundlebaseddirectrunner", "fnapirunner", "interactiverunner", "prismrunner"}
)


def is_local_runner(beam_args) -> bool:
    """True if ``beam_args`` run Beam in this process or on this machine (no ``--runner``: the DirectRunner).

    There, nothing is gained by spreading work with a Reshuffle, and its group-by-key holds all
    of its input in memory; a distributed runner (Dataflow, Flink, Spark, a portable job server)
    uses one to spread the files of a few class folders over its workers.
    """
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    runner = PipelineOptions(list(beam_args or [])).view_as(StandardOptions).runner
    if runner is None:
        return True
    name = (runner if isinstance(runner, str) else type(runner).__name__).rsplit(".", 1)[-1].lower()
    if not name.endswith("runner"):  # Beam takes "direct" for DirectRunner
        name += "runner"
    return name in LOCAL_RUNNERS


@beam.ptransform_fn
def WriteSplit(example_split: beam.pvalue.PCollection, output_split_path: str):  # pylint: disable=invalid-name
    """Serializes (TFX's ``MaybeSerialize``) and writes ``example_split`` to ``output_split_path``.

    Beam's file sink writes each bundle to a temporary file and renames the files into place
    when all are written, so no half-written split becomes visible.
    """
    return (
        example_split
        | "MaybeSerialize" >> beam.ParDo(tfx_write_split.MaybeSerialize())
        | "Write" >> beam.io.WriteToTFRecord(
            posixpath.join(output_split_path, tfx_write_split.DEFAULT_TF_RECORD_FILE_NAME), file_name_suffix=".gz"
        )
    )
