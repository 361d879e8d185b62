"""What only the S3 back end does: presigned and CDN URLs, object headers, multipart uploads,
retries, and refusing to start on settings that cannot work. Against nanio (real SigV4)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

from storage import StorageConfigError, StorageSettings, open_store
from storage.base import IMMUTABLE_CACHE_CONTROL
from storage.s3 import S3Store
from tests.conftest import S3Server


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def store(s3_server: S3Server, bucket: str) -> S3Store:
    return S3Store(s3_server.settings(bucket))


def test_presigned_url_fetches_the_object_with_its_headers(store: S3Store) -> None:
    store.save("results/k/color.webp", b"RIFF-webp-bytes", "image/webp", immutable=True)
    url = store.url("results/k/color.webp")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=3600" in url
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"RIFF-webp-bytes"
    assert response.headers["Content-Type"] == "image/webp"
    assert response.headers["Cache-Control"] == IMMUTABLE_CACHE_CONTROL


def test_staged_inputs_are_not_marked_cacheable(store: S3Store, s3_server: S3Server) -> None:
    store.save("staging/job", b"upload", "application/octet-stream")
    head = s3_server.client().head_object(Bucket=store.bucket, Key="staging/job")
    assert head["ContentType"] == "application/octet-stream"
    assert "CacheControl" not in head


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_a_tampered_url_is_refused(store: S3Store) -> None:
    store.save("results/k/color.webp", b"a", "image/webp", immutable=True)
    store.save("results/k/popart.webp", b"b", "image/webp", immutable=True)
    url = store.url("results/k/color.webp")
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    forged = "0" * len(signature) if signature[0] != "0" else "1" * len(signature)
    tampered = [
        url.replace("color.webp", "popart.webp"),  # another object
        _with_query(url, **{"X-Amz-Expires": "604800"}),  # a longer life
        _with_query(url, **{"X-Amz-Signature": forged}),
    ]
    for bad in tampered:
        response = requests.get(bad, timeout=10)
        assert response.status_code == 403, bad
        assert b"SignatureDoesNotMatch" in response.content
    assert requests.get(url, timeout=10).status_code == 200


def test_an_expired_url_is_refused(s3_server: S3Server, bucket: str) -> None:
    store = S3Store(s3_server.settings(bucket, url_lifetime_seconds=1))
    store.save("results/k/mask.png", b"m", "image/png", immutable=True)
    url = store.url("results/k/mask.png")
    assert requests.get(url, timeout=10).status_code == 200
    time.sleep(2.1)
    assert requests.get(url, timeout=10).status_code == 403


def test_cdn_base_url_gives_plain_public_urls(s3_server: S3Server, bucket: str) -> None:
    store = S3Store(s3_server.settings(bucket, cdn_base_url="https://cdn.example.com/"))
    assert store.url("results/k/color.webp") == "https://cdn.example.com/results/k/color.webp"


def test_large_objects_go_up_in_parts(s3_server: S3Server, bucket: str) -> None:
    store = S3Store(s3_server.settings(bucket, s3_multipart_bytes=5 * 1024 * 1024))
    data = os.urandom(11 * 1024 * 1024)
    store.save("results/k/big.png", data, "image/png", immutable=True)
    head = s3_server.client().head_object(Bucket=bucket, Key="results/k/big.png")
    assert head["ETag"].strip('"').endswith("-3"), "an S3 multipart ETag names its part count"
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == IMMUTABLE_CACHE_CONTROL
    assert store.open("results/k/big.png") == data


# --- refusing to start -----------------------------------------------------------------------


def test_a_missing_bucket_is_named(s3_server: S3Server) -> None:
    with pytest.raises(StorageConfigError, match="bucket 'no-such-bucket'.*does not exist"):
        open_store(s3_server.settings("no-such-bucket"))


@pytest.mark.parametrize(
    "credentials",
    [{"s3_secret_access_key": "wrong"}, {"s3_access_key_id": "nobody"}],
    ids=["wrong-secret", "unknown-key"],
)
def test_bad_credentials_are_named(
    s3_server: S3Server, bucket: str, credentials: dict[str, str]
) -> None:
    with pytest.raises(StorageConfigError, match="credentials were refused"):
        open_store(s3_server.settings(bucket, **credentials))


def test_an_unreachable_endpoint_is_named(s3_server: S3Server, bucket: str) -> None:
    from devtools.redis_server import free_port

    settings = s3_server.settings(
        bucket,
        s3_endpoint_url=f"http://127.0.0.1:{free_port()}",
        s3_max_attempts=1,
        s3_timeout_seconds=1.0,
    )
    with pytest.raises(StorageConfigError, match="cannot reach bucket"):
        open_store(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CUTOUT_STORAGE": "s3"}, "needs CUTOUT_S3_BUCKET"),
        (
            {"CUTOUT_STORAGE": "s3", "CUTOUT_S3_BUCKET": "b", "CUTOUT_S3_ACCESS_KEY_ID": "k"},
            "set both CUTOUT_S3_ACCESS_KEY_ID and CUTOUT_S3_SECRET_ACCESS_KEY",
        ),
        ({"CUTOUT_URL_TTL": "0"}, "CUTOUT_URL_TTL must be between 1 and 604800"),
        ({"CUTOUT_CDN_BASE_URL": "cdn.example.com"}, "must be an http"),
        ({"CUTOUT_URL_TTL": "an hour"}, "CUTOUT_URL_TTL must be a whole number"),
    ],
)
def test_settings_that_cannot_work_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(StorageConfigError, match=message):
        StorageSettings.from_env(env).validate()


# --- retries ---------------------------------------------------------------------------------


class FlakyS3(BaseHTTPRequestHandler):
    """Answers the first ``failures`` requests badly (503, or too late), then like S3 does."""

    failures = 2
    stall_seconds = 0.0  # > 0: stall instead of answering 503
    seen: list[str] = []

    def do_PUT(self) -> None:  # noqa: N802 (the http.server naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(self.path)
        if len(self.seen) <= self.failures:
            if self.stall_seconds:
                time.sleep(self.stall_seconds)
            else:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(200)
        self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[FlakyS3]]]:
    handler = type("Flaky", (FlakyS3,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("stall", [0.0, 1.5], ids=["5xx", "timeout"])
def test_transient_failures_are_retried(
    flaky: tuple[str, type[FlakyS3]], s3_server: S3Server, stall: float
) -> None:
    url, handler = flaky
    handler.stall_seconds = stall
    settings = s3_server.settings(
        "any-bucket", s3_endpoint_url=url, s3_max_attempts=4, s3_timeout_seconds=0.5
    )
    S3Store(settings).save("results/k/a.png", b"x", "image/png")
    assert len(handler.seen) == 3, "two failures, then the third try went through"


def test_retries_stop_after_max_attempts(
    flaky: tuple[str, type[FlakyS3]], s3_server: S3Server
) -> None:
    url, handler = flaky
    handler.failures = 100
    settings = s3_server.settings("any-bucket", s3_endpoint_url=url, s3_max_attempts=2)
    with pytest.raises(Exception, match="503"):
        S3Store(settings).save("results/k/a.png", b"x", "image/png")
    assert len(handler.seen) == 2
