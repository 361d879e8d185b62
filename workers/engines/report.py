"""The gate's report: what each engine scored and how fast it ran, per device and weights.

One JSON file in the model dir. Entries are keyed by device name, torch version, weights hash
and input size, so a report from another card, another torch or other weights is never read
as this one's. Speed is kept as a ratio to eager measured in the same run, so engines gated in
separate runs (on a machine whose load changed in between) still compare fairly. A reduced
input held to eager at full size (adaptive quality) is filed under a key naming both sizes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPORT_NAME = "engines-report.json"


@dataclass(frozen=True)
class EngineRecord:
    engine: str
    passed: bool
    min_iou: float  # the bar it was held to
    iou_mean: float
    iou_min: float
    mae: float
    ms_per_image: float  # median over the gate's photos, batch 1
    speedup: float  # eager's ms_per_image in the same run / this one's: what auto sorts by
    photos: int
    checked_at: str


def report_key(
    device: str,
    torch_version: str,
    model_hash: str,
    input_size: int,
    reference_size: int | None = None,
) -> str:
    """``reference_size``: the size eager ran at as the reference, when not ``input_size``."""
    key = f"{device} | torch {torch_version} | weights {model_hash[:16]} | {input_size}px"
    if reference_size is not None and reference_size != input_size:
        key += f" vs {reference_size}px"
    return key


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it and rerun the gate") from exc
    return data if isinstance(data, dict) else {}


def read_records(path: Path, key: str) -> dict[str, EngineRecord]:
    """The records filed under ``key``; empty when the report or the entry does not exist.
    A record of another layout (an older report) is left out: that engine counts as unchecked."""
    records = {}
    for name, rec in _load(path).get(key, {}).get("engines", {}).items():
        try:
            records[name] = EngineRecord(**rec)
        except TypeError:
            continue
    return records


def write_records(path: Path, key: str, records: list[EngineRecord]) -> None:
    """File ``records`` under ``key``, replacing those engines' earlier records (atomically)."""
    data = _load(path)
    engines = data.setdefault(key, {}).setdefault("engines", {})
    engines.update({rec.engine: asdict(rec) for rec in records})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(partial, path)
