"""The OpenAPI document is true: every answer the app gives here (real Redis and storage,
the queue seam finishing jobs in place) is one the document lists, with the body it
describes. schemathesis drives the live service from it in ``test_live_api_e2e.py``."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from werkzeug.test import TestResponse

from api.openapi import document
from jobs.record import JobError, now_iso
from jobs.store import JobStore
from jobs.webhooks.settings import WebhookSettings
from storage.result_cache import StoredOutput
from tests.test_api import ALL_OUTPUTS, _finish_as_a_worker, _jpeg
from tests.test_api_access import ALICE, BOB, make_app  # noqa: F401 (fixture)
from tests.test_webhook_delivery import LOOPBACK, NEW_SECRET

DOC = document(auth_required=True)


def conforms(path: str, method: str, response: TestResponse) -> None:
    """The status is documented for the operation, and so are the body and the headers."""
    operation = DOC["paths"][path][method]
    documented = operation["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {path} answered undocumented {status}"
    answer = documented[status]
    for name in answer.get("headers", {}):
        value = response.headers.get(name)
        if name in ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
            assert value is None or value.isdigit(), (name, value)
    if "application/json" in answer.get("content", {}):
        assert response.mimetype == "application/json"
        schema = {
            **answer["content"]["application/json"]["schema"],
            "components": DOC["components"],
        }
        Draft202012Validator(schema).validate(response.get_json())


def test_the_document_is_served_and_its_schemas_are_valid(make_app: Callable[..., Flask]) -> None:  # noqa: F811
    served = make_app().test_client().get("/api/v2/openapi.json")
    assert served.status_code == 200 and served.get_json() == DOC
    off = make_app(AUTH_REQUIRED=False).test_client().get("/api/v2/openapi.json").get_json()
    assert (
        off == document(auth_required=False)
        and "security" not in off["paths"]["/api/v2/jobs"]["post"]
    )
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert DOC["openapi"] == "3.1.0"


def _finish(jobs: JobStore, status: str, code: str | None = None) -> Callable[[str], None]:
    """The queue seam, ending each job at once as a worker would."""

    def enqueue(job_id: str) -> None:
        color = StoredOutput(f"results/{job_id}/color.webp", "image/webp", 64, 48, 10)
        error = JobError(code, "it failed") if code else None
        jobs.update(
            job_id,
            lambda r: replace(
                r, status=status, completed_at=now_iso(), error=error,
                outputs={"color": color} if status == "succeeded" else {},
                timings={"total_ms": 12.5}, batch_size=1,
            ),
        )  # fmt: skip

    return enqueue


@pytest.fixture
def jobs(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


def _post(
    client: FlaskClient,
    path: str = "/api/v2/jobs",
    image: bytes | None = None,
    key: str = ALICE,
    headers: dict[str, str] | None = None,
    **form: Any,
) -> TestResponse:
    data: dict[str, Any] = dict(form)
    data["image"] = (io.BytesIO(_jpeg() if image is None else image), "a.jpg")
    auth = {"Authorization": f"Bearer {key}", **(headers or {})}
    response = client.post(path, data=data, headers=auth, content_type="multipart/form-data")
    conforms(path, "post", response)
    return response


def test_every_answer_of_the_job_endpoints_is_documented(
    make_app: Callable[..., Flask],  # noqa: F811
    jobs: JobStore,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    webhooks = WebhookSettings(secrets=(NEW_SECRET,), allow=LOOPBACK)
    client = make_app(WEBHOOKS=webhooks, RATE_LIMIT_SUBMIT="12 per minute").test_client()
    auth = {"Authorization": f"Bearer {ALICE}"}
    queued = _post(client, webhook_url="http://127.0.0.1:9/hook", headers={"Idempotency-Key": "k"})
    assert queued.status_code == 202 and queued.get_json()["webhook"]["state"] == "pending"
    job = f"/api/v2/jobs/{queued.get_json()['id']}"
    seen = {queued.status_code}
    for response in (
        _post(client, headers={"Idempotency-Key": "k"}, max_size="99"),  # 409
        _post(client, image=b""),  # 400
        _post(client, image=b"%PDF-1.7"),  # 415
        _post(client, image=b"\xff\xd8\xff\xe0garbage"),  # 422
        _post(client, key="ck_wrong"),  # 401
        _post(client, webhook_url="http://10.0.0.1/"),  # 400
    ):
        seen.add(response.status_code)
    big = client.post("/api/v2/jobs", data=b"\x00" * (26 * 1024 * 1024), headers=auth,
                      content_type="multipart/form-data; boundary=x")  # fmt: skip
    conforms("/api/v2/jobs", "post", big)
    redis_client.rpush("gpu", *[b"waiting"] * 1001)
    seen |= {big.status_code, _post(client).status_code}  # 413, 503
    redis_client.delete("gpu")
    seen |= {_post(client).status_code for _ in range(12)}  # over the 12 a minute: 429
    cached = make_app().test_client()
    photo = _jpeg((70, 50))
    _finish_as_a_worker(cached, _post(cached, image=photo).get_json()["id"], ALL_OUTPUTS)
    hit = _post(cached, image=photo)
    assert hit.get_json()["cache"] == "hit"
    seen.add(hit.status_code)  # 200
    assert seen == {200, 202, 400, 401, 409, 413, 415, 422, 429, 503}

    for response in (client.get(job, headers=auth), client.get("/api/v2/jobs/nope", headers=auth),
                     client.get(job, headers={"Authorization": f"Bearer {BOB}"}),
                     client.get(job)):  # fmt: skip
        conforms("/api/v2/jobs/{job_id}", "get", response)
    for response in (
        client.delete(job, headers=auth),
        client.delete("/api/v2/jobs/x", headers=auth),
    ):
        conforms("/api/v2/jobs/{job_id}", "delete", response)

    # The seam ends jobs behind the result cache's back, so each app below sends a photo of its
    # own: the same one would attach to the job still in flight from the app before.
    photos = (_jpeg((64 + i, 48)) for i in range(1, 6))
    done = make_app(ENQUEUE=_finish(jobs, "succeeded")).test_client()
    finished = _post(done, "/api/v2/process-with-effects", next(photos), timeout="5")
    assert finished.status_code == 200 and finished.get_json()["outputs"]["color"]["width"] == 64
    finished_job = f"/api/v2/jobs/{finished.get_json()['id']}"
    conforms("/api/v2/jobs/{job_id}", "get", done.get(finished_job, headers=auth))
    gone = done.delete(finished_job, headers=auth)
    assert gone.status_code == 409
    conforms("/api/v2/jobs/{job_id}", "delete", gone)
    for status, code, expected in (
        ("failed", "invalid_image", 422),
        ("failed", "storage_error", 500),
        ("failed", "storage_unavailable", 503),
    ):
        failing = make_app(ENQUEUE=_finish(jobs, status, code)).test_client()
        assert _post(failing, "/api/v2/process-with-effects", next(photos)).status_code == expected
    cancel = make_app(ENQUEUE=_finish(jobs, "canceled")).test_client()
    assert _post(cancel, "/api/v2/process-with-effects", next(photos)).status_code == 409
    waiting = make_app().test_client()
    assert _post(waiting, "/api/v2/process-with-effects", timeout="0").status_code == 202
    assert _post(waiting, "/api/v2/process-with-effects", timeout="-1").status_code == 400


def test_health_files_and_the_document_answers_are_documented(
    make_app: Callable[..., Flask],  # noqa: F811
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    from jobs.heartbeats import Heartbeats

    client = make_app().test_client()
    conforms("/healthz", "get", client.get("/healthz"))
    conforms("/readyz", "get", client.get("/readyz"))  # 503: no worker
    Heartbeats(redis_client).beat("gpu", "gpu@test")
    conforms("/readyz", "get", client.get("/readyz"))
    conforms("/api/v2/openapi.json", "get", client.get("/api/v2/openapi.json"))
    conforms("/files/{key}", "get", client.get("/files/results/none.webp"))
    (tmp_path / "files" / "results").mkdir(parents=True)
    (tmp_path / "files" / "results" / "a.webp").write_bytes(b"RIFF")
    found = client.get("/files/results/a.webp")
    assert found.status_code == 200
    conforms("/files/{key}", "get", found)
