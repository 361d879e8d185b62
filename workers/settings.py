"""Worker settings, read from the environment when asked (never at import)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from contract import batching

# CUTOUT_ENGINE's choices; ``workers.engines.registry.ENGINES`` holds one engine per name after
# "auto" (a test keeps the two in step; settings must not import torch to validate a name).
ENGINE_CHOICES = ("auto", "eager", "half", "compiled", "onnxruntime", "int8", "tensorrt")


@dataclass(frozen=True)
class WorkerSettings:
    model: str = "isnet-general-use"
    model_dir: Path = Path.home() / ".cache" / "cutout"
    checkpoint: Path | None = None  # defaults to the fetched weights for the default model
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    encode_threads: int = 0  # 0: one per CPU core
    engine: str = "auto"  # one of ENGINE_CHOICES
    max_batch: int = batching.DEFAULT_FLUSH_EVERY  # the batcher's flush size
    # Adaptive quality: while more than this many jobs wait on the gpu queue, jobs run at the
    # reduced model input (0: never), if the engine takes it and the quality gate allowed it.
    adaptive_queue_depth: int = 0
    reduced_input: int = 768
    # Batch shapes engines prepare (CUDA graphs, compiled packages); empty: powers of two up
    # to max_batch. Fewer shapes compile faster; a batch pads up to the next one, or splits.
    engine_shapes: tuple[int, ...] = ()
    # With CUTOUT_ENGINE=auto and no gate report for this device, run the quality gate once in
    # the background and switch to the fastest engine it passes (workers/engine_switch.py).
    background_gate: bool = True
    # The command that gate runs as (default: `python -m workers.engines.first_gate`); tests
    # put a cheap stand-in here. It must file its verdicts in the model dir's report.
    background_gate_command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.engine not in ENGINE_CHOICES:
            raise ValueError(
                f"CUTOUT_ENGINE={self.engine!r} is not an engine; choose one of "
                f"{', '.join(ENGINE_CHOICES)}"
            )
        if self.max_batch < 1:
            raise ValueError(f"CUTOUT_FLUSH_EVERY must be at least 1, not {self.max_batch}")
        if any(n < 1 for n in self.engine_shapes):
            raise ValueError(
                f"CUTOUT_ENGINE_SHAPES must be batch sizes of 1 or more, not {self.engine_shapes}"
            )
        if self.adaptive_queue_depth < 0 or self.reduced_input < 32:
            raise ValueError(
                "CUTOUT_ADAPTIVE_QUEUE_DEPTH must be 0 or more and CUTOUT_REDUCED_INPUT at least 32"
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> WorkerSettings:
        env = dict(os.environ if env is None else env)
        default = cls()
        checkpoint = env.get("CUTOUT_CHECKPOINT")
        return cls(
            model=env.get("CUTOUT_MODEL", default.model),
            model_dir=Path(env.get("CUTOUT_MODEL_DIR", str(default.model_dir))).expanduser(),
            checkpoint=Path(checkpoint).expanduser() if checkpoint else None,
            device=env.get("CUTOUT_DEVICE", default.device),
            encode_threads=int(env.get("CUTOUT_ENCODE_THREADS", default.encode_threads)),
            engine=env.get("CUTOUT_ENGINE", default.engine).strip().lower(),
            max_batch=batching.flush_every(env),
            adaptive_queue_depth=int(
                env.get("CUTOUT_ADAPTIVE_QUEUE_DEPTH", default.adaptive_queue_depth)
            ),
            reduced_input=int(env.get("CUTOUT_REDUCED_INPUT", default.reduced_input)),
            engine_shapes=tuple(
                int(n) for n in env.get("CUTOUT_ENGINE_SHAPES", "").replace(",", " ").split()
            ),
            background_gate=_on_off("CUTOUT_BACKGROUND_GATE", env.get("CUTOUT_BACKGROUND_GATE")),
            background_gate_command=tuple(
                shlex.split(env.get("CUTOUT_BACKGROUND_GATE_COMMAND", ""))
            ),
        )

    def checkpoint_path(self) -> Path:
        if self.checkpoint is not None:
            return self.checkpoint
        if self.model != WorkerSettings.model:
            # Only the default model's weights are fetched; operators bring the others' files.
            raise ValueError(
                f"CUTOUT_MODEL={self.model} needs CUTOUT_CHECKPOINT=<path to its checkpoint>"
            )
        from workers.models.fetch import SAFETENSORS_NAME

        return self.model_dir / SAFETENSORS_NAME

    def torch_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def engine_batch_sizes(self) -> tuple[int, ...]:
        """The batch shapes engines prepare (CUDA graphs, compiled packages): those of
        ``CUTOUT_ENGINE_SHAPES``, else powers of two below the batcher's flush size and the
        flush size itself; others pad up to these."""
        if self.engine_shapes:
            return tuple(sorted(set(self.engine_shapes)))
        sizes = {1 << i for i in range(self.max_batch.bit_length()) if 1 << i < self.max_batch}
        return tuple(sorted(sizes | {self.max_batch}))


def _on_off(name: str, value: str | None, default: bool = True) -> bool:
    if value is None or not value.strip():
        return default
    word = value.strip().lower()
    if word not in ("on", "off", "1", "0", "true", "false"):
        raise ValueError(f"{name}={value!r} must be on or off")
    return word in ("on", "1", "true")
