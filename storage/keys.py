"""Object keys: staged uploads by job id, results by content key."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def staging_key(job_id: str) -> str:
    return f"staging/{job_id}"


def background_staging_key(job_id: str) -> str:
    """A job's uploaded background image, staged beside its photo."""
    return f"{staging_key(job_id)}.background"


def content_key(parts: Iterable[str]) -> str:
    """A stable hash of everything that decides a job's outputs."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def result_key(content: str, name: str, extension: str) -> str:
    return f"results/{content}/{name}.{extension}"
