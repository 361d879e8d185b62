"""The storage contract, which both back ends pass: local disk, and S3 against a real
S3-compatible server (nanio, which checks SigV4) addressed as Cloudflare R2 is."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from storage import ObjectStore, StorageConfigError, StorageSettings, build_store, open_store
from storage.base import InvalidKey


@pytest.fixture
def store(object_store: ObjectStore) -> ObjectStore:
    return object_store


def test_save_open_exists_delete(store: ObjectStore) -> None:
    key = "results/abc/color.webp"
    assert not store.exists(key)
    store.save(key, b"first", "image/webp", immutable=True)
    assert store.exists(key) and store.open(key) == b"first"
    store.save(key, b"second", "image/webp", immutable=True)  # a rewrite replaces it whole
    assert store.open(key) == b"second"
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # deleting what is gone is not an error


def test_a_missing_key_is_file_not_found(store: ObjectStore) -> None:
    with pytest.raises(FileNotFoundError):
        store.open("results/nope/color.webp")


@pytest.mark.parametrize("key", ["../outside", "results/../../x", "", "a\\b", "x/\x00"])
def test_keys_cannot_escape(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.save(key, b"x", "text/plain")
    with pytest.raises(InvalidKey):
        store.url(key)


def test_listing_a_prefix_with_times(store: ObjectStore) -> None:
    before = time.time() - 5
    store.save("staging/job-a", b"aa", "application/octet-stream")
    store.save("staging/job-b", b"bbbb", "application/octet-stream")
    store.save("results/k/mask.png", b"m", "image/png", immutable=True)
    listed = {obj.key: obj for obj in store.iter_objects("staging/")}
    assert set(listed) == {"staging/job-a", "staging/job-b"}
    assert listed["staging/job-b"].size == 4
    assert all(before <= obj.modified <= time.time() + 5 for obj in listed.values())
    assert list(store.iter_objects("nothing-here/")) == []


def test_url_names_the_key(store: ObjectStore) -> None:
    store.save("results/k/popart.png", b"p", "image/png", immutable=True)
    assert "results/k/popart.png" in store.url("results/k/popart.png")


def test_start_up_check_passes_and_leaves_nothing(store: ObjectStore) -> None:
    store.check()
    assert list(store.iter_objects("staging/")) == []


def test_unknown_back_end_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(StorageConfigError, match="CUTOUT_STORAGE='gcs'.*known: local, s3"):
        build_store(StorageSettings(backend="gcs", local_dir=tmp_path))


def test_local_start_up_check_names_an_unwritable_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageConfigError, match="CUTOUT_LOCAL_DIR"):
        open_store(StorageSettings(local_dir=blocker / "files"))
