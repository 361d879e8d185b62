"""A small HTTP client for the cutout API: submit a photo, read or wait for its job, download.

Every non-2xx answer becomes ``ApiError`` carrying the API's own code and message.
"""

from __future__ import annotations

import time
from typing import Any

import requests

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
Job = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Client:
    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # per HTTP request, not per job
        self.session = requests.Session()

    def submit(
        self,
        data: bytes,
        filename: str,
        *,
        effects: list[str] | None = None,
        max_size: int | None = None,
        format: str | None = None,
        extra: dict[str, str] | None = None,
        background: tuple[str, bytes] | None = None,
    ) -> Job:
        """Queue one photo; returns the job as the API answered it (usually ``queued``).
        ``extra``: more form fields (background, crop, …); ``background``: (file name,
        bytes) of a background image."""
        form: dict[str, str] = dict(extra or {})
        if effects:
            form["effects"] = ",".join(effects)
        if max_size is not None:
            form["max_size"] = str(max_size)
        if format is not None:
            form["format"] = format
        files = {"image": (filename, data)}
        if background is not None:
            files["background_image"] = background
        return self._json("POST", "/api/v2/jobs", files=files, data=form)

    def job(self, job_id: str) -> Job:
        return self._json("GET", f"/api/v2/jobs/{job_id}")

    def wait(self, job_id: str, timeout: float = 300.0, interval: float = 0.5) -> Job:
        """Poll until the job ends; raises ``TimeoutError`` if it has not after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout:.0f} s")
            time.sleep(interval)

    def download(self, url: str) -> bytes:
        """The bytes of an output URL (absolute, as the job lists it)."""
        response = self.session.get(url, timeout=self.timeout)
        _raise_for_error(response)
        return response.content

    def _json(self, method: str, path: str, **kwargs: Any) -> Job:
        response = self.session.request(
            method, f"{self.base_url}{path}", timeout=self.timeout, **kwargs
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
