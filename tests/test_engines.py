"""Engine selection, refusal and caching on the CPU, with a small model (no weights needed)."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import _spawn, _stop, stack_env, start_worker, wait_for_gpu_worker, wait_until
from workers.engines import ENGINES, EngineContext, EngineUnavailable, build_engine
from workers.engines.base import run_in_shapes
from workers.engines.keys import artefact_key, device_name, model_hash
from workers.engines.report import REPORT_NAME, EngineRecord, report_key, write_records
from workers.engines.select import auto_order, select_engine
from workers.models.isnet import ISNET_CONFIG
from workers.settings import ENGINE_CHOICES, WorkerSettings

SIZE = 32


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1), nn.Sigmoid()
    ).eval()


def small_context(tmp_path: Path, model_hash: str = "ab" * 32) -> EngineContext:
    return EngineContext(
        device=torch.device("cpu"),
        config=ISNET_CONFIG,
        model_hash=model_hash,
        artefact_dir=tmp_path,
        load_model=small_model,
        input_size=SIZE,
    )


def record(engine: str, speedup: float, passed: bool = True) -> EngineRecord:
    iou = 0.995 if passed else 0.9
    return EngineRecord(engine, passed, 0.99, iou, iou, 0.001, 100 / speedup, speedup, 8, "t")


def file_report(ctx: EngineContext, records: list[EngineRecord], model_hash: str = "") -> None:
    key = report_key(
        device_name(ctx.device), torch.__version__, model_hash or ctx.model_hash, ctx.size
    )
    write_records(ctx.artefact_dir / REPORT_NAME, key, records)


def test_setting_choices_are_the_registry() -> None:
    assert ENGINE_CHOICES == ("auto", *ENGINES)


def test_unknown_engine_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="CUTOUT_ENGINE='fastest'.*auto, eager"):
        WorkerSettings.from_env({"CUTOUT_ENGINE": "fastest"})
    assert WorkerSettings.from_env({"CUTOUT_ENGINE": " INT8 "}).engine == "int8"
    with pytest.raises(KeyError, match="known: eager"):
        build_engine("fastest", small_context(Path("/nonexistent")))


@pytest.mark.parametrize(("flush", "sizes"), [(1, (1,)), (8, (1, 2, 4, 8)), (12, (1, 2, 4, 8, 12))])
def test_engines_prepare_the_batchers_shapes(flush: int, sizes: tuple[int, ...]) -> None:
    settings = WorkerSettings.from_env({"CUTOUT_FLUSH_EVERY": str(flush)})
    assert settings.engine_batch_sizes() == sizes


def test_engine_shapes_can_be_named_instead() -> None:
    env = {"CUTOUT_FLUSH_EVERY": "16", "CUTOUT_ENGINE_SHAPES": "16, 1"}
    assert WorkerSettings.from_env(env).engine_batch_sizes() == (1, 16)
    with pytest.raises(ValueError, match="CUTOUT_ENGINE_SHAPES"):
        WorkerSettings.from_env({"CUTOUT_ENGINE_SHAPES": "0"})


def test_short_batches_pad_to_the_next_prepared_shape() -> None:
    seen: list[int] = []

    def double(chunk: torch.Tensor) -> torch.Tensor:
        seen.append(chunk.shape[0])
        return chunk * 2

    batch = torch.arange(11.0).view(11, 1, 1, 1)
    out = run_in_shapes(batch, (1, 2, 4), double)
    assert seen == [4, 4, 4]  # 4 + 4 + 3 padded to 4
    assert torch.equal(out, batch * 2)
    seen.clear()
    run_in_shapes(batch[:3], (1, 2, 4, 8), double)
    assert seen == [4]


@pytest.mark.skipif(
    importlib.util.find_spec("torch_tensorrt") is not None, reason="torch-tensorrt is installed"
)
def test_tensorrt_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="needs the torch-tensorrt package"):
        build_engine("tensorrt", small_context(tmp_path))


def test_int8_without_calibration_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="python -m workers.calibrate"):
        build_engine("int8", small_context(tmp_path))


def test_cpu_only_engines_refuse_a_gpu_device(tmp_path: Path) -> None:
    ctx = small_context(tmp_path)
    ctx.device = torch.device("cuda")  # refused before anything touches the device
    for name in ("onnxruntime", "int8"):
        with pytest.raises(EngineUnavailable, match="CPU only"):
            build_engine(name, ctx)


def test_onnxruntime_engine_matches_eager(tmp_path: Path) -> None:
    ctx = small_context(tmp_path)
    x = torch.rand(3, 3, SIZE, SIZE) - 0.5
    expected = build_engine("eager", ctx).predict(x)
    got = build_engine("onnxruntime", ctx).predict(x)
    assert got.shape == (3, 1, SIZE, SIZE)
    assert torch.allclose(got, expected, atol=1e-5)
    assert len(list(tmp_path.glob("*-fp32.onnx"))) == 1, "the export is cached by weights hash"


def test_auto_without_a_report_runs_eager(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cutout.engines")
    assert select_engine("auto", small_context(tmp_path)).name == "eager"
    assert "no gate report" in caplog.text


def test_auto_runs_the_fastest_engine_that_passed_and_can_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = small_context(tmp_path)
    file_report(
        ctx,
        [
            record("eager", 1.0),
            record("half", 10.0, passed=False),  # fast, but refused by the gate
            record("tensorrt", 20.0),  # passed on some host, cannot be built here
            record("int8", 5.0),  # passed, but its calibrated file is gone
            record("onnxruntime", 2.0),
        ],
    )
    assert auto_order(
        {r.engine: r for r in [record("eager", 1.0), record("half", 10.0, passed=False)]}
    ) == ["eager"]
    caplog.set_level(logging.INFO, "cutout.engines")
    engine = select_engine("auto", ctx)
    assert engine.name == "onnxruntime"
    assert "auto skips tensorrt" in caplog.text and "auto skips int8" in caplog.text
    assert "half" not in caplog.text


def test_auto_ignores_a_report_for_other_weights(tmp_path: Path) -> None:
    ctx = small_context(tmp_path)
    file_report(ctx, [record("onnxruntime", 9.0), record("eager", 1.0)], model_hash="cd" * 32)
    assert select_engine("auto", ctx).name == "eager"


def test_auto_treats_records_of_an_older_layout_as_unchecked(tmp_path: Path) -> None:
    ctx = small_context(tmp_path)
    key = report_key(device_name(ctx.device), torch.__version__, ctx.model_hash, ctx.size)
    old = {"engine": "onnxruntime", "passed": True, "ms_per_image": 1.0}  # no speedup, no IoU
    (tmp_path / REPORT_NAME).write_text(json.dumps({key: {"engines": {"onnxruntime": old}}}))
    assert select_engine("auto", ctx).name == "eager"


def test_a_named_engine_is_built_even_after_failing_the_gate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = small_context(tmp_path)
    file_report(ctx, [record("onnxruntime", 2.0, passed=False)])
    assert select_engine("onnxruntime", ctx).name == "onnxruntime"
    assert "failed the quality gate" in caplog.text


def test_artefact_key_changes_with_every_part() -> None:
    base = dict(
        model_hash="ab" * 32, precision="fp16", batch_size=8, input_size=1024,
        device="cuda NVIDIA H100", library="torch-2.13.0",
    )  # fmt: skip
    keys = {artefact_key(**base)}  # type: ignore[arg-type]
    for field, other in [
        ("model_hash", "cd" * 32), ("precision", "fp32"), ("batch_size", 4),
        ("input_size", 512), ("device", "cuda NVIDIA H200"), ("library", "torch-2.14.0"),
    ]:  # fmt: skip
        keys.add(artefact_key(**{**base, field: other}))  # type: ignore[arg-type]
    assert len(keys) == 7
    assert artefact_key(**base).startswith("abababababab-fp16-b8-1024px-")  # type: ignore[arg-type]


def test_model_hash_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"one")
    first = model_hash(weights)
    assert (tmp_path / "w.safetensors.sha256.json").is_file()
    assert model_hash(weights) == first
    weights.write_bytes(b"two!")
    assert model_hash(weights) != first


@pytest.mark.slow
def test_compiled_package_is_cached_and_loaded_without_compiling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real AOTInductor compile of the small model, then a restart that must not compile."""
    ctx = small_context(tmp_path)
    x = torch.rand(2, 3, SIZE, SIZE) - 0.5
    expected = build_engine("eager", ctx).predict(x)
    first = build_engine("compiled", ctx)
    assert first.compiled_now == [1]  # type: ignore[attr-defined]
    assert torch.allclose(first.predict(x), expected, atol=1e-5)

    def no_compiling(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached package must be loaded, not compiled again")

    monkeypatch.setattr("torch._inductor.aoti_compile_and_package", no_compiling)
    again = build_engine("compiled", small_context(tmp_path))
    assert again.compiled_now == []  # type: ignore[attr-defined]
    assert torch.allclose(again.predict(x), expected, atol=1e-5)
    assert len(list((tmp_path / "compiled").glob("*.pt2"))) == 1
    with pytest.raises(AssertionError, match="must be loaded"):  # other weights: a new key
        build_engine("compiled", small_context(tmp_path, model_hash="cd" * 32))


def test_a_compiled_package_that_does_not_load_makes_the_engine_unavailable(
    tmp_path: Path,
) -> None:
    """The loader runs in a child first: a package that kills it (a SIGSEGV on an H200 with
    torch 2.11) or fails to load is a refusal with the reason, not a dead worker."""
    from workers.engines.compiled import package_path

    ctx = small_context(tmp_path)
    path = package_path(ctx, "fp32", 1)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not a package")  # cached, so nothing compiles
    with pytest.raises(EngineUnavailable, match=r"compiled.*does not load with torch .*exit 1"):
        build_engine("compiled", ctx)
    assert not path.with_suffix(".loads").exists()


@pytest.mark.parametrize(
    ("engine", "reason"),
    [
        ("tensorrt", "cannot start: engine 'tensorrt' needs the torch-tensorrt package"),
        ("int8", "cannot start: engine 'int8' needs the calibrated model"),
    ],
)
def test_a_worker_asked_for_an_engine_it_cannot_run_does_not_start(
    engine: str, reason: str, redis_url: str, weights: Path, tmp_path: Path
) -> None:
    if engine == "tensorrt" and importlib.util.find_spec("torch_tensorrt") is not None:
        pytest.skip("torch-tensorrt is installed")
    env = stack_env(redis_url, tmp_path / "files", CUTOUT_ENGINE=engine)
    env["CUTOUT_MODEL_DIR"] = str(tmp_path)  # no calibrated INT8 model here
    env["CUTOUT_CHECKPOINT"] = str(weights)
    args = [sys.executable, "-m", "celery", "-A", "tasks.worker", "worker", "--queues", "gpu",
            "--pool", "threads", "--without-mingle", "--without-gossip"]  # fmt: skip
    worker = _spawn(args, env, tmp_path / "worker.log")
    try:
        wait_until(lambda: worker.poll() is not None, 60, "the worker to give up")
    finally:
        _stop(worker)
    log = (tmp_path / "worker.log").read_text()
    assert worker.returncode != 0, log
    assert reason in log
    assert "ready." not in log, "it must not announce itself ready"


@pytest.mark.slow
def test_a_worker_on_another_engine_warms_it_and_logs_its_cold_start(
    redis_url: str, weights: Path, tmp_path: Path
) -> None:
    env = stack_env(redis_url, tmp_path / "files", CUTOUT_ENGINE="onnxruntime")
    env["CUTOUT_MODEL_DIR"] = str(tmp_path)  # exports the ONNX file here on the way
    env["CUTOUT_CHECKPOINT"] = str(weights)
    worker = start_worker(env, tmp_path, name="onnx")
    try:
        wait_for_gpu_worker(redis_url)
    finally:
        _stop(worker)
    log = (tmp_path / "onnx.log").read_text()
    line = json.loads(next(x for x in log.splitlines() if '"cold_start_seconds"' in x))
    assert line["message"] == "engine onnxruntime warm" and line["engine"] == "onnxruntime"
    cold = line["cold_start_seconds"]
    assert set(cold) == {"import", "weight_load", "engine_build", "warm_up", "total"}
    assert all(v >= 0 for v in cold.values())
    assert cold["weight_load"] > 0, "the export needed the torch weights"
    assert len(list(tmp_path.glob("*-fp32.onnx"))) == 1


def test_cuda_half_precision_respects_a_model_that_overflows_fp16() -> None:
    from workers.engines.base import cuda_half_dtype
    from workers.models import model_config

    isnet = model_config("isnet-general-use")
    inspyrenet = model_config("inspyrenet-swinb")
    assert isnet.fp16_safe and not inspyrenet.fp16_safe
    assert cuda_half_dtype("half", isnet) == torch.float16
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        assert cuda_half_dtype("half", inspyrenet) == torch.bfloat16
    else:  # this CPU machine: no CUDA bf16 to fall back on, so the engine refuses with a reason
        with pytest.raises(EngineUnavailable, match="overflows fp16"):
            cuda_half_dtype("half", inspyrenet)
