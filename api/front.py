"""The API's front door: one gevent process that holds every event stream and hands every
other request, unchanged, to gunicorn.

gunicorn's sync workers (``--workers 2 --threads 4``) give each request a thread, so eight open
event streams would take every thread and starve the uploads. This process owns the public
port instead. It reads the head of each request on a connection (peeking, so the bytes stay
in the socket) and routes by path:

- ``GET /api/v2/jobs/<id>/events``: served here, by the same Flask app, on a greenlet; an idle
  stream costs a greenlet, a socket and a queue, so thousands fit in one process (the app's
  ``ChangeFeed`` subscribes once for all of them). The connection closes after the stream.
- anything else: relayed byte for byte (head, ``Content-Length`` body, the answer) to gunicorn
  on a private address, which keeps serving uploads exactly as before; a PROXY protocol line
  opens each upstream connection, so gunicorn (``--proxy-protocol``) sees the client's own
  address for its rate limits and logs. A keep-alive connection is routed request by request;
  a chunked upload, which cannot be delimited cheaply, has the rest of its connection relayed.

Run it as ``python -m api.front --bind 127.0.0.1:8000 --upstream 127.0.0.1:8010`` (the Procfile
does); it needs the same environment as the API.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
from collections.abc import Sequence
from typing import Any

EVENTS_REQUEST = re.compile(rb"GET /api/v2/jobs/[^/?#\s]+/events(?:\?\S*)? HTTP/1\.[01]")
MAX_HEAD = 65536
CHUNK = 65536
HEAD_TIMEOUT = 75.0  # an idle keep-alive connection is dropped after this many seconds


def _address(raw: str) -> tuple[str, int]:
    host, _, port = raw.rpartition(":")
    return host or "127.0.0.1", int(port)


def request_body_length(head: bytes) -> int | None:
    """The body's length from the request head: 0 without one, None when it is chunked (or
    otherwise not delimited by ``Content-Length``)."""
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return None  # let gunicorn answer the malformed request, on a relayed line
    return length


def proxy_line(client: socket.socket, address: Any) -> bytes:
    """A PROXY protocol v1 line naming the client (``address``) and this server."""
    server = client.getsockname()
    family = "TCP6" if client.family == socket.AF_INET6 else "TCP4"
    return f"PROXY {family} {address[0]} {server[0]} {address[1]} {server[1]}\r\n".encode()


def serve(bind: tuple[str, int], upstream: tuple[str, int]) -> None:
    """Patch the standard library for gevent, build the app and serve until killed."""
    from gevent import monkey

    monkey.patch_all()

    import gevent
    from gevent import pywsgi

    from api import create_app

    def peek_head(sock: socket.socket) -> bytes | None:
        """The next request's head (up to the blank line), left in the socket; None when the
        client closed, went quiet or sent no head within ``MAX_HEAD`` bytes."""
        delay = 0.001
        seen = -1
        with gevent.Timeout(HEAD_TIMEOUT, False):
            while True:
                data = sock.recv(MAX_HEAD, socket.MSG_PEEK)
                if not data:
                    return None
                end = data.find(b"\r\n\r\n")
                if end >= 0:
                    return data[: end + 4]
                if len(data) >= MAX_HEAD:
                    return None
                if len(data) == seen:  # a head split over packets: wait for the rest
                    gevent.sleep(delay)
                    delay = min(delay * 2, 0.05)
                seen = len(data)
        return None

    def copy(source: socket.socket, target: socket.socket, limit: int | None = None) -> None:
        """``limit`` bytes (all, until EOF, when None) from ``source`` to ``target``."""
        left = limit
        while left is None or left > 0:
            data = source.recv(CHUNK if left is None else min(CHUNK, left))
            if not data:
                break
            target.sendall(data)
            if left is not None:
                left -= len(data)
        if limit is None:
            try:
                target.shutdown(socket.SHUT_WR)  # pass the end on
            except OSError:
                pass

    class StreamHandler(pywsgi.WSGIHandler):  # type: ignore[misc]
        def handle_one_request(self):  # type: ignore[no-untyped-def]
            result = super().handle_one_request()
            return None if result is True else result  # one stream per connection, then close

    class Front(pywsgi.WSGIServer):  # type: ignore[misc]
        handler_class = StreamHandler

        def handle(self, sock: socket.socket, address: Any) -> None:
            upstream: socket.socket | None = None
            answers: gevent.Greenlet | None = None
            try:
                while True:
                    head = peek_head(sock)
                    if head is None:
                        return
                    if EVENTS_REQUEST.match(head):
                        if upstream is not None:  # the previous answer has been read
                            answers.kill()  # type: ignore[union-attr]
                            upstream.close()
                            upstream = None
                        super().handle(sock, address)
                        return
                    if upstream is None or answers is None or answers.dead:
                        if upstream is not None:
                            upstream.close()
                        upstream = socket.create_connection(upstream_address)
                        # Relayed pieces go at once: Nagle against the peer's delayed ACK
                        # cost 40 ms a request.
                        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        upstream.sendall(proxy_line(sock, address))
                        answers = gevent.spawn(copy, upstream, sock)
                    body = request_body_length(head)
                    if body is None:
                        copy(sock, upstream)
                        answers.join()
                        return
                    copy(sock, upstream, len(head) + body)
            except OSError:
                return
            finally:
                if answers is not None:
                    answers.kill()
                if upstream is not None:
                    upstream.close()
                sock.close()

    upstream_address = upstream
    app = create_app()
    print(f"cutout front: {bind[0]}:{bind[1]}, event streams here, the rest to {upstream}")
    sys.stdout.flush()
    Front(bind, app, log=None, error_log="default").serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m api.front", description=__doc__)
    parser.add_argument("--bind", type=_address, default=("127.0.0.1", 8000), metavar="HOST:PORT")
    parser.add_argument(
        "--upstream", type=_address, default=("127.0.0.1", 8010), metavar="HOST:PORT"
    )
    args = parser.parse_args(argv)
    serve(args.bind, args.upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
