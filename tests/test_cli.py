"""The ``cutout`` command line: ``process`` in this process, ``submit`` against the real stack
(with API keys on), and the client's event stream and hash-first submit through that stack."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from api.api_keys import hash_key, new_key
from cutout.cli import main
from cutout.client import ApiError, Client
from devtools.redis_server import free_port
from tests.conftest import ROOT, Stack, photo_jpeg

KEY, OTHER_KEY = new_key(), new_key()
STACK_ENV = {
    "CUTOUT_AUTH": "on",
    "CUTOUT_API_KEYS": f"cli:{hash_key(KEY)},other:{hash_key(OTHER_KEY)}",
}


def _photo_folder(folder: Path, photos: dict[str, bytes]) -> Path:
    folder.mkdir()
    (folder / "chelsea.jpg").write_bytes(photos["chelsea"])
    (folder / "coffee.jpg").write_bytes(photos["coffee"])
    good = photos["chelsea"]
    (folder / "broken.jpg").write_bytes(good[: len(good) // 4])  # a JPEG header, then nothing
    (folder / "notes.txt").write_text("not a photo: ignored")
    return folder


def _check_cutout(effect: Path, mask: Path, long_edge: int) -> None:
    """The effect's alpha is the mask; black-and-white effects in PNG are grey + alpha (LA)."""
    with Image.open(effect) as img, Image.open(mask) as alpha:
        # Colour effects are RGBA; grey ones (dithering as PNG) are grey + alpha.
        assert img.mode in ("RGBA", "LA") and max(img.size) == long_edge
        assert alpha.mode == "L" and alpha.size == img.size
        assert np.array_equal(np.asarray(img)[..., -1], np.asarray(alpha))


