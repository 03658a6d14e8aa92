"""Processing a room in this process, with no broker and no worker.

The stages are the ones the Celery canvas runs (:mod:`workers.jobs`): ``ingest``, then one ``process_track`` per
track, then ``finish``. With one worker process the canvas itself runs in Celery's eager mode; with more, the
per-track stage is spread over a pool of processes (one Whisper model each, one CPU thread each), which is what
a chord over tracks does on a set of workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from workers import jobs, tasks
from workers.config import Settings
from workers.progress import notify

log = logging.getLogger(__name__)


def default_processes() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def process_room(settings: Settings, room_dir: Path, *, processes: int | None = None) -> dict[str, Any]:
    """Run the whole pipeline for the room in ``room_dir``; return the published episode's summary."""
    room_dir = Path(room_dir).resolve()
    processes = processes or default_processes()
    tasks.configure(settings, eager=True)
    if processes <= 1:
        return tasks.ingest_task.apply(args=(str(room_dir),)).get()
    job = jobs.ingest(settings, room_dir)
    keys: dict[int, str] = {}
    notify(job.episode_id, "analysing and transcribing tracks", 0.0)
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold model threads
    with ProcessPoolExecutor(max_workers=min(processes, len(job.tracks)), mp_context=context) as pool:
        futures = {pool.submit(jobs.process_track, settings, job, index): index for index in job.tracks}
        for future in as_completed(futures):
            keys[futures[future]] = future.result()
            notify(job.episode_id, "analysing and transcribing tracks", len(keys) / len(job.tracks))
    return jobs.finish(settings, job, [keys[i] for i in job.tracks])
