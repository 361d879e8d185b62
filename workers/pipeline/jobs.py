"""What a batch takes and gives back: each job's input, its outcome, and the batch's trace."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from contract.options import Finishing


@dataclass(frozen=True)
class JobInput:
    job_id: str
    data: bytes
    effects: tuple[str, ...]
    max_size: int
    format: str
    model_input: int | None = None  # the model's input side for this job; None: the model's
    preview: bool = False  # hand small previews of its effects to ``on_preview`` first
    finishing: Finishing = field(default_factory=Finishing)  # background, crop, refinement
    background: bytes | None = None  # the uploaded background image (background "image")


@dataclass(frozen=True)
class EncodedOutput:
    name: str  # an effect name, or "mask"
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int


@dataclass(frozen=True)
class ModelCall:
    """One engine call: how many images, at which input side, how long it took, on which
    engine (a worker may switch engines between batches)."""

    images: int
    input_size: int
    seconds: float
    engine: str


@dataclass(frozen=True)
class Failure:
    """Why one job failed, as its record will say."""

    code: str
    message: str

    @classmethod
    def of(cls, exc: BaseException, code: str = "processing_failed") -> Failure:
        return cls(code, f"{type(exc).__name__}: {exc}")


@dataclass
class JobOutcome:
    job_id: str
    outputs: list[EncodedOutput] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    batch_size: int = 0  # images that went through the model together with this one
    model_input: int = 0  # the model input side it ran at (0: it never reached the model)
    # The subject's box in output pixels (left, top, width, height); (0, 0, 0, 0): no subject.
    foreground: tuple[int, int, int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.error_code is None


@dataclass
class BatchResult:
    outcomes: list[JobOutcome]  # in the order of the jobs
    model_calls: list[ModelCall]  # one, or more when images of other input sizes or OOM split it
    # Stage → (start, end) in epoch seconds: decode, wait_device, inference, effects (these
    # two under the device lock), host (waiting for the copies, host steps, encoding).
    spans: dict[str, tuple[float, float]]
    # How long this batch held the device lock, and the device work in it (model, effects,
    # device encodes) by the device's own clock (CUDA events; on a CPU, the same wall time).
    lock_held_ms: float = 0.0
    device_ms: float = 0.0


OnPreview = Callable[[str, list[EncodedOutput]], None]
Timings = Mapping[str, float]
