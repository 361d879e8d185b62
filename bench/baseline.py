"""The worker's pipeline as it was at a git revision, for before/after figures in one run.

    pipeline_at("main~3")  # the Pipeline class of workers/pipeline.py at that revision

Only that file is taken from the revision (a one-file module, as the pipeline was before it
became a package); everything it imports is today's. None where git, the revision or that
file is missing (a GPU box gets the working tree without its history).
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def pipeline_at(revision: str) -> Any:
    try:
        source = subprocess.run(
            ["git", "show", f"{revision}:workers/pipeline.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    name = f"bench_pipeline_at_{abs(hash(revision))}"
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    exec(compile(source, f"{revision}:workers/pipeline.py", "exec"), module.__dict__)
    return module.Pipeline
