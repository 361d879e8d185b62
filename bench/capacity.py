"""The capacity model's measured inputs: Redis commands per job, and what a Redis does per second.

    .venv/bin/python -m bench.capacity [--jobs 4] [--polls 20] [--requests 100000]

Starts the service as the tests do (``tests/conftest.py``: gunicorn, a gpu worker, an io worker)
with the store and the broker on two separate Redis servers, so their commands are counted
apart, and a webhook receiver on loopback. Each phase resets both servers' ``INFO
commandstats`` (``CONFIG RESETSTAT``), does one thing, waits for it without touching Redis
(the worker's log says when a batch is done) and reads the counts back:

- idle: nothing for a few seconds: what the workers' heartbeats, Celery's polls and events
  cost per second with no job (subtracted from the phases below, pro rata);
- job: ``--jobs`` new photos submitted at once (one batch): submit → batch → finish;
- webhook: as many new photos with a ``webhook_url``: the same plus one delivery each;
- poll: ``--polls`` reads of a finished job;
- hit: the first phase's photos again, each answered from the result cache.

Then ``redis-benchmark`` on a fresh server (50 clients, no pipelining, then 16-deep pipelines):
the store's commands per second on this machine as it is now; with ``--rabbitmq URL``, one
client's confirmed publishes and acknowledged deliveries on a quorum queue. Prints markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
import requests

from bench.photos import phone_jpeg
from devtools.redis_server import free_port, start
from tests.conftest import Stack, _stop, run_stack, start_worker, wait_until
from tests.test_webhook_delivery import make_secret


class Receiver:
    """Counts webhook POSTs; answers 200."""

    def __init__(self) -> None:
        self.count = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    outer.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def commandstats(client: redis.Redis) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


class Counted:
    """Both servers' command counts over one phase, less the idle rate over its length."""

    def __init__(self, store: redis.Redis, broker: redis.Redis) -> None:
        self.clients = {"store": store, "broker": broker}
        self.idle: dict[str, dict[str, float]] = {"store": {}, "broker": {}}

    def reset(self) -> float:
        for client in self.clients.values():
            client.config_resetstat()
        return time.monotonic()

    def read(self, started: float, per: int) -> dict[str, Counter[str]]:
        seconds = time.monotonic() - started
        counts = {}
        for name, client in self.clients.items():
            raw = commandstats(client)
            raw["info"] -= 1  # this read itself
            raw["config|resetstat"] = 0
            net: Counter[str] = Counter()
            for command, calls in raw.items():
                extra = calls - self.idle[name].get(command, 0.0) * seconds
                if round(extra / per, 1) > 0:
                    net[command] = round(extra / per, 1)  # type: ignore[assignment]
            counts[name] = net
        return counts


LATENCY: dict[str, list[float]] = {}  # request → client-side seconds, for the API's cost


def timed(what: str, send: Callable[[], requests.Response]) -> requests.Response:
    started = time.perf_counter()
    response = send()
    LATENCY.setdefault(what, []).append(time.perf_counter() - started)
    return response


def submit(stack: Stack, photo: bytes, what: str = "submit, new photo", **form: str) -> str:
    r = timed(
        what,
        lambda: requests.post(
            f"{stack.api_url}/api/v2/jobs", files={"image": ("p.jpg", photo)}, data=form, timeout=60
        ),
    )
    assert r.status_code in (200, 201, 202), r.text
    return str(r.json()["id"])


def finished(stack: Stack, job_ids: list[str]) -> None:
    """Waits on the worker's log (not on Redis): each job's terminal line."""

    def ended() -> bool:
        text = (stack.logs / "gpu.log").read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if '"stage": "succeeded"' in ln]
        return all(any(j in ln for ln in lines) for j in job_ids)

    wait_until(ended, 600, "the batch", interval=0.2)
    time.sleep(1.0)  # the end hook's webhook message and the last writes


