"""The training loop: AdamW with a warm-up and cosine decay, deep supervision, mixed precision
on CUDA, a progress bar, a held-out score every so often, and a checkpoint that resumes.

``out/last.safetensors`` is written at every evaluation and at the end; a run started again
with the same ``out`` resumes from it (same settings: a resumed run refuses others). The best
held-out score's model is kept as ``out/best.safetensors``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from training.augment import PhonePhotoAugment
from training.checkpoint import load_training, save_training
from training.loss import distillation_loss
from training.pack import Pack
from workers.models import build_model, model_config
from workers.models.config import ModelConfig
from workers.models.student import Student

LAST, BEST = "last.safetensors", "best.safetensors"


@dataclass(frozen=True)
class TrainSettings:
    model: str = "cutout-student"  # a registered student variant
    input_size: int = 0  # 0: the variant's own
    steps: int = 4000
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    eval_every: int = 250
    seed: int = 20
    workers: int = 2  # data-loading processes (augmentation runs there)
    # A time budget in minutes of training (0: none): the schedule then anneals by whichever
    # of steps or time runs out first, so a run cut by the clock still ends at a low rate.
    minutes: float = 0.0

    def size(self) -> int:
        return self.input_size or model_config(self.model).input_size


class AugmentedPack(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The pack's labelled training photos, each drawn through fresh augmentations: uint8
    3×S×S photo and float 1×S×S soft mask in [0, 1]. Item ``k`` is photo ``k % len`` in epoch
    ``k // len``, its draws seeded by both: a run is reproducible whichever data-loading
    worker makes a sample, and the workers can live for the whole run."""

    def __init__(self, pack: Pack, augment: PhonePhotoAugment, seed: int) -> None:
        self.pack, self.augment, self.seed = pack, augment, seed
        self.indices = pack.split(False)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(k, len(self.indices))
        rng = np.random.default_rng([self.seed, epoch, i])
        j = self.indices[i]
        image, mask = self.augment(self.pack.images[j], self.pack.masks[j], rng)
        photo = torch.from_numpy(image.copy()).permute(2, 0, 1)
        return photo, torch.from_numpy(mask.copy()).float().div_(255).unsqueeze(0)


