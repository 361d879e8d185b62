"""Ahead-of-time compiled (torch.export + AOTInductor), one package per batch size, on disk.

A package is keyed by the weights' hash, precision, batch size, input size, device name and
torch version (``keys.artefact_key``), so a restarted worker loads it in milliseconds and
anything that would change the compiled code compiles afresh. Packages are written to a
temporary name and renamed, so a worker killed mid-compile leaves no half file behind.
On CUDA it compiles fp16 channels_last for every batch shape the worker prepares; on CPU fp32
at batch 1 (tested with a small model; see the bench for IS-Net).

A package is first loaded in a child process, once (a ``.loads`` marker beside it records
that it did): on an H200 with torch 2.11.0+cu130 (2026-11-27) loading a freshly compiled
IS-Net package crashed the process (SIGSEGV in ``_load_aoti``). Such a package now makes the
engine unavailable (``auto`` skips it; asking for it is a start-up error), never a dead worker.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from workers.engines.base import EngineContext, EngineUnavailable, cuda_half_dtype, run_in_shapes
from workers.engines.keys import artefact_key, device_name

log = logging.getLogger("cutout.engines")


def package_path(ctx: EngineContext, precision: str, batch_size: int) -> Path:
    key = artefact_key(
        model_hash=ctx.model_hash,
        precision=precision,
        batch_size=batch_size,
        input_size=ctx.size,
        device=device_name(ctx.device),
        library=f"torch-{torch.__version__}",
    )
    return ctx.artefact_dir / "compiled" / f"{key}.pt2"


LOAD_CHECK_SECONDS = 300


def check_loads(path: Path) -> None:
    """Load ``path`` in a child process once, so a package that crashes the loader costs a
    child, not the worker; raises ``EngineUnavailable`` when the child fails."""
    marker = path.with_suffix(".loads")
    if marker.is_file():
        return
    code = (
        "import sys; from torch._inductor import aoti_load_package; aoti_load_package(sys.argv[1])"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=LOAD_CHECK_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EngineUnavailable(
            f"engine 'compiled': loading {path.name} took over {LOAD_CHECK_SECONDS} s"
        ) from None
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        detail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise EngineUnavailable(
            f"engine 'compiled': its package {path.name} does not load with torch "
            f"{torch.__version__} ({how}: {detail[0][:300]}); use 'half' or 'eager'"
        )
    marker.touch()


class CompiledEngine:
    name = "compiled"

    def __init__(self, ctx: EngineContext) -> None:
        self.device = ctx.device
        cuda = ctx.device.type == "cuda"
        self.dtype = cuda_half_dtype(self.name, ctx.config) if cuda else torch.float32
        self.precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.dtype, "fp32")
        self.warm_batch_sizes = tuple(sorted(set(ctx.batch_sizes))) if cuda else (1,)
        self.compiled_now: list[int] = []  # batch sizes compiled by this build (not loaded)
        self._runners = {n: self._load_or_compile(ctx, n) for n in self.warm_batch_sizes}

    def _load_or_compile(
        self, ctx: EngineContext, batch_size: int
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        from torch._inductor import aoti_compile_and_package, aoti_load_package

        path = package_path(ctx, self.precision, batch_size)
        if not path.is_file():
            log.info("compiling %s for batch %d (once; cached at %s)", self.name, batch_size, path)
            model = copy.deepcopy(ctx.model).to(self.device, self.dtype)
            if self.device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            example = self._prepare(torch.zeros(batch_size, 3, ctx.size, ctx.size))
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.pt2")
            with warnings.catch_warnings():  # torch's own deprecations from its internals
                warnings.simplefilter("ignore")
                with torch.inference_mode():
                    program = torch.export.export(model.eval(), (example,))
                aoti_compile_and_package(program, package_path=str(partial))
            os.replace(partial, path)
            self.compiled_now.append(batch_size)
        check_loads(path)
        runner: Callable[[torch.Tensor], torch.Tensor] = aoti_load_package(str(path))
        return runner

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device, self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else x

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        out = run_in_shapes(
            self._prepare(batch), self.warm_batch_sizes, lambda c: self._runners[c.shape[0]](c)
        )
        return out.float()
