"""Processing a room in this process, with no broker and no worker.

The stages are the graph of :mod:`workers.stages` (``ingest``, then one ``track`` per track, then ``finish``, in
each of the room's phases: replay first runs the tracks and the finish twice), retried as the graph says,
whichever way they run here. With one worker process the Celery canvas itself runs in eager mode; with more, the
track nodes are spread over a pool of processes (one Whisper model each, one CPU thread each, started while the
room is validated), which is what a chord over tracks does on a set of workers; with replay first the words
phase's tracks start as soon as the replay phase's are done, at a lower CPU priority, while this process mixes and
publishes the replay. Without transcription the track nodes (decoding, VAD, loudness) run on threads: they wait on
ffmpeg and on code that releases the GIL.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from pipeline import vad
from pipeline.devices import hold_cpu_threads
from pipeline.errors import RoomcastError
from pipeline.ffmpeg import AudioInfo, known_probes, remember_probes
from pipeline.manifest import MANIFEST_NAME, load_room
from storage.records import StageRunRecord
from workers import jobs, runlog, stages, track
from workers.config import Settings
from workers.context import Context, Job, phases, room_folder
from workers.progress import notify

log = logging.getLogger(__name__)


def default_processes() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def process_room(settings: Settings, room_dir: Path, *, processes: int | None = None) -> dict[str, Any]:
    """Run the whole pipeline for the room in ``room_dir``; return the published episode's summary."""
    room_dir = Path(room_dir).resolve()
    processes = processes or default_processes()
    if processes <= 1:
        from workers import tasks  # Celery (its import alone is 0.15 s) runs the canvas only here

        tasks.configure(settings, eager=True)
        return tasks.ingest_task.apply(args=(str(room_dir),)).get()
    workers = min(processes, _track_count(room_dir) or processes)
    if not settings.transcribe:
        # Analysis alone needs no model: threads suffice (ffmpeg decodes in its own process, the VAD and numpy
        # release the GIL) and no worker process has to start. The tracks start as soon as the room is validated;
        # one more thread meanwhile loads the VAD (needed once the first stretch of a track is decoded), opens the
        # catalog and records the episode (needed when the first track is done), then loads what finishing needs
        # and prepares the show, one after the other, every pool thread being left to a track.
        ingest = runlog.Span.start(stages.INGEST.name)
        try:
            room, digest = jobs.load_checked(settings, room_dir)
        except BaseException:
            _record_failed_ingest(settings, ingest, room_dir)
            raise
        job = jobs.new_job(settings, room, digest, room_dir)
        ingest_run = ingest.end(job.episode_id)
        ingest_aside, finish_aside = runlog.Aside(), runlog.Aside()  # what the recorder does for each
        with ThreadPoolExecutor(max_workers=workers) as threads, ThreadPoolExecutor(max_workers=1) as recorder:
            recorder.submit(ingest_aside.timed, vad.warm_up)
            recorded = recorder.submit(ingest_aside.timed, lambda: stages.with_retries(
                stages.INGEST, lambda _final: jobs.record_job(settings, room, digest), what=f"room {room.id!r}"))
            recorder.submit(finish_aside.timed, jobs.load_finish_modules)
            # the show's artwork drawn on a first episode
            show = recorder.submit(finish_aside.timed, jobs.prepare_show, settings, room.show)
            try:
                keys = _run_tracks(threads, settings, job, recorded=recorded, aside=finish_aside)
            except BaseException as exc:
                threads.shutdown(cancel_futures=True)  # the tracks not started yet never start
                jobs.discard_work(settings, job)
                if not recorded.exception() and not isinstance(exc, KeyboardInterrupt):
                    Context.of(settings).catalog.set_failed(job.episode_id, str(exc))
                raise
            finally:
                # the ingest ends with the episode recorded (after the VAD's load: ingest_aside is whole then); its
                # run is recorded whether the tracks failed or not, as failed when the episode was not recorded
                outcome = "done" if recorded.exception() is None else "failed"
                runlog.record_run(settings, runlog.with_cpu(dataclasses.replace(ingest_run, outcome=outcome),
                                                            ingest_aside.take()))
        # a show that could not be prepared is prepared again by finish, which records what went wrong
        prepared = None if show.exception() else show.result()
        return _finish(settings, job, keys, aside=finish_aside, show=prepared)
    ingested: Job | None = None
    try:
        with worker_pool(settings, workers) as pool:
            # the workers start (imports, Whisper model) while this process validates the room
            warming = [pool.submit(_warm_up, settings) for _ in range(workers)]
            started = time.monotonic()
            try:
                span = runlog.Span.start(stages.INGEST.name)
                try:
                    ingested = stages.with_retries(stages.INGEST, lambda _final: jobs.ingest(settings, room_dir),
                                                   what=f"room {room_dir.name!r}")
                except BaseException:
                    _record_failed_ingest(settings, span, room_dir)
                    raise
                runlog.record_run(settings, span.end(ingested.episode_id))
                aside = runlog.Aside()
                job, keys, replay_out = _tracks_on_pool(pool, settings, ingested, warming, started, aside)
            except BaseException:
                pool.shutdown(cancel_futures=True)  # the tracks not started yet never start
                raise
    except BaseException:
        if ingested is not None:  # every pool process has ended: no track writes a decode after this
            jobs.discard_work(settings, ingested)
        raise
    summary = _finish(settings, job, keys, aside=aside)
    if replay_out is not None:
        summary["replay_published_after_s"] = round(replay_out.result(), 2)
    return summary


