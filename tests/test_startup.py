"""Processes refuse to start, and say why, on storage settings that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.redis_server import free_port
from tests.conftest import S3Server, _stop, stack_env, start_api, start_worker


def test_a_worker_with_refused_credentials_does_not_start(
    s3_server: S3Server, redis_url: str, tmp_path: Path
) -> None:
    env = stack_env(
        redis_url,
        tmp_path / "files",
        **{**s3_server.env(s3_server.new_bucket()), "CUTOUT_S3_SECRET_ACCESS_KEY": "wrong"},
    )
    worker = start_worker(env, tmp_path, "io", queue="io")
    try:
        assert worker.wait(120) != 0
    finally:
        _stop(worker)
    log = (tmp_path / "io.log").read_text()
    assert "cutout worker refusing to start" in log and "credentials were refused" in log


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CUTOUT_S3_BUCKET": "no-such-bucket"}, "bucket 'no-such-bucket' at http"),
        ({"CUTOUT_S3_BUCKET": ""}, "CUTOUT_STORAGE=s3 needs CUTOUT_S3_BUCKET"),
    ],
    ids=["missing-bucket", "no-bucket-set"],
)
def test_the_api_does_not_start_without_its_bucket(
    s3_server: S3Server, redis_url: str, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    api = start_api(
        stack_env(redis_url, tmp_path / "files", **{**s3_server.env("unused"), **env}),
        tmp_path,
        free_port(),
    )
    try:
        assert api.wait(60) != 0
    finally:
        _stop(api)
    assert message in (tmp_path / "api.log").read_text()
