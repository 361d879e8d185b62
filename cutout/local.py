"""``cutout process``: photos on disk through the worker pipeline, in this process, no server.

The same ``workers.pipeline.Pipeline`` the Celery worker runs, built the same way
(``workers.build``), does the work, batch by batch; this module only finds the photos, skips
those already done and writes what comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from contract.options import Finishing
from cutout.outputs import Summary, output_path, write_atomic

if TYPE_CHECKING:  # torch is imported only when there is something to process
    from workers.pipeline import Pipeline

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".heic", ".heif"})


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ProcessOptions:
    effects: tuple[str, ...]
    max_size: int
    format: str
    mask: bool = False
    finishing: Finishing = field(default_factory=Finishing)
    background: bytes | None = None  # the background image, for background "image"


def find_images(target: Path) -> list[Path]:
    """A file as it is; a folder's photos by extension (not recursive, other files ignored)."""
    if target.is_file():
        return [target]
    if target.is_dir():
        return sorted(
            p for p in target.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    raise FileNotFoundError(f"no such file or folder: {target}")


def planned_outputs(out_dir: Path, source: Path, options: ProcessOptions) -> dict[str, Path]:
    paths = {name: output_path(out_dir, source, name, options.format) for name in options.effects}
    if options.mask:
        paths["mask"] = output_path(out_dir, source, "mask", "png")
    return paths


@contextmanager
def open_pipeline(log: Callable[[str], None]) -> Iterator[Pipeline]:
    """The worker's pipeline, built as the worker builds it (``workers.build``) from the same
    settings (``CUTOUT_*``)."""
    from workers.build import build_pipeline
    from workers.settings import WorkerSettings

    settings = WorkerSettings.from_env()
    log(f"loading {settings.model}…")
    built = build_pipeline(settings)
    device = built.pipeline.segmenter.device
    log(f"{settings.model} loaded on {device} in {built.load_seconds:.1f} s")
    with built.pool:
        yield built.pipeline


def process(
    images: Sequence[Path],
    out_dir: Path,
    options: ProcessOptions,
    pipeline: Callable[[], AbstractContextManager[Pipeline]],
    batch_size: int,
    progress: Callable[[int], Progress],
) -> Summary:
    """Run every photo whose outputs are not all there yet; one bad photo fails alone.

    ``pipeline`` is entered only when some photo needs it, so a re-run with nothing left to
    do never loads the model. ``progress(total)`` makes the progress bar.
    """
    summary = Summary()
    todo: list[tuple[Path, dict[str, Path]]] = []
    claimed: dict[Path, Path] = {}
    for source in images:
        targets = planned_outputs(out_dir, source, options)
        clash = next((claimed[p] for p in targets.values() if p in claimed), None)
        if clash is not None:
            summary.fail(source, f"its outputs would overwrite those of {clash}; rename one")
            continue
        claimed.update(dict.fromkeys(targets.values(), source))
        if all(p.exists() for p in targets.values()):
            summary.skipped.append(source)
        else:
            todo.append((source, targets))
    if not todo:
        return summary
    with pipeline() as pipe:
        bar = progress(len(todo))  # after the model loaded, so its log lines come first
        try:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                _run_batch(pipe, chunk, options, summary)
                bar.update(len(chunk))
        finally:
            bar.close()
    return summary


def _run_batch(
    pipe: Pipeline,
    chunk: list[tuple[Path, dict[str, Path]]],
    options: ProcessOptions,
    summary: Summary,
) -> None:
    from workers.pipeline import JobInput

    jobs: list[JobInput] = []
    for index, (source, _) in enumerate(chunk):
        try:
            data = source.read_bytes()
        except OSError as exc:
            summary.fail(source, f"cannot read it: {exc.strerror or exc}")
            continue
        jobs.append(
            JobInput(
                str(index),
                data,
                options.effects,
                options.max_size,
                options.format,
                finishing=options.finishing,
                background=options.background,
            )
        )
    for outcome in pipe.run(jobs):
        source, targets = chunk[int(outcome.job_id)]
        if not outcome.ok:
            summary.fail(source, f"{outcome.error_code}: {outcome.error_message}")
            continue
        try:
            for output in outcome.outputs:
                if output.name in targets:
                    write_atomic(targets[output.name], output.data)
        except OSError as exc:
            summary.fail(source, f"cannot write its outputs: {exc}")
            continue
        summary.done.append(source)
