"""A Redis primary, a replica and sentinels watching them, on free loopback ports: the store
that survives a node, for tests and for trying a failover by hand.

``redis-server`` runs every part (``--sentinel`` makes it a sentinel). The sentinels declare the
primary down after ``down_after_ms`` without an answer, and two of them must agree.
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from devtools.redis_server import free_port, server_binary, start


@dataclass
class SentinelGroup:
    service: str
    workdir: Path
    primary_port: int
    replica_port: int
    sentinel_ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """What ``CUTOUT_REDIS_URL`` is set to (storage/redis_client.py reads it)."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.service}"

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], socket_timeout=2)

    def primary_port_now(self) -> int:
        """The port the sentinels name as primary at this moment."""
        address: Any = self.sentinel().sentinel_get_master_addr_by_name(self.service)
        return int(address[1])

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``: a crash, with no goodbye to anyone."""
        proc = self.processes[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_for_failover(self, away_from: int, timeout: float = 30.0) -> float:
        """Seconds until the sentinels name another primary than ``away_from``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if self.primary_port_now() != away_from:
                    return time.monotonic() - started
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"no failover away from port {away_from} within {timeout:.0f}s")

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def start_group(
    workdir: Path, service: str = "cutout", sentinels: int = 3, down_after_ms: int = 1000
) -> SentinelGroup:
    """Primary, replica in sync with it, ``sentinels`` sentinels that see both: ready to use."""
    primary, replica = free_port(), free_port()
    group = SentinelGroup(
        service, workdir, primary, replica, [free_port() for _ in range(sentinels)]
    )
    try:
        group.processes[primary] = start(primary, workdir / "primary")
        group.processes[replica] = start(replica, workdir / "replica")
        replica_client = redis.Redis(port=replica, socket_timeout=2)
        replica_client.replicaof("127.0.0.1", primary)
        _wait_for(
            lambda: replica_client.info("replication").get("master_link_status") == "up",
            20,
            "the replica to sync",
        )
        for port in group.sentinel_ports:
            group.processes[port] = _start_sentinel(port, primary, service, workdir, down_after_ms)

        def everyone_knows() -> bool:  # each sentinel finds the others through the primary
            states: list[Any] = [
                group.sentinel(i).sentinel_master(service) for i in range(sentinels)
            ]
            return all(
                s["num-slaves"] == 1 and s["num-other-sentinels"] == sentinels - 1 for s in states
            )

        _wait_for(everyone_knows, 30, "the sentinels to find the replica and each other")
    except BaseException:
        group.stop()
        raise
    return group


def _start_sentinel(
    port: int, primary: int, service: str, workdir: Path, down_after_ms: int
) -> subprocess.Popen[bytes]:
    home = workdir / f"sentinel-{port}"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "sentinel.conf"  # a sentinel rewrites its own config file as it learns
    config.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                f"dir {home}",
                f"logfile {home / 'sentinel.log'}",
                f"sentinel monitor {service} 127.0.0.1 {primary} 2",
                f"sentinel down-after-milliseconds {service} {down_after_ms}",
                f"sentinel failover-timeout {service} 10000",
                f"sentinel parallel-syncs {service} 1",
                "",
            ]
        )
    )
    proc = subprocess.Popen(
        [server_binary(), str(config), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: redis.Redis(port=port, socket_timeout=0.5).ping(), 10, f"sentinel :{port}")
    return proc