def _record_failed_ingest(settings: Settings, span: runlog.Span, room_dir: Path) -> None:
    """Record the run of an ingest that failed (a room that fails is paid for too), under the room's id as its
    manifest gives it, else its folder's name."""
    from workers.leases import ingest_ref  # the catalog's modules: never imported by a track's worker process

    runlog.record_run(settings, span.end(ingest_ref(str(room_dir)).episode_id, "failed"))


def _tracks_on_pool(pool: ProcessPoolExecutor, settings: Settings, job: Job, warming: list[Future[None]],
                    started: float, aside: runlog.Aside) -> tuple[Job, dict[int, str], Future[float] | None]:
    """Run the tracks of the ingested ``job`` on ``pool`` (replay first: the replay phase's, then the words
    phase's while the replay is published), once ``warming`` (the workers' model loads) is done for the last
    phase: the job of the last phase, its track results, and the replay's publish (when it was out, in seconds
    from ``started``)."""
    run_phases = phases(settings)
    with ThreadPoolExecutor(max_workers=1) as finisher:
        replay_out: Future[float] | None = None  # when the replay was out, in seconds from the start
        if run_phases[0] == stages.REPLAY:  # the replay out first: its tracks need no model, its mix no transcript
            replay = job.in_phase(stages.REPLAY)
            replay_aside = runlog.Aside()
            replay_keys = _run_tracks(pool, settings, replay, aside=replay_aside)

            def publish_replay() -> float:
                _finish(settings, replay, replay_keys, aside=replay_aside)
                return time.monotonic() - started

            # the replay is mixed and published here while the pool transcribes (each track from the
            # analysis the replay phase stored), the pool's processes yielding the CPU to the replay
            replay_out = finisher.submit(publish_replay)
        job = job.in_phase(run_phases[-1])
        try:
            for warm in warming:
                warm.result()  # a model that cannot load fails the room here (its replay stays out)
            keys = _run_tracks(pool, settings, job, recorded=replay_out, background=replay_out is not None,
                               aside=aside)
        except RoomcastError as exc:
            if replay_out is not None:
                replay_out.exception()  # the replay is out, or has failed, before the room is marked failed
            jobs.fail_room(settings, job, str(exc))
            raise
    return job, keys, replay_out


def _finish(settings: Settings, job: Job, keys: dict[int, str], *, aside: runlog.Aside | None = None,
            **options: Any) -> dict[str, Any]:
    """The finish of ``job``, each attempt recorded in the catalog's stage runs (the first also given what
    ``aside`` holds: what this process did for the finish while the tracks ran)."""
    def attempt(final: bool) -> dict[str, Any]:
        return runlog.measured(settings, job.episode_id, stages.run_name(stages.FINISH, job.phase),
                               lambda: jobs.finish(settings, job, [keys[i] for i in job.tracks],
                                                   final_attempt=final, **options), aside=aside)

    return stages.with_retries(stages.FINISH, attempt, what=f"room {job.episode_id!r}")


def _run_tracks(pool: Executor, settings: Settings, job: Job, *, recorded: Future[Any] | None = None,
                background: bool = False, aside: runlog.Aside | None = None) -> dict[int, str]:
    """Every track of ``job`` through ``process_track`` on ``pool``. With ``recorded`` (the episode being recorded
    in the catalog meanwhile, and the modules of the finish loaded after; or its replay being published), the
    tracks' progress is reported once it is, and a failure to record it ends the run at once. The progress is
    recorded in the catalog from here, never by the tracks: a worker process opens no catalog (SQLAlchemy's
    import and the schema check cost each about 0.3 s of CPU).
    ``background``: the tracks run behind ``recorded``, the replay's publish, whose own progress is shown until it
    is out; the pool's processes lower their CPU priority first (for good: this run's last tracks).
    Each track's run is recorded in the catalog's stage runs; ``aside`` is given this thread's CPU meanwhile (the
    finish's modules loaded, the progress recorded), for the finish's record."""
    keys: dict[int, str] = {}
    own = runlog.thread_cpu_s()
    stage = track.track_stage(settings, job)
    if not background:
        notify(job.episode_id, stage, 0.0)
    order = _heaviest_first(settings, job)
    probes = known_probes()  # every track was probed by ingest here: a worker process need not probe them again
    threaded = isinstance(pool, ThreadPoolExecutor)
    children = runlog.children_cpu_s()
    futures = {pool.submit(_process_track, settings, job, index, probes, background, threaded): index
               for index in order}
    if recorded is None:
        jobs.load_finish_modules()  # while the tracks are worked on, not after
    pending: set[Future[Any]] = set(futures) | ({recorded} if recorded is not None else set())
    ran: list[StageRunRecord] = []
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future is recorded:
                    future.result()  # the catalog's failure ends the run here
                else:
                    error = future.exception()
                    if error is not None:  # a track's failure ends the run here
                        ran += [r for r in [getattr(error, "stage_run", None)] if isinstance(r, StageRunRecord)]
                        raise error
                    keys[futures[future]], track_run = future.result()
                    ran.append(track_run)
                if not background or (recorded is not None and recorded.done()):
                    notify(job.episode_id, stage, len(keys) / len(job.tracks))
            if recorded is None or recorded.done():
                track.report_tracks(settings, job, len(keys))
    finally:
        if aside is not None:
            aside.add(runlog.thread_cpu_s() - own)
        if threaded:  # the tracks' ffmpeg processes ran in this process: shared among them
            ran = runlog.share_children(ran, runlog.children_cpu_s() - children)
        # on threads, the catalog is opened beside the tracks (``recorded``): their runs are recorded once it is
        # (waiting for it when a track failed first), a failed track's too
        if not threaded or recorded is None or recorded.exception() is None:
            for track_run in ran:
                runlog.record_run(settings, track_run)
    return keys


