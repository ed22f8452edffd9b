"""The serving core shared by REST and gRPC: model lookup, predict/classify/regress, batching.

Every TF call runs off the event loop: in the batching threads when batching is on, else in a
thread pool. Both front ends call the same async methods, so their behaviour cannot drift apart.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from serving.batching import BatchQueue, SharedBatchScheduler
from serving.codec import check_input_keys
from serving.errors import Code, ServingError, invalid_argument
from serving.flags import ServerOptions
from serving.metrics import ServingMetrics
from serving.request_log import RequestLogger
from serving.servable import Servable, Signature
from serving.versions import ModelManager
from serving.warmup import make_loader

log = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """Which model a request names: a version number, a label, or neither (latest)."""

    name: str
    version: int | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.label is not None:
            raise invalid_argument(f"Both model version ({self.version}) and model version label "
                                   f"({self.label}) cannot be supplied.")


class ServingCore:
    """Owns the model manager, the executor and the batch scheduler of one server."""

    def __init__(self, options: ServerOptions, metrics: ServingMetrics | None = None) -> None:
        self.options = options
        self.metrics = metrics or ServingMetrics()
        self._executor = ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1)),
                                            thread_name_prefix="serving")
        self._load_executor = ThreadPoolExecutor(max_workers=options.load_threads, thread_name_prefix="loader")
        self.scheduler = SharedBatchScheduler(options.batching, self.metrics) if options.enable_batching else None
        self.request_log: RequestLogger | None = None
        if options.request_log is not None:
            self.request_log = RequestLogger(options.request_log)
            self.metrics.add(self.request_log.counts)
            self.metrics.add(self.request_log.writers)
        self._queues: dict[tuple[int, str], BatchQueue] = {}
        self.manager = ModelManager(
            make_loader(options.enable_model_warmup, tags=options.saved_model_tags),
            self._load_executor, self.metrics, on_unload=self._on_unload,
        )

    # ---- execution -----------------------------------------------------------------------------

    async def run(self, servable: Servable, signature: Signature, inputs: dict[str, np.ndarray],
                  api: str) -> dict[str, np.ndarray]:
        """Run one request's inputs through `signature` (batched if enabled) without blocking the loop."""
        started = time.perf_counter()
        if self.scheduler is not None:
            queue = self._queue(servable, signature)
            outputs = await queue.schedule(inputs, loop=asyncio.get_running_loop())
        else:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, servable.run, signature, inputs)
        self.metrics.runtime_latency.observe((time.perf_counter() - started) * 1e6, servable.name, api, "TF1")
        return outputs

    def _queue(self, servable: Servable, signature: Signature) -> BatchQueue:
        key = (id(servable), signature.name)
        queue = self._queues.get(key)
        if queue is None:
            assert self.scheduler is not None
            queue = self.scheduler.add_queue(lambda inputs: servable.run(signature, inputs),
                                             f"{servable.name}/{servable.version}/{signature.name}")
            self._queues[key] = queue
        return queue

    async def _on_unload(self, servable: Servable) -> None:
        # Drain this servable's batch queues before calling the version unloaded.
        for key in [k for k in self._queues if k[0] == id(servable)]:
            queue = self._queues.pop(key)
            assert self.scheduler is not None
            self.scheduler.close_queue(queue)
            while not queue.idle():
                await asyncio.sleep(0.01)

    # ---- APIs ----------------------------------------------------------------------------------

    def servable(self, ref: ModelRef) -> Servable:
        return self.manager.servable(ref.name, ref.version, ref.label)

    async def predict(self, ref: ModelRef, signature_name: str, inputs: dict[str, np.ndarray],
                      servable: Servable | None = None, api: str = "Predict") -> tuple[Servable, Signature, dict[str, np.ndarray]]:
        """Predict: inputs must be exactly the signature's inputs. Returns the servable used and outputs."""
        servable = servable or self.servable(ref)
        signature = servable.signature(signature_name)
        if self.options.enable_signature_method_name_check and \
                signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
            raise ServingError(Code.INTERNAL, "Expected prediction signature method_name to be one of "
                               f"{{{PREDICT_METHOD}, {CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}")
        check_input_keys(set(inputs), signature.inputs)
        outputs = await self.run(servable, signature, inputs, api)
        if self.request_log is not None and api == "Predict":
            self.request_log.offer_predict(servable.name, servable.version, signature.name, inputs, signature.inputs)
        return servable, signature, outputs

    def _examples_signature(self, servable: Servable, signature_name: str, method: str, kind: str) -> Signature:
        signature = servable.signature(signature_name)
        if self.options.enable_signature_method_name_check and signature.method_name != method:
            raise invalid_argument(f"Expected {kind} signature method_name to be {method}. "
                                   f"Was: {signature.method_name}")
        # No dtype check, as in TF Serving: the examples are fed as strings whatever the TensorInfo says
        # (TF Serving's own TF1 half_plus_three declares DT_FLOAT there).
        if len(signature.inputs) != 1 or "inputs" not in signature.inputs:
            raise invalid_argument(f"Expected one input Tensor named inputs in {kind} signature.")
        return signature

    def classify_signature(self, servable: Servable, signature_name: str) -> Signature:
        """The named signature, checked as TF Serving's PreProcessClassification checks it."""
        signature = self._examples_signature(servable, signature_name, CLASSIFY_METHOD, "classification")
        if not {"classes", "scores"} & set(signature.outputs):
            raise invalid_argument("Expected classification signature outputs to contain classes or scores.")
        return signature

    def regress_signature(self, servable: Servable, signature_name: str) -> Signature:
        """The named signature, checked as TF Serving's PreProcessRegression checks it."""
        signature = self._examples_signature(servable, signature_name, REGRESS_METHOD, "regression")
        if "outputs" not in signature.outputs:
            raise invalid_argument("No output Tensor named outputs in regression signature.")
        return signature

    async def classify(self, ref: ModelRef, signature_name: str, examples: list[bytes],
                       servable: Servable | None = None
                       ) -> tuple[Servable, Signature, np.ndarray | None, np.ndarray | None]:
        """Classify serialized tf.Examples. Returns (servable, signature, classes[B,K] | None, scores[B,K] | None)."""
        servable = servable or self.servable(ref)
        signature = self.classify_signature(servable, signature_name)
        if not examples:
            raise invalid_argument("Invalid argument: Input is empty.")
        outputs = await self.run(servable, signature, {"inputs": np.array(examples, dtype=object)}, "Classify")
        if self.request_log is not None:
            self.request_log.offer_examples(servable.name, servable.version, signature.name, examples)
        classes, scores = outputs.get("classes"), outputs.get("scores")
        for name, array in (("classes", classes), ("scores", scores)):
            if array is not None and (array.ndim != 2 or array.shape[0] != len(examples)):
                raise invalid_argument(f"Expected Tensor shape: [{len(examples)} N] but got {list(array.shape)} "
                                       f"for output {name}")
        return servable, signature, classes, scores

    async def regress(self, ref: ModelRef, signature_name: str, examples: list[bytes],
                      servable: Servable | None = None) -> tuple[Servable, Signature, np.ndarray]:
        """Regress serialized tf.Examples. Returns (servable, signature, values[B])."""
        servable = servable or self.servable(ref)
        signature = self.regress_signature(servable, signature_name)
        if not examples:
            raise invalid_argument("Invalid argument: Input is empty.")
        outputs = await self.run(servable, signature, {"inputs": np.array(examples, dtype=object)}, "Regress")
        values = outputs["outputs"]
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1 or values.shape[0] != len(examples):
            raise invalid_argument(f"Expected output Tensor shape to be either [{len(examples)}] or "
                                   f"[{len(examples)}, 1] but got {list(outputs['outputs'].shape)}")
        return servable, signature, values

    # ---- lifecycle -----------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Drain batching, unload models, stop threads."""
        if self.scheduler is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.scheduler.stop)
        await self.manager.unload_all()
        if self.request_log is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.request_log.close)
        self._executor.shutdown(wait=True)
        self._load_executor.shutdown(wait=True)


def observe_request(metrics: ServingMetrics, model: str, api: str, entrypoint: str, started: float,
                    error: ServingError | None) -> None:
    """Record TF Serving's request_count and request_latency for one finished request.

    `api` is TF Serving's label value: "Predict", "Classify" or "Regress".
    """
    metrics.request_count.inc(model, "OK" if error is None else error.code.name)
    if error is None:  # TF Serving records latency for successful requests only
        metrics.request_latency.observe((time.perf_counter() - started) * 1e6, model, api, entrypoint)

