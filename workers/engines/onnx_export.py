"""The native model exported to ONNX once (final mask only), cached beside the weights.

The npm file computes all six side outputs in fp16 with casts around every conv; our own
export computes the one output inference needs, in fp32, and is what onnxruntime runs and
what ``workers.calibrate`` quantizes. Batch, height and width stay dynamic.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from workers.engines.base import EngineContext

INPUT_NAME = "input"
OUTPUT_NAME = "mask"
OPSET = 17


def onnx_path(ctx: EngineContext, precision: str) -> Path:
    return ctx.artefact_dir / f"{ctx.config.model_id}-{ctx.model_hash[:12]}-{precision}.onnx"


def export_onnx(model: torch.nn.Module, dest: Path, input_size: int) -> Path:
    """Write ``model`` (fp32, CPU) to ``dest`` as ONNX; atomic, so readers never see half."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.stem}.{os.getpid()}.partial.onnx")
    dims = {0: "batch", 2: "height", 3: "width"}
    example = torch.zeros(1, 3, input_size, input_size)
    with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.cpu().eval(),
            (example,),
            str(partial),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dims, OUTPUT_NAME: dims},
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(partial, dest)
    return dest


def exported_fp32(ctx: EngineContext) -> Path:
    """The fp32 export for this model's weights, exported on first use."""
    path = onnx_path(ctx, "fp32")
    if not path.is_file():
        export_onnx(ctx.model, path, ctx.size)
    return path
