"""The whole service: gunicorn + a real Celery worker + Redis, over HTTP."""

from __future__ import annotations

import io
import json
import socket
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from devtools.redis_server import free_port
from observability.gpu_stats import read_gpus
from tests.conftest import Stack, _spawn, _stop, wait_until
from tests.hostile_corpus import corrupt_png
from tests.prom import Samples, names, scrape, value
from workers.imageio import decode

pytestmark = pytest.mark.slow


def submit(stack: Stack, data: bytes, name: str = "photo.jpg", **form: str) -> requests.Response:
    return requests.post(
        f"{stack.api_url}/api/v2/jobs", files={"image": (name, data)}, data=form, timeout=30
    )


def poll(stack: Stack, location: str, timeout: float = 180) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        job = requests.get(f"{stack.api_url}{location}", timeout=10).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None

    try:
        return wait_until(finished, timeout, f"job {location}", interval=0.2)  # type: ignore[no-any-return]
    except TimeoutError:
        print(stack.log_tail("gpu"))
        raise


def fetch_image(url: str) -> Image.Image:
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    img = Image.open(io.BytesIO(response.content))
    img.load()
    return img


def served_mask(job: dict[str, Any], photo: bytes, segmenter: Any) -> np.ndarray:
    """The mask a finished job serves, checked against the one ``segmenter`` (a
    ``workers.predictor.Segmenter`` on the worker's model and weights) gives in this process:
    the worker provably ran that model. Returns the served mask (H×W int)."""
    import torch

    image = decode(photo, job["options"]["max_size"]).rgb
    mask = np.asarray(fetch_image(job["outputs"]["mask"]["url"])).astype(int)
    assert mask.shape == image.shape[:2]
    with torch.inference_mode():
        expected = segmenter.predict([torch.from_numpy(image).permute(2, 0, 1)])[0][0]
    expected_u8 = (expected.clamp(0, 1) * 255).round().to(torch.uint8).numpy().astype(int)
    assert np.abs(mask - expected_u8).max() <= 1
    return mask


CODEC_FORMATS = {  # requested format → what each effect comes as (see workers/outputs.py)
    "webp": {"color": "WEBP", "enhancedblackwhite": "WEBP", "popart": "WEBP", "dithering": "WEBP"},
    "png": {"color": "PNG", "enhancedblackwhite": "PNG", "popart": "PNG", "dithering": "PNG"},
    "jpg+mask": {
        "color": "JPEG",
        "enhancedblackwhite": "JPEG",
        "popart": "PNG",
        "dithering": "PNG",
    },
}


def check_outputs(job: dict[str, Any], source: bytes, fmt: str) -> None:
    # Decoded as the worker did: read large enough for the model's input (a cache hit's
    # outputs came from a job at the model's own 1024).
    expected = decode(source, job["options"]["max_size"], job["model_input"] or 1024).rgb
    height, width = expected.shape[:2]
    assert set(job["outputs"]) == {"color", "enhancedblackwhite", "popart", "dithering", "mask"}
    mask_img = fetch_image(job["outputs"]["mask"]["url"])
    assert mask_img.mode == "L" and mask_img.size == (width, height)
    mask = np.asarray(mask_img)
    assert 0.05 < (mask > 127).mean() < 0.95, "a subject and a background should both be found"
    for name, codec_format in CODEC_FORMATS[fmt].items():
        meta = job["outputs"][name]
        assert (meta["width"], meta["height"]) == (width, height)
        assert meta["content_type"] == f"image/{codec_format.lower()}"
        img = fetch_image(meta["url"])
        assert img.format == codec_format and img.size == (width, height)
        if fmt != "jpg+mask":
            rgba = np.asarray(img.convert("RGBA"))
            assert np.array_equal(rgba[..., 3], mask), f"{name}: alpha must be the mask"
        else:
            assert img.mode in ("RGB", "L", "P", "1"), f"{name}: no alpha of its own"
    color = np.asarray(fetch_image(job["outputs"]["color"]["url"]).convert("RGB")).astype(int)
    subject = mask == 255
    diff = np.abs(color[subject] - expected[subject].astype(int))
    if fmt == "png":
        assert diff.max() == 0, "lossless: subject pixels equal the input's"
    else:
        assert diff.mean() < 3, "lossy WebP or JPEG: subject pixels close to the input's"


