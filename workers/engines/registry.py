"""The engines by name, each with the bar the quality gate holds it to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workers.engines.base import Engine, EngineContext
from workers.engines.compiled import CompiledEngine
from workers.engines.eager import EagerEngine
from workers.engines.half import HalfEngine
from workers.engines.ort import Int8Engine, OnnxRuntimeEngine
from workers.engines.tensorrt import TensorRTEngine


@dataclass(frozen=True)
class EngineInfo:
    build: Callable[[EngineContext], Engine]
    min_iou: float  # mask IoU (at 0.5) against eager that the gate requires
    summary: str
    # Takes any input size (fully convolutional, dynamic shapes), so it can run at a reduced
    # input under load; compiled and TensorRT engines are built for fixed shapes.
    any_input_size: bool = True
    # Cheap enough to build for a worker's first-run background gate (workers/engine_switch.py);
    # an AOTInductor compile or a TensorRT build takes many minutes: left to `make engines`.
    background_gate: bool = True


ENGINES: dict[str, EngineInfo] = {
    "eager": EngineInfo(EagerEngine, 1.0, "fp32 eager PyTorch, the reference"),
    "half": EngineInfo(
        HalfEngine, 0.99, "fp16 (CUDA, with CUDA graphs) / bf16 (CPU), channels_last"
    ),
    "compiled": EngineInfo(
        CompiledEngine,
        0.99,
        "AOTInductor packages cached on disk",
        any_input_size=False,
        background_gate=False,
    ),
    "onnxruntime": EngineInfo(OnnxRuntimeEngine, 0.99, "onnxruntime CPU on our fp32 export"),
    "int8": EngineInfo(Int8Engine, 0.97, "onnxruntime CPU, static INT8 calibrated on photos"),
    "tensorrt": EngineInfo(
        TensorRTEngine,
        0.99,
        "torch-tensorrt fp16 (unverified)",
        any_input_size=False,
        background_gate=False,
    ),
}


def build_engine(name: str, ctx: EngineContext) -> Engine:
    """Build a registered engine; raises ``KeyError`` for an unknown name and
    ``EngineUnavailable`` (saying why) for one that cannot run here."""
    if name not in ENGINES:
        raise KeyError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    return ENGINES[name].build(ctx)
