"""onnxruntime on the CPU: our own fp32 export (``onnxruntime``) or its static INT8
quantization calibrated on real photos (``int8``, written by ``python -m workers.calibrate``).

Memory (bench/RESULTS.md, issue 21): onnxruntime's CPU arena keeps the peak of every run's
activations for the life of the session, ~285 MB an image at 1024 px, so a batch of 8 left
2.3 GB reserved in an idle worker. Without the arena the activations go back to the allocator
after each run, and a batch runs ``CPU_CHUNK`` images at a time: on a CPU a larger batch is
no faster (the same CPU time per image, measured), it only holds more activations at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from workers.engines.base import EngineContext, EngineUnavailable
from workers.engines.onnx_export import INPUT_NAME, OUTPUT_NAME, exported_fp32, onnx_path


def _require_cpu(name: str, device: torch.device) -> None:
    if device.type != "cpu":
        raise EngineUnavailable(
            f"engine {name!r} runs on the CPU only (onnxruntime's CPU provider) and this "
            f"worker's device is {device}; set CUTOUT_DEVICE=cpu or pick a GPU engine"
        )


# Images per onnxruntime call: the activations of one 1024 px image are ~285 MB.
CPU_CHUNK = 1


class OnnxRuntimeEngine:
    name = "onnxruntime"
    # No warm-up run: on the CPU the first run took ~0.7 s longer than a warm one, the
    # warm-up run itself 1.8-2.1 s, all before the worker could take its first batch
    # (bench/RESULTS.md, issue 21). The first job pays the 0.7 s instead.
    warm_batch_sizes: tuple[int, ...] = ()

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
        options.enable_cpu_mem_arena = False  # an idle worker keeps no activations (above)
        # As many threads as torch uses, so a process that limits torch (the background gate,
        # a bench) limits onnxruntime too.
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        masks = [
            self.session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + CPU_CHUNK]})[0]
            for i in range(0, len(x), CPU_CHUNK)
        ]
        return torch.from_numpy(masks[0] if len(masks) == 1 else np.concatenate(masks))


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