def test_three_photos_end_to_end(stack: Stack, photos: dict[str, bytes]) -> None:
    formats = {"astronaut": "png", "chelsea": "jpg+mask", "coffee": "webp"}
    responses = {
        name: submit(stack, data, **({} if formats[name] == "webp" else {"format": formats[name]}))
        for name, data in photos.items()
    }
    for response in responses.values():
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
    for name, response in responses.items():
        job = poll(stack, response.headers["Location"])
        assert job["status"] == "succeeded", job
        check_outputs(job, photos[name], formats[name])
        timings = job["timings"]
        for key in ("queue_ms", "decode_ms", "inference_ms", "effects_ms", "encode_ms", "total_ms"):
            assert timings[key] >= 0
        assert timings["total_ms"] >= timings["inference_ms"]
        assert job["started_at"] and job["completed_at"]


def test_a_corrupt_image_fails_alone_in_its_batch(stack: Stack, photos: dict[str, bytes]) -> None:
    good = photos["chelsea"]
    corrupt = corrupt_png()  # passes every check at submit, fails to decode on the worker
    payloads = [good, corrupt, photos["coffee"]]
    with ThreadPoolExecutor(3) as pool:  # at once, so they share a batch
        responses = list(
            pool.map(lambda d: submit(stack, d, effects="color", max_size="256"), payloads)
        )
    jobs = [poll(stack, r.headers["Location"]) for r in responses]
    assert [j["status"] for j in jobs] == ["succeeded", "failed", "succeeded"]
    assert jobs[1]["error"]["code"] == "invalid_image" and jobs[1]["error"]["message"]
    assert jobs[0]["batch_size"] >= 2, "the good ones should have been batched together"


def test_unsupported_type_over_http(stack: Stack) -> None:
    response = submit(stack, b"<svg xmlns='http://www.w3.org/2000/svg'/>", name="x.jpg")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_old_clients_endpoint_waits_for_the_result(stack: Stack, photos: dict[str, bytes]) -> None:
    response = requests.post(
        f"{stack.api_url}/api/v2/process-with-effects",
        files={"image": ("a.jpg", photos["astronaut"])},
        data={"max_size": "300", "timeout": "120"},
        timeout=150,
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["outputs"]["popart"]["width"] == 300


def test_ready_when_a_warm_gpu_worker_is_up(stack: Stack) -> None:
    response = requests.get(f"{stack.api_url}/readyz", timeout=5)
    assert response.status_code == 200
    assert response.json()["checks"]["gpu_workers"] >= 1


@dataclass(frozen=True)
class Flower:
    url: str
    auth: tuple[str, str]


@pytest.fixture(scope="module")
def flower(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flower]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "tasks.flower", "--address=127.0.0.1", f"--port={port}"]
    env = {**stack.env, "FLOWER_BASIC_AUTH": "ops:s3cret"}
    proc = _spawn(args, env, tmp_path_factory.mktemp("flower") / "flower.log")
    try:
        wait_until(lambda: _status(f"{url}/healthcheck") == 200, 60, "Flower to start")
        yield Flower(url, ("ops", "s3cret"))
    finally:
        _stop(proc)


def test_flower_lists_the_worker_behind_basic_auth(flower: Flower) -> None:
    url = flower.url
    assert _status(f"{url}/") == 401
    assert _status(f"{url}/api/workers") == 401
    assert _status(f"{url}/api/workers", auth=("ops", "wrong")) == 401

    def listed() -> bool:
        response = requests.get(f"{url}/api/workers?refresh=1", auth=flower.auth, timeout=10)
        return response.ok and any(name.startswith("gpu@") for name in response.json())

    wait_until(listed, 60, "Flower to list the gpu worker", interval=1)


