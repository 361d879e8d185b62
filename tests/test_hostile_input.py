"""The hostile-input corpus against the app (real Redis, jobs queued, not run), and the odd
but legitimate photos decoded as the worker decodes them. The same corpus goes through the
live service in ``test_live_api_e2e.py``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

from tests.hostile_corpus import Case, accepted, refused
from tests.test_api import _error, client, queued  # noqa: F401 (fixtures)
from workers.imageio import decode

REFUSED = refused()
ACCEPTED = accepted()


def post_case(app_client: FlaskClient, case: Case):  # type: ignore[no-untyped-def]
    form: dict[str, object] = dict(case.form)
    if case.image is not None:
        form["image"] = (io.BytesIO(case.image), case.filename, case.part_type)
    return app_client.post("/api/v2/jobs", data=form, content_type="multipart/form-data")


@pytest.mark.parametrize("case", REFUSED, ids=[c.name for c in REFUSED])
def test_hostile_upload_gets_its_coded_4xx(
    client: FlaskClient,  # noqa: F811
    queued: list[str],  # noqa: F811
    case: Case,
) -> None:
    response = post_case(client, case)
    assert response.status_code == case.status, response.get_json()
    assert _error(response) == case.code
    assert case.says in response.get_json()["error"]["message"]
    assert queued == []


@pytest.mark.parametrize("case", ACCEPTED, ids=[c.name for c in ACCEPTED])
def test_odd_but_legitimate_upload_is_queued_and_decodes_upright(
    client: FlaskClient,  # noqa: F811
    queued: list[str],  # noqa: F811
    tmp_path: Path,
    case: Case,
) -> None:
    response = post_case(client, case)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    assert queued == [job_id]
    # Names are never used for storage: the upload is staged under the job id alone.
    staged = [p.relative_to(tmp_path / "files") for p in (tmp_path / "files").rglob("*")]
    assert sorted(map(str, staged)) == ["staging", f"staging/{job_id}"]
    assert case.image is not None and case.upright is not None
    rgb = decode(case.image, 64).rgb
    assert (rgb.shape[1], rgb.shape[0]) == case.upright
    assert rgb.std() > 10, "the two halves survive decoding"


def test_animated_webp_is_read_as_its_first_frame() -> None:
    (case,) = [c for c in ACCEPTED if c.name == "animated_webp_first_frame"]
    assert case.image is not None
    assert np.array_equal(decode(case.image, 64).rgb[0, 0], [220, 30, 30])


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xd8\xff\xe0 a raw JPEG body", "image/jpeg"),
        (b'{"image": "aGVsbG8="}', "application/json"),
        (b"image=hello", "application/x-www-form-urlencoded"),
        (b"--x\r\nContent-Disposition: form-data; name=image\r\n\r\nabc", None),
        (b"", None),
    ],
)
def test_a_request_that_is_not_a_multipart_upload_is_400(
    client: FlaskClient,  # noqa: F811
    body: bytes,
    content_type: str | None,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/v2/jobs", data=body, headers=headers)
    # A JSON body is a hash-first submit (docs/events.md); this one names no image_sha256.
    code = "invalid_image_sha256" if content_type == "application/json" else "missing_image"
    assert response.status_code == 400 and _error(response) == code


def test_a_cut_jpeg_is_caught_even_with_an_end_marker_in_its_exif() -> None:
    from PIL import Image

    from contract.truncation import truncated
    from tests.hostile_corpus import _halves, _save

    photo = _save(Image.fromarray(_halves(256, 192)), "JPEG")
    # An APP1 segment (where EXIF thumbnails live) holding an end-of-image marker.
    app1 = b"\xff\xe1" + (2 + 8).to_bytes(2, "big") + b"Exif\xff\xd9\x00\x00"
    with_marker = photo[:2] + app1 + photo[2:]
    assert truncated(with_marker, "jpeg") is None
    assert truncated(with_marker[: len(with_marker) - 200], "jpeg") is not None
    assert truncated(photo, "jpeg") is None and truncated(photo + b"trailer", "jpeg") is None