# What analysing a second of track costs, by codec, relative to PCM: decoding to 16 kHz, the VAD and the meter,
# measured here on 10-minute tracks (48 kHz Opus 1.9 s, 22 kHz MP3 0.95 s, 44.1 kHz PCM 0.85 s, 16 kHz FLAC
# 0.73 s). A codec not listed counts as the dearest.
ANALYSIS_COST = {"pcm_s16le": 1.0, "pcm_s24le": 1.0, "pcm_f32le": 1.0, "flac": 0.85, "mp3": 1.1, "opus": 2.2}


def _heaviest_first(settings: Settings, job: Job) -> list[int]:
    """The room's tracks, the longest to work on first, so the pool does not end waiting on one big track.
    (The manifest was validated by ingest in this process: loading it again reuses its probes.)"""
    room = load_room(room_folder(settings, job.room_dir), verify_decoding=False)
    worst = max(ANALYSIS_COST.values())
    cost = {t.index: t.info.duration * ANALYSIS_COST.get(t.info.codec, worst) for t in room.tracks}
    return sorted(job.tracks, key=lambda index: -cost.get(index, 0.0))


def _track_count(room_dir: Path) -> int:
    """How many tracks the manifest lists (0 when it cannot be read: ingest reports that)."""
    try:
        tracks = json.loads((room_dir / MANIFEST_NAME).read_text(encoding="utf-8")).get("tracks")
    except (OSError, ValueError, AttributeError):
        return 0
    return len(tracks) if isinstance(tracks, list) else 0


BACKGROUND_NICE = 10  # CPU shares of about 1 to 10 against a process at the default priority


# The CPU of this worker process already given to the tracks it ran: its first track is given what the process
# took to start (imports, the Whisper model), as a Celery worker's first track is.
_billed_s = 0.0


def _process_track(settings: Settings, job: Job, index: int, probes: dict[tuple[str, int, int, int], AudioInfo],
                   background: bool = False, threaded: bool = False) -> tuple[str, StageRunRecord]:
    """One track of ``job`` on a pool: its result's key, and its run (for the catalog's stage runs: attached as
    ``stage_run`` to what it raises). ``threaded``: on a thread of the run's own process, its CPU then the
    thread's alone (:func:`_run_tracks` gives it its share of the ffmpeg time)."""
    global _billed_s
    remember_probes(probes)
    if background and os.getpriority(os.PRIO_PROCESS, 0) < BACKGROUND_NICE:
        os.setpriority(os.PRIO_PROCESS, 0, BACKGROUND_NICE)
    clock = runlog.thread_cpu_s if threaded else runlog.process_cpu_s
    span = runlog.Span.start(stages.run_name(stages.TRACK, job.phase, index),
                             cpu_start=clock() if threaded else _billed_s)
    try:
        key = stages.with_retries(
            stages.TRACK, lambda _final: track.process_track(settings, job, index, keep_decoded=True, report=False),
            what=f"room {job.episode_id!r}: track {index}")
    except Exception as exc:
        exc.stage_run = _ended(span, job, "failed", clock(), threaded)  # type: ignore[attr-defined]
        raise
    return key, _ended(span, job, "done", clock(), threaded)


def _ended(span: runlog.Span, job: Job, outcome: str, cpu: float, threaded: bool) -> StageRunRecord:
    global _billed_s
    if not threaded:
        _billed_s = cpu
    return span.end(job.episode_id, outcome, cpu_end=cpu)


def worker_pool(settings: Settings, workers: int) -> ProcessPoolExecutor:
    """The in-process run's worker processes: spawned (never forked from a process that may hold model threads),
    each holding its BLAS to ``cpu_threads`` (:func:`pipeline.devices.hold_cpu_threads`)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=hold_cpu_threads, initargs=(settings.cpu_threads,))


def _warm_up(settings: Settings) -> None:
    """Load in a pool worker what every track needs: the pipeline's modules, and the Whisper model."""
    if settings.transcribe:
        from workers.transcription import speech_model

        speech_model(settings)
