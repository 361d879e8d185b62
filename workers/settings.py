"""Worker settings, read from the environment when asked (never at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkerSettings:
    model: str = "isnet-general-use"
    model_dir: Path = Path.home() / ".cache" / "cutout"
    checkpoint: Path | None = None  # defaults to the fetched weights for the default model
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    encode_threads: int = 0  # 0: one per CPU core

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
