"""The Celery app and its tasks: thin wrappers around :mod:`workers.jobs` and :mod:`workers.track`.

The canvas for one room: ``ingest`` validates it and settles its language, then replaces itself with a chord
over the room's tracks (``track``: analyse + transcribe, on the ``transcribe`` queue) whose body is ``finish``
(mix, master, chapters, transcripts, publish). Tasks pass job descriptions and storage keys, never audio.
The same canvas runs in-process with ``task_always_eager`` (``roomcast process``) and on workers. Replay first
(:data:`workers.stages.PHASES`): the ``replay`` phase's finish, once the replay is out, replaces itself with the
chord of the ``words`` phase.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery, Task, chord, group, signals
from celery.canvas import Signature

from pipeline.devices import hold_cpu_threads
from pipeline.errors import RoomcastError, StorageError
from workers import jobs, leases, runlog, track
from workers.config import Settings, load_settings
from workers.context import Context, Job, phases
from workers.stages import DEFAULT_QUEUE, FINISH, GRAPH, INGEST, REPLAY, RETRY, TRACK, WORDS, run_name

log = logging.getLogger(__name__)

T = TypeVar("T")


app = Celery("roomcast")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=DEFAULT_QUEUE,
    task_routes={stage.task_name: {"queue": stage.queue} for stage in GRAPH if stage.queue != DEFAULT_QUEUE},
    task_time_limit=6 * 3600,
    task_soft_time_limit=6 * 3600 - 60,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_settings: Settings | None = None


# Redis redelivers a message that was taken but never acknowledged (its worker died) once this much time has passed;
# it must exceed the longest task, or a slow task would also run a second time.
DEFAULT_VISIBILITY_TIMEOUT_S = 7 * 3600


_backend_url: str | None = None  # the result backend the app was last configured with


def configure(settings: Settings, *, eager: bool = False, visibility_timeout_s: float | None = None) -> None:
    """Bind the app to ``settings``: the broker for workers, or eager in-process execution."""
    global _settings, _backend_url
    _settings = settings
    timeout = visibility_timeout_s or DEFAULT_VISIBILITY_TIMEOUT_S
    backend = "cache+memory://" if eager else settings.result_backend or settings.broker_url
    # Look for such messages every few seconds (one cheap ZRANGE) rather than kombu's default of every 100 s.
    transport = {"visibility_timeout": timeout, "unacked_restore_interval": min(10.0, max(1.0, timeout / 5)),
                 "unacked_restore_throttle": 1}
    app.conf.update(
        broker_url=settings.broker_url,
        # In-process runs keep chord state in memory: no Redis needed to process one room on a laptop.
        result_backend=backend,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        task_always_eager=eager,
        task_eager_propagates=True,
        task_store_eager_result=False,
        task_time_limit=settings.stage_time_limit_s,
        task_soft_time_limit=settings.soft_time_limit_s,
    )
    # The app builds its result backend once, on first use, and keeps it whatever the configuration says after:
    # a process that ran one room on Redis and then runs another in-process (or on another Redis) would wait on
    # the first backend's server. Celery has no public call to drop it, so its caches (one shared by all threads
    # for a thread-safe backend, else one per thread) are emptied here, and the next use builds the new one.
    if backend != _backend_url:
        app._backend_cache = None
        app._local = threading.local()
        _backend_url = backend
    for name in (stage.task_name for stage in GRAPH):  # bound before this configuration
        app.tasks[name].time_limit = settings.stage_time_limit_s
        app.tasks[name].soft_time_limit = settings.soft_time_limit_s


def current_settings_or_none() -> Settings | None:
    return _settings


def current_settings() -> Settings:
    global _settings
    if _settings is None:
        configure(load_settings())
    assert _settings is not None
    return _settings


@signals.worker_process_init.connect
def _hold_threads(**_: Any) -> None:
    """A worker's pool process runs beside its siblings, one per core: its BLAS keeps to ``cpu_threads``."""
    hold_cpu_threads(current_settings().cpu_threads)


MAX_RETRIES = RETRY.max_retries


def _transient_retry(task: Task, exc: StorageError) -> Exception:
    """The graph's retry (:data:`workers.stages.RETRY`) as a Celery retry; errors that cannot pass fail at once."""
    countdown = RETRY.delay(task.request.retries, exc)
    if countdown is None:
        return exc
    log.warning("task %s: %s; retrying in %.0f s", task.name, exc, countdown)
    return task.retry(exc=exc, countdown=countdown, max_retries=RETRY.max_retries)


def _held(task: Task, ref: leases.StageRef, work: Callable[[], T], *, done: Callable[[], bool] | None = None,
          skip_if_busy: bool = False) -> T | None:
    """``work`` under the stage's lease (:mod:`workers.leases`), which records its run; in-process runs take none
    and record the run themselves."""
    if task.request.is_eager:
        return _measured(task, ref, work)
    return leases.exclusive(current_settings(), ref, work, worker=leases.worker_name(task.request.hostname),
                            task_id=str(task.request.id), done=done, skip_if_busy=skip_if_busy)


