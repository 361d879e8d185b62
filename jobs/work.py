"""What the job runner hands the pipeline, and the shape of what comes back.

The pipeline lives in ``workers/`` and loads torch, which ``jobs/`` never imports: the runner
is given a ``Processor`` (``workers.build.BatchProcessor`` wraps the pipeline as one) and reads
its results through these protocols, which ``workers.pipeline``'s classes satisfy as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from contract.options import Finishing


@dataclass(frozen=True)
class Work:
    """One job as the pipeline runs it: the effects still missing from the cache."""

    job_id: str
    data: bytes
    effects: tuple[str, ...]
    max_size: int
    format: str
    model_input: int | None = None  # the model's input side for this job; None: the model's
    preview: bool = False
    finishing: Finishing = Finishing()
    background: bytes | None = None  # the uploaded background image, for background "image"


class Encoded(Protocol):
    """One encoded output (an effect or the mask)."""

    @property
    def name(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def content_type(self) -> str: ...
    @property
    def extension(self) -> str: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


class Outcome(Protocol):
    """How one job came out of the pipeline."""

    @property
    def job_id(self) -> str: ...
    @property
    def outputs(self) -> Sequence[Encoded]: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def timings(self) -> Mapping[str, float]: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def model_input(self) -> int: ...  # 0: it never reached the model
    @property
    def foreground(self) -> tuple[int, int, int, int] | None: ...  # the subject's box
    @property
    def ok(self) -> bool: ...


class ModelCall(Protocol):
    @property
    def images(self) -> int: ...
    @property
    def input_size(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def engine(self) -> str: ...  # the engine that ran the call


class Batch(Protocol):
    @property
    def outcomes(self) -> Sequence[Outcome]: ...  # in the order of the work
    @property
    def model_calls(self) -> Sequence[ModelCall]: ...
    @property
    def spans(self) -> Mapping[str, tuple[float, float]]: ...  # stage → epoch seconds
    @property
    def lock_held_ms(self) -> float: ...  # how long the batch held the device lock
    @property
    def device_ms(self) -> float: ...  # the device work in that hold (CUDA events)


OnPreview = Callable[[str, Sequence[Encoded]], None]


class Processor(Protocol):
    @property
    def engine(self) -> str: ...  # the engine's name, for metrics and logs
    @property
    def input_size(self) -> int: ...  # the model's own input side

    def process(self, work: Sequence[Work], on_preview: OnPreview) -> Batch: ...
