"""compose/rabbitmq.yml on top of the main compose file: every process that sends or takes
messages gets the RabbitMQ broker and waits for it; Redis stays the store. Validated by
``docker compose config`` as tests/test_operations.py does (no Docker engine here)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from jobs.amqp_queues import is_amqp
from tests.test_operations import COMPOSE, docker_compose  # noqa: F401 (a fixture)

MESSAGING = ("api", "gpu-worker", "io-worker", "beat", "flower")


def _config(binary: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("RABBITMQ_PASSWORD",)}
    files = ["-f", str(COMPOSE / "docker-compose.yml"), "-f", str(COMPOSE / "rabbitmq.yml")]
    return subprocess.run(
        [str(binary), *files, "config", "--format", "json"],
        env={**clean, "FLOWER_BASIC_AUTH": "ops:pw", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_rabbitmq_deployment_validates_and_routes_every_message_through_it(
    docker_compose: Path,  # noqa: F811
) -> None:
    result = _config(docker_compose, RABBITMQ_PASSWORD="s3cret")
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = json.loads(result.stdout)["services"]
    assert services["rabbitmq"]["healthcheck"]["test"]
    for name in MESSAGING:
        env = services[name]["environment"]
        assert is_amqp(env["CUTOUT_BROKER_URL"]), name
        assert "@rabbitmq:5672/" in env["CUTOUT_BROKER_URL"], name
        assert env["CUTOUT_REDIS_URL"] == "redis://redis:6379/0", name  # the store stays
        assert services[name]["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name
    assert "CUTOUT_BROKER_URL" not in json.dumps(services["redis"])


def test_the_rabbitmq_deployment_needs_a_password(docker_compose: Path) -> None:  # noqa: F811
    result = _config(docker_compose)
    assert result.returncode != 0
    assert "RABBITMQ_PASSWORD" in result.stderr
