"""What each stage run of a room cost, measured where it ran, and its record in the catalog
(:mod:`storage.stage_runs`), the same for every executor: a Celery worker records the stages it runs under their
leases (:mod:`workers.leases`), an in-process run (:mod:`workers.runner`, and the canvas in eager mode) records its
own, so ``roomcast cost`` and ``roomcast status ID`` show what a room took however it was run.

A stage's CPU is that of the process that ran it and of the ffmpeg processes it waited for. A track analysed on a
thread of an in-process run shares its process with the room's other tracks: it is given its thread's own CPU and
a share of the ffmpeg time of the tracks that ran beside it (:func:`share_children`). ``roomcast process`` starts
a process for one room: its ingest is also given what the process took to start (Python, the imports, the room's
validation begun beside them), and the first track of each of its worker processes what that worker took to start
(the Whisper model), so the stage runs add up to what the command cost.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from pipeline.errors import StorageError
from storage.records import StageRunRecord
from workers.stages import INGEST

if TYPE_CHECKING:
    from workers.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def _seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s() -> float:
    """CPU seconds of this process and of the children it waited for (ffmpeg)."""
    return _seconds(resource.RUSAGE_SELF) + children_cpu_s()


def thread_cpu_s() -> float:
    """CPU seconds of the calling thread alone."""
    return _seconds(resource.RUSAGE_THREAD)


def children_cpu_s() -> float:
    """CPU seconds of the children this process waited for."""
    return _seconds(resource.RUSAGE_CHILDREN)


def in_process_worker() -> str:
    """How an in-process run names the process that ran a stage (a Celery worker gives its node name)."""
    return f"{socket.gethostname()} pid {os.getpid()} (in-process)"


# Whether this process's start (Python, its imports, and what the command line did beside them: the room validated
# and hashed) is still to be given to the next ingest it records.
_start_unbilled = False


def bill_start_to_ingest() -> None:
    """This process was started to run one room (``roomcast process``): the next ingest it records is given the
    CPU the process took from its start, as the room would not have cost it otherwise."""
    global _start_unbilled
    _start_unbilled = True


def with_cpu(run: StageRunRecord, cpu_s: float) -> StageRunRecord:
    """``run`` given ``cpu_s`` more."""
    return replace(run, cpu_s=round(run.cpu_s + cpu_s, 3)) if cpu_s > 0 else run


class Aside:
    """CPU a run spends on a stage's behalf outside its span (a thread recording the episode while the tracks
    run, the modules of the finish loaded meanwhile), given to that stage's record (:meth:`take`)."""

    def __init__(self) -> None:
        self._cpu_s = 0.0
        self._lock = threading.Lock()

    def add(self, cpu_s: float) -> None:
        with self._lock:
            self._cpu_s += cpu_s

    def timed(self, work: Callable[..., T], *args: object) -> T:
        """``work(*args)``, its thread's CPU meanwhile added here."""
        start = thread_cpu_s()
        try:
            return work(*args)
        finally:
            self.add(thread_cpu_s() - start)

    def take(self) -> float:
        with self._lock:
            cpu_s, self._cpu_s = self._cpu_s, 0.0
            return cpu_s


@dataclass(frozen=True)
class Span:
    """A stage run being measured: when it started and the CPU clock then (by default this process's,
    :func:`process_cpu_s`)."""

    stage: str
    worker: str
    started_at: datetime
    cpu_start: float

    @classmethod
    def start(cls, stage: str, *, worker: str | None = None, cpu_start: float | None = None) -> Span:
        """A run of ``stage`` starting now; ``cpu_start``: the CPU clock it starts from (by default this process's
        now, or 0, the process's start, for the ingest of a process started for one room)."""
        global _start_unbilled
        if cpu_start is None and stage == INGEST.name and _start_unbilled:
            cpu_start, _start_unbilled = 0.0, False
        return cls(stage, worker or in_process_worker(), datetime.now(UTC),
                   process_cpu_s() if cpu_start is None else cpu_start)

    def end(self, episode_id: str, outcome: str = "done", *, cpu_end: float | None = None) -> StageRunRecord:
        """The run, for the catalog (a worker process of an in-process run opens no catalog: the run that started
        it records this)."""
        cpu = (process_cpu_s() if cpu_end is None else cpu_end) - self.cpu_start
        return StageRunRecord(episode_id, self.stage, self.worker, outcome, self.started_at, datetime.now(UTC),
                              round(max(0.0, cpu), 3))


def share_children(runs: Sequence[StageRunRecord], children_s: float) -> list[StageRunRecord]:
    """``runs`` (each holding its thread's own CPU) with ``children_s``, the ffmpeg time of the processes they
    waited for together, shared among them in proportion to their own CPU."""
    own = sum(run.cpu_s for run in runs)
    if not runs or children_s <= 0:
        return list(runs)
    return [with_cpu(run, children_s * (run.cpu_s / own if own > 0 else 1 / len(runs))) for run in runs]


def record_run(settings: Settings, run: StageRunRecord) -> None:
    """Add ``run`` to the catalog's stage runs; a failure to record is logged, as the record is for operators and
    the stage's own outcome stands."""
    from storage.stage_runs import StageLog
    from workers.context import Context

    try:
        StageLog(Context.of(settings).catalog).record(run)
    except StorageError as exc:
        log.warning("room %s: could not record the run of %s: %s", run.episode_id, run.stage, exc)


def measured(settings: Settings, episode_id: str, stage: str, work: Callable[[], T], *,
             worker: str | None = None, aside: Aside | None = None) -> T:
    """``work()``, its run (done or failed) recorded as a run of ``stage`` of ``episode_id`` by ``worker`` (by
    default this process, in-process), with this process's CPU meanwhile (and what ``aside`` holds)."""
    span, outcome = Span.start(stage, worker=worker), "failed"
    try:
        result = work()
        outcome = "done"
        return result
    finally:
        record_run(settings, with_cpu(span.end(episode_id, outcome), aside.take() if aside is not None else 0.0))
