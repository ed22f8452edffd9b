"""Kill a process at a chosen point: the fault tests' tool for `kill -9` that lands exactly where they want.

A forked child (the parent's imports are paid once) places steps with ``Checkpoints``: after every file
operation TFX's ``fileio`` makes and every ML Metadata write, or after each pipeline node that executed.
At each step the child reports on a pipe and waits; the parent (``run_until``) answers "go" or sends SIGKILL instead.
The kill therefore lands between two real operations, after exactly ``k`` of them, deterministically.
Nothing in the code under test knows about this: it wraps library functions in the child only.
"""

from __future__ import annotations

import functools
import os
import signal
from dataclasses import dataclass, field
from typing import Callable, Optional

_FILEIO_OPS = ("copy", "makedirs", "mkdir", "remove", "rename", "rmtree")
_MLMD_OPS = ("put_execution", "put_executions", "put_artifacts", "put_events", "put_contexts",
             "put_attributions_and_associations", "put_lineage_subgraph", "put_parent_contexts")


class Checkpoints:
    """The child's side: ``step(name)`` reports a step and waits for the parent's go-ahead."""

    def __init__(self, report_fd: int, go_fd: int) -> None:
        self.report_fd, self.go_fd, self.armed = report_fd, go_fd, False

    def step(self, name: str) -> None:
        if not self.armed:
            return
        os.write(self.report_fd, name.encode() + b"\n")
        if os.read(self.go_fd, 1) != b"g":  # the parent kills us instead of answering
            os._exit(99)

    def on_file_and_metadata_writes(self, arm_on: Optional[tuple[type, str]] = None) -> None:
        """A step after every fileio operation and MetadataStore write; counting starts when ``arm_on`` runs.

        ``arm_on`` = (class, method name): e.g. (the pusher's Executor, "Do"), so only the push's own steps
        (its file copies, the rename, then the launcher's ML Metadata writes) are counted.
        """
        from ml_metadata import metadata_store
        from tfx.dsl.io import fileio

        def wrap(owner, name: str, label: str) -> None:
            original = getattr(owner, name)

            @functools.wraps(original)
            def wrapper(*args, **kwargs):
                result = original(*args, **kwargs)
                target = next((a for a in args if isinstance(a, str)), "")
                self.step(f"{label}.{name} {os.path.basename(str(target).rstrip('/'))}")
                return result

            setattr(owner, name, wrapper)

        for name in _FILEIO_OPS:
            wrap(fileio, name, "fileio")
        for name in _MLMD_OPS:
            if hasattr(metadata_store.MetadataStore, name):
                wrap(metadata_store.MetadataStore, name, "mlmd")
        if arm_on is None:
            self.armed = True
            return
        cls, method = arm_on
        original = getattr(cls, method)

        @functools.wraps(original)
        def arming(*args, **kwargs):
            self.armed = True
            return original(*args, **kwargs)

        setattr(cls, method, arming)

    def after_each_executed_node(self) -> None:
        """A step each time a pipeline node finishes after really executing (cached nodes do not count).

        Read from TFX's own per-node log lines, as pipeline/progress.py reads them.
        """
        import logging

        checkpoints = self

        class NodeFinished(logging.Handler):
            def __init__(self) -> None:
                super().__init__(logging.INFO)
                self.current, self.cached = "", False

            def emit(self, record: logging.LogRecord) -> None:
                msg = record.msg if isinstance(record.msg, str) else ""
                if msg == "node %s is running." and record.args:
                    self.current, self.cached = str(record.args[0]), False
                elif msg == "A cached execution %d is used.":
                    self.cached = True
                elif msg == "node %s is finished." and record.args and not self.cached:
                    checkpoints.step(str(record.args[0]))

        # On absl's logger, not the root: the local runner replaces the root logger's handlers.
        handler = NodeFinished()
        logging.getLogger("absl").addHandler(handler)
        logging.getLogger("absl").setLevel(logging.INFO)
        self.armed = True


@dataclass
class Outcome:
    """What happened to one child: its steps (in order), whether it was killed, its exit status."""

    steps: list[str] = field(default_factory=list)
    killed: bool = False
    exit_code: Optional[int] = None


def run_until(work: Callable[[Checkpoints], None], kill_after: Optional[int]) -> Outcome:
    """Fork; the child runs ``work(checkpoints)`` (which chooses where the steps are), then exits.

    The parent SIGKILLs the child when it reports step number ``kill_after`` (None: never; the child
    runs to its end) and returns the Outcome. The child's exit code is 1 if ``work`` raised.
    """
    report_r, report_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the parent (a timed-out driver)
        os.close(report_r)
        os.close(go_w)
        code = 0
        try:
            work(Checkpoints(report_w, go_r))
        except BaseException:  # noqa: BLE001 - reported through the exit code, traceback on stderr
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    os.close(report_w)
    os.close(go_r)
    outcome = Outcome()
    buffer = b""
    with os.fdopen(report_r, "rb", buffering=0) as reports:
        while True:
            chunk = reports.read(4096)
            if not chunk:
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                outcome.steps.append(line.decode())
                if kill_after is not None and len(outcome.steps) >= kill_after:
                    os.kill(pid, signal.SIGKILL)
                    outcome.killed = True
                else:
                    os.write(go_w, b"g")
            if outcome.killed:
                break
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    outcome.exit_code = os.waitstatus_to_exitcode(status)
    if outcome.killed:
        assert outcome.exit_code == -signal.SIGKILL, outcome.exit_code
    return outcome
