"""The typed job record: its JSON in Redis keeps every field, reads what earlier versions
wrote, and the public shape lists the fields the OpenAPI document requires, in order."""

from __future__ import annotations

import json
from pathlib import Path

from contract.options import Finishing
from jobs.public import PUBLIC_FIELDS, public_job
from jobs.record import (
    JobError,
    JobOptions,
    JobRecord,
    UploadInfo,
    WebhookAttempt,
    WebhookClaim,
    WebhookState,
)
from storage.local import LocalStore
from storage.result_cache import StoredOutput


def every_field() -> JobRecord:
    box = (12, 30, 400, 420)
    mask = StoredOutput("results/k/mask.png", "image/png", 640, 480, 900, box)
    color = StoredOutput("results/k/color.webp", "image/webp", 640, 480, 2048, box)
    attempt = WebhookAttempt(1, "2026-11-27T10:00:01.000Z", 503, "busy", 12.5)
    return JobRecord(
        id="j1",
        status="succeeded",
        created_at="2026-11-27T10:00:00.000Z",
        options=JobOptions(
            ("color",),
            640,
            "webp",
            preview=True,
            finishing=Finishing.from_form(
                {
                    "background": "blur",
                    "blur_strength": "12",
                    "crop": "subject",
                    "crop_margin": "4px 10%",
                    "size": "300x200",
                    "position": "0% 100%",
                    "refine": "edges",
                }  # fmt: skip
            ),
        ),
        content_key="k",
        started_at="2026-11-27T10:00:00.100Z",
        completed_at="2026-11-27T10:00:00.900Z",
        input=UploadInfo("jpeg", 4032, 3024, 2_000_000, "ab" * 32),
        model="isnet-general-use",
        cache="partial",
        joined_job="j0",
        outputs={"color": color, "mask": mask},
        preview={"color": color},
        error=JobError("storage_error", "the bucket is down"),
        timings={"queue_ms": 100.0, "total_ms": 900.0},
        batch_id="b1",
        batch_size=4,
        model_input=768,
        computed=("color",),
        owner="alice",
        webhook=WebhookState(
            "https://hooks.example/x",
            "retrying",
            attempts=1,
            last_status=503,
            history=(attempt,),
            claim=WebhookClaim(2, 1_800_000_000.5, "t"),
            first_attempt_at=1_800_000_000.0,
        ),
    )


def test_a_record_survives_its_json_with_every_field() -> None:
    record = every_field()
    assert JobRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_a_record_written_before_the_typed_record_reads() -> None:
    """The shape the API wrote at submit before: no joined_job, batch fields or preview."""
    stored = {
        "id": "j2",
        "status": "queued",
        "created_at": "2026-11-27T10:00:00.000Z",
        "started_at": None,
        "completed_at": None,
        "options": {"effects": ["color", "popart"], "max_size": 2048, "format": "webp"},
        "input": {"format": "png", "width": 32, "height": 24, "bytes": 99, "sha256": "cd"},
        "model": "isnet-general-use",
        "content_key": "k2",
        "cache": None,
        "outputs": {},
        "error": None,
        "timings": {},
        "owner": None,
        "webhook": None,
    }
    record = JobRecord.from_dict(stored)
    assert record.options == JobOptions(("color", "popart"), 2048, "webp")
    assert record.joined_job is None and record.preview is None and record.computed is None
    assert {k: v for k, v in record.to_dict().items() if k in stored} == stored


def test_the_public_job_lists_the_documented_fields_in_order(tmp_path: Path) -> None:
    body = public_job(every_field(), LocalStore(tmp_path), "http://api.test")
    assert list(body) == [*PUBLIC_FIELDS, "outputs", "foreground", "preview", "timings", "webhook"]
    assert body["foreground"] == {"left": 12, "top": 30, "width": 400, "height": 420}
    assert body["outputs"]["color"]["url"] == "http://api.test/files/results/k/color.webp"
    assert "claim" not in body["webhook"] and "first_attempt_at" not in body["webhook"]
