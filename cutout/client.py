"""A small HTTP client for the cutout API, usable on its own by other programs.

    from cutout.client import Client

    with Client("http://127.0.0.1:8000", api_key="ck_...") as client:
        job = client.submit(open("cat.jpg", "rb").read(), "cat.jpg")  # hash first, then bytes
        for event in client.events(job["id"]):  # queued, processing, preview, then the end
            print(event.kind, event.job["status"])
        job = client.wait(job["id"])  # follows the stream; polls where it fails

Every non-2xx answer becomes ``ApiError`` carrying the API's own code and message. The API key
comes from ``api_key`` or ``CUTOUT_API_KEY``; see docs/events.md for the stream and the
hash-first submit.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
Job = dict[str, Any]
API_KEY_ENV = "CUTOUT_API_KEY"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream: its kind (``queued``, ``processing``, ``preview``,
    ``succeeded``, ``failed``, ``canceled``), its id and the job as ``GET`` answers it."""

    kind: str
    id: str
    job: Job

    @property
    def final(self) -> bool:
        return self.kind in TERMINAL


class Client:
    def __init__(
        self,
        base_url: str,
        timeout: float = 60.0,
        api_key: str | None = None,
        hash_first: bool = True,
    ) -> None:
        """``api_key``: sent as ``Authorization: Bearer``; None reads ``CUTOUT_API_KEY`` (unset:
        no key, for a server with auth off). ``hash_first``: ``submit`` sends the photo's
        SHA-256 first and uploads only when the service asks for the image."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # per HTTP request, not per job
        self.hash_first = hash_first
        self.session = requests.Session()
        key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")).strip()
        # Sent to the API only: never to output URLs on a CDN or a presigned S3 address.
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}

    def submit(
        self,
        data: bytes,
        filename: str,
        *,
        effects: list[str] | None = None,
        max_size: int | None = None,
        format: str | None = None,
        idempotency_key: str | None = None,
        extra: dict[str, str] | None = None,
        background: tuple[str, bytes] | None = None,
    ) -> Job:
        """Queue one photo; returns the job as the API answered it (``queued``, or
        ``succeeded`` at once when the service already had the result). ``extra``: more form
        fields (background, crop, …); ``background``: (file name, bytes) of a background
        image (sent with the photo: no hash-first then)."""
        options: dict[str, Any] = dict(extra or {})
        if effects:
            options["effects"] = ",".join(effects)
        if max_size is not None:
            options["max_size"] = max_size
        if format is not None:
            options["format"] = format
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if self.hash_first and background is None:
            body = {"image_sha256": hashlib.sha256(data).hexdigest(), **options}
            try:
                return self._json("POST", "/api/v2/jobs", json=body, headers=headers)
            except ApiError as exc:
                if exc.code != "image_required":
                    raise
        form = {name: str(value) for name, value in options.items()}
        files = {"image": (filename, data)}
        if background is not None:
            files["background_image"] = background
        return self._json("POST", "/api/v2/jobs", files=files, data=form, headers=headers)

    def job(self, job_id: str) -> Job:
        return self._json("GET", f"/api/v2/jobs/{job_id}")

    def events(self, job_id: str, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's Server-Sent Events as they come, ending after the final one. A dropped
        connection raises ``requests.RequestException``; resume with the last event's id."""
        for event in self._stream(job_id, last_event_id):
            if event is not None:
                yield event

    def _stream(self, job_id: str, last_event_id: str | None = None) -> Iterator[JobEvent | None]:
        """The events, and None for each heartbeat comment (a chance to give up waiting)."""
        headers = {**self.auth, "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        # The read timeout outlasts the server's 15 s heartbeat comfortably.
        with self.session.get(
            f"{self.base_url}/api/v2/jobs/{job_id}/events",
            headers=headers,
            stream=True,
            timeout=(self.timeout, 60.0),
        ) as response:
            _raise_for_error(response)
            fields: dict[str, str] = {}
            for line in response.iter_lines(decode_unicode=True):
                if line:
                    name, _, value = line.partition(":")
                    if name:
                        fields[name] = value[1:] if value.startswith(" ") else value
                    else:  # a line starting with ":" is a comment: the heartbeat
                        yield None
                    continue
                if "event" in fields and "data" in fields:
                    data = json.loads(fields["data"])
                    event = JobEvent(fields["event"], fields.get("id", ""), data)
                    yield event
                    if event.final:
                        return
                fields = {}

    def wait(
        self, job_id: str, timeout: float = 300.0, interval: float = 0.5, stream: bool = True
    ) -> Job:
        """The job once it has ended, following its event stream (or, where the stream fails
        or ``stream`` is False, polling every ``interval`` s); raises ``TimeoutError`` if it
        has not ended after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        if stream:
            try:
                for event in self._stream(job_id):
                    if event is not None and event.final:
                        return event.job
                    if time.monotonic() >= deadline:
                        break
            except ApiError as exc:
                if exc.status in (401, 404):
                    raise  # the same answer polling would get
            except requests.RequestException:
                pass  # no stream here (an old server, a proxy): poll instead
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout:.0f} s")
            time.sleep(interval)

    def download(self, url: str) -> bytes:
        """The bytes of an output URL (absolute, as the job lists it); the API key goes only
        to the API's own files."""
        own = url.startswith(f"{self.base_url}/")
        response = self.session.get(url, timeout=self.timeout, headers=self.auth if own else {})
        _raise_for_error(response)
        return response.content

    def _json(self, method: str, path: str, **kwargs: Any) -> Job:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        response = self.session.request(
            method, f"{self.base_url}{path}", timeout=self.timeout, headers=headers, **kwargs
        )
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _raise_for_error(response: requests.Response) -> None:
    if response.ok:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        # Not the API's own error shape (a proxy in between, say): say what came back.
        code, message = f"http_{response.status_code}", response.reason or "request failed"
    raise ApiError(response.status_code, code, message)
