"""Half precision with channels_last: fp16 on CUDA, bf16 on a CPU with native bf16.

On CUDA the forward pass is captured as one CUDA graph per batch size the batcher produces
(the graphs share one memory pool); a short batch is padded to the next captured size, so a
replay is one launch instead of hundreds. Verified on an H200 (2026-11-27, torch 2.11.0+cu130,
``tests/test_gpu.py`` and the gate: mean IoU 0.9999 against fp32 eager); the CPU (bf16) path
is tested and gated in CI.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from workers.engines.base import (
    EngineContext,
    EngineUnavailable,
    cuda_half_dtype,
    run_in_shapes,
)
from workers.models.config import ModelConfig


def half_dtype(device: torch.device, config: ModelConfig) -> torch.dtype:
    """The half type the device prefers; refuses a CPU without native bf16 (it would crawl)."""
    if device.type == "cuda":
        return cuda_half_dtype("half", config)
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    raise EngineUnavailable(
        f"engine 'half' has no fast half type on {device}: this CPU lacks native bf16 "
        "(AVX512-BF16 or AMX); use 'eager', 'onnxruntime' or 'int8'"
    )


class HalfEngine:
    name = "half"

    def __init__(self, ctx: EngineContext) -> None:
        self.device = ctx.device
        self.dtype = half_dtype(ctx.device, ctx.config)
        # A copy: the shared fp32 model stays the reference (the gate builds both).
        self.model: nn.Module = (
            copy.deepcopy(ctx.model)
            .to(ctx.device, self.dtype)
            .to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            .eval()
        )
        self.warm_batch_sizes: tuple[int, ...] = (1,)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        if ctx.device.type == "cuda":
            self._capture(sorted(set(ctx.batch_sizes), reverse=True), ctx.size)
            self.warm_batch_sizes = tuple(sorted(self._graphs))

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def _capture(self, sizes: list[int], input_size: int) -> None:
        # Largest first, so the smaller graphs fit in the pool the largest one allocated.
        pool = torch.cuda.graph_pool_handle()
        for n in sizes:
            static_in = self._prepare(torch.zeros(n, 3, input_size, input_size))
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # cuDNN picks its kernels outside the capture
                for _ in range(2):
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                static_out = self.model(static_in)
            self._graphs[n] = (graph, static_in, static_out)

    def _replay(self, chunk: torch.Tensor) -> torch.Tensor:
        graph, static_in, static_out = self._graphs[chunk.shape[0]]
        static_in.copy_(chunk)
        graph.replay()
        return static_out.float()  # a new tensor: the next replay overwrites static_out

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        x = self._prepare(batch)
        if self._graphs and x.shape[2:] == next(iter(self._graphs.values()))[1].shape[2:]:
            return run_in_shapes(x, tuple(self._graphs), self._replay)
        return self.model(x).float()
