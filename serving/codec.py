"""TF Serving's REST JSON <-> numpy tensors (util/json_tensor.cc semantics).

Requests: row format `instances` (a list, one item per batch row; items are objects keyed by input
name, or bare values when the signature has one input) or columnar `inputs`. String tensors take
UTF-8 strings or `{"b64": ...}`. Responses: `predictions` for row requests, `outputs` for columnar;
a string output whose alias ends in `_bytes` is written as `{"b64": ...}`. Float NaN and infinities
are read and written as TF Serving's RapidJSON does: bare `NaN`, `Infinity`, `-Infinity`. Input shapes
come from the JSON alone: as in TF Serving, the model (not the codec) decides what shapes it takes.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

import numpy as np
import orjson
from tensorflow.core.example import example_pb2, feature_pb2

from serving.errors import invalid_argument
from serving.servable import TensorSpec

_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_WEBSAFE_B64 = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_NONFINITE_TOKEN = re.compile(rb"NaN|Infinity")
_NULL = re.compile(rb"null")


def parse_json_body(body: bytes) -> dict[str, Any]:
    """Parse a request body; TF Serving rejects anything but a JSON object with INVALID_ARGUMENT."""
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson is strict JSON; TF Serving parses with kParseNanAndInfFlag. Python's json reads
        # NaN/Infinity/-Infinity, and is only tried when such a token is there (not on the hot path).
        if not _NONFINITE_TOKEN.search(body):
            raise invalid_argument(f"JSON Parse error: {exc}") from None
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise invalid_argument(f"JSON Parse error: {exc}") from None
        except RecursionError:  # nested deeper than Python's stack (orjson stops at 1024 levels itself)
            raise invalid_argument("JSON Parse error: the document is nested too deeply") from None
    if not isinstance(doc, dict):
        raise invalid_argument("JSON Parse error: The document root must be an object.")
    return doc


def signature_name_of(doc: dict[str, Any]) -> str:
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument("'signature_name' key must be a string value.")
    return name


def dumps(doc: Any) -> bytes:
    """JSON for a response document; non-finite floats as NaN/Infinity/-Infinity (orjson writes null)."""
    body = orjson.dumps(doc, option=_DUMPS_OPTIONS)
    if b"null" in body:  # rare: only then look for the non-finite values that became null
        body = orjson.dumps(_nonfinite_as_fragments(doc), option=_DUMPS_OPTIONS)
    return body


def _nonfinite_token(value: float) -> bytes:
    return b"NaN" if math.isnan(value) else b"-Infinity" if value < 0 else b"Infinity"


def _nonfinite_as_fragments(value: Any) -> Any:
    """`value` with every float array/scalar holding NaN or Inf replaced by pre-rendered JSON."""
    if isinstance(value, dict):
        return {k: _nonfinite_as_fragments(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nonfinite_as_fragments(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size:
        bad = ~np.isfinite(value)
        if not bad.any():
            return value
        # A numeric array's JSON has no strings, so its nulls are exactly its non-finite values, in
        # C order; finite values keep orjson's shortest float32 formatting.
        tokens = iter([_nonfinite_token(v) for v in value[bad].tolist()])
        return orjson.Fragment(_NULL.sub(lambda _: next(tokens), orjson.dumps(value, option=_DUMPS_OPTIONS)))
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return orjson.Fragment(_nonfinite_token(float(value)))
    return value


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _decode_b64(value: dict[str, Any]) -> bytes:
    encoded = value["b64"]
    if not isinstance(encoded, str):
        raise invalid_argument("'b64' value must be a string")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        pass
    if _WEBSAFE_B64.fullmatch(encoded):  # TF Serving also accepts the web-safe alphabet
        try:
            return base64.urlsafe_b64decode(encoded)
        except (binascii.Error, ValueError):
            pass
    raise invalid_argument(f"Unable to base64 decode: {encoded[:40]}")


def _string_leaf(value: Any, alias: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_b64(value):
        return _decode_b64(value)
    raise invalid_argument(f"JSON Value: {_short(value)} not of expected type: string (input {alias})")


def _short(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode() if not isinstance(value, (bytes, bytearray)) else repr(value)
    except TypeError:  # orjson.JSONEncodeError: nested deeper than orjson writes (255 levels)
        text = f"<{type(value).__name__} nested too deeply to print>"
    return text if len(text) < 80 else text[:77] + "..."


def _strings(value: Any, alias: str) -> np.ndarray:
    if isinstance(value, list) and all(isinstance(v, str) or _is_b64(v) for v in value):
        out = np.empty(len(value), dtype=object)  # fast path: the common 1-D list of images
        out[:] = [_string_leaf(v, alias) for v in value]
        return out

    def walk(v: Any) -> Any:
        return [walk(x) for x in v] if isinstance(v, list) else _string_leaf(v, alias)
    try:
        leaves = walk(value)
    except RecursionError:  # orjson reads 1024 levels, deeper than Python's stack
        raise invalid_argument(f"input {alias}: list nested too deeply") from None
    try:
        array = np.array(leaves, dtype=object)
        shape = np.shape(leaves)
    except ValueError as exc:
        raise invalid_argument(f"input {alias}: {exc}") from None
    if array.shape != shape:
        raise invalid_argument(f"input {alias}: ragged string list")
    return array


def to_array(value: Any, spec: TensorSpec, alias: str) -> np.ndarray:
    """Convert one JSON value (scalar or nested lists) to a numpy array of the signature's dtype."""
    if spec.is_string:
        return _strings(value, alias)
    if _is_b64(value) or (isinstance(value, list) and value and _is_b64(value[0])):
        raise invalid_argument(f"JSON Value: {_short(value)} Type: Object is not of expected type: {spec.type_name}")
    try:
        raw = np.asarray(value)
    except ValueError:
        raise invalid_argument(f"input {alias}: list has inconsistent (ragged) dimensions") from None
    target = spec.numpy_dtype
    kind = raw.dtype.kind
    ok = (kind in "biuf" if target.kind == "f" else kind in "biu" if target.kind in "iu"
          else kind == "b" if target.kind == "b" else kind in "biuf")
    if raw.size and not ok:
        raise invalid_argument(f"JSON Value: {_short(value)} not of expected type: {spec.type_name}")
    return raw.astype(target, copy=False)


