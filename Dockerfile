# The image every step of the compiled Kubeflow pipeline runs (`lenspipe compile --target kubeflow`
# names lenspipe:0.1.0 unless --image is given): the same pinned set as `make install`, and lenspipe.
#   docker build -t REGISTRY/lenspipe:0.1.0 . && docker push REGISTRY/lenspipe:0.1.0
# Not built in CI (no Docker engine there); see docs/orchestration.md.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/lenspipe

# The lock first: its layer is reused until the pins change. --no-deps and --ignore-requires-python
# as in the Makefile (TFX 1.16 declares Python <3.11 but runs on 3.11).
COPY requirements.lock tools/check_requires_python.py ./
RUN python -m pip install --upgrade "pip==24.3.1" \
 && python -m pip install --no-deps --ignore-requires-python -r requirements.lock

COPY pyproject.toml README.md ./
COPY lenspipe lenspipe
COPY pipeline pipeline
COPY components components
COPY transform transform
COPY trainer trainer
COPY serving serving
RUN python -m pip install --no-deps --no-build-isolation . \
 && python -m pip check \
 && python check_requires_python.py \
 && python -c "import lenspipe.artifacts, components.data_gate.component, components.image_example_gen.executor, components.versioned_pusher.executor, trainer.task, transform.preprocessing"

# Kubeflow runs `python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...`
# (and the example-gen driver) with the arguments in the spec; no entrypoint of its own.
CMD ["lenspipe", "--help"]
