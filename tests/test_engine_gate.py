"""The quality gate on the real IS-Net weights and real photos, at 512 px to stay cheap in CI
(IS-Net is fully convolutional; ``python -m workers.engines.check`` runs at 1024)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from workers.calibrate import calibrate_int8
from workers.engines import EngineContext, build_engine
from workers.engines import check as check_cli
from workers.engines.gate import (
    REDUCED_INPUT_MIN_IOU,
    GateRun,
    check_engine,
    run_gate,
    timed_masks,
)
from workers.engines.keys import device_name
from workers.engines.report import REPORT_NAME, read_records, report_key, write_records
from workers.engines.select import (
    auto_order,
    records_for,
    reduced_input_refusal,
    select_engine,
)
from workers.photos import CALIBRATION_PHOTOS, GATE_PHOTOS, load_photos
from workers.predictor import engine_context, preprocess
from workers.settings import WorkerSettings

SIZE = 512
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_dir(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model dir of its own (the weights linked in), so reports and artefacts stay here."""
    path = tmp_path_factory.mktemp("model")
    (path / weights.name).symlink_to(weights)
    return path


@pytest.fixture(scope="module")
def ctx(model_dir: Path) -> EngineContext:
    settings = WorkerSettings.from_env({"CUTOUT_MODEL_DIR": str(model_dir), "CUTOUT_DEVICE": "cpu"})
    return engine_context(settings, SIZE)


@pytest.fixture(scope="module")
def gate(ctx: EngineContext) -> GateRun:
    calibrate_int8(ctx, load_photos(CALIBRATION_PHOTOS))
    return run_gate(ctx, ["half", "onnxruntime", "int8", "tensorrt"], load_photos(GATE_PHOTOS))


def test_the_gate_judges_on_at_least_seven_photos_none_seen_in_calibration() -> None:
    assert len(GATE_PHOTOS) >= 7
    assert not set(GATE_PHOTOS) & set(CALIBRATION_PHOTOS)


def test_cpu_engines_pass_the_gate(gate: GateRun) -> None:
    results = {r.engine: r for r in gate.results}
    if "half" in gate.skipped:  # only a CPU without native bf16 may skip it
        assert "lacks native bf16" in gate.skipped["half"]
    assert set(results) | {"half"} == {"eager", "half", "onnxruntime", "int8"}
    for name, bar in [("half", 0.99), ("onnxruntime", 0.99), ("int8", 0.97)]:
        if name not in results:
            continue
        result = results[name]
        assert result.min_iou == bar
        assert len(result.ious) == len(GATE_PHOTOS)
        assert result.passed, f"{name}: mean IoU {result.iou_mean:.4f} < {bar}"
        assert result.mae < 0.02
    assert "torch-tensorrt" in gate.skipped["tensorrt"]


class ShiftedEngine:
    """A broken engine: eager's masks misplaced by a few pixels (an off-by-some resize bug)."""

    name = "half"  # filed as if it were a real engine, to show auto refuses it
    warm_batch_sizes = (1,)

    def __init__(self, ctx: EngineContext) -> None:
        self.eager = build_engine("eager", ctx)
        self.device = self.eager.device

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.roll(self.eager.predict(batch), shifts=(4, 4), dims=(2, 3))


def test_the_gate_refuses_a_broken_engine(ctx: EngineContext) -> None:
    photos = load_photos(GATE_PHOTOS[:3])
    inputs = {  # small: what is tested is the verdict, on real masks
        n: preprocess([torch.from_numpy(p).permute(2, 0, 1)], ctx.config, 256, ctx.device)
        for n, p in photos.items()
    }
    reference, _ = timed_masks(build_engine("eager", ctx), inputs)
    result = check_engine(ShiftedEngine(ctx), 0.99, inputs, reference)
    assert not result.passed
    assert 0.5 < result.iou_mean < 0.99  # close, and still refused
    # Filed as the fastest engine there is, it is still never chosen by auto.
    assert auto_order({"half": result.record(eager_ms=1e9)}) == ["eager"]


def test_check_cli_files_a_report_that_auto_chooses_from(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUTOUT_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("CUTOUT_DEVICE", "cpu")
    monkeypatch.delenv("CUTOUT_CHECKPOINT", raising=False)
    size = 256  # the CLI's own path; the engines were gated at 512 above
    assert check_cli.main(["--size", str(size), "--engines", "onnxruntime,tensorrt"]) == 0
    out = capsys.readouterr().out
    assert "| onnxruntime | 0.99 |" in out and "passed" in out and "skipped" in out

    ctx = engine_context(WorkerSettings.from_env(), size)
    key = report_key(device_name(ctx.device), torch.__version__, ctx.model_hash, size)
    records = read_records(model_dir / REPORT_NAME, key)
    assert set(records) == {"eager", "onnxruntime"} and records["onnxruntime"].passed
    assert records_for(ctx) == records
    assert select_engine("auto", ctx).name == auto_order(records)[0]


def test_a_reduced_input_is_held_to_eager_at_full_size_before_a_worker_may_use_it(
    ctx: EngineContext,
) -> None:
    eager = build_engine("eager", ctx)
    refusal = reduced_input_refusal(eager, ctx, 256)
    assert refusal is not None and f"--size 256 --reference-size {SIZE}" in refusal
    assert "input shapes" in (reduced_input_refusal(FixedShapeEngine(), ctx, 256) or "")

    run = run_gate(
        replace(ctx, input_size=256),
        ["onnxruntime", "compiled"],
        load_photos(GATE_PHOTOS[:3]),
        SIZE,
    )
    assert run.reference_size == SIZE
    assert [r.engine for r in run.results] == ["eager", "eager", "onnxruntime"]
    assert "fixed input shapes" in run.skipped["compiled"]
    judged = {r.engine: r for r in run.results[1:]}
    assert all(r.min_iou == REDUCED_INPUT_MIN_IOU for r in judged.values())
    assert 0.5 < judged["eager"].iou_mean < 1.0, "a smaller input is close, never the same"
    records = run.records()
    assert [r.engine for r in records] == ["eager", "onnxruntime"]
    key = report_key(device_name(ctx.device), torch.__version__, ctx.model_hash, 256, SIZE)
    write_records(ctx.artefact_dir / REPORT_NAME, key, records)
    assert records_for(ctx, 256) == {r.engine: r for r in records}
    assert records_for(ctx) != records_for(ctx, 256), "filed apart from the same-size gate"
    verdict = reduced_input_refusal(eager, ctx, 256)
    if records[0].passed:
        assert verdict is None
    else:
        assert verdict is not None and "failed the quality gate" in verdict


class FixedShapeEngine:
    name = "compiled"  # built for fixed shapes: no reduced input, whatever a report says
    device = torch.device("cpu")
    warm_batch_sizes = (1,)

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        raise AssertionError("never run")
