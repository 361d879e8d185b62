"""onnxruntime on the CPU: our own fp32 export (``onnxruntime``) or its static INT8
quantization calibrated on real photos (``int8``, written by ``python -m workers.calibrate``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from workers.engines.base import EngineContext, EngineUnavailable
from workers.engines.onnx_export import INPUT_NAME, OUTPUT_NAME, exported_fp32, onnx_path


def _require_cpu(name: str, device: torch.device) -> None:
    if device.type != "cpu":
        raise EngineUnavailable(
            f"engine {name!r} runs on the CPU only (onnxruntime's CPU provider) and this "
            f"worker's device is {device}; set CUTOUT_DEVICE=cpu or pick a GPU engine"
        )


class OnnxRuntimeEngine:
    name = "onnxruntime"
    warm_batch_sizes: tuple[int, ...] = (1,)

    def __init__(self, ctx: EngineContext, path: Path | None = None) -> None:
        _require_cpu(self.name, ctx.device)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineUnavailable(
                f"engine {self.name!r} needs the onnxruntime package ({exc})"
            ) from exc
        self.device = ctx.device
        self.path = path or exported_fp32(ctx)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # As many threads as torch uses, so a process that limits torch (the background gate,
        # a bench) limits onnxruntime too.
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        (mask,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: x})
        return torch.from_numpy(mask)


def int8_path(ctx: EngineContext) -> Path:
    return onnx_path(ctx, "int8")


class Int8Engine(OnnxRuntimeEngine):
    name = "int8"

    def __init__(self, ctx: EngineContext) -> None:
        _require_cpu(self.name, ctx.device)
        path = int8_path(ctx)
        if not path.is_file():
            raise EngineUnavailable(
                f"engine 'int8' needs the calibrated model {path}, which does not exist yet: "
                "run `python -m workers.calibrate` once (then `python -m workers.engines.check`)"
            )
        super().__init__(ctx, path)
