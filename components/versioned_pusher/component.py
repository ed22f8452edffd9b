"""VersionedPusher: TFX's Pusher with TF Serving–friendly versions.

Same spec, inputs, push_destination and output properties as
``tfx.components.Pusher`` (so anything reading pushed/pushed_version works), but
the executor numbers versions 1, 2, 3 ... and renames a complete copy into place.
"""

from tfx.components import Pusher
from tfx.dsl.components.base import executor_spec

from components.versioned_pusher import executor


class VersionedPusher(Pusher):
    """Pusher whose versions are consecutive integers, published by rename."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
