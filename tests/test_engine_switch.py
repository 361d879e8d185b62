"""The first run is the fast one: with no gate report, a worker serves on eager, the gate runs
once in the background (here ``tests/stand_in_gate.py``, which files a passed
``onnxruntime`` without measuring) and the pipeline switches between batches, never in one.

The model is the small student (``student_checkpoint``), so every batch and build is cheap.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from tests.conftest import photo_jpeg, stack_env, start_worker, wait_until
from tests.stand_in_gate import RUNS_NAME
from workers.build import build_pipeline
from workers.engine_switch import EngineSwitch, needs_background_gate
from workers.engines.first_gate import background_engines
from workers.engines.plan import describe
from workers.pipeline import JobInput, Pipeline
from workers.settings import WorkerSettings

STAND_IN = f"{sys.executable} -m tests.stand_in_gate"
JOB = JobInput("j", photo_jpeg("coffee"), ("color",), 96, "png")


@pytest.fixture
def env(
    student_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """A fresh model dir (no report) for the student; set in os.environ too, which the gate's
    subprocess inherits."""
    values = {
        "CUTOUT_MODEL": "cutout-student",
        "CUTOUT_CHECKPOINT": str(student_checkpoint),
        "CUTOUT_MODEL_DIR": str(tmp_path / "model"),
        "CUTOUT_DEVICE": "cpu",
        "CUTOUT_ENGINE": "auto",
        "CUTOUT_BACKGROUND_GATE": "on",
        "CUTOUT_BACKGROUND_GATE_COMMAND": STAND_IN,
        "CUTOUT_ENCODE_THREADS": "1",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def pipelines() -> Iterator[list[Pipeline]]:
    built = []

    def make() -> Pipeline:
        b = build_pipeline(WorkerSettings.from_env())
        built.append(b)
        return b.pipeline

    yield [make(), make()]
    for b in built:
        b.pool.shutdown()


def engines_of(pipeline: Pipeline) -> set[str]:
    """The engines one batch ran on."""
    result = pipeline.process([JOB])
    assert [o.ok for o in result.outcomes] == [True]
    return {call.engine for call in result.model_calls}


def test_the_switch_waits_for_the_batch_on_the_device(
    env: dict[str, str], pipelines: list[Pipeline]
) -> None:
    settings = WorkerSettings.from_env()
    pipeline = pipelines[0]
    assert needs_background_gate(settings)
    assert pipeline.segmenter.engine.name == "eager"
    plan = describe(settings)
    assert plan.startswith("engine: eager now") and "switches to the fastest" in plan

    # A batch stopped inside its model call, i.e. holding the device.
    eager = pipeline.segmenter.engine
    inside, go = threading.Event(), threading.Event()
    real_predict = eager.predict

    def slow_predict(batch: torch.Tensor) -> torch.Tensor:
        inside.set()
        assert go.wait(60)
        return real_predict(batch)

    eager.predict = slow_predict  # type: ignore[method-assign]
    with ThreadPoolExecutor(1) as batches:
        mid = batches.submit(pipeline.process, [JOB])
        assert inside.wait(30)
        switch = EngineSwitch(pipeline, settings)
        switch.start()
        # The gate files its report and the new engine is built, but the swap must wait.
        wait_until(lambda: switch.process and switch.process.poll() is not None, 60, "the gate")
        assert not switch.wait(1.5), "switched while a batch held the device"
        assert pipeline.segmenter.engine is eager
        go.set()
        result = mid.result(60)
    assert {c.engine for c in result.model_calls} == {"eager"}, "one engine for the whole batch"
    assert switch.wait(60)
    assert switch.outcome == "switched engine eager -> onnxruntime between batches"
    assert engines_of(pipeline) == {"onnxruntime"}
    assert not needs_background_gate(settings), "the report is filed: no gate next start"
    assert describe(settings).startswith("engine: auto runs onnxruntime")


def test_several_workers_run_one_gate_and_all_switch(
    env: dict[str, str], pipelines: list[Pipeline]
) -> None:
    settings = WorkerSettings.from_env()
    switches = [EngineSwitch(p, settings) for p in pipelines]
    for switch in switches:
        switch.start()
    assert all(s.wait(120) for s in switches)
    runs = (Path(env["CUTOUT_MODEL_DIR"]) / RUNS_NAME).read_text().split()
    assert len(runs) == 1, f"the gate ran {len(runs)} times"
    assert [s.current for s in switches] == ["onnxruntime", "onnxruntime"]


def test_a_failed_gate_leaves_auto_on_eager(
    env: dict[str, str], pipelines: list[Pipeline], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUTOUT_BACKGROUND_GATE_COMMAND", f"{sys.executable} -c 'exit(3)'")
    switch = EngineSwitch(pipelines[0], WorkerSettings.from_env())
    switch.start()
    assert switch.wait(60)
    assert "filed no report (exit 3)" in switch.outcome and "make engines" in switch.outcome
    assert engines_of(pipelines[0]) == {"eager"}


def test_only_auto_without_a_report_runs_the_gate(env: dict[str, str]) -> None:
    assert not needs_background_gate(WorkerSettings.from_env({**env, "CUTOUT_ENGINE": "eager"}))
    off = WorkerSettings.from_env({**env, "CUTOUT_BACKGROUND_GATE": "off"})
    assert not needs_background_gate(off)
    assert "CUTOUT_BACKGROUND_GATE=off" in describe(off)
    with pytest.raises(ValueError, match="CUTOUT_BACKGROUND_GATE='maybe' must be on or off"):
        WorkerSettings.from_env({"CUTOUT_BACKGROUND_GATE": "maybe"})
    # Cheap to build only: an AOTInductor compile or a TensorRT build is `make engines`' job.
    assert background_engines() == ["half", "onnxruntime", "int8"]


@pytest.mark.slow
def test_a_real_worker_says_what_it_runs_and_switches(
    env: dict[str, str], redis_url: str, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    worker_env = stack_env(redis_url, tmp_path / "files", **env, CUTOUT_KEY_PREFIX="switch21")
    worker = start_worker(worker_env, logs)
    log = logs / "gpu.log"
    try:
        switched = r"switched engine eager -> onnxruntime between batches"
        wait_until(lambda: re.search(switched, log.read_text()), 120, "the engine switch")
    finally:
        worker.terminate()
        worker.wait(30)
    text = log.read_text()
    assert "engine eager now; the quality gate runs once in the background" in text
    assert text.index("ready for jobs") < text.index("quality gate running in the background")
