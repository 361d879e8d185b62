"""InSPyReNet next to IS-Net: fp32 eager, model only, as ratios to IS-Net measured in the same run.

    python -m bench.models                      # IS-Net and the three base-size InSPyReNets
    python -m bench.models --models all         # also the pyramid-blending (-hr) variants
    python -m bench.models --rounds 5 --batch 2

Each model runs at its config's input size on a random batch; weights are random (the time
does not depend on them; InSPyReNet checkpoints cannot be fetched here). Rounds go round-robin
over the models, so load on a shared machine touches all of them alike; the table reports the
median of the rounds. ``python -m bench.engines`` prints the same table after the engines.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass
from datetime import date

import torch

from workers.models import MODEL_REGISTRY, build_model, model_config

BASELINE = "isnet-general-use"
DEFAULT_MODELS = (BASELINE, "inspyrenet-swinb-fast", "inspyrenet-res2net50", "inspyrenet-swinb")


@dataclass
class Timing:
    model: str
    input_size: int
    params_m: float
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_models(names: list[str], rounds: int, batch: int, device: torch.device) -> list[Timing]:
    """Seconds per batch for each model (one untimed warm-up call each, then ``rounds``)."""
    models, inputs, timings = {}, {}, []
    for name in names:
        models[name] = build_model(name).to(device).eval()
        size = model_config(name).input_size
        inputs[name] = torch.randn(batch, 3, size, size, device=device)
        params = sum(p.numel() for p in models[name].parameters()) / 1e6
        timings.append(Timing(name, size, params, []))
    with torch.inference_mode():
        for name in names:
            models[name](inputs[name])
        for _ in range(rounds):
            for timing in timings:
                start = time.perf_counter()
                models[timing.model](inputs[timing.model])
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                timing.seconds.append(time.perf_counter() - start)
    return timings


def table(timings: list[Timing], batch: int) -> str:
    base = next(t for t in timings if t.model == BASELINE).median
    lines = [
        "| model | input | params (M) | s / batch (median) | × IS-Net |",
        "|---|---|---|---|---|",
    ]
    for t in timings:
        lines.append(
            f"| {t.model} | {batch}×{t.input_size}² | {t.params_m:.2f} | {t.median:.2f} "
            f"| {t.median / base:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    names = list(MODEL_REGISTRY) if args.models == ["all"] else args.models
    if BASELINE not in names:
        names.insert(0, BASELINE)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"{date.today()} · {device} ({where or platform.machine()}), "
        f"{torch.get_num_threads()} threads · torch {torch.__version__} · fp32 eager, "
        f"{args.rounds} rounds\n"
    )
    print(table(time_models(names, args.rounds, args.batch, device), args.batch))


if __name__ == "__main__":
    main()
