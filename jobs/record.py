"""A job's record: what it asked for, where it stands, what it ended with.

The record is a frozen value: a change is a new record (``dataclasses.replace``), written
back through ``JobStore.update``. ``to_dict``/``from_dict`` are the one place that knows how a
record looks as JSON (in Redis); everything else reads its attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from contract.options import Finishing
from storage.result_cache import StoredOutput

TERMINAL = frozenset({"succeeded", "failed", "canceled"})
STATUSES = frozenset({"queued", "processing"}) | TERMINAL


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def ms_between(start_iso: str, end_iso: str) -> float:
    return round((parse_iso(end_iso) - parse_iso(start_iso)) * 1000, 2)


@dataclass(frozen=True)
class JobOptions:
    effects: tuple[str, ...]
    max_size: int
    format: str
    preview: bool = False  # small previews of the effects first; not part of the content key
    # Background, crop, size, refinement (contract/options.py); part of the content key.
    finishing: Finishing = field(default_factory=Finishing)
    channels: str = "rgba"  # "alpha": the mask only (``effects`` is then empty)

    def as_dict(self) -> dict[str, Any]:
        """The options as clients sent them; the defaults of the newer ones are left out."""
        options: dict[str, Any] = {
            "effects": list(self.effects),
            "max_size": self.max_size,
            "format": self.format,
        }
        if self.preview:
            options["preview"] = True
        if self.channels != "rgba":
            options["channels"] = self.channels
        return {**options, **self.finishing.to_form()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobOptions:
        return cls(
            tuple(data["effects"]),
            data["max_size"],
            data["format"],
            bool(data.get("preview", False)),
            Finishing.from_stored(data),
            data.get("channels", "rgba"),
        )


@dataclass(frozen=True)
class UploadInfo:
    """The upload as it arrived (the record's ``input``)."""

    format: str
    width: int
    height: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class JobError:
    code: str  # machine-readable: invalid_image, storage_error, ...
    message: str


@dataclass(frozen=True)
class WebhookAttempt:
    attempt: int
    at: str
    status: int | None  # the receiver's answer; None when none came
    error: str | None
    ms: float


@dataclass(frozen=True)
class WebhookClaim:
    """The lease of the worker making an attempt right now (never shown to clients)."""

    attempt: int
    until: float  # epoch seconds
    token: str


@dataclass(frozen=True)
class WebhookState:
    """Delivery of the job's webhook, from the state it starts in."""

    url: str
    state: str = "pending"  # pending | retrying | delivered | failed | gone
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: str | None = None
    next_attempt_at: str | None = None
    history: tuple[WebhookAttempt, ...] = ()
    claim: WebhookClaim | None = None
    first_attempt_at: float | None = None  # epoch seconds; retries stop retry_for after it


@dataclass(frozen=True)
class JobRecord:
    id: str
    status: str  # one of STATUSES
    created_at: str
    options: JobOptions
    content_key: str  # the upload, model and options hashed (see jobs.submission)
    started_at: str | None = None
    completed_at: str | None = None
    input: UploadInfo | None = None
    model: str | None = None
    cache: str | None = None  # hit | joined | miss | partial, once known
    joined_job: str | None = None  # the job this one waits for (cache "joined")
    outputs: Mapping[str, StoredOutput] = field(default_factory=dict)
    preview: Mapping[str, StoredOutput] | None = None  # stored while the job still runs
    error: JobError | None = None
    timings: Mapping[str, float] = field(default_factory=dict)  # queue_ms, ..., total_ms
    batch_id: str | None = None  # internal: ties the job's log lines to its batch
    batch_size: int | None = None
    model_input: int | None = None  # the model input side it ran at
    computed: tuple[str, ...] | None = None  # the outputs its worker computed
    owner: str | None = None  # the API key's name; None with auth off
    webhook: WebhookState | None = None

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    @property
    def foreground(self) -> tuple[int, int, int, int] | None:
        """The subject's box (left, top, width, height) in output pixels, once finished."""
        return next((o.foreground for o in self.outputs.values() if o.foreground), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "options": self.options.as_dict(),
            "input": _upload_to_dict(self.input),
            "model": self.model,
            "content_key": self.content_key,
            "cache": self.cache,
            "joined_job": self.joined_job,
            "outputs": _outputs_to_dict(self.outputs),
            "preview": None if self.preview is None else _outputs_to_dict(self.preview),
            "error": None if self.error is None else _error_to_dict(self.error),
            "timings": dict(self.timings),
            "batch_id": self.batch_id,
            "batch_size": self.batch_size,
            "model_input": self.model_input,
            "computed": None if self.computed is None else list(self.computed),
            "owner": self.owner,
            "webhook": None if self.webhook is None else _webhook_to_dict(self.webhook),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        preview, error, webhook = data.get("preview"), data.get("error"), data.get("webhook")
        computed, upload = data.get("computed"), data.get("input")
        return cls(
            id=data["id"],
            status=data["status"],
            created_at=data["created_at"],
            options=JobOptions.from_dict(data["options"]),
            content_key=data["content_key"],
            started_at=data.get("started_at"),
            completed_at=data.get("completed_at"),
            input=None if upload is None else UploadInfo(**upload),
            model=data.get("model"),
            cache=data.get("cache"),
            joined_job=data.get("joined_job"),
            outputs=_outputs_from_dict(data.get("outputs") or {}),
            preview=None if preview is None else _outputs_from_dict(preview),
            error=None if error is None else JobError(error["code"], error["message"]),
            timings=dict(data.get("timings") or {}),
            batch_id=data.get("batch_id"),
            batch_size=data.get("batch_size"),
            model_input=data.get("model_input"),
            computed=None if computed is None else tuple(computed),
            owner=data.get("owner"),
            webhook=None if webhook is None else _webhook_from_dict(webhook),
        )


def _upload_to_dict(upload: UploadInfo | None) -> dict[str, Any] | None:
    if upload is None:
        return None
    return {
        "format": upload.format,
        "width": upload.width,
        "height": upload.height,
        "bytes": upload.bytes,
        "sha256": upload.sha256,
    }


def _error_to_dict(error: JobError) -> dict[str, str]:
    return {"code": error.code, "message": error.message}


def _outputs_to_dict(outputs: Mapping[str, StoredOutput]) -> dict[str, Any]:
    return {name: out.to_dict() for name, out in outputs.items()}


def _outputs_from_dict(data: Mapping[str, Any]) -> dict[str, StoredOutput]:
    return {name: StoredOutput.from_dict(out) for name, out in data.items()}


def _webhook_to_dict(hook: WebhookState) -> dict[str, Any]:
    claim = hook.claim
    return {
        "url": hook.url,
        "state": hook.state,
        "attempts": hook.attempts,
        "last_status": hook.last_status,
        "last_error": hook.last_error,
        "delivered_at": hook.delivered_at,
        "next_attempt_at": hook.next_attempt_at,
        "history": [_attempt_to_dict(a) for a in hook.history],
        "claim": None
        if claim is None
        else {"attempt": claim.attempt, "until": claim.until, "token": claim.token},
        "first_attempt_at": hook.first_attempt_at,
    }


def _attempt_to_dict(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "attempt": attempt.attempt,
        "at": attempt.at,
        "status": attempt.status,
        "error": attempt.error,
        "ms": attempt.ms,
    }


def _webhook_from_dict(data: Mapping[str, Any]) -> WebhookState:
    claim = data.get("claim")
    return WebhookState(
        url=data["url"],
        state=data["state"],
        attempts=data["attempts"],
        last_status=data.get("last_status"),
        last_error=data.get("last_error"),
        delivered_at=data.get("delivered_at"),
        next_attempt_at=data.get("next_attempt_at"),
        history=tuple(WebhookAttempt(**a) for a in data.get("history") or ()),
        claim=None if claim is None else WebhookClaim(**claim),
        first_attempt_at=data.get("first_attempt_at"),
    )