def measure(jobs: int, polls: int, workdir: Path) -> dict[str, dict[str, Counter[str]]]:
    store_port, broker_port = free_port(), free_port()
    servers = [start(store_port, workdir / "store"), start(broker_port, workdir / "broker")]
    store_url = f"redis://127.0.0.1:{store_port}/0"
    broker_url = f"redis://127.0.0.1:{broker_port}/0"
    receiver = Receiver()
    env = {
        "CUTOUT_BROKER_URL": broker_url,
        "CUTOUT_WEBHOOK_SECRETS": make_secret(),
        "CUTOUT_WEBHOOK_ALLOWLIST": "127.0.0.0/8",
        "CUTOUT_RATE_LIMIT_SUBMIT": "100000 per minute",
        "CUTOUT_RATE_LIMIT_READ": "100000 per minute",
    }
    results: dict[str, dict[str, Counter[str]]] = {}
    (workdir / "stack").mkdir()
    try:
        with run_stack(store_url, workdir / "stack", **env) as stack:
            io = start_worker({**stack.env, "CUTOUT_METRICS_PORT": str(free_port())}, stack.logs,
                              "io", queue="io")  # fmt: skip
            try:
                wait_until(lambda: b"ready." in (stack.logs / "io.log").read_bytes(), 120, "io")
                counted = Counted(redis.Redis(port=store_port), redis.Redis(port=broker_port))
                started = counted.reset()
                time.sleep(10)
                seconds = time.monotonic() - started
                for name, client in counted.clients.items():
                    raw = commandstats(client)
                    raw["info"] -= 1  # this read itself
                    raw["config|resetstat"] = 0
                    counted.idle[name] = {c: n / seconds for c, n in raw.items()}
                results["idle (per second)"] = {
                    n: Counter({c: round(v, 2) for c, v in rates.items() if v >= 0.05})  # type: ignore[misc]
                    for n, rates in counted.idle.items()
                }
                # Distinct uploads (the seed's noise): the cache answers none of them.
                photos = [phone_jpeg("coffee", (640, 480), seed=i) for i in range(2 * jobs)]
                first, second = photos[:jobs], photos[jobs : 2 * jobs]

                started = counted.reset()
                ids = [submit(stack, p, effects="color", max_size="256") for p in first]
                finished(stack, ids)
                results["job: submit → batch → finish"] = counted.read(started, jobs)

                started = counted.reset()
                ids = [
                    submit(stack, p, effects="color", max_size="256", webhook_url=receiver.url)
                    for p in second
                ]
                finished(stack, ids)
                wait_until(lambda: receiver.count >= len(ids), 120, "the webhooks")
                time.sleep(1.0)
                results["job with a webhook delivered"] = counted.read(started, len(second))

                started = counted.reset()
                url = f"{stack.api_url}/api/v2/jobs/{ids[0]}"
                for _ in range(polls):
                    timed("poll", lambda: requests.get(url, timeout=30)).raise_for_status()
                results["poll (GET a job)"] = counted.read(started, polls)

                started = counted.reset()
                for p in first:
                    submit(stack, p, "submit, cache hit", effects="color", max_size="256")
                results["cache hit (submit)"] = counted.read(started, len(first))
            finally:
                _stop(io)
    finally:
        receiver.server.shutdown()
        for proc in servers:
            proc.terminate()
            proc.wait(10)
    return results


def benchmark(requests_: int, workdir: Path) -> list[tuple[str, str, float]]:
    port = free_port()
    server = start(port, workdir / "bench-redis")
    binary = shutil.which("redis-benchmark")
    assert binary, "redis-benchmark is not installed (Debian: redis-tools)"
    rows = []
    try:
        for pipeline in (1, 16):
            out = subprocess.run(
                [binary, "-p", str(port), "-q", "-n", str(requests_), "-c", "50",
                 "-P", str(pipeline), "-t", "get,set,incr,lpush,rpop,zadd,hset"],
                capture_output=True, text=True, check=True, timeout=600,
            ).stdout  # fmt: skip
            for line in out.replace("\r", "\n").splitlines():
                found = re.match(r"^(\w+).*?:\s+([\d.]+) requests per second", line.strip())
                if found:
                    rows.append((found.group(1), f"P={pipeline}", float(found.group(2))))
    finally:
        server.terminate()
        server.wait(10)
    return rows