def normalise(photos: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """B×3×S×S uint8 → the model's normalised float input (as ``workers.predictor`` does)."""
    mean = torch.tensor(config.mean, device=photos.device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=photos.device).view(1, 3, 1, 1)
    return (photos.float() / 255 - mean) / std


def heldout_iou(
    model: nn.Module, pack: Pack, config: ModelConfig, size: int, device: torch.device
) -> float:
    """Mean IoU (at 0.5) against the teacher on the pack's held-out photos, each squashed to
    ``size`` as the worker does and scored at the pack's side."""
    from workers.engines.gate import mask_iou

    model.eval()
    scores = []
    with torch.inference_mode():
        for j in pack.split(True):
            photo = torch.from_numpy(pack.images[j]).permute(2, 0, 1)[None].to(device)
            x = F.interpolate(photo.float(), size=(size, size), mode="bilinear", antialias=True)
            pred = model(normalise(x, config)).float()
            pred = F.interpolate(pred, size=pack.masks[j].shape, mode="bilinear")
            scores.append(mask_iou(pred.cpu(), torch.from_numpy(pack.masks[j]) / 255))
    model.train()
    return float(np.mean(scores)) if scores else float("nan")


def progress_of(step: int, seconds: float, settings: TrainSettings) -> float:
    """How far the run is, 0..1: by steps, or by time when that is further along."""
    done = step / settings.steps
    return max(done, seconds / (settings.minutes * 60)) if settings.minutes else done


def lr_at(step: int, progress: float, settings: TrainSettings) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at progress 1."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    return settings.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:  # a GPU box may lack tqdm; the log lines say the same
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step")


class _NoBar:
    def update(self, n: int) -> None: ...

    def set_postfix(self, **values: str) -> None: ...

    def close(self) -> None: ...


class Epochs(Sampler[int]):
    """Endless epochs from ``start``, each a fresh permutation seeded by the epoch, yielded as
    ``AugmentedPack`` items (``epoch * n + photo``)."""

    def __init__(self, n: int, seed: int, start: int = 0) -> None:
        self.n, self.seed, self.start = n, seed, start

    def __iter__(self) -> Iterator[int]:
        epoch = self.start
        while True:
            order = torch.randperm(
                self.n, generator=torch.Generator().manual_seed(self.seed + epoch)
            )
            yield from (epoch * self.n + int(i) for i in order)
            epoch += 1


def autocast_for(device: torch.device) -> tuple[Callable[[], Any], torch.amp.GradScaler | None]:
    """Mixed precision on CUDA: bf16 where the GPU has it (no scaler needed), else fp16 with a
    gradient scaler. On a CPU: fp32 (bf16 autocast training is slower than fp32 there for
    depthwise convolutions)."""
    if device.type != "cuda":
        return (lambda: torch.autocast("cpu", enabled=False)), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def train(
    pack: Pack,
    out: Path,
    settings: TrainSettings,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train (or resume) on ``pack``'s training photos; returns the final run state."""
    torch.manual_seed(settings.seed)
    config = model_config(settings.model)
    size = settings.size()
    model = build_model(settings.model).to(device).train()
    if not isinstance(model, Student):
        raise ValueError(f"{settings.model} is not a student model; choose a cutout-student*")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    state: dict[str, Any] = {
        "step": 0,
        "seconds": 0.0,  # training time so far, over every resumed run
        "best_iou": -1.0,
        "settings": asdict(settings),
    }
    if (out / LAST).is_file():
        state = load_training(out / LAST, model, optimizer)
        if state["settings"] != asdict(settings):
            raise ValueError(
                f"{out / LAST} was trained with other settings {state['settings']}; "
                "use another --out or the same settings"
            )
        log(f"resuming from step {state['step']} ({out / LAST})")
    dataset = AugmentedPack(pack, PhonePhotoAugment(size), settings.seed)
    if not len(dataset):
        raise ValueError("the pack has no labelled training photos")
    # Endless, with workers that live for the run (a GPU step is shorter than forking them).
    epoch = state["step"] * settings.batch_size // len(dataset)
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        sampler=Epochs(len(dataset), settings.seed, epoch),
        num_workers=settings.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=settings.workers > 0,
    )
    batches = iter(loader)
    autocast, scaler = autocast_for(device)
    bar = _progress_bar(settings.steps, state["step"], progress)
    started, seen, before = time.perf_counter(), 0, state["seconds"]
    while progress_of(state["step"], state["seconds"], settings) < 1:
        photos, targets = next(batches)
        photos, targets = photos.to(device, non_blocking=True), targets.to(device)
        rate = lr_at(
            state["step"], progress_of(state["step"], state["seconds"], settings), settings
        )
        for group in optimizer.param_groups:
            group["lr"] = rate
        with autocast():
            sides = model.side_logits(normalise(photos, config))
        loss, parts = distillation_loss(sides, targets)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        state["step"] += 1
        state["seconds"] = before + time.perf_counter() - started
        seen += len(photos)
        done = progress_of(state["step"], state["seconds"], settings) >= 1
        bar.update(1)
        if progress:  # .item() waits for the device: only when someone watches
            bar.set_postfix(
                loss=f"{loss.item():.3f}",
                bce=f"{float(parts['bce']):.3f}",
                iou=f"{float(parts['iou']):.3f}",
            )
        if state["step"] % settings.eval_every == 0 or done:
            score = heldout_iou(model, pack, config, size, device)
            state["last_iou"] = score
            state["samples_per_second"] = round(seen / (time.perf_counter() - started), 2)
            if score > state["best_iou"]:
                state["best_iou"] = score
                save_training(out / BEST, model, optimizer, state)
            save_training(out / LAST, model, optimizer, state)
            log(
                f"step {state['step']}: loss {loss.item():.4f}, held-out IoU {score:.4f} "
                f"(best {state['best_iou']:.4f}), {state['samples_per_second']:.1f} samples/s"
            )
    bar.close()
    return state
