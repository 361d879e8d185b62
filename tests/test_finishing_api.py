"""The finishing options at the API (real Redis, jobs queued, not run): their 400s, the
uploaded background checked like the photo, and the result cache keyed by them."""

from __future__ import annotations

import io

from flask.testing import FlaskClient
from PIL import Image

from tests.hostile_corpus import refused
from tests.test_api import _error, _finish_as_a_worker, _jpeg, client, queued  # noqa: F401

BAD_VALUES = {
    "invalid_background": [
        {"background": "red"},
        {"background": "#12345"},
        {"background": "#1234567g"},
        {"background": "image"},  # no background_image part
        {"background": "blur", "blur_strength": "0"},
        {"background": "blur", "blur_strength": "101"},
        {"background": "#ffffff", "blur_strength": "10"},
    ],
    "invalid_crop": [
        {"crop": "face"},
        {"crop": "subject", "crop_margin": "10em"},
        {"crop": "subject", "crop_margin": "60%"},
        {"crop": "subject", "crop_margin": "501px"},
        {"crop": "subject", "crop_margin": "1px 2px 3px"},
        {"crop_margin": "10px"},  # a margin without a crop
    ],
    "invalid_size": [{"size": "100"}, {"size": "0x10"}, {"size": "9000x100"}, {"size": "-1x5"}],
    "invalid_position": [{"size": "10x10", "position": "middle"}, {"position": "10%"}],
    "invalid_channels": [{"channels": "rgb"}],
    "invalid_refine": [{"refine": "sharp"}],
}


def _post(  # type: ignore[no-untyped-def]
    client: FlaskClient,  # noqa: F811
    photo: bytes,
    picture: bytes | None = None,
    **form: str,
):
    """Submit ``photo`` with ``form``; ``picture``: the uploaded background image."""
    payload: dict[str, object] = {"image": (io.BytesIO(photo), "photo.jpg"), **form}
    if picture is not None:
        payload["background_image"] = (io.BytesIO(picture), "background.jpg")
    return client.post("/api/v2/jobs", data=payload, content_type="multipart/form-data")


def test_bad_finishing_values_answer_400_with_their_own_codes(
    client: FlaskClient,  # noqa: F811
    queued: list[str],  # noqa: F811
) -> None:
    photo = _jpeg()
    for code, forms in BAD_VALUES.items():
        for form in forms:
            response = _post(client, photo, **form)
            assert response.status_code == 400, form
            assert _error(response) == code, form
    assert queued == []


def test_a_hostile_background_image_is_refused_like_a_hostile_photo(
    client: FlaskClient,  # noqa: F811
    queued: list[str],  # noqa: F811
) -> None:
    photo = _jpeg()
    cases = [c for c in refused() if c.image is not None and not c.form]
    assert len(cases) >= 10
    for case in cases:
        assert case.image is not None
        response = _post(client, photo, case.image)
        assert response.status_code == case.status, case.name
        assert _error(response) == case.code, case.name
        assert response.get_json()["field"] == "background_image", case.name
    assert queued == []


def _picture(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "PNG")
    return out.getvalue()


def test_options_are_echoed_canonically_and_a_cache_hit_needs_the_same_ones(
    client: FlaskClient,  # noqa: F811
    queued: list[str],  # noqa: F811
) -> None:
    photo = _jpeg()
    form = {"effects": "color", "format": "png", "crop": "subject", "crop_margin": "10%"}
    first = _post(client, photo, background="#FFFFFF", size="600x400", **form)
    assert first.status_code == 202
    options = first.get_json()["options"]
    assert options["background"] == "#ffffffff" and options["crop_margin"] == "10% 10% 10% 10%"
    assert options["crop"] == "subject" and options["size"] == "600x400"
    _finish_as_a_worker(client, first.get_json()["id"], ["color", "mask"])
    # The same options, written another way: a hit. Another background or size: never.
    again = _post(client, photo, background="#ffffffff", size="600x400", **form)
    assert again.status_code == 200 and again.get_json()["cache"] == "hit"
    for other in ({"background": "#fffffe"}, {"background": "blur"}, {"size": "601x400"}, {}):
        response = _post(client, photo, **{"size": "600x400", **other}, **form)
        assert response.status_code == 202, other
        assert response.get_json()["cache"] != "hit", other

    # An uploaded background counts by its bytes' hash.
    red, blue = _picture((255, 0, 0)), _picture((0, 0, 255))
    with_red = _post(client, photo, red, effects="color", format="png")
    assert with_red.get_json()["options"]["background"] == "image"
    _finish_as_a_worker(client, with_red.get_json()["id"], ["color", "mask"])
    assert _post(client, photo, red, effects="color", format="png").status_code == 200
    with_blue = _post(client, photo, blue, effects="color", format="png")
    assert with_blue.status_code == 202 and with_blue.get_json()["cache"] != "hit"


def test_alpha_only_asks_for_the_mask_alone(client: FlaskClient) -> None:  # noqa: F811
    job = _post(client, _jpeg(), channels="alpha", effects="color").get_json()
    assert job["options"]["effects"] == [] and job["options"]["channels"] == "alpha"