def rabbitmq_rates(url: str, messages: int) -> dict[str, float]:
    """One client publishing ``messages`` persistent 1 KB messages, each confirmed, to a
    quorum queue in a vhost of its own, then consuming and acknowledging them one by one
    (prefetch 100): a lower bound of what this broker node does."""
    from kombu import Connection, Consumer, Producer, Queue

    vhost = f"cutout-capacity-{os.getpid()}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, timeout=60)
    rates: dict[str, float] = {}
    try:
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost,
                        Connection(url).userid or "guest", ".*", ".*", ".*"],
                       check=True, timeout=60)  # fmt: skip
        queue = Queue("gpu", routing_key="gpu", queue_arguments={"x-queue-type": "quorum"})
        body = {"job": "x" * 1000}
        with Connection(f"{url}/{vhost}", transport_options={"confirm_publish": True}) as conn:
            producer = Producer(conn.channel())
            started = time.perf_counter()
            for _ in range(messages):
                producer.publish(body, routing_key="gpu", declare=[queue], delivery_mode=2)
            rates["publish (confirmed, persistent)"] = messages / (time.perf_counter() - started)
            got = 0

            def on_message(_body: object, message: object) -> None:
                nonlocal got
                message.ack()  # type: ignore[attr-defined]
                got += 1

            channel = conn.channel()
            channel.basic_qos(0, 100, False)
            with Consumer(channel, [queue], callbacks=[on_message]):
                started = time.perf_counter()
                while got < messages:
                    conn.drain_events(timeout=10)
            rates["deliver + ack"] = messages / (time.perf_counter() - started)
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=True, timeout=60)
    return rates


def report(
    results: dict[str, dict[str, Counter[str]]],
    rows: list[tuple[str, str, float]],
    amqp: dict[str, float],
) -> str:
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end; {date.today().isoformat()}",
        "",
        "| phase | store commands per job | store total | broker commands per job | broker total |",
        "|---|---|---|---|---|",
    ]
    for phase, counts in results.items():
        cells = []
        for name in ("store", "broker"):
            c = counts[name]
            cells.append(", ".join(f"{k} {v:g}" for k, v in sorted(c.items(), key=lambda x: -x[1])))
            cells.append(f"{sum(c.values()):g}")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines += ["", "| command | pipeline | requests/s |", "|---|---|---|"]
    lines += [f"| {c} | {p} | {r:,.0f} |" for c, p, r in rows]
    if LATENCY:
        lines += ["", "| request (one client, 640×480 JPEG) | n | p50 ms |", "|---|---|---|"]
        lines += [
            f"| {what} | {len(v)} | {statistics.median(v) * 1000:.1f} |"
            for what, v in LATENCY.items()
        ]
    if amqp:
        lines += ["", "| RabbitMQ, one client, quorum queue | messages/s |", "|---|---|"]
        lines += [f"| {what} | {rate:,.0f} |" for what, rate in amqp.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100000)
    parser.add_argument("--rabbitmq", help="amqp://user:pass@host:port (vhosts via rabbitmqctl)")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--only-brokers", action="store_true", help="skip the service's phases")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cutout-capacity-") as tmp:
        results = {} if args.only_brokers else measure(args.jobs, args.polls, Path(tmp))
        rows = benchmark(args.requests, Path(tmp))
    amqp = rabbitmq_rates(args.rabbitmq, args.messages) if args.rabbitmq else {}
    print(report(results, rows, amqp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
