"""The stage graph of a room, declared once: ``ingest``, then ``track`` for every consenting track (analysis, voices,
transcription), then ``finish`` (mix, master, transcripts, chapters, publish).

*Replay first* (:data:`PHASES`): the tracks and the finish run twice over. The ``replay`` phase analyses the tracks
without transcribing them and publishes the replay, its chapters from speaker turns, its page and its feed item as
soon as the mix is made; the ``words`` phase then transcribes the tracks (reusing the first phase's analyses and
voices) and publishes the same episode again, same guid and keys, with its transcripts and titled chapters, its
replays only re-tagged (a stream copy: the audio is mixed and encoded once). Without replay first one ``full``
phase does both at once.

Executors only decide *where* each node runs: :mod:`workers.runner` runs the graph in this process (the canvas in
Celery's eager mode with ``-j 1``, the track nodes on a process pool when Whisper runs, on threads when it does not)
and :mod:`workers.tasks` runs it on Celery workers (a chord over the track nodes whose body is ``finish``). What a
node does is a function of :mod:`workers.jobs` (ingest, finish) or :mod:`workers.track` (a track); how often it is
tried again is :data:`RETRY`, the same for every executor: a transient storage error (a lost connection, a locked
SQLite file) is retried with exponential backoff, anything else fails the room at once and is recorded against the
episode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pipeline.errors import StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_QUEUE = "roomcast"
TRANSCRIBE_QUEUE = "transcribe"


@dataclass(frozen=True)
class RetryPolicy:
    """How a node is tried again: ``max_retries`` times after its first attempt, waiting ``base_s`` doubled at each
    retry, never more than ``cap_s``; only for errors that may pass (:attr:`StorageError.transient`)."""

    max_retries: int = 8
    base_s: float = 5.0
    cap_s: float = 300.0

    def delay(self, retries: int, exc: BaseException) -> float | None:
        """Seconds to wait before trying again after ``retries`` retries failed with ``exc``; None: fail now."""
        if not isinstance(exc, StorageError) or not exc.transient or retries >= self.max_retries:
            return None
        return float(min(self.cap_s, self.base_s * 2 ** retries))

    def is_final(self, retries: int) -> bool:
        """Whether the attempt after ``retries`` retries is the last one (its failure is then the room's)."""
        return retries >= self.max_retries


RETRY = RetryPolicy()


@dataclass(frozen=True)
class Stage:
    """One node of the graph: its name (the Celery task is ``roomcast.{name}``), whether it runs once per track,
    and the queue its Celery task is routed to."""

    name: str
    per_track: bool
    queue: str = DEFAULT_QUEUE

    @property
    def task_name(self) -> str:
        return f"roomcast.{self.name}"


INGEST = Stage("ingest", per_track=False)
TRACK = Stage("track", per_track=True, queue=TRANSCRIBE_QUEUE)
FINISH = Stage("finish", per_track=False)
GRAPH = (INGEST, TRACK, FINISH)


# The phases a room's tracks and finish run in, in order.
REPLAY, WORDS, FULL = "replay", "words", "full"
PHASES = {True: (REPLAY, WORDS), False: (FULL,)}


def phases(*, transcribe: bool, replay_first: bool) -> tuple[str, ...]:
    """The phases of a room's run: replay first only means something when the room is transcribed."""
    return PHASES[replay_first and transcribe]


def transcribes(phase: str) -> bool:
    """Whether the tracks are transcribed in ``phase`` (when the settings transcribe at all)."""
    return phase != REPLAY


def with_retries(stage: Stage, work: Callable[[bool], T], *, what: str, policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``work(final_attempt)`` as an executor in this process does, retrying as ``policy`` (by default
    :data:`RETRY`, read at each call) says."""
    policy = policy or RETRY
    retries = 0
    while True:
        try:
            return work(policy.is_final(retries))
        except StorageError as exc:
            delay = policy.delay(retries, exc)
            if delay is None:
                raise
            log.warning("%s: %s: %s; retrying in %.0f s", what, stage.name, exc, delay)
            sleep(delay)
            retries += 1


def run_name(stage: Stage, phase: str, track: int | None = None) -> str:
    """What a run of ``stage`` in ``phase`` is called on its lease and in the catalog's stage runs: ``ingest``,
    ``track-N`` and ``finish``; ``track-N-replay`` and ``finish-replay`` in the replay phase of replay first."""
    name = stage.name if track is None else f"{stage.name}-{track}"
    return f"{name}-{REPLAY}" if phase == REPLAY and stage is not INGEST else name
