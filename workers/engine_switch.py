"""The first run is the fast one: a worker on ``CUTOUT_ENGINE=auto`` that finds no gate report
for its device serves on ``eager`` at once, has the quality gate run once in the background
(``python -m workers.engines.first_gate``, low priority) and then switches its pipeline to the
fastest engine the gate passed, between two batches.

Several workers on one model dir run one gate between them: each waits for the file lock next
to the report; the holder re-reads the report and starts the gate only if it is still missing,
so the others find it filed and switch without gating again. A gate that fails or crashes
leaves ``auto`` on ``eager`` (said in the log); the kernel drops the lock with its holder.
"""

from __future__ import annotations

import fcntl
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from workers.engines.first_gate import background_engines
from workers.engines.report import REPORT_NAME
from workers.engines.select import auto_order, records_for
from workers.pipeline import Pipeline
from workers.predictor import Segmenter, engine_context, load_segmenter
from workers.settings import WorkerSettings

log = logging.getLogger("cutout.engines")
LOCK_NAME = f"{REPORT_NAME}.lock"


@contextmanager
def report_lock(model_dir: Path) -> Iterator[None]:
    """Held while this process decides on, and runs, the gate for ``model_dir``'s report."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with (model_dir / LOCK_NAME).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # blocks this thread only; released on close or death
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def gate_command(settings: WorkerSettings) -> list[str]:
    return list(settings.background_gate_command) or [
        sys.executable,
        "-m",
        "workers.engines.first_gate",
    ]


def needs_background_gate(settings: WorkerSettings) -> bool:
    """``auto``, the background gate on, and no report yet for this device, torch and weights."""
    if settings.engine != "auto" or not settings.background_gate:
        return False
    return not records_for(engine_context(settings))


class EngineSwitch:
    """Runs the background gate for ``pipeline`` and switches it to what ``auto`` then picks.

    ``on_switch(segmenter)`` is called with the new segmenter right after the switch (the
    worker points its adaptive quality at the new engine's reduced input)."""

    def __init__(
        self,
        pipeline: Pipeline,
        settings: WorkerSettings,
        on_switch: Callable[[Segmenter], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.on_switch = on_switch
        self.process: subprocess.Popen[bytes] | None = None
        self.finished = threading.Event()
        self.outcome = ""  # what happened, in words (the last log line's)
        self._stopping = False
        self._thread: threading.Thread | None = None

    def plan(self) -> str:
        now = self.pipeline.segmenter.engine.name
        return (
            f"engine {now} now; the quality gate runs once in the background (low priority, "
            f"minutes: {', '.join(background_engines())}), then the worker switches to the "
            "fastest engine it passes, between batches"
        )

    def start(self) -> None:
        log.info(self.plan(), extra={"stage": "engine_switch", "engine": self.current})
        self._thread = threading.Thread(target=self._run, name="cutout-engine-switch", daemon=True)
        self._thread.start()

    @property
    def current(self) -> str:
        return self.pipeline.segmenter.engine.name

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def stop(self) -> None:
        """Ends a gate still running (the worker is shutting down)."""
        self._stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def _run(self) -> None:
        try:
            with report_lock(self.settings.model_dir):
                ctx = engine_context(self.settings)
                if records_for(ctx):
                    log.info("another worker's quality gate filed the report; reading it")
                elif not self._gate():
                    return
            if not self._stopping:
                self._switch()
        except Exception:
            self.outcome = "the engine switch failed; auto stays on " + self.current
            log.exception(self.outcome)
        finally:
            self.finished.set()

    def _gate(self) -> bool:
        """Runs the gate to its end; whether it filed a report."""
        command = gate_command(self.settings)
        self.process = subprocess.Popen(command)  # its output joins the worker's
        log.info("quality gate running in the background (pid %d)", self.process.pid)
        code = self.process.wait()
        if records_for(engine_context(self.settings)):
            return True
        if self._stopping:  # ended by stop(): the worker is going away
            return False
        self.outcome = (
            f"the background quality gate filed no report (exit {code}); auto stays on "
            f"{self.current}: run `make engines` to gate the engines by hand"
        )
        log.warning(self.outcome)
        return False

    def _switch(self) -> None:
        before = self.current
        if auto_order(records_for(engine_context(self.settings)))[0] == before:
            self.outcome = f"the quality gate passed no engine faster than {before}: staying on it"
            log.info(self.outcome)
            return

        def build() -> Segmenter:
            segmenter, _ = load_segmenter(self.settings)  # auto, reading the report just filed
            segmenter.warm_up()
            return segmenter

        # A CUDA graph capture must not overlap another batch's kernels: build under the lock.
        hold_device = self.pipeline.segmenter.device.type == "cuda"
        switched = self.pipeline.switch_segmenter(build, hold_device)
        if self.on_switch is not None:
            self.on_switch(switched)
        self.outcome = f"switched engine {before} -> {switched.engine.name} between batches"
        log.info(
            self.outcome,
            extra={"stage": "engine_switch", "engine": switched.engine.name, "was": before},
        )
