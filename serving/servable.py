"""One loaded SavedModel version: its SignatureDefs (as written in saved_model.pb) and callables.

The SignatureDefs are read from the saved_model.pb proto rather than from the loaded object, because
TF Serving's metadata and its classify/regress checks use the proto's `method_name`, which the TF2
loader does not expose. TF2 SavedModels load with tf.saved_model.load; TF1 ones (no object graph:
SavedModelBuilder, Estimator exports) load with TF's v1 loader into a Session, as TF Serving loads
every model, because the TF2 loader cannot prune some TF1 graphs (ParseExample ones among them).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2, saved_model_pb2

from serving.errors import Code, ServingError, invalid_argument

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: its TF dtype enum and shape (-1 = unknown dim, None = unknown rank)."""

    dtype: int
    shape: tuple[int, ...] | None

    @property
    def is_string(self) -> bool:
        return self.dtype == types_pb2.DT_STRING

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(object) if self.is_string else np.dtype(tf.dtypes.as_dtype(self.dtype).as_numpy_dtype)

    @property
    def type_name(self) -> str:
        """TF's short dtype name, used in TF Serving's error messages ("float", "string", ...)."""
        return tf.dtypes.as_dtype(self.dtype).name.replace("float32", "float").replace("float64", "double")


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable signature with its proto facts."""

    name: str
    method_name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    # TF2: a ConcreteFunction taking the input aliases as keyword arguments; TF1: (feed aliases, fetch
    # aliases, Session callable). The Session is freed with the servable, after in-flight calls end.
    function: object


def _spec(info: meta_graph_pb2.TensorInfo) -> TensorSpec:
    shape = None if info.tensor_shape.unknown_rank else tuple(d.size for d in info.tensor_shape.dim)
    return TensorSpec(dtype=info.dtype, shape=shape)


def read_meta_graph(export_dir: Path, tags: tuple[str, ...] = (SERVE_TAG,)) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef of saved_model.pb tagged `tags`. Raises ServingError if absent or unreadable."""
    pb = export_dir / "saved_model.pb"
    if not pb.is_file():
        raise ServingError(Code.NOT_FOUND, f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {export_dir}")
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(pb.read_bytes())
    except Exception as exc:  # a truncated or foreign file: DecodeError and friends
        raise ServingError(Code.DATA_LOSS, f"Could not parse {pb}: {exc}") from exc
    for meta_graph in saved_model.meta_graphs:
        if set(tags) <= set(meta_graph.meta_info_def.tags):
            return meta_graph
    raise ServingError(Code.NOT_FOUND, "Could not find meta graph def matching supplied tags: "
                                       f"{{ {' '.join(tags)} }} in {export_dir}")


def is_tf1(meta_graph: meta_graph_pb2.MetaGraphDef) -> bool:
    """True for a SavedModel written without an object graph (TF1's SavedModelBuilder and Estimators)."""
    return not meta_graph.object_graph_def.nodes


def _op_message(message: str) -> str:
    # Eager tracebacks wrap the op's own message in "Graph execution error: Detected at node ...";
    # clients get the op's message, as TF Serving's Session::Run returns it.
    marker = "<stack traces unavailable>\n"
    return message.split(marker, 1)[1].strip() if marker in message else message


class Servable:
    """A loaded version. `run` is thread-safe and blocking: call it from a worker thread, never the event loop."""

    def __init__(self, name: str, version: int, export_dir: Path, tags: tuple[str, ...] = (SERVE_TAG,)) -> None:
        self.name, self.version, self.export_dir = name, version, export_dir
        meta_graph = read_meta_graph(export_dir, tags)
        self.signature_defs = meta_graph.signature_def
        self.signatures: dict[str, Signature] = {}
        self._session: tf.compat.v1.Session | None = None
        if is_tf1(meta_graph):
            functions = self._load_v1(export_dir, tags)
            self.run = self._run_v1  # type: ignore[method-assign]
        else:
            self._loaded = tf.saved_model.load(str(export_dir), tags=list(tags))
            functions = dict(self._loaded.signatures)
        for key, sig_def in self.signature_defs.items():
            if key.startswith("__") or key not in functions:
                continue  # __saved_model_init_op and friends are not callable signatures
            self.signatures[key] = Signature(
                name=key, method_name=sig_def.method_name,
                inputs={k: _spec(v) for k, v in sig_def.inputs.items()},
                outputs={k: _spec(v) for k, v in sig_def.outputs.items()},
                function=functions[key])

    def _load_v1(self, export_dir: Path, tags: tuple[str, ...]) -> dict[str, object]:
        """Load into a Session with the v1 loader; one Session callable per signature."""
        graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=graph)
        with graph.as_default():
            tf.compat.v1.saved_model.loader.load(self._session, list(tags), str(export_dir))
        functions: dict[str, object] = {}
        for key, sig_def in self.signature_defs.items():
            if key.startswith("__"):
                continue
            feeds = sorted(sig_def.inputs)
            fetches = sorted(sig_def.outputs)
            options = config_pb2.CallableOptions(feed=[sig_def.inputs[k].name for k in feeds],
                                                 fetch=[sig_def.outputs[k].name for k in fetches])
            # Session::MakeCallable feeds tensors as they come, like TF Serving's Session::Run (the
            # feed_dict path checks feed shapes against the graph, which TF Serving does not).
            functions[key] = (feeds, fetches, self._session._make_callable_from_options(options))
        return functions

    def signature(self, name: str) -> Signature:
        """The named signature ("" = serving_default). Raises INVALID_ARGUMENT like TF Serving."""
        key = name or DEFAULT_SIGNATURE
        try:
            return self.signatures[key]
        except KeyError:
            raise invalid_argument(f'Serving signature name: "{key}" not found in signature def') from None

    def run(self, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call `signature` on numpy inputs; returns every output as a numpy array."""
        feeds = {}
        for alias, array in inputs.items():
            spec = signature.inputs[alias]
            try:
                feeds[alias] = tf.convert_to_tensor(array, dtype=tf.dtypes.as_dtype(spec.dtype))
            except (TypeError, ValueError) as exc:
                raise invalid_argument(f"input {alias}: {exc}") from exc
        try:
            outputs = signature.function(**feeds)
        except tf.errors.OpError as exc:
            raise ServingError(exc.error_code, _op_message(exc.message)) from exc
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}

    def _run_v1(self, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds, fetches, call = signature.function  # type: ignore[misc]
        args = []
        for alias in feeds:
            array = inputs[alias]
            if array.dtype != object:  # strings (serialized examples included) go in as they are
                try:
                    array = np.asarray(array, dtype=signature.inputs[alias].numpy_dtype)
                except (TypeError, ValueError) as exc:
                    raise invalid_argument(f"input {alias}: {exc}") from exc
            args.append(array)
        try:
            values = call(*args)
        except tf.errors.OpError as exc:
            raise ServingError(exc.error_code, exc.message) from exc
        return dict(zip(fetches, values))
