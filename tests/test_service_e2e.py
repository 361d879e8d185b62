"""The whole service: gunicorn + a real Celery worker + Redis, over HTTP."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from storage.redis_server import free_port
from tests.conftest import Stack, _spawn, _stop, wait_until
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
    expected = decode(source, job["options"]["max_size"]).rgb
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
    corrupt = good[: len(good) // 4]  # a real JPEG header, then nothing
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


def test_flower_lists_the_worker(stack: Stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {**stack.env, "FLOWER_UNAUTHENTICATED_API": "true"}
    args = [sys.executable, "-m", "celery", "-A", "tasks.worker", "flower",
            "--address=127.0.0.1", f"--port={port}"]  # fmt: skip
    flower = _spawn(args, env, tmp_path / "flower.log")
    try:

        def listed() -> bool:
            try:
                workers = requests.get(
                    f"http://127.0.0.1:{port}/api/workers?refresh=1", timeout=10
                ).json()
            except (requests.RequestException, ValueError):
                return False
            return any(name.startswith("gpu@") for name in workers)

        wait_until(listed, 60, "Flower to list the gpu worker", interval=1)
    finally:
        _stop(flower)
    assert os.path.exists(tmp_path / "flower.log")
    assert subprocess is not None
