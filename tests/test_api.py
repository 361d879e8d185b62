"""The API with its own config, real Redis and local storage; jobs are queued, not run."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient
from PIL import Image

from api import create_app
from storage.settings import StorageSettings
from tests.prom import Samples, parse, value
from tests.test_imageio import png_header_only


@pytest.fixture
def queued() -> list[str]:
    return []


@pytest.fixture
def client(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path, queued: list[str]
) -> Iterator[FlaskClient]:
    app = create_app(
        {
            "STORAGE": StorageSettings(local_dir=tmp_path / "files", redis_url=redis_url),
            "ENQUEUE": queued.append,
            "SYNC_WAIT_SECONDS": 0.2,
        }
    )
    with app.test_client() as c:
        yield c


def _jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def _post(client: FlaskClient, data: bytes | None, **form: str):  # type: ignore[no-untyped-def]
    payload: dict[str, object] = dict(form)
    if data is not None:
        payload["image"] = (io.BytesIO(data), "photo.jpg")
    return client.post("/api/v2/jobs", data=payload, content_type="multipart/form-data")


def _error(response) -> str:  # type: ignore[no-untyped-def]
    body = response.get_json()
    assert set(body["error"]) == {"code", "message"} and body["error"]["message"]
    return body["error"]["code"]  # type: ignore[no-any-return]


def test_submit_queues_a_job(client: FlaskClient, queued: list[str], tmp_path: Path) -> None:
    response = _post(client, _jpeg(), effects="color,popart", max_size="512", format="png")
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/api/v2/jobs/{job['id']}"
    assert job["status"] == "queued"
    assert job["options"] == {"effects": ["color", "popart"], "max_size": 512, "format": "png"}
    assert queued == [job["id"]]
    assert (tmp_path / "files" / "staging" / job["id"]).is_file()
    polled = client.get(response.headers["Location"]).get_json()
    assert polled["id"] == job["id"] and polled["status"] == "queued"


def test_defaults_are_all_four_effects_webp_2048(client: FlaskClient) -> None:
    job = _post(client, _jpeg()).get_json()
    assert job["options"] == {
        "effects": ["color", "enhancedblackwhite", "popart", "dithering"],
        "max_size": 2048,
        "format": "webp",
    }


@pytest.mark.parametrize("fmt", ["webp", "PNG", "jpg+mask"])
def test_every_output_format_is_accepted(client: FlaskClient, fmt: str) -> None:
    response = _post(client, _jpeg(), format=fmt)
    assert response.status_code == 202
    assert response.get_json()["options"]["format"] == fmt.lower()


def test_unknown_job_is_404(client: FlaskClient) -> None:
    response = client.get("/api/v2/jobs/nope")
    assert response.status_code == 404 and _error(response) == "job_not_found"


@pytest.mark.parametrize(
    ("data", "form", "status", "code"),
    [
        (None, {}, 400, "missing_image"),
        (b"", {}, 400, "empty_image"),
        (b"%PDF-1.7 not an image", {}, 415, "unsupported_media_type"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00", {}, 415, "unsupported_media_type"),
        (b"\xff\xd8\xff\xe0garbage", {}, 422, "invalid_image"),
        (png_header_only(20_000, 10_000), {}, 422, "image_too_large"),
        ("jpeg", {"effects": "color,sparkle"}, 400, "invalid_effects"),
        ("jpeg", {"max_size": "0"}, 400, "invalid_max_size"),
        ("jpeg", {"max_size": "-5"}, 400, "invalid_max_size"),
        ("jpeg", {"max_size": "huge"}, 400, "invalid_max_size"),
        ("jpeg", {"max_size": "100000"}, 400, "invalid_max_size"),
        ("jpeg", {"format": "gif"}, 400, "invalid_format"),
    ],
)
def test_bad_input_gets_a_coded_4xx(
    client: FlaskClient,
    queued: list[str],
    data: bytes | str | None,
    form: dict[str, str],
    status: int,
    code: str,
) -> None:
    body = _jpeg() if data == "jpeg" else data
    response = _post(client, body, **form)  # type: ignore[arg-type]
    assert response.status_code == status
    assert _error(response) == code
    assert queued == []


def test_oversize_body_is_413(client: FlaskClient) -> None:
    # A raw body (not the test client's multipart encoder, which spools to an unclosed file).
    big = b"\xff\xd8\xff" + b"\x00" * (26 * 1024 * 1024)
    response = client.post("/api/v2/jobs", data=big, content_type="multipart/form-data; boundary=x")
    assert response.status_code == 413 and _error(response) == "payload_too_large"


def test_sync_endpoint_answers_202_when_the_wait_runs_out(client: FlaskClient) -> None:
    response = client.post(
        "/api/v2/process-with-effects",
        data={"image": (io.BytesIO(_jpeg()), "a.jpg"), "timeout": "0.1"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202
    assert response.get_json()["status"] == "queued"


def test_sync_endpoint_refuses_a_bad_timeout(client: FlaskClient) -> None:
    response = client.post(
        "/api/v2/process-with-effects",
        data={"image": (io.BytesIO(_jpeg()), "a.jpg"), "timeout": "soon"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400 and _error(response) == "invalid_timeout"


def test_enqueue_failure_is_503_and_recorded(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    def broken(job_id: str) -> None:
        raise ConnectionError("broker down")

    app = create_app(
        {"STORAGE": StorageSettings(local_dir=tmp_path, redis_url=redis_url), "ENQUEUE": broken}
    )
    response = _post(app.test_client(), _jpeg())
    assert response.status_code == 503 and _error(response) == "queue_unavailable"
    (key,) = redis_client.keys("cutout:job:*")
    assert b'"enqueue_failed"' in redis_client.get(key)


def test_staged_uploads_are_never_served(client: FlaskClient, tmp_path: Path) -> None:
    job = _post(client, _jpeg()).get_json()
    assert client.get(f"/files/staging/{job['id']}").status_code == 404
    assert client.get("/files/results/../staging/x").status_code == 404


def test_readyz_needs_a_gpu_worker(client: FlaskClient, redis_client: redis.Redis) -> None:
    from jobs.heartbeats import Heartbeats

    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["checks"]["gpu_workers"] == 0
    Heartbeats(redis_client).beat("gpu", "gpu@test")
    assert client.get("/readyz").status_code == 200


# --- the result cache ------------------------------------------------------------------------


def _finish_as_a_worker(client: FlaskClient, job_id: str, names: list[str]) -> None:
    """Store outputs for ``names`` and end the job, as the runner does once it computed them."""
    from storage.keys import result_key
    from storage.result_cache import StoredOutput

    svc = client.application.extensions["cutout"]
    record = svc.jobs.get(job_id)
    outputs = {}
    for name in names:
        key = result_key(record.content_key, name, "png")
        svc.store.save(key, name.encode(), "image/png", immutable=True)
        outputs[name] = StoredOutput(key, "image/png", 64, 48, len(name))
    svc.cache.store(record.content_key, outputs)
    svc.dispatcher.finish(job_id, outputs)


def _scrape(client: FlaskClient) -> Samples:
    """``/metrics`` as this process exposes it (counters are per process: compare deltas)."""
    return parse(client.get("/metrics").get_data(as_text=True))


def _moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)


def _cache_moves(before: Samples, after: Samples) -> tuple[float, float, float]:
    """How far (hits, misses, in-flight joins) moved."""
    names = (
        "cutout_cache_hits_total",
        "cutout_cache_misses_total",
        "cutout_cache_inflight_joins_total",
    )
    return tuple(_moved(before, after, n) for n in names)  # type: ignore[return-value]


def test_a_cached_photo_is_answered_at_once(
    client: FlaskClient, queued: list[str], tmp_path: Path
) -> None:
    photo = _jpeg()
    before = _scrape(client)
    first = _post(client, photo, effects="color,popart", format="png")
    assert first.status_code == 202 and first.get_json()["cache"] == "miss"
    _finish_as_a_worker(client, first.get_json()["id"], ["color", "popart", "mask"])
    for effects in ("color,popart", "popart"):  # a subset of what was computed is a hit too
        again = _post(client, photo, effects=effects, format="png")
        assert again.status_code == 200
        job = again.get_json()
        assert job["status"] == "succeeded" and job["cache"] == "hit"
        assert list(job["outputs"]) == [*effects.split(","), "mask"]
        assert again.headers["Location"] == f"/api/v2/jobs/{job['id']}"
        assert client.get(job["outputs"]["popart"]["url"]).data == b"popart"
        assert client.get(again.headers["Location"]).get_json()["status"] == "succeeded"
    assert queued == [first.get_json()["id"]], "a hit never reaches the queue"
    assert [p.name for p in (tmp_path / "files" / "staging").iterdir()] == []
    after = _scrape(client)
    assert _cache_moves(before, after) == (2, 1, 0)
    # Each hit is a job that ended at once (counted by the job store's hook), never queued.
    assert _moved(before, after, "cutout_jobs_total", status="queued") == 1
    assert _moved(before, after, "cutout_jobs_total", status="succeeded") == 3
    assert _moved(before, after, "cutout_job_duration_seconds_count", outcome="succeeded") == 3


def test_other_options_are_another_content_key(client: FlaskClient, queued: list[str]) -> None:
    photo = _jpeg()
    first = _post(client, photo, effects="color").get_json()
    _finish_as_a_worker(client, first["id"], ["color", "mask"])
    assert _post(client, photo, effects="color", max_size="512").status_code == 202
    assert _post(client, _jpeg((65, 48)), effects="color").status_code == 202
    assert len(queued) == 3


def test_an_identical_upload_joins_the_job_in_flight(
    client: FlaskClient, queued: list[str]
) -> None:
    photo = _jpeg()
    before = _scrape(client)
    leader = _post(client, photo).get_json()
    follower = _post(client, photo, effects="dithering")
    assert follower.status_code == 202 and follower.get_json()["cache"] == "joined"
    assert queued == [leader["id"]]
    _finish_as_a_worker(client, leader["id"], ALL_OUTPUTS)
    done = client.get(follower.headers["Location"]).get_json()
    assert done["status"] == "succeeded" and list(done["outputs"]) == ["dithering", "mask"]
    after = _scrape(client)
    assert _cache_moves(before, after) == (0, 1, 1)
    assert _moved(before, after, "cutout_jobs_total", status="queued") == 2
    assert _moved(before, after, "cutout_jobs_total", status="succeeded") == 2


def test_only_the_missing_effects_are_queued(client: FlaskClient, queued: list[str]) -> None:
    photo = _jpeg()
    first = _post(client, photo, effects="color").get_json()
    _finish_as_a_worker(client, first["id"], ["color", "mask"])
    more = _post(client, photo, effects="color,popart")
    assert more.status_code == 202
    assert more.get_json()["cache"] == "partial"
    assert queued == [first["id"], more.get_json()["id"]]


ALL_OUTPUTS = ["color", "enhancedblackwhite", "popart", "dithering", "mask"]