def _measured(task: Task, ref: leases.StageRef, work: Callable[[], T]) -> T:
    """``work`` without a lease, its run recorded in the catalog's stage runs (:mod:`workers.runlog`)."""
    worker = runlog.in_process_worker() if task.request.is_eager else leases.worker_name(task.request.hostname)
    return runlog.measured(current_settings(), ref.episode_id, ref.stage, work, worker=worker)


def _unless_failed(settings: Settings, run: Job, what: str) -> None:
    """The rest of a room whose run failed (a track past its time limit, an undecodable file) is not worked on."""
    episode = Context.of(settings).catalog.get_episode(run.episode_id)
    if episode is not None and episode.status == "failed":
        raise RoomcastError(f"room {run.episode_id!r}: {what} skipped, the room failed already: "
                            f"{episode.error.splitlines()[0] if episode.error else 'see roomcast status'}")


@app.task(name=INGEST.task_name, bind=True)
def ingest_task(self: Task, room_dir: str, skip_published: bool = False) -> Any:
    """Ingest a room (a folder, or ``store:inbox/{id}/``); queued rooms (``skip_published``) already published
    from the same inputs end here."""
    settings = current_settings()
    try:
        if skip_published:
            job = _held(self, leases.ingest_ref(room_dir), lambda: jobs.ingest_once(settings, room_dir),
                        skip_if_busy=True)
            if job is None:
                return {"episode": None, "status": "already published, or being ingested by another worker"}
        else:
            job = _measured(self, leases.ingest_ref(room_dir), lambda: jobs.ingest(settings, room_dir))
    except StorageError as exc:
        raise _transient_retry(self, exc) from exc
    return self.replace(room_canvas(job.in_phase(phases(settings)[0])))


@app.task(name=TRACK.task_name, bind=True)
def track_task(self: Task, job: dict[str, Any], track_index: int) -> str:
    settings = current_settings()
    run = Job.from_dict(job)
    key = track.track_result_key(settings, run, track_index)
    store = Context.of(settings).store
    try:
        if not self.request.is_eager:
            if jobs.published_from(Context.of(settings).catalog, run.episode_id, run.input_hash):
                return key  # a copy delivered again after its room was published (and its work/ results removed)
            _unless_failed(settings, run, f"track {track_index}")
        stage = run_name(TRACK, run.phase, track_index)
        result = _held(self, leases.StageRef(run.episode_id, stage, run.room_dir),
                       lambda: track.process_track(settings, run, track_index), done=lambda: store.exists(key))
        assert result is not None
        return result
    except StorageError as exc:
        raise _transient_retry(self, exc) from exc
    except RoomcastError as exc:  # e.g. a model that cannot load: the room fails, what is published stays
        jobs.fail_room(settings, run, f"track {track_index}: {exc}")
        raise


@app.task(name=FINISH.task_name, bind=True)
def finish_task(self: Task, result_keys: list[str], job: dict[str, Any]) -> dict[str, Any]:
    settings = current_settings()
    run = Job.from_dict(job)
    catalog = Context.of(settings).catalog
    first = run.phase == REPLAY

    def done() -> bool:
        return jobs.published_from(catalog, run.episode_id, run.input_hash) or (
            first and jobs.replay_out(catalog, run.episode_id, run.input_hash))

    try:
        if not self.request.is_eager:
            _unless_failed(settings, run, "finish")
        result = _held(self, leases.StageRef(run.episode_id, run_name(FINISH, run.phase), run.room_dir),
                       lambda: jobs.finish(settings, run, list(result_keys),
                                           final_attempt=RETRY.is_final(self.request.retries)), done=done)
    except StorageError as exc:
        raise _transient_retry(self, exc) from exc
    if first:  # the replay is out (or was, for a copy delivered again): the transcripts follow
        return self.replace(room_canvas(run.in_phase(WORDS)))
    assert result is not None
    return result


@app.task(name="roomcast.edit", bind=True)
def edit_task(self: Task, episode_id: str, request: dict[str, Any], by: str) -> dict[str, Any]:
    """Edit a published episode in place (:func:`workers.edit.edit_episode`)."""
    from pipeline.edits import EditRequest
    from workers.edit import edit_episode

    try:
        return edit_episode(current_settings(), episode_id, EditRequest.from_dict(request), by=by)
    except StorageError as exc:
        raise _transient_retry(self, exc) from exc


def room_canvas(job: Job) -> Signature:
    header = group(track_task.si(job.to_dict(), index) for index in job.tracks)
    return chord(header, finish_task.s(job.to_dict()))


@app.task(name="roomcast.scan", bind=True)
def scan_task(self: Task, inbox: str, requeue_after_s: float | None = None) -> list[str]:
    """The periodic scan (``roomcast beat``): submit the inbox's complete new rooms, re-enqueue stale ones."""
    from workers.distributed import requeue_stale, scan

    settings = current_settings()
    lines = [str(result) for result in scan(settings, inbox)]
    lines += leases.take_over_expired(settings, by="beat scan")
    if requeue_after_s:
        lines += [f"{episode}: enqueued again" for episode in requeue_stale(settings, requeue_after_s)]
    return lines
