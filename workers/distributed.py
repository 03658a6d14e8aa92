"""Distributed mode: submitting rooms to the workers, scanning an inbox, re-enqueueing lost work, and starting a
worker or the beat scheduler.

``submit``: validate locally, upload the room to the store's inbox, record it as ``pending`` in the catalog (at
most once per room id and input hash), enqueue ``ingest`` with the room's store reference. The catalog, not the
broker, is the record of what is owed: an episode left pending or processing for longer than any stage takes
(its message lost with a broker that restarted without persistence) is enqueued again by :func:`requeue_stale`,
which ``roomcast beat`` runs with every scan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InvalidRoom, RoomcastError
from pipeline.manifest import MANIFEST_NAME, content_hash, load_room
from storage.leases import LeaseBook
from storage.objects import open_store
from workers import jobs, stages, tasks
from workers.config import Settings
from workers.context import Context
from workers.inbox import (
    inbox_prefix,
    local_candidates,
    materialize,
    store_candidates,
    store_ref,
    upload_room,
)

log = logging.getLogger(__name__)

DEFAULT_QUEUES = (stages.DEFAULT_QUEUE, stages.TRANSCRIBE_QUEUE)


@dataclass(frozen=True)
class Submission:
    """What happened to one room: ``queued``, ``duplicate`` (already pending, processing or published from the
    same inputs), ``incomplete`` (skipped until every file is there) or ``invalid``."""

    room: str
    outcome: str
    detail: str = ""
    task_id: str | None = None

    def __str__(self) -> str:
        return f"{self.room}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")


def enqueue(settings: Settings, ref: str) -> str:
    """Send ``ingest`` for a room in the store to the broker; returns the task id."""
    if tasks.current_settings_or_none() != settings:  # a worker's own app (its takeover watch) stays as it is
        tasks.configure(settings)
    # An explicit connection: the app's pooled one stays bound to whichever broker this process used first; and
    # no result to wait for (the catalog says how the room went), so the result backend is never touched here.
    with tasks.app.connection_for_write(settings.broker_url) as connection:
        result = tasks.ingest_task.apply_async(args=(ref,), kwargs={"skip_published": True}, connection=connection,
                                               ignore_result=True)
    return str(result.id)


def submit_room(settings: Settings, room_dir: Path) -> Submission:
    """Validate ``room_dir``, upload it to the inbox, record it and enqueue it, unless the same inputs are
    already pending, processing or published. Raises :class:`InvalidRoom` for a room that cannot be processed."""
    room = load_room(room_dir)
    digest = content_hash(room)
    ctx = Context.of(settings)
    if jobs.published_from(ctx.catalog, room.id, digest):
        return Submission(room.id, "duplicate", "already published from these inputs")
    ref = upload_room(ctx.store, room)
    blocked = ctx.catalog.claim_submission(episode_id=room.id, show_id=room.show, title=room.title,
                                           visibility=room.visibility, input_hash=digest)
    if blocked is not None:
        return Submission(room.id, "duplicate", f"already {blocked} from these inputs")
    try:
        task_id = enqueue(settings, ref)
    except Exception as exc:  # the broker is down: say so in status; a later submit or scan queues it again
        ctx.catalog.set_failed(room.id, f"could not enqueue room {room.id!r} on {settings.broker_url}: {exc}; "
                                        f"submit it again when the broker is up")
        raise RoomcastError(f"room {room.id!r}: the broker at {settings.broker_url} refused it: {exc}") from exc
    log.info("room %s: queued as %s (task %s)", room.id, ref, task_id)
    return Submission(room.id, "queued", ref, task_id)


def scan(settings: Settings, inbox: str) -> list[Submission]:
    """Submit every complete room under ``inbox`` (a folder of room folders, or ``s3://bucket/prefix``) that is
    not yet processed; rooms still missing a file are skipped until a later scan finds them whole."""
    results = []
    if inbox.startswith("s3://"):
        source = open_store(inbox)
        candidates = list(store_candidates(source))
    else:
        if not Path(inbox).is_dir():
            raise RoomcastError(f"inbox {inbox}: not a folder; give a folder of room folders or s3://bucket/prefix")
        candidates = list(local_candidates(Path(inbox)))
    for candidate in candidates:
        if not candidate.complete:
            results.append(Submission(candidate.name, "incomplete", "waiting for " + ", ".join(candidate.missing)))
            continue
        try:
            folder = Path(candidate.location)
            if inbox.startswith("s3://"):
                folder = materialize(source, candidate.location, Path(settings.cache_dir) / "scan")
            results.append(submit_room(settings, folder))
        except InvalidRoom as exc:
            Context.of(settings).catalog.set_failed(exc.room, str(exc))
            results.append(Submission(candidate.name, "invalid", str(exc).splitlines()[0]))
    for result in results:
        log.info("scan %s: %s", inbox, result)
    return results


def requeue_stale(settings: Settings, older_than_s: float) -> list[str]:
    """Enqueue again the episodes pending or processing whose catalog row has not moved for ``older_than_s``
    seconds and whose room is in the store's inbox. Stages already done are skipped by the workers."""
    ctx = Context.of(settings)
    requeued = []
    held = {lease.episode_id for lease in LeaseBook(ctx.catalog).leases() if lease.live()}
    for episode in ctx.catalog.stale_episodes(older_than_s):
        if episode.id in held:
            continue  # a live worker is on it (a slow stage): not lost
        prefix = inbox_prefix(episode.id)
        if not ctx.store.exists(prefix + MANIFEST_NAME):
            continue  # processed from a local folder, not through the inbox: nothing a worker could pick up
        ctx.catalog.touch(episode.id)
        enqueue(settings, store_ref(prefix))
        requeued.append(episode.id)
        log.warning("episode %s: no progress for %.0f s (stage %r); enqueued again", episode.id, older_than_s,
                    episode.stage)
    return requeued


def run_worker(settings: Settings, *, concurrency: int, queues: tuple[str, ...] = DEFAULT_QUEUES,
               hostname: str | None = None, visibility_timeout_s: float | None = None,
               loglevel: str = "INFO") -> None:
    """Run a Celery worker for roomcast's tasks in this process (returns when the worker stops)."""
    tasks.configure(settings, visibility_timeout_s=visibility_timeout_s)
    argv = ["worker", f"--concurrency={concurrency}", f"--queues={','.join(queues)}", "--pool=prefork",
            f"--loglevel={loglevel}", "--without-gossip", "--without-mingle"]
    if hostname:
        argv.append(f"--hostname={hostname}")
    tasks.app.worker_main(argv)


def run_beat(settings: Settings, inbox: str, *, interval_s: float, requeue_after_s: float | None,
             loglevel: str = "INFO") -> None:
    """Run Celery beat: a scan of ``inbox`` (and a sweep for stale episodes) every ``interval_s`` seconds."""
    tasks.configure(settings)
    tasks.app.conf.beat_schedule = {
        "scan-inbox": {"task": "roomcast.scan", "schedule": interval_s, "args": (inbox, requeue_after_s)},
    }
    Path(settings.work_dir).mkdir(parents=True, exist_ok=True)
    schedule = Path(settings.work_dir) / "celerybeat-schedule"
    tasks.app.Beat(loglevel=loglevel, schedule=str(schedule)).run()