def parse_predict_request(doc: dict[str, Any], inputs: dict[str, TensorSpec]) -> tuple[dict[str, np.ndarray], bool]:
    """Build input arrays from a predict body. Returns (arrays, row_format)."""
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise invalid_argument("Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists")
    if not has_instances and not has_inputs:
        raise invalid_argument("Missing 'inputs' or 'instances' key")
    if has_instances:
        return _from_instances(doc["instances"], inputs), True
    return _from_inputs(doc["inputs"], inputs), False


def _from_instances(instances: Any, inputs: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise invalid_argument("Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument("No values in 'instances' list")
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named:
        return _single_input(instances, inputs, what="'instances' list as a list of values")
    columns: dict[str, list[Any]] = {alias: [] for alias in instances[0]}
    for index, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item):
            raise invalid_argument(f"Expecting object but got list at item {index} of input list")
        if item.keys() != columns.keys():
            raise invalid_argument(f"Failed to process element: {index} of 'instances' list. JSON object: "
                                   f"{_short(list(item))} keys differ from item 0: {_short(list(columns))}")
        for alias, value in item.items():
            columns[alias].append(value)
    return _named_arrays(columns, inputs)


def _from_inputs(value: Any, inputs: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    if isinstance(value, dict) and not _is_b64(value):
        return _named_arrays(value, inputs)
    return _single_input(value, inputs, what="'inputs' as a single value")


def _single_input(value: Any, inputs: dict[str, TensorSpec], what: str) -> dict[str, np.ndarray]:
    """A bare (unnamed) value feeds the signature's only input."""
    if len(inputs) != 1:
        raise invalid_argument(f"To process {what}, signature must have exactly one input, but has {len(inputs)}")
    alias, spec = next(iter(inputs.items()))
    return {alias: to_array(value, spec, alias)}


def _named_arrays(values: dict[str, Any], inputs: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    arrays = {}
    for alias, value in values.items():
        spec = inputs.get(alias)
        if spec is None:
            continue  # reported with the full extra/missing sets by check_input_keys
        arrays[alias] = to_array(value, spec, alias)
    extra = sorted(set(values) - set(inputs))
    if extra:
        check_input_keys(set(values), inputs)
    return arrays


def check_input_keys(sent: set[str], inputs: dict[str, TensorSpec]) -> None:
    """predict_util.cc's check: the request must name exactly the signature's inputs."""
    expected = set(inputs)
    if sent != expected:
        extra, missing = sorted(sent - expected), sorted(expected - sent)
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} len({{{','.join(sorted(sent))}}}) "
            f"!= len({{{','.join(sorted(expected))}}}). Sent extra: {{{','.join(extra)}}}. "
            f"Missing but required: {{{','.join(missing)}}}.")


def _json_value(alias: str, array: np.ndarray) -> Any:
    if array.dtype == object or array.dtype.kind == "S":
        if alias.endswith("_bytes"):
            encode = lambda b: {"b64": base64.b64encode(b).decode("ascii")}  # noqa: E731
        else:
            encode = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
        if array.ndim == 0:
            return encode(array.item())
        if array.ndim == 1:
            return [encode(b) for b in array.tolist()]
        return np.vectorize(encode, otypes=[object])(array).tolist()
    return array if array.ndim else array.item()


def predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """The JSON document for predict outputs (`predictions` or `outputs`)."""
    if not row_format:
        values = {alias: _json_value(alias, array) for alias, array in outputs.items()}
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    batch = None
    for alias, array in outputs.items():
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {alias} has no shape information ")
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise invalid_argument(f"Tensor name: {alias} has inconsistent batch size: {array.shape[0]} "
                                   f"expecting: {batch}")
    columns = {alias: _json_value(alias, array) for alias, array in outputs.items()}
    if len(columns) == 1:
        return {"predictions": list(next(iter(columns.values())))}
    aliases = list(columns)
    return {"predictions": [{alias: columns[alias][i] for alias in aliases} for i in range(batch or 0)]}


def _feature(value: Any, name: str) -> feature_pb2.Feature:
    values = value if isinstance(value, list) else [value]
    feature = feature_pb2.Feature()
    if not values:
        return feature
    if all(isinstance(v, bool) for v in values) or all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        feature.int64_list.value.extend(int(v) for v in values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        feature.float_list.value.extend(float(v) for v in values)
    elif all(isinstance(v, str) or _is_b64(v) for v in values):
        feature.bytes_list.value.extend(_string_leaf(v, name) for v in values)
    else:
        raise invalid_argument(f"Feature: {name} has values of mixed or unsupported types: {_short(value)}")
    return feature


def parse_examples(doc: dict[str, Any]) -> list[bytes]:
    """`examples` (+ optional `context`, merged into every example) -> serialized tf.Examples."""
    examples = doc.get("examples")
    if not isinstance(examples, list):
        raise invalid_argument("'examples' key must be an array")
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise invalid_argument("'context' key must be an object")
    serialized = []
    for index, item in enumerate(examples):
        if not isinstance(item, dict):
            raise invalid_argument(f"Example at index {index} must be an object")
        example = example_pb2.Example()
        for name, value in {**context, **item}.items():
            example.features.feature[name].CopyFrom(_feature(value, name))
        serialized.append(example.SerializeToString())
    return serialized
