"""`make run` under supervisord: a gpu worker killed with SIGKILL is started again and the
service is ready by itself; the other processes keep running; SIGINT (Ctrl-C) stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
import requests

from devtools.redis_server import free_port
from devtools.supervise import config, programs, read_procfile, running
from tests.conftest import ROOT, _spawn, stack_env, wait_until


def test_every_procfile_process_restarts_and_gpu_instances_are_numbered(tmp_path: Path) -> None:
    progs = programs(read_procfile(ROOT / "Procfile"), {"gpu": 3})
    assert [p.name for p in progs] == [
        "front",
        "api",
        "gpu0",
        "gpu1",
        "gpu2",
        "io",
        "flower",
        "beat",
    ]
    # honcho's numbering, which the Procfile's `$((PORT % 100))` reads.
    assert [p.port % 100 for p in progs if p.kind == "gpu"] == [0, 1, 2]
    text = config(progs, tmp_path, ROOT)
    assert text.count("autorestart=true") == len(progs)
    assert "%%h" in text and "PORT %% 100" in text  # supervisord's own % expansion escaped
    with pytest.raises(ValueError, match="no such process type"):
        programs(read_procfile(ROOT / "Procfile"), {"gpo": 1})


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _all_six(run_dir: Path) -> dict[str, int] | None:
    found = running(run_dir)
    return found if set(found) == {"front", "api", "gpu0", "io", "flower", "beat"} else None


@pytest.mark.slow
def test_supervised_stack_restarts_a_killed_gpu_worker(
    redis_url: str, weights: Path, tmp_path: Path
) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    log, run_dir = tmp_path / "supervise.log", tmp_path / "run"
    api_port, gpu_metrics = free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}"
    env = stack_env(
        redis_url,
        tmp_path / "files",
        CUTOUT_ENV="development",
        CUTOUT_RUN_DIR=str(run_dir),
        CUTOUT_API_PORT=str(api_port),
        CUTOUT_UPSTREAM_PORT=str(free_port()),
        CUTOUT_FLOWER_PORT=str(free_port()),
        CUTOUT_GPU_METRICS_PORT=str(gpu_metrics),
        CUTOUT_IO_METRICS_PORT=str(free_port()),
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    # As the Makefile runs it (its PATH and CUTOUT_ENV included), on this test's ports.
    sup = _spawn([sys.executable, "-m", "devtools.supervise", "-c", "gpu=1"], env, log)
    try:
        wait_until(lambda: _ready(url), 180, "the supervised stack to be ready")
        before = wait_until(lambda: _all_six(run_dir), 30, "all six processes", 1)
        # The Procfile's port arithmetic under sh: gpu0's metrics on CUTOUT_GPU_METRICS_PORT.
        assert requests.get(f"http://127.0.0.1:{gpu_metrics}/metrics", timeout=5).ok
        killed_at = time.time()
        os.kill(before["gpu0"], signal.SIGKILL)

        beats = redis.Redis.from_url(redis_url)
        # jobs.heartbeats' set of the gpu workers in this Redis run, scored by Redis's clock
        key = f"cutout:workers:gpu:{beats.info('server')['run_id']}"
        wait_until(
            lambda: any(s > killed_at for _, s in beats.zrange(key, 0, -1, withscores=True)),
            180,
            "a heartbeat from the restarted gpu worker",
        )
        assert _ready(url)
        after = running(run_dir)
        assert after["gpu0"] != before["gpu0"]
        assert {k: v for k, v in after.items() if k != "gpu0"} == {
            k: v for k, v in before.items() if k != "gpu0"
        }, "only the killed process was restarted"
        assert "exited: gpu0 (terminated by SIGKILL; not expected)" in log.read_text()
        assert psutil.Process(after["gpu0"]).ppid() == sup.pid
    finally:
        tops = [psutil.Process(pid) for pid in running(run_dir).values()]
        survivors = tops + [child for top in tops for child in top.children(recursive=True)]
        sup.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            sup.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(sup.pid, signal.SIGKILL)
            for proc in survivors:
                proc.kill()
            raise
    gone, alive = psutil.wait_procs(survivors, timeout=5)
    assert not alive, f"still running after Ctrl-C: {alive}"
