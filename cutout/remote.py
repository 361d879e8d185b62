"""``cutout submit``: photos to a running service through ``cutout.client``.

All photos are submitted first, so the service can batch them; then, with ``wait``, each job
is followed to its end (its event stream; polling where the stream fails) and its outputs are
downloaded. ``Client.submit`` sends each photo's hash first and uploads it only when asked.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests

from cutout.client import ApiError, Client, Job
from cutout.outputs import Summary, output_path, write_atomic


@dataclass(frozen=True)
class SubmitOptions:
    effects: list[str] | None = None  # None: the service's defaults
    max_size: int | None = None
    format: str | None = None
    mask: bool = False
    form: dict[str, str] = field(default_factory=dict)  # background, crop, size, … as sent
    background: Path | None = None  # a background image file


def submit_all(
    client: Client, files: Sequence[Path], options: SubmitOptions, echo: Callable[[str], None]
) -> tuple[list[tuple[Path, Job]], Summary]:
    """Submit each photo; returns the queued jobs and a summary holding the refusals."""
    summary = Summary()
    queued: list[tuple[Path, Job]] = []
    background = None
    if options.background is not None:
        try:
            background = (options.background.name, options.background.read_bytes())
        except OSError as exc:
            for source in files:
                summary.fail(source, f"the background image: {_reason(exc)}")
            return queued, summary
    for source in files:
        try:
            job = client.submit(
                source.read_bytes(),
                source.name,
                effects=options.effects,
                max_size=options.max_size,
                format=options.format,
                extra=options.form,
                background=background,
            )
        except (OSError, ApiError, requests.RequestException) as exc:
            summary.fail(source, _reason(exc))
            continue
        echo(f"{source}\t{job['status']}\t{client.base_url}/api/v2/jobs/{job['id']}")
        queued.append((source, job))
    return queued, summary


def wait_and_download(
    client: Client,
    queued: Sequence[tuple[Path, Job]],
    out_dir: Path,
    options: SubmitOptions,
    timeout: float,
    summary: Summary,
    echo: Callable[[str], None],
) -> None:
    """Follow each job to its end and save its outputs as ``out_dir/<stem>.<effect>.<ext>``."""
    for source, job in queued:
        try:
            job = client.wait(job["id"], timeout)
            if job["status"] != "succeeded":
                error = job.get("error") or {}
                code = error.get("code", job["status"])
                summary.fail(source, f"{code}: {error.get('message', 'the job did not finish')}")
                continue
            written = _download(client, source, job, out_dir, options.mask)
        except (OSError, ApiError, requests.RequestException, TimeoutError) as exc:
            summary.fail(source, _reason(exc))
            continue
        total_s = job["timings"].get("total_ms", 0) / 1000
        echo(f"{source}\tsucceeded\t{len(written)} files in {out_dir} ({total_s:.1f} s)")
        summary.done.append(source)


def _download(client: Client, source: Path, job: Job, out_dir: Path, mask: bool) -> list[Path]:
    written = []
    for name, output in job["outputs"].items():
        if name == "mask" and not mask:
            continue
        extension = (mimetypes.guess_extension(output["content_type"]) or ".bin").lstrip(".")
        path = output_path(out_dir, source, name, extension)
        write_atomic(path, client.download(output["url"]))
        written.append(path)
    return written


def _reason(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    if isinstance(exc, requests.ConnectionError):
        return "cannot reach the service" + (f" at {exc.request.url}" if exc.request else "")
    return str(exc)
