"""The import rules of the design, checked on the source: which package may import which.

Every import statement of every module is read with ``ast`` (inside functions and under
``TYPE_CHECKING`` too: a type-only import still ties the two together). Then the promise the
rules keep: creating the API loads neither torch nor the workers, nor Celery's worker side.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SERVICE = ("api", "tasks", "jobs", "workers", "storage", "observability", "contract", "cutout")

# Package → what it must never import (a top-level name covers all of its modules).
NEVER: dict[str, set[str]] = {
    # The upload contract sits below the API and the workers: Pillow and the stdlib only.
    "contract": {*SERVICE, "devtools", "flask", "celery", "celery_batches", "torch", "redis"},
    # Object storage and the result cache: no job, no queue, no model.
    "storage": {"api", "tasks", "jobs", "workers", "observability", "cutout", "devtools"}
    | {"flask", "celery", "celery_batches", "torch"},
    # A job's life: no Flask, no Celery, no torch; it never runs the workers itself.
    "jobs": {"api", "tasks", "workers", "cutout", "devtools"}
    | {"flask", "celery", "celery_batches", "torch"},
    # Told what to record; imports none of the service's other packages.
    "observability": {"api", "tasks", "jobs", "workers", "storage", "contract", "cutout"}
    | {"devtools", "flask", "celery", "celery_batches", "torch"},
    # What runs on a worker knows nothing of Celery, HTTP, Redis, Prometheus or jobs.
    "workers": {"api", "tasks", "jobs", "storage", "observability", "cutout", "devtools"}
    | {"flask", "celery", "celery_batches", "redis", "prometheus_client"},
    # Views validate, enqueue and read: never torch or the workers, never the task modules.
    "api": {"workers", "cutout", "devtools", "torch", "torchvision", "celery_batches", "tasks"},
    # Celery only: they call jobs/ and workers/, never the web side.
    "tasks": {"api", "cutout", "devtools", "flask"},
    # The command line runs the pipeline in process, or talks to the API over HTTP.
    "cutout": {"api", "tasks", "devtools", "flask", "celery"},
    "devtools": {*SERVICE, "flask", "celery", "torch"},
    # Distillation runs the workers' models offline: no service, queue or web side.
    "training": {"api", "tasks", "jobs", "storage", "observability", "cutout", "devtools"}
    | {"flask", "celery", "celery_batches", "redis"},
}
# The exceptions, by exact module: the API sends its messages through the Celery app (a
# producer: it imports no task module).
ALLOWED: dict[str, set[str]] = {"api": {"tasks.app"}}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a.b import c`` counts as ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def breaks(package: str, module: str) -> bool:
    if module in ALLOWED.get(package, set()):
        return False
    return module.split(".")[0] in NEVER[package]


def violations(package: str) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module in sorted(imports_of(path))
        if breaks(package, module)
    ]


@pytest.mark.parametrize("package", sorted(NEVER))
def test_packages_import_only_what_the_design_allows(package: str) -> None:
    assert violations(package) == []


def test_every_package_has_rules() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert packages - {"tests", "bench"} == set(NEVER)


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from workers.pipeline import Pipeline\n"
        "def run() -> None:\n    import torch.nn\n"
    )
    found = imports_of(source)
    assert {"workers.pipeline", "torch.nn"} <= found
    assert [m for m in sorted(found) if breaks("jobs", m)] == ["torch.nn", "workers.pipeline"]
    assert not breaks("api", "tasks.app") and breaks("api", "tasks.segment")


# What creating the API must leave unloaded: the model's libraries, the workers, and the
# worker side of Celery (batching, the task modules, the worker program).
NOT_LOADED = ("torch", "torchvision", "workers", "celery_batches", "celery.apps.worker")
NOT_LOADED += ("tasks.segment", "tasks.webhook", "tasks.cleanup", "tasks.worker")

_CREATE_APP = """
import json, sys
from pathlib import Path
import api
from storage import StorageSettings
settings = StorageSettings(local_dir=Path(sys.argv[1]), redis_url=sys.argv[2])
api.create_app({"STORAGE": settings})
print(json.dumps(sorted(sys.modules)))
"""


def test_creating_the_api_loads_neither_torch_nor_the_workers(
    redis_url: str, tmp_path: Path
) -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", _CREATE_APP, str(tmp_path), redis_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules = set(json.loads(loaded.stdout))
    assert "api" in modules and "jobs.submission" in modules, "the app was created"
    leaked = sorted(m for m in modules if m in NOT_LOADED or m.split(".")[0] in NOT_LOADED)
    assert leaked == []