def test_flower_shows_each_job_as_it_ended(
    stack: Stack, flower: Flower, photos: dict[str, bytes]
) -> None:
    # Flower only knows what happened while it listened: wait until it sees the worker. A size
    # no other test asks for, so the result cache cannot answer the job without a task.
    test_flower_lists_the_worker_behind_basic_auth(flower)
    payloads = [photos["coffee"], corrupt_png()]
    with ThreadPoolExecutor(2) as pool:
        responses = list(
            pool.map(lambda d: submit(stack, d, effects="color", max_size="136"), payloads)
        )
    jobs = [poll(stack, r.headers["Location"]) for r in responses]
    assert [j["status"] for j in jobs] == ["succeeded", "failed"]

    def task(job_id: str, state: str) -> dict[str, Any] | None:
        response = requests.get(
            f"{flower.url}/api/task/info/{job_id}", auth=flower.auth, timeout=10
        )
        info = response.json() if response.ok else {}
        return info if info.get("state") == state else None

    done = wait_until(lambda: task(jobs[0]["id"], "SUCCESS"), 30, "Flower's SUCCESS")
    assert done["name"] == "cutout.segment" and done["worker"].startswith("gpu@")
    assert done["received"] and done["started"] and done["runtime"] > 0
    failed = wait_until(lambda: task(jobs[1]["id"], "FAILURE"), 30, "Flower's FAILURE")
    assert "invalid_image" in failed["exception"]
    assert failed["received"] <= failed["started"] <= failed["failed"]


def _status(url: str, auth: tuple[str, str] | None = None) -> int | None:
    try:
        return requests.get(url, auth=auth, timeout=10).status_code
    except requests.RequestException:
        return None


# Every series the plan lists, and the process that exposes it. GPU series are absent on a
# machine without an NVIDIA driver (this one) rather than faked; see test_metrics.py for them.
API_SERIES = {"cutout_request_duration_seconds_count", "cutout_jobs_total", "cutout_errors_total",
              "cutout_queue_depth", "cutout_queue_oldest_age_seconds", "cutout_cache_hits_total",
              "cutout_cache_misses_total", "cutout_cache_inflight_joins_total",
              "cutout_webhook_deliveries_total"}  # fmt: skip
WORKER_SERIES = {"cutout_cold_start_duration_seconds", "cutout_job_duration_seconds_count",
                 "cutout_model_inference_seconds_count", "cutout_effect_processing_seconds_count",
                 "cutout_encode_seconds_count", "cutout_batch_size_count", "cutout_jobs_total",
                 "cutout_errors_total", "cutout_cost_per_1k_images"}  # fmt: skip


