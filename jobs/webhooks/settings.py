"""Webhook settings, read from the environment when asked.

Shared by the API (which validates ``webhook_url`` at submit) and the ``io`` worker (which
delivers).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from jobs.queue import visibility_timeout
from jobs.webhooks.signing import secret_key

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class WebhookSettings:
    secrets: tuple[str, ...] = ()
    # Non-public networks a webhook may still reach (say, a receiver inside the same VPC).
    allow: tuple[Network, ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    # Backoff: base * factor**(n-1) with jitter, capped at retry_max_delay and below the
    # broker's visibility timeout (retry_ceiling), for retry_for seconds.
    retry_base: float = 5.0
    retry_factor: float = 4.0
    retry_max_delay: float = 3000.0
    retry_for: float = 24 * 3600.0
    visibility_timeout: float = 3600.0  # the broker's (CUTOUT_VISIBILITY_TIMEOUT)
    public_url: str = "http://127.0.0.1:8000"  # base of relative links in payloads

    def __post_init__(self) -> None:
        for secret in self.secrets:
            secret_key(secret)  # refuse a malformed secret at start-up, not at the first send

    @property
    def retry_ceiling(self) -> float:
        """The longest any retry waits, whatever ``retry_max_delay`` or a receiver's
        ``Retry-After`` say.

        A retry waits in the io worker as an unacknowledged message, from the moment it is
        taken until its attempt ends: were that longer than the visibility timeout, Redis
        would hand the message to a second worker. So the wait plus one attempt (its connect
        and read timeouts) stays within 90 % of the timeout, and never under a second."""
        attempt = self.connect_timeout + self.read_timeout
        below_visibility = 0.9 * self.visibility_timeout - attempt
        return max(1.0, below_visibility)

    @property
    def enabled(self) -> bool:
        return bool(self.secrets)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WebhookSettings:
        env = dict(os.environ if env is None else env)
        default = cls()

        def number(name: str, value: float) -> float:
            return float(env.get(name, value))

        return cls(
            secrets=tuple(env.get("CUTOUT_WEBHOOK_SECRETS", "").replace(",", " ").split()),
            allow=parse_networks(env.get("CUTOUT_WEBHOOK_ALLOWLIST", "")),
            connect_timeout=number("CUTOUT_WEBHOOK_CONNECT_TIMEOUT", default.connect_timeout),
            read_timeout=number("CUTOUT_WEBHOOK_TIMEOUT", default.read_timeout),
            retry_base=number("CUTOUT_WEBHOOK_RETRY_BASE", default.retry_base),
            retry_max_delay=number("CUTOUT_WEBHOOK_RETRY_MAX_DELAY", default.retry_max_delay),
            retry_for=number("CUTOUT_WEBHOOK_RETRY_FOR", default.retry_for),
            public_url=env.get("CUTOUT_PUBLIC_URL", default.public_url),
            visibility_timeout=float(visibility_timeout(env)),
        )


def parse_networks(spec: str) -> tuple[Network, ...]:
    """``"127.0.0.1/32, 10.1.0.0/16"`` → networks; a bare address is its own /32 or /128."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False)
        for part in spec.replace(",", " ").split()
        if part.strip()
    )
