"""The student under every CPU engine (eager, half, onnxruntime, int8) and through the quality
gate, as a worker would build them from ``CUTOUT_MODEL`` and ``CUTOUT_CHECKPOINT``.

The checkpoint is a student trained for a few dozen steps on a stand-in teacher's masks
(``student_checkpoint`` in conftest), so its masks have structure for the engines to agree or
disagree on; the gate runs at 128 px to stay cheap (the student is fully convolutional)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import torch_threads
from workers.calibrate import calibrate_int8
from workers.engines.gate import GateRun, run_gate
from workers.photos import CALIBRATION_PHOTOS, GATE_PHOTOS, load_photo, load_photos
from workers.predictor import engine_context, load_segmenter
from workers.settings import WorkerSettings

SIZE = 128
MODEL = "cutout-student-256"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with torch_threads(1):  # before the module's gate fixture, which a function one is not
        yield


@pytest.fixture(scope="module")
def settings(student_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> WorkerSettings:
    return WorkerSettings.from_env(
        {
            "CUTOUT_MODEL": MODEL,
            "CUTOUT_CHECKPOINT": str(student_checkpoint),
            "CUTOUT_MODEL_DIR": str(tmp_path_factory.mktemp("model")),
            "CUTOUT_DEVICE": "cpu",
        }
    )


@pytest.fixture(scope="module")
def gate(settings: WorkerSettings) -> GateRun:
    ctx = engine_context(settings, SIZE)
    calibrate_int8(ctx, load_photos(CALIBRATION_PHOTOS))
    return run_gate(ctx, ["half", "onnxruntime", "int8"], load_photos(GATE_PHOTOS))


def test_the_student_runs_under_every_cpu_engine_through_the_gate(gate: GateRun) -> None:
    """Every engine is judged on all the gate's photos. onnxruntime computes eager's function
    in fp32 and must pass; half (bf16) and int8 must give eager's masks up to their precision.
    Whether they reach their IoU bars is for a trained student to say (bench/RESULTS.md): this
    one's masks sit near 0.5 in places, where any rounding flips the threshold."""
    results = {r.engine: r for r in gate.results}
    assert set(results) == {"eager", "half", "onnxruntime", "int8"}, gate.skipped
    assert all(len(r.ious) == len(GATE_PHOTOS) for r in results.values())
    assert results["onnxruntime"].passed, results["onnxruntime"].iou_mean
    # bf16 keeps 8 bits of mantissa and oneDNN rounds differently on AMX and AVX-512 CPUs:
    # 0.0105 was seen on one, under 0.01 on another, for this untrained student.
    assert results["half"].mae < 0.02, results["half"].mae
    assert results["int8"].mae < 0.05, results["int8"].mae
    assert {r.engine for r in gate.records()} == set(results)  # what `auto` would read


def test_a_worker_builds_the_student_on_each_engine(
    settings: WorkerSettings, gate: GateRun
) -> None:
    """(``gate`` calibrated the int8 model.)"""
    photo = torch.from_numpy(load_photo("coffee")).permute(2, 0, 1)
    masks = {}
    for engine in ("eager", "half", "onnxruntime", "int8"):
        segmenter, _ = load_segmenter(settings, engine)
        assert segmenter.config.input_size == 256
        (masks[engine],) = segmenter.predict([photo])
        assert masks[engine].shape == (1, 400, 600)
    # Not trivially empty or full, or engines agreeing would prove nothing.
    assert 0.05 < (masks["eager"] > 0.5).float().mean() < 0.95
    for engine, bar in (("half", 0.02), ("onnxruntime", 1e-4), ("int8", 0.05)):  # bf16: above
        assert (masks[engine] - masks["eager"]).abs().mean() < bar, engine
