"""Crash recovery: every stage a worker runs holds a lease in the catalog (:mod:`storage.leases`), renewed by a
heartbeat thread while the stage runs; a lease that expires (its worker died: SIGKILL, out of memory, a machine
lost) is taken over by any live worker, which enqueues the room again, so a lost room waits about a lease length
rather than the broker's visibility timeout. The stages re-run skip what is done (stored track results, a
published episode); a stage whose lease is live is never run twice at once: a second copy waits for the holder.

Also here: stopping a stage that runs past its time limit cleanly (its room failed with a message saying so), the
rooms no live worker holds (``roomcast status --stuck``), and the ``test_pause`` hook the recovery tests use.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from celery import signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from pipeline.errors import StorageError
from pipeline.room import MANIFEST_NAME
from storage.layout import INBOX_PREFIX
from storage.leases import LeaseBook, LeaseRecord
from storage.records import EpisodeRecord
from storage.stage_runs import stage_point
from workers.config import Settings
from workers.context import Context
from workers.inbox import STORE_REF
from workers.pauses import pause
from workers.runlog import measured

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class StageRef:
    """A stage of a room: ``stage`` is ``ingest``, ``track-N`` or ``finish`` (``track-N-replay`` and
    ``finish-replay`` in the replay phase of replay first); ``room_ref`` starts the room again."""

    episode_id: str
    stage: str
    room_ref: str

    @property
    def point(self) -> str:
        return stage_point(self.stage)


def ingest_ref(room_ref: str) -> StageRef:
    """The ingest stage of a queued room, named before the room is downloaded (from its inbox prefix, else its
    manifest), so a worker dying while it downloads is covered too."""
    inbox = f"{STORE_REF}{INBOX_PREFIX}/"
    if room_ref.startswith(inbox):
        return StageRef(room_ref[len(inbox):].strip("/"), "ingest", room_ref)
    try:
        episode_id = str(json.loads((Path(room_ref) / MANIFEST_NAME).read_text(encoding="utf-8"))["id"])
    except (OSError, ValueError, KeyError, TypeError):
        episode_id = Path(room_ref).name  # an unreadable manifest: ingest fails the room at once anyway
    return StageRef(episode_id, "ingest", room_ref)


def book(settings: Settings) -> LeaseBook:
    return LeaseBook(Context.of(settings).catalog)


def worker_name(hostname: str | None) -> str:
    return f"{hostname or 'worker'} pid {os.getpid()}"


def exclusive(settings: Settings, ref: StageRef, work: Callable[[], T], *, worker: str, task_id: str,
              done: Callable[[], bool] | None = None, skip_if_busy: bool = False) -> T | None:
    """Run ``work`` holding the stage's lease, renewed while it runs. While another process holds it live, wait
    for it (``done`` true: the stage's result is there, and ``work`` runs without the lease to return it), or with
    ``skip_if_busy`` return None at once (a duplicate ingest: the holder's run, or its takeover, goes on)."""
    leases = book(settings)
    while True:
        if done is not None and done():
            return work()
        lease = leases.acquire(episode_id=ref.episode_id, stage=ref.stage, worker=worker, room_ref=ref.room_ref,
                               task_id=task_id, duration_s=settings.lease_s)
        if lease is not None:
            break
        holder = leases.holder(ref.episode_id, ref.stage)
        if skip_if_busy:
            log.info("room %s: %s is held by %s; this copy ends", ref.episode_id, ref.stage,
                     holder.worker if holder else "another worker")
            return None
        log.info("room %s: %s is held by %s; waiting for it", ref.episode_id, ref.stage,
                 holder.worker if holder else "another worker")
        time.sleep(settings.lease_renew_s)
    heartbeat = Heartbeat(leases, lease, settings)
    heartbeat.start()

    def paused_work() -> T:
        pause(settings, ref.point, ref.episode_id)
        return work()

    try:
        return measured(settings, ref.episode_id, ref.stage, paused_work, worker=worker)
    except SoftTimeLimitExceeded:
        fail_timed_out(settings, lease, settings.soft_time_limit_s or settings.stage_time_limit_s)
        raise
    finally:
        heartbeat.stop()
        try:
            leases.release(lease)
        except StorageError as exc:  # the lease then expires by itself; its room is looked at again
            log.warning("room %s: could not release the lease on %s: %s", ref.episode_id, ref.stage, exc)


class Heartbeat(threading.Thread):
    """Renews a lease every ``lease_renew_s`` until stopped."""

    def __init__(self, leases: LeaseBook, lease: LeaseRecord, settings: Settings) -> None:
        super().__init__(name=f"lease {lease.episode_id}/{lease.stage}", daemon=True)
        self.leases, self.lease, self.settings = leases, lease, settings
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.settings.lease_renew_s):
            try:
                if not self.leases.renew(self.lease, self.settings.lease_s):
                    log.error("room %s: the lease on %s expired and was taken over; the stage goes on, and its "
                              "results are the same", self.lease.episode_id, self.lease.stage)
                    return
            except StorageError as exc:  # the catalog is briefly unreachable: try again at the next beat
                log.warning("room %s: renewing the lease on %s failed: %s", self.lease.episode_id,
                            self.lease.stage, exc)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def fail_timed_out(settings: Settings, lease: LeaseRecord, limit_s: float) -> None:
    """Mark the room of a stage stopped at its time limit failed, saying so, and drop the stage's lease."""
    message = (f"room {lease.episode_id!r}: stage {lease.stage} ran past its time limit of {limit_s:.0f} s on "
               f"{lease.worker} and was stopped. A track that never finishes decoding (a stalled network mount, a "
               f"damaged file) or a room longer than the limit allows does this: check the room's tracks or raise "
               f"ROOMCAST_STAGE_TIME_LIMIT_S, then submit the room again.")
    log.error("%s", message)
    leases = book(settings)
    Context.of(settings).catalog.set_failed(lease.episode_id, message)
    leases.release(lease)


def take_over_expired(settings: Settings, by: str) -> list[str]:
    """Enqueue again every room pending or processing whose stage lease expired (its worker is gone), once each;
    the room's history says which worker was lost and when. Returns a line per room."""
    from workers.distributed import enqueue

    leases = book(settings)
    lines = []
    for episode_id in sorted({lease.episode_id for lease in leases.expired()}):
        lost = leases.take_over(episode_id)
        if not lost:
            continue  # another process took it over first
        first = min(lost, key=lambda lease: lease.renewed_at)
        stages = ", ".join(sorted(lease.stage for lease in lost))
        message = (f"worker {first.worker} was lost during {stages}: its lease was last renewed at "
                   f"{first.renewed_at:%Y-%m-%d %H:%M:%S} UTC ({first.silent_s():.0f} s before); {by} enqueued the "
                   f"room again")
        if not leases.record_lost(episode_id, message):
            continue  # failed or published meanwhile: nothing owed
        enqueue(settings, first.room_ref)
        log.warning("room %s: %s", episode_id, message)
        lines.append(f"{episode_id}: enqueued again ({message})")
    return lines


@dataclass(frozen=True)
class Stuck:
    episode: EpisodeRecord
    reason: str


def stuck_rooms(settings: Settings) -> list[Stuck]:
    """Rooms pending or processing that no live worker holds and that have not moved for a lease length."""
    catalog = Context.of(settings).catalog
    leases = book(settings)
    held: dict[str, list[LeaseRecord]] = {}
    for lease in leases.leases():
        held.setdefault(lease.episode_id, []).append(lease)
    result = []
    for episode in catalog.stale_episodes(settings.lease_s):
        mine = held.get(episode.id, [])
        if any(lease.live() for lease in mine):
            continue
        if mine:
            lease = mine[0]
            reason = (f"{lease.stage}: {lease.worker} stopped renewing its lease {lease.silent_s():.0f} s ago; "
                      f"a worker or `roomcast scan` takes it over")
        else:
            reason = (f"no worker holds it ({episode.stage or episode.status}): queued behind other rooms, or its "
                      f"message was lost (`roomcast scan --requeue-after S` enqueues it again)")
        result.append(Stuck(episode, reason))
    return result


def describe_leases(leases: list[LeaseRecord]) -> str:
    """``track-0 by w1@host pid 12 for 40 s (renewed 3 s ago)``, for each lease of a room."""
    return "; ".join(f"{lease.stage} by {lease.worker} for {lease.age_s():.0f} s "
                     f"({'renewed' if lease.live() else 'EXPIRED, last renewed'} {lease.silent_s():.0f} s ago)"
                     for lease in leases)


# In a worker: the takeover watch runs in the main process; pool processes drop what they inherit from it.

_watch_stop = threading.Event()


def _watch(settings: Settings, by: str) -> None:
    while not _watch_stop.wait(settings.lease_check_s):
        try:
            take_over_expired(settings, by)
        except Exception:  # noqa: BLE001 - the watch must outlive a catalog or broker outage
            log.exception("lease watch: taking over expired stages failed; trying again in %.0f s",
                          settings.lease_check_s)


@signals.worker_ready.connect
def _start_watch(sender: Any = None, **_: Any) -> None:
    from workers.tasks import current_settings

    by = getattr(sender, "hostname", None) or "a worker"
    threading.Thread(target=_watch, args=(current_settings(), by), name="lease watch", daemon=True).start()


@signals.worker_shutdown.connect
def _stop_watch(**_: Any) -> None:
    _watch_stop.set()


@signals.worker_process_init.connect
def _forget_inherited(**_: Any) -> None:
    Context.forget_inherited()


@signals.task_failure.connect
def _on_task_failure(task_id: str | None = None, exception: BaseException | None = None, **_: Any) -> None:
    """A stage past its hard time limit: its pool process was killed, so the worker's main process fails the room."""
    if not isinstance(exception, TimeLimitExceeded) or not task_id:
        return
    from workers.tasks import current_settings

    settings = current_settings()
    try:
        lease = book(settings).by_task(task_id)
        if lease is not None:
            fail_timed_out(settings, lease, settings.stage_time_limit_s)
    except StorageError as exc:
        log.error("task %s ran past its time limit; its room could not be marked failed: %s", task_id, exc)