def test_a_job_moves_the_metrics_and_logs_each_stage(
    stack: Stack, photos: dict[str, bytes]
) -> None:
    api_url = f"{stack.api_url}/metrics"
    worker_url = f"http://127.0.0.1:{stack.env['CUTOUT_METRICS_PORT']}/metrics"
    api_before, worker_before = scrape(api_url), scrape(worker_url)

    response = submit(stack, photos["chelsea"], effects="color,popart", max_size="256")
    location = response.headers["Location"]
    polls = 0
    while True:  # many requests, so both gunicorn workers answer some
        polls += 1
        job = requests.get(f"{stack.api_url}{location}", timeout=10).json()
        if job["status"] not in ("queued", "processing") or polls >= 900:
            break
        time.sleep(0.2)
    assert job["status"] == "succeeded", job

    def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    api = scrape(api_url)

    # The batch is recorded last, just after the job's record says it succeeded.
    def batch_recorded() -> Samples | None:
        samples = scrape(worker_url)
        return samples if moved(worker_before, samples, "cutout_images_processed_total") else None

    worker: Samples = wait_until(batch_recorded, 10, "the worker to record the batch")

    assert API_SERIES <= names(api), API_SERIES - names(api)
    assert WORKER_SERIES <= names(worker), WORKER_SERIES - names(worker)
    # The gunicorn workers' counts add up: every poll is counted whichever process answered.
    get_job = {"endpoint": "jobs.get_job", "status": "200"}
    assert moved(api_before, api, "cutout_request_duration_seconds_count", **get_job) == polls
    assert moved(api_before, api, "cutout_jobs_total", status="queued") == 1
    assert value(api, "cutout_queue_depth", queue="gpu") is not None

    # The engine is whatever `auto` chose on this machine (eager without an engines report).
    (engine,) = {
        dict(lbl)["engine"] for n, lbl in worker if n == "cutout_model_inference_seconds_count"
    }
    for name, labels in [
        ("cutout_jobs_total", {"status": "succeeded"}),
        ("cutout_job_duration_seconds_count", {"outcome": "succeeded"}),
        ("cutout_model_inference_seconds_count", {"engine": engine}),
        ("cutout_batch_size_count", {}),
        ("cutout_decode_seconds_count", {}),
        ("cutout_effect_processing_seconds_count", {}),
        ("cutout_encode_seconds_count", {}),
        ("cutout_store_seconds_count", {}),
        ("cutout_images_processed_total", {}),
    ]:
        assert moved(worker_before, worker, name, **labels) == 1, name
    assert moved(worker_before, worker, "cutout_worker_busy_seconds_total") > 0
    assert value(worker, "cutout_cold_start_duration_seconds", phase="total") > 0  # type: ignore[operator]
    assert value(worker, "cutout_cost_per_1k_images", basis="busy") > 0  # type: ignore[operator]
    if not read_gpus():
        assert not {n for n in names(worker) if n.startswith("gpu_")}
    check_stage_logs(stack, job)


def check_stage_logs(stack: Stack, job: dict[str, Any]) -> None:
    """The worker wrote one JSON line per stage of the job, tied to its batch."""

    def logged() -> list[dict[str, Any]] | None:
        lines = [
            json.loads(line)
            for line in (stack.logs / "gpu.log").read_text().splitlines()
            if line.startswith("{")
        ]
        return lines if any(e.get("stage") == "batch" for e in lines) else None

    lines: list[dict[str, Any]] = wait_until(logged, 10, "the worker's batch line")
    stages = {entry["stage"]: entry for entry in lines if entry.get("job_id") == job["id"]}
    assert {"started", "processed", "succeeded"} <= set(stages)
    batch_id = stages["processed"]["batch_id"]
    assert batch_id and stages["succeeded"]["batch_id"] == batch_id
    assert stages["processed"]["timings"]["inference_ms"] > 0
    assert stages["succeeded"]["timings"]["total_ms"] == job["timings"]["total_ms"]
    assert any(e.get("stage") == "batch" and e["batch_id"] == batch_id for e in lines)


def foreground_extent(mask: np.ndarray) -> dict[str, int]:
    """The box of the mask's pixels at least 5 % opaque, as the job reports it."""
    rows, cols = np.flatnonzero((mask >= 13).any(1)), np.flatnonzero((mask >= 13).any(0))
    if rows.size == 0:
        return {"left": 0, "top": 0, "width": 0, "height": 0}
    width, height = int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)
    return {"left": int(cols[0]), "top": int(rows[0]), "width": width, "height": height}