def test_process_a_folder_with_a_corrupt_photo(
    tmp_path: Path,
    photos: dict[str, bytes],
    weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CUTOUT_MODEL_DIR", str(weights.parent))
    folder = _photo_folder(tmp_path / "photos", photos)
    out = tmp_path / "out"
    args = ["process", str(folder), "--out", str(out), "--effects", "color,popart"]
    args += ["--max-size", "160", "--mask"]

    assert main(args) == 1
    err = capsys.readouterr().err
    assert "3 photos: 2 done, 1 failed" in err
    assert f"failed: {folder / 'broken.jpg'}: invalid_image: cannot decode" in err
    expected = {f"{stem}.{name}" for stem in ("chelsea", "coffee") for name in ("color", "popart")}
    expected |= {"chelsea.mask.png", "coffee.mask.png"}
    assert {p.name.removesuffix(".webp") for p in out.iterdir()} == expected, "nothing else"
    _check_cutout(out / "chelsea.popart.webp", out / "chelsea.mask.png", 160)

    # Once the bad photo is gone, a re-run has nothing to do and never loads the model.
    (folder / "broken.jpg").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "2 photos: 0 done, 2 skipped (outputs exist), 0 failed" in err
    assert "loading" not in err
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_process_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["process", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert main(["process", str(empty), "--out", str(empty)]) == 2
    assert main(["process", str(empty), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "other than the input" in err and "no photos" in err
    with pytest.raises(SystemExit) as usage:
        main(["process", str(empty), "--out", str(tmp_path), "--effects", "sepia"])
    assert usage.value.code == 2
    assert "unknown effects ['sepia']" in capsys.readouterr().err


def test_process_puts_the_cutout_on_a_background_cropped_to_a_fixed_size(
    tmp_path: Path,
    photos: dict[str, bytes],
    weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CUTOUT_MODEL_DIR", str(weights.parent))
    photo, out = tmp_path / "cat.jpg", tmp_path / "out"
    photo.write_bytes(photos["chelsea"])
    args = ["process", str(photo), "--out", str(out), "--effects", "color", "--format", "png"]
    args += ["--max-size", "128", "--background", "#ffffff", "--crop", "--crop-margin", "5%"]
    assert main([*args, "--size", "0x5"]) == 2
    assert "each side of size must be 1 to" in capsys.readouterr().err
    assert main([*args, "--size", "120x90", "--mask"]) == 0
    with Image.open(out / "cat.color.png") as img, Image.open(out / "cat.mask.png") as mask:
        assert img.mode == "RGB" and img.size == (120, 90), "opaque: no alpha channel"
        assert (np.asarray(img)[np.asarray(mask) == 0] >= 254).all(), "white around the cat"
    assert main(["process", str(photo), "--out", str(tmp_path / "a"), "--alpha-only"]) == 0
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["cat.mask.png"]


def test_process_refuses_two_photos_that_share_a_name(
    tmp_path: Path, photos: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    (folder / "cat.jpg").write_bytes(photos["chelsea"])
    (folder / "cat.png").write_bytes(photos["chelsea"])
    (out / "cat.color.webp").write_bytes(b"done before")  # so cat.jpg needs no model
    assert main(["process", str(folder), "--out", str(out), "--effects", "color"]) == 1
    err = capsys.readouterr().err
    assert "2 photos: 0 done, 1 skipped (outputs exist), 1 failed" in err
    assert f"failed: {folder / 'cat.png'}: its outputs would overwrite those of" in err


def test_console_script_module_and_an_unreachable_service(tmp_path: Path) -> None:
    """The entry points run; ``submit`` reports a dead service, and never imports torch."""
    script = Path(sys.executable).with_name("cutout")
    for command in ([str(script), "--help"], [sys.executable, "-m", "cutout", "--help"]):
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "process" in done.stdout and "submit" in done.stdout
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    code = "import sys; from cutout.cli import main; rc = main(sys.argv[1:]); "
    code += "sys.exit(3 if 'torch' in sys.modules else rc)"
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-c", code, "submit", str(photo), "--url", url, "--wait"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1, done.stderr
    assert f"failed: {photo}: cannot reach the service" in done.stderr


@pytest.mark.slow
def test_submit_and_wait_downloads_the_outputs(
    stack: Stack, photos: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _photo_folder(tmp_path / "photos", photos)
    (folder / "fake.jpg").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    files = [folder / name for name in ("chelsea.jpg", "broken.jpg", "fake.jpg", "coffee.jpg")]
    out = tmp_path / "out"
    args = ["submit", *map(str, files), "--url", stack.api_url, "--wait", "--out", str(out)]
    args += ["--effects", "color,dithering", "--max-size", "128", "--format", "png", "--mask"]

    assert main(args) == 1, "no key"
    assert "failed: " + str(files[0]) + ": unauthorized" in capsys.readouterr().err
    assert main([*args, "--api-key", KEY]) == 1
    captured = capsys.readouterr()
    assert "4 photos: 2 done, 2 failed" in captured.err
    assert f"failed: {files[1]}: invalid_image: cannot decode" in captured.err
    assert f"failed: {files[2]}: unsupported_media_type: the file is not a JPEG" in captured.err
    assert f"{files[0]}\tsucceeded\t3 files in {out}" in captured.out
    assert sorted(p.name for p in out.iterdir()) == [
        f"{stem}.{name}"
        for stem in ("chelsea", "coffee")
        for name in ("color.png", "dithering.png", "mask.png")
    ]
    _check_cutout(out / "coffee.dithering.png", out / "coffee.mask.png", 128)


@pytest.mark.slow
def test_submit_without_wait_prints_each_job(
    stack: Stack,
    photos: dict[str, bytes],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    photo = tmp_path / "coffee.jpg"
    photo.write_bytes(photos["coffee"])
    monkeypatch.setenv("CUTOUT_API_KEY", KEY)
    args = ["submit", str(photo), "--url", stack.api_url, "--effects", "color", "--max-size", "64"]
    args += ["--background", "#00ff00", "--crop", "--crop-margin", "4px"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "1 photo: 1 submitted, 0 failed" in captured.err
    source, status, job_url = captured.out.strip().split("\t")
    assert (source, status) == (str(photo), "queued")
    assert job_url.startswith(f"{stack.api_url}/api/v2/jobs/")
    job = Client(stack.api_url).wait(job_url.rsplit("/", 1)[1], timeout=180)
    assert job["status"] == "succeeded" and set(job["outputs"]) == {"color", "mask"}
    assert job["options"]["background"] == "#00ff00ff" and job["options"]["crop"] == "subject"
    box = job["foreground"]
    assert (box["left"], box["top"]) == (4, 4) and job["outputs"]["mask"]["width"] == box[
        "width"
    ] + 8


@pytest.mark.slow
def test_a_jobs_stream_and_hash_first_submits_through_the_stack(stack: Stack) -> None:
    """queued → processing → succeeded as the worker moves the job; a reconnect after the end
    gets the final event; another key's job is 404; the finished photo is then answered by its
    hash alone for its key, and asked for from another."""
    photo = photo_jpeg("coffee", quality=71)  # bytes no other test sends: never a cache hit
    options = {"effects": ["color"], "max_size": 96}
    client, other = Client(stack.api_url, api_key=KEY), Client(stack.api_url, api_key=OTHER_KEY)
    job = client.submit(photo, "coffee.jpg", **options)  # hash first: 428, then the upload
    assert job["status"] == "queued"
    events = list(client.events(job["id"]))
    assert [e.kind for e in events] == ["queued", "processing", "succeeded"]
    assert [e.id for e in events] == ["1", "2", "4"]
    assert events[1].job["batch_size"] >= 1 and events[1].job["model_input"]
    assert events[-1].job == client.job(job["id"])

    again = list(client.events(job["id"], last_event_id="2"))
    assert [e.kind for e in again] == ["succeeded"]
    with pytest.raises(ApiError) as foreign:
        list(other.events(job["id"]))
    assert (foreign.value.status, foreign.value.code) == (404, "job_not_found")

    body = {"image_sha256": hashlib.sha256(photo).hexdigest(), **options}
    url = f"{stack.api_url}/api/v2/jobs"

    def by_hash(key: str) -> requests.Response:  # no bytes sent
        return requests.post(url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10)

    hit = by_hash(KEY)
    assert hit.status_code == 200 and hit.json()["cache"] == "hit", hit.text
    asked = by_hash(OTHER_KEY)
    assert asked.status_code == 428 and asked.json()["error"]["code"] == "image_required"
