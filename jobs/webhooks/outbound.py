"""Requests to URLs that clients chose (webhooks), guarded against server-side request forgery.

``check_target`` resolves the host once and refuses the URL unless every address is public
or allowlisted; ``post`` then connects to one of those checked addresses, never resolving
again (so DNS cannot be rebound between the check and the connection), while the Host
header and TLS SNI/certificate checks still use the name from the URL. Redirects are never
followed and no proxy from the environment is used.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from jobs.webhooks.settings import Network

MAX_URL_LENGTH = 2048
Resolver = Callable[[str, int], list[str]]


class InvalidTarget(ValueError):
    """The URL is malformed, or its host does not resolve."""


class ForbiddenTarget(ValueError):
    """The URL resolves to an address that is not public and not allowlisted."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL: for the Host header and TLS
    port: int
    path: str  # path and query
    addresses: tuple[str, ...]  # every one checked

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Reply:
    status: int | None  # None when no HTTP answer came (refused, timed out, TLS failure)
    retry_after: float | None = None
    error: str | None = None


def system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_reachable(address: str, allow: Sequence[Network] = ()) -> bool:
    """Public unicast, or inside an allowlisted network."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if any(ip in net for net in allow):
        return True
    # is_global excludes private, loopback, link-local, shared (CGNAT), reserved, unspecified
    # and documentation ranges; multicast is refused separately as some of it is global.
    return ip.is_global and not ip.is_multicast


def _split(url: str) -> tuple[str, str, int, str]:
    if len(url) > MAX_URL_LENGTH:
        raise InvalidTarget(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidTarget("the URL must be ASCII without spaces or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidTarget(f"malformed URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidTarget("the URL must be http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidTarget("credentials in the URL are not supported")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidTarget(f"bad port: {exc}") from None
    if not parts.hostname:
        raise InvalidTarget("the URL has no host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, path


def check_target(
    url: str, allow: Sequence[Network] = (), resolve: Resolver = system_resolve
) -> Target:
    scheme, host, port, path = _split(url)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise InvalidTarget(f"cannot resolve {host!r}: {exc}") from None
    if not addresses:
        raise InvalidTarget(f"{host!r} resolves to no address")
    refused = [a for a in addresses if not is_reachable(a, allow)]
    if refused:
        raise ForbiddenTarget(
            f"{host!r} resolves to {', '.join(refused)}, which is not a public address"
        )
    return Target(scheme, host, port, path, tuple(addresses))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _pool(target: Target, address: str, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            target.port,
            timeout=timeout,
            retries=False,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
        )
    return urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, retries=False)


def post(
    target: Target,
    body: bytes,
    headers: dict[str, str],
    connect_timeout: float,
    read_timeout: float,
) -> Reply:
    """POST once to the first checked address that accepts a connection."""
    timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
    error = "no address"
    for address in target.addresses:
        pool = _pool(target, address, timeout)
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers={**headers, "Host": target.host_header},
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
            )
            response.read(1024, decode_content=False)  # the answer's body is not used
            response.release_conn()
            return Reply(response.status, parse_retry_after(response.headers.get("Retry-After")))
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError) as e:
            error = f"cannot connect to {address}: {e}"  # try the next checked address
        except urllib3.exceptions.HTTPError as exc:
            return Reply(None, None, f"{type(exc).__name__}: {exc}")
        finally:
            pool.close()
    return Reply(None, None, error)
