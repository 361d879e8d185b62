"""Hash-first submits (``POST /api/v2/jobs`` with a JSON body): a cached photo answers at once
for the key that uploaded it, and every other case asks for the image; the same auth, limits
and idempotency as an upload. The app with auth on over real Redis; jobs queued, not run."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.test_api import _error, _jpeg
from tests.test_api_access import ALICE, BOB, _auth, _cached, _submit, make_app  # noqa: F401


def _by_hash(client: FlaskClient, photo: bytes, key: str | None = ALICE, **more: Any):  # type: ignore[no-untyped-def]
    headers = {**(_auth(key) if key else {}), **more.pop("headers", {})}
    body = {"image_sha256": hashlib.sha256(photo).hexdigest(), **more}
    return client.post("/api/v2/jobs", json=body, headers=headers)


def test_a_cached_photo_answers_its_uploader_at_once_and_asks_others_for_it(
    make_app: Callable[..., Flask],  # noqa: F811
) -> None:
    queued: list[str] = []
    client = make_app(ENQUEUE=queued.append).test_client()
    photo = _jpeg((80, 60))
    never_sent = _by_hash(client, photo)
    assert never_sent.status_code == 428 and _error(never_sent) == "image_required"

    _cached(client, photo, queued)  # alice uploads it; a worker finishes it
    hit = _by_hash(client, photo)
    assert hit.status_code == 200, hit.get_json()
    job = hit.get_json()
    assert job["status"] == "succeeded" and job["cache"] == "hit" and set(job["outputs"]) == {
        "color", "enhancedblackwhite", "popart", "dithering", "mask"
    }  # fmt: skip
    assert client.get(hit.headers["Location"], headers=_auth(ALICE)).status_code == 200
    assert client.get(hit.headers["Location"], headers=_auth(BOB)).status_code == 404

    # Bob has only the hash: asked for the image, as if nothing were cached.
    bob = _by_hash(client, photo, key=BOB)
    assert bob.status_code == 428 and _error(bob) == "image_required"
    assert _submit(client, key=BOB, data=photo).status_code == 200, "the upload is a hit"
    assert _by_hash(client, photo, key=BOB).status_code == 200, "now bob has sent it"

    other_options = _by_hash(client, photo, max_size=300)
    assert other_options.status_code == 428, "not cached at that size"
    assert len(queued) == 1, "a hash-first submit never queues anything"


def test_hash_first_checks_auth_input_and_idempotency(
    make_app: Callable[..., Flask],  # noqa: F811
) -> None:
    queued: list[str] = []
    client = make_app(ENQUEUE=queued.append).test_client()
    photo = _jpeg((80, 60))
    assert _by_hash(client, photo, key=None).status_code == 401
    bad = client.post("/api/v2/jobs", json={"image_sha256": "abc"}, headers=_auth(ALICE))
    assert bad.status_code == 400 and _error(bad) == "invalid_image_sha256"
    bad = _by_hash(client, photo, effects=["nope"])
    assert bad.status_code == 400 and _error(bad) == "invalid_effects"
    bad = client.post("/api/v2/jobs", json=[1], headers=_auth(ALICE))
    assert bad.status_code == 400 and _error(bad) == "invalid_json"

    key = {"Idempotency-Key": "k-1"}
    assert _by_hash(client, photo, headers=key).status_code == 428, "frees the key"
    upload = _submit(client, data=photo, headers=key)
    assert upload.status_code == 202
    again = _by_hash(client, photo, headers=key)
    assert again.status_code == 202 and again.get_json()["id"] == upload.get_json()["id"]
    other = _by_hash(client, photo, headers=key, max_size=100)
    assert other.status_code == 409 and _error(other) == "idempotency_key_reused"


def test_hash_first_is_rate_limited_like_a_submit(
    make_app: Callable[..., Flask],  # noqa: F811
) -> None:
    client = make_app(RATE_LIMIT_SUBMIT="2 per minute").test_client()
    photo = _jpeg((80, 60))
    assert [_by_hash(client, photo).status_code for _ in range(3)] == [428, 428, 429]
