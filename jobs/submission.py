"""Turning a validated upload into a job: answered from the result cache when every output
exists, else staged, recorded and dispatched (queued, or attached to an identical job that is
already computing what it needs)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

from contract.effects import EFFECTS_VERSION
from contract.formats import ImageInfo
from jobs.record import JobOptions, JobRecord, UploadInfo, WebhookState, ms_between, now_iso
from jobs.services import JobServices
from observability import metrics
from storage.keys import background_staging_key, content_key, staging_key
from storage.result_cache import output_names

# How the cache answered a submission that was not a full hit at lookup (see Claim).
_COUNTER = {
    "hit": metrics.CACHE_HITS,  # every output was stored between the lookup and the claim
    "follow": metrics.CACHE_INFLIGHT_JOINS,
    "lead": metrics.CACHE_MISSES,
}


def job_content_key(image_sha256: str, model_id: str, options: JobOptions) -> str:
    """Same photo + same model + same effect definitions + same options = same outputs.

    The effect set is not part of it: outputs are stored and cached per effect. The
    finishing options (background — an uploaded one by its hash —, crop, size, refinement)
    are, written canonically; ``RESULTS_LAYOUT`` keeps results cached before outputs carried
    the subject's box from being served."""
    parts = [image_sha256, model_id, EFFECTS_VERSION, str(options.max_size), options.format]
    return content_key([*parts, RESULTS_LAYOUT, *options.finishing.key_parts()])


RESULTS_LAYOUT = "foreground-box"


def new_record(
    model_id: str,
    data: bytes,
    info: ImageInfo,
    options: JobOptions,
    owner: str | None = None,
    webhook: WebhookState | None = None,
) -> JobRecord:
    """A queued job for this upload, owned by ``owner`` (an API key's name)."""
    image_sha = hashlib.sha256(data).hexdigest()
    return JobRecord(
        id=uuid.uuid4().hex,
        status="queued",
        created_at=now_iso(),
        options=options,
        input=UploadInfo(info.format, info.width, info.height, len(data), image_sha),
        model=model_id,
        content_key=job_content_key(image_sha, model_id, options),
        owner=owner,
        webhook=webhook,
    )


def submit_by_hash(
    svc: JobServices,
    model_id: str,
    image_sha256: str,
    options: JobOptions,
    owner: str | None = None,
    webhook: WebhookState | None = None,
) -> JobRecord | None:
    """A hash-first submit: the finished job (a cache hit, recorded and ended like any other)
    when ``owner`` has uploaded these bytes before and the result cache holds every output;
    None otherwise (the client must send the image). Nothing is stored for a None."""
    if not svc.known.knows(owner, image_sha256):
        return None  # never answer another key's upload to someone who only has its hash
    record = JobRecord(
        id=uuid.uuid4().hex,
        status="queued",
        created_at=now_iso(),
        options=options,
        model=model_id,
        content_key=job_content_key(image_sha256, model_id, options),
        owner=owner,
        webhook=webhook,
    )
    hit = answer_from_cache(svc, record)
    if hit is not None:
        metrics.CACHE_HITS.inc()
    return hit


def answer_from_cache(svc: JobServices, record: JobRecord) -> JobRecord | None:
    """The job, already succeeded, when every requested output is cached; None otherwise.
    Nothing is staged or queued for a hit."""
    names = output_names(record.options.effects)
    outputs = svc.cache.lookup(record.content_key, names)
    if len(outputs) < len(names):
        return None
    done = now_iso()
    finished = replace(
        record,
        status="succeeded",
        started_at=done,
        completed_at=done,
        cache="hit",
        outputs=outputs,
        timings={"total_ms": ms_between(record.created_at, done)},
    )
    svc.jobs.create(finished)  # ended as it is created: the job store's hook runs (webhook)
    return finished


def stage_and_dispatch(
    svc: JobServices, record: JobRecord, data: bytes, background: bytes | None = None
) -> JobRecord:
    """Stage the input (and the uploaded background image), record the job and dispatch it;
    returns the record as it then stands and counts the outcome. Raises if the queue refused
    the job (which is then failed)."""
    svc.store.save(staging_key(record.id), data, "application/octet-stream")
    if background is not None:
        svc.store.save(background_staging_key(record.id), background, "application/octet-stream")
    svc.jobs.create(record)
    claim, current = svc.dispatcher.dispatch(record)
    _COUNTER[claim.outcome].inc()
    return current


def submit(
    svc: JobServices,
    record: JobRecord,
    data: bytes,
    admit: Callable[[], AbstractContextManager[object]] | None = None,
    background: bytes | None = None,
) -> JobRecord:
    """The job for this upload (``record``, from ``new_record``): finished at once on a full
    cache hit, else staged and dispatched. A job the cache cannot answer is staged and
    dispatched inside ``admit()``, which raises on entry to refuse it (the queue is full) and
    holds its place in the queue until it is queued (``jobs.admission``), so a full queue
    never refuses a hit. The owner's possession of the bytes is remembered for
    ``submit_by_hash``."""
    if record.input is not None:
        svc.known.remember(record.owner, record.input.sha256)
    hit = answer_from_cache(svc, record)
    if hit is not None:
        metrics.CACHE_HITS.inc()
        return hit
    if admit is None:
        return stage_and_dispatch(svc, record, data, background)
    with admit():
        return stage_and_dispatch(svc, record, data, background)
