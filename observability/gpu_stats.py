"""GPU memory and utilisation from NVML (the ``nvidia-ml-py`` package), for the metrics.

Where there is no NVIDIA driver (or no package) there are no readings: an empty list, never a
made-up zero. NVML sees every GPU of the machine, whatever ``CUDA_VISIBLE_DEVICES`` says; a
container given one GPU sees that one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("cutout.gpu")


@dataclass(frozen=True)
class GpuReading:
    index: int
    uuid: str
    name: str
    memory_used_bytes: int
    memory_total_bytes: int
    utilization_ratio: float  # share of the last sample period a kernel was running, 0..1


def read_gpus() -> list[GpuReading]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []  # no driver: a CPU machine
    try:
        readings = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            readings.append(
                GpuReading(
                    index=index,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_used_bytes=int(memory.used),
                    memory_total_bytes=int(memory.total),
                    utilization_ratio=rates.gpu / 100,
                )
            )
        return readings
    except pynvml.NVMLError:
        log.warning("reading the GPUs through NVML failed", exc_info=True)
        return []
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
