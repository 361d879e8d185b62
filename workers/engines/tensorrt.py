"""torch-tensorrt, fp16, one engine per batch size, serialised to disk and loaded on restart.

UNVERIFIED: torch-tensorrt cannot be installed on the machines this was written on, nor on
the GPU lent to the project; this follows its documented API (``torch_tensorrt.compile`` with
``ir="dynamo"``, ``torch_tensorrt.save``, ``torch.export.load``). What is tested here is that
``auto`` skips it cleanly and that asking for it where it cannot run is a clear start-up error.
INT8 through TensorRT is not implemented: the calibrated INT8 engine here is the CPU one.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from workers.engines.base import EngineContext, EngineUnavailable, run_in_shapes
from workers.engines.keys import artefact_key, device_name

log = logging.getLogger("cutout.engines")


def _import_tensorrt() -> Any:
    try:
        import torch_tensorrt
    except ImportError as exc:
        raise EngineUnavailable(
            "engine 'tensorrt' needs the torch-tensorrt package, which is not installed "
            f"({exc}); it needs CUDA and NVIDIA TensorRT: `pip install torch-tensorrt` on a GPU "
            "host, or pick another engine"
        ) from exc
    return torch_tensorrt


class TensorRTEngine:
    name = "tensorrt"

    def __init__(self, ctx: EngineContext) -> None:
        self._trt = _import_tensorrt()
        if ctx.device.type != "cuda":
            raise EngineUnavailable(
                f"engine 'tensorrt' needs a CUDA device; this worker's device is {ctx.device}"
            )
        if not ctx.config.fp16_safe:
            raise EngineUnavailable(
                f"engine 'tensorrt' builds fp16 engines and {ctx.config.model_id} overflows "
                "fp16; use 'half' (bf16 on this GPU) or 'eager'"
            )
        self.device = ctx.device
        self.warm_batch_sizes = tuple(sorted(set(ctx.batch_sizes)))
        self._runners = {n: self._load_or_build(ctx, n) for n in self.warm_batch_sizes}

    def engine_path(self, ctx: EngineContext, batch_size: int) -> Path:
        key = artefact_key(
            model_hash=ctx.model_hash,
            precision="fp16",
            batch_size=batch_size,
            input_size=ctx.size,
            device=device_name(ctx.device),
            library=f"torch-{torch.__version__}-trt-{self._trt.__version__}",
        )
        return ctx.artefact_dir / "tensorrt" / f"{key}.ep"

    def _load_or_build(
        self, ctx: EngineContext, batch_size: int
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        path = self.engine_path(ctx, batch_size)
        if not path.is_file():
            log.info("building TensorRT engine for batch %d (once; cached at %s)", batch_size, path)
            model = copy.deepcopy(ctx.model).to(self.device, torch.float16).eval()
            inputs = [torch.zeros(batch_size, 3, ctx.size, ctx.size, device=self.device).half()]
            compiled = self._trt.compile(
                model, ir="dynamo", arg_inputs=inputs, enabled_precisions={torch.float16}
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.ep")
            self._trt.save(compiled, str(partial), arg_inputs=inputs)
            os.replace(partial, path)
        module: Callable[[torch.Tensor], torch.Tensor] = torch.export.load(str(path)).module()
        return module

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, torch.float16)
        return run_in_shapes(
            x, self.warm_batch_sizes, lambda c: self._runners[c.shape[0]](c)
        ).float()
