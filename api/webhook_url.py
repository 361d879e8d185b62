"""The ``webhook_url`` submit field: refused at once (before any connection) unless it is
http(s) and every address its host resolves to is public or allowlisted. The worker checks
again when it sends, and connects only to the addresses it checked."""

from __future__ import annotations

from flask import current_app
from werkzeug.datastructures import MultiDict

from api.errors import ApiError
from jobs.record import WebhookState
from jobs.webhooks.outbound import ForbiddenTarget, InvalidTarget, check_target
from jobs.webhooks.settings import WebhookSettings


def webhook_settings() -> WebhookSettings:
    return current_app.config["WEBHOOKS"]  # type: ignore[no-any-return]


def parse_webhook(form: MultiDict[str, str]) -> WebhookState | None:
    """The job's initial webhook state, or None when no ``webhook_url`` was sent."""
    url = form.get("webhook_url", "").strip()
    if not url:
        return None
    settings = webhook_settings()
    if not settings.enabled:
        raise ApiError(
            400, "webhooks_disabled", "this server has no webhook secret configured; poll instead"
        )
    try:
        check_target(url, settings.allow)
    except InvalidTarget as exc:
        raise ApiError(400, "invalid_webhook_url", f"webhook_url: {exc}") from None
    except ForbiddenTarget as exc:
        raise ApiError(400, "webhook_url_forbidden", f"webhook_url: {exc}") from None
    return WebhookState(url)
