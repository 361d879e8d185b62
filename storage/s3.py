"""Objects in an S3 bucket; Cloudflare R2 is this class with an endpoint URL and region "auto".

The boto3 client is built on first use, so importing or configuring a store costs nothing.
URLs are the configured CDN base URL plus the key, else presigned GETs.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from storage.base import IMMUTABLE_CACHE_CONTROL, ObjectInfo, ObjectStore, normalise_key
from storage.settings import StorageConfigError, StorageSettings

_MISSING = {"404", "NoSuchKey", "NotFound"}
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"}


class S3Store(ObjectStore):
    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.cdn_base_url = (settings.cdn_base_url or "").rstrip("/") or None
        self.transfer = TransferConfig(
            multipart_threshold=settings.s3_multipart_bytes,
            multipart_chunksize=settings.s3_multipart_bytes,
        )

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> S3Store:
        return cls(settings)

    @cached_property
    def client(self) -> Any:
        s = self.settings
        config = Config(
            signature_version="s3v4",  # presigned URLs too; R2 accepts nothing else
            connect_timeout=s.s3_timeout_seconds,
            read_timeout=s.s3_timeout_seconds,
            # "standard" retries 5xx, throttling and timeouts with jittered exponential
            # backoff; total_max_attempts counts the first try (max_attempts would not).
            retries={"mode": "standard", "total_max_attempts": s.s3_max_attempts},
            max_pool_connections=32,
        )
        # A session of its own: boto3's default session is not safe to share across threads.
        return boto3.session.Session().client(
            "s3",
            endpoint_url=s.s3_endpoint_url,
            region_name=s.s3_region,
            aws_access_key_id=s.s3_access_key_id,
            aws_secret_access_key=s.s3_secret_access_key,
            config=config,
        )

    def check(self) -> None:
        probe = f"staging/.probe-{uuid.uuid4().hex}"
        where = f"bucket {self.bucket!r} at {self.settings.s3_endpoint_url or 'AWS S3'}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"probe")
            self.client.delete_object(Bucket=self.bucket, Key=probe)
        except NoCredentialsError:
            raise StorageConfigError(
                f"S3 storage: no credentials for {where}; set CUTOUT_S3_ACCESS_KEY_ID and "
                "CUTOUT_S3_SECRET_ACCESS_KEY"
            ) from None
        except ClientError as exc:
            code = _error_code(exc)
            if code == "NoSuchBucket":
                raise StorageConfigError(
                    f"S3 storage: {where} does not exist (CUTOUT_S3_BUCKET)"
                ) from None
            if code in _BAD_CREDENTIALS:
                raise StorageConfigError(
                    f"S3 storage: the credentials were refused by {where} ({code}); check "
                    "CUTOUT_S3_ACCESS_KEY_ID and CUTOUT_S3_SECRET_ACCESS_KEY"
                ) from None
            raise StorageConfigError(f"S3 storage: {where} refused a test write: {exc}") from None
        except BotoCoreError as exc:
            raise StorageConfigError(f"S3 storage: cannot reach {where}: {exc}") from None

    def save(self, key: str, data: bytes, content_type: str, *, immutable: bool = False) -> None:
        extra = {"ContentType": content_type}
        if immutable:
            extra["CacheControl"] = IMMUTABLE_CACHE_CONTROL
        key = normalise_key(key)
        if len(data) < self.settings.s3_multipart_bytes:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        else:  # parts go up in parallel, and a failed part is retried alone
            self.client.upload_fileobj(
                io.BytesIO(data), self.bucket, key, ExtraArgs=extra, Config=self.transfer
            )

    def open(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=normalise_key(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                raise FileNotFoundError(key) from None
            raise
        return response["Body"].read()  # type: ignore[no-any-return]

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=normalise_key(key))
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=normalise_key(key))

    def url(self, key: str) -> str:
        key = normalise_key(key)
        if self.cdn_base_url:
            return f"{self.cdn_base_url}/{key}"
        return self.client.generate_presigned_url(  # type: ignore[no-any-return]
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.settings.url_lifetime_seconds,
        )

    def iter_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"], item["Size"], item["LastModified"].timestamp())


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