def test_backgrounds_crops_and_alpha_only_end_to_end(
    stack: Stack, photos: dict[str, bytes]
) -> None:
    """One batch: a white, cropped, fixed-size product shot; a blurred-background portrait;
    an uploaded background; a crop with a margin; alpha only. Each reports the subject's box,
    which is the extent of the mask it serves."""
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (0, 0, 255)).save(picture, "PNG")
    small = {"effects": "color", "max_size": "192"}
    requests_ = {
        "product": ({**small, "format": "png", "background": "#ffffff", "crop": "subject",
                     "crop_margin": "10%", "size": "200x160", "position": "center"}, None),
        "portrait": ({**small, "background": "blur", "blur_strength": "60"}, None),
        "uploaded": ({**small, "format": "png"}, picture.getvalue()),
        "margin": ({**small, "crop": "subject", "crop_margin": "6px"}, None),
        "alpha": ({**small, "channels": "alpha"}, None),
    }  # fmt: skip

    def send(item: tuple[str, tuple[dict[str, str], bytes | None]]) -> requests.Response:
        form, background = item[1]
        files = {"image": ("photo.jpg", photos["astronaut"])}
        if background is not None:
            files["background_image"] = ("bg.png", background)
        return requests.post(f"{stack.api_url}/api/v2/jobs", files=files, data=form, timeout=30)

    with ThreadPoolExecutor(len(requests_)) as pool:  # at once: one batch on the worker
        responses = dict(zip(requests_, pool.map(send, requests_.items()), strict=True))
    jobs = {name: poll(stack, r.headers["Location"]) for name, r in responses.items()}
    for name, job in jobs.items():
        assert job["status"] == "succeeded", (name, job["error"], stack.log_tail("gpu"))
        mask = np.asarray(fetch_image(job["outputs"]["mask"]["url"]))
        assert job["foreground"] == foreground_extent(mask), name
        assert job["foreground"]["width"] > 0, name

    product = fetch_image(jobs["product"]["outputs"]["color"]["url"])
    assert product.format == "PNG" and product.mode == "RGB" and product.size == (200, 160)
    pixels = np.asarray(product).astype(int)
    mask = np.asarray(fetch_image(jobs["product"]["outputs"]["mask"]["url"]))
    assert (pixels[mask == 0] >= 254).all(), "white wherever the subject is not"
    box = jobs["product"]["foreground"]  # the crop (the box and 10 % each side) fills a side
    assert abs(box["width"] * 1.2 - 200) <= 4 or abs(box["height"] * 1.2 - 160) <= 4, box

    portrait = fetch_image(jobs["portrait"]["outputs"]["color"]["url"])
    assert portrait.format == "WEBP" and portrait.mode == "RGB", "opaque: no alpha channel"
    assert np.asarray(portrait).std() > 10

    uploaded = np.asarray(fetch_image(jobs["uploaded"]["outputs"]["color"]["url"])).astype(int)
    clear = np.asarray(fetch_image(jobs["uploaded"]["outputs"]["mask"]["url"])) == 0
    assert np.abs(uploaded[clear] - (0, 0, 255)).max() <= 1, "blue wherever the subject is not"

    margin = jobs["margin"]
    assert margin["foreground"]["left"] == 6 and margin["foreground"]["top"] == 6
    assert margin["outputs"]["mask"]["width"] == margin["foreground"]["width"] + 12

    alpha = jobs["alpha"]
    assert list(alpha["outputs"]) == ["mask"]
    assert fetch_image(alpha["outputs"]["mask"]["url"]).mode == "L"


def _raw_request(url: str, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` as it is (requests would refuse some of these) and read the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    head_text, _, body = rest.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head_text.decode("latin-1").split("\r\n"))
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        (b"GET /healthz?q=" + b"x" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n",
            431,
            "request_header_fields_too_large",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n"
            + b"".join(b"X-H%d: 1\r\n" % i for i in range(120))
            + b"\r\n",
            431,
            "request_header_fields_too_large",
        ),
        (b"GET /healthz HTTP/9.9\r\nHost: a\r\n\r\n", 400, "bad_request"),
    ],
    ids=["uri-too-long", "header-too-large", "too-many-headers", "bad-version"],
)
def test_what_gunicorn_refuses_is_answered_in_json(
    stack: Stack, head: bytes, status: int, code: str
) -> None:
    got, headers, body = _raw_request(stack.api_url, head)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"]
