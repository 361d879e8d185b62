"""The pipeline built from the worker's settings, the same way for the gpu worker and the
command line, and the face it shows the job runner (``jobs.work.Processor``)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol

from contract.options import Finishing
from workers.pipeline import BatchResult, JobInput, OnPreview, Pipeline
from workers.predictor import load_segmenter
from workers.settings import WorkerSettings


class Built(NamedTuple):
    pipeline: Pipeline
    pool: ThreadPoolExecutor  # decodes and encodes; shut it down when done with the pipeline
    load_seconds: float  # loading the model (weights and engine)


def build_pipeline(settings: WorkerSettings) -> Built:
    """The pipeline: its model loaded on the configured engine and device, a thread pool of
    ``encode_threads`` (0: one per core) for decoding and encoding."""
    segmenter, seconds = load_segmenter(settings)
    pool = ThreadPoolExecutor(settings.encode_threads or None, thread_name_prefix="cutout-io")
    return Built(Pipeline(segmenter, pool), pool, seconds)


class JobSpec(Protocol):
    """One job to run, as a caller outside ``workers/`` describes it (``jobs.work.Work``)."""

    @property
    def job_id(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def effects(self) -> tuple[str, ...]: ...
    @property
    def max_size(self) -> int: ...
    @property
    def format(self) -> str: ...
    @property
    def model_input(self) -> int | None: ...
    @property
    def preview(self) -> bool: ...
    @property
    def finishing(self) -> Finishing: ...
    @property
    def background(self) -> bytes | None: ...


class BatchProcessor:
    """Runs job specs through a pipeline; says which engine and input size it runs at."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    @property
    def engine(self) -> str:
        return self.pipeline.segmenter.engine.name

    @property
    def input_size(self) -> int:
        return self.pipeline.segmenter.config.input_size

    def process(self, work: Sequence[JobSpec], on_preview: OnPreview) -> BatchResult:
        jobs = [
            JobInput(
                w.job_id,
                w.data,
                w.effects,
                w.max_size,
                w.format,
                model_input=w.model_input,
                preview=w.preview,
                finishing=w.finishing,
                background=w.background,
            )
            for w in work
        ]
        return self.pipeline.process(jobs, on_preview)
