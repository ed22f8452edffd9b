"""`lenspipe predict`: send images to a TF Serving-compatible server (REST or gRPC), print label + probability.

Works against `lenspipe serve` and the real TF Serving alike: REST uses the documented
`{"instances": [{"b64": ...}]}` body; gRPC uses the official tensorflow_serving.apis stubs.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np


class ClientError(Exception):
    """A one-line, user-facing failure (connection refused, HTTP error body, bad image path)."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    image: str
    label: str
    probability: float
    class_id: int


def model_path(model: str, version: int | None, label: str | None) -> str:
    """The REST path prefix for a model, version or label (names are URL-quoted)."""
    quote = urllib.parse.quote
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{version}"
    elif label is not None:
        path += f"/labels/{quote(label, safe='')}"
    return path


def _read_images(images: list[str]) -> list[bytes]:
    data = []
    for image in images:
        try:
            data.append(Path(image).read_bytes())
        except OSError as exc:
            raise ClientError(f"cannot read image {image}: {exc.strerror}") from exc
    return data


def _predictions(images: list[str], probabilities: np.ndarray, labels: list[str], class_ids: list[int]
                 ) -> list[Prediction]:
    return [Prediction(image, labels[i], float(np.max(probabilities[i])), int(class_ids[i]))
            for i, image in enumerate(images)]


def predict_rest(url: str, model: str, images: list[str], version: int | None = None, label: str | None = None,
                 timeout: float = 30.0) -> list[Prediction]:
    """POST the images as b64 instances to `<url>/v1/models/<model>[...]:predict`."""
    body = json.dumps({"instances": [{"b64": base64.b64encode(b).decode("ascii")} for b in _read_images(images)]})
    endpoint = url.rstrip("/") + model_path(model, version, label) + ":predict"
    request = urllib.request.Request(endpoint, data=body.encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            doc = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise ClientError(f"{endpoint} answered HTTP {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise ClientError(f"cannot reach {url} ({exc.reason}); is the server running? "
                          f"Start it with `lenspipe serve`") from None
    except (TimeoutError, ConnectionError) as exc:
        raise ClientError(f"cannot reach {url} ({exc}); is the server running? Start it with `lenspipe serve`") from None
    rows = doc.get("predictions", [])
    try:
        return _predictions(images, np.array([r["probabilities"] for r in rows]),
                            [r["label"] for r in rows], [r["class_id"] for r in rows])
    except (KeyError, TypeError) as exc:
        raise ClientError(f"{endpoint}: response lacks probabilities/label/class_id outputs") from exc


def predict_grpc(target: str, model: str, images: list[str], version: int | None = None, label: str | None = None,
                 timeout: float = 30.0) -> list[Prediction]:
    """Call PredictionService/Predict with the official stubs."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    elif label is not None:
        request.model_spec.version_label = label
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(_read_images(images), dtype=tf.string))
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise ClientError(f"cannot reach gRPC {target}; is the server running? "
                                  "Start it with `lenspipe serve`") from None
            raise ClientError(f"gRPC {target} answered {exc.code().name}: {exc.details()}") from None
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    return _predictions(images, outputs["probabilities"], [b.decode() for b in outputs["label"]],
                        outputs["class_id"].tolist())
