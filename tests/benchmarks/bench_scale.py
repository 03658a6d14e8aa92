"""Workers add up: 1, 2 and 3 ``roomcast worker`` processes (concurrency 1 each) on a real Redis broker, with
transcription (tiny.en, ``--device auto``), sharing a folder store and a SQLite catalog on this machine.

For each worker count: the time one long room (6 speakers) takes alone, and the time a batch of shorter rooms
(4 speakers) takes, as rooms per hour, room-hours per hour and rooms per hour per core. The per-stage CPU costs
(ingest, one track, finish) come from the catalog's stage runs (:mod:`storage.stage_runs`: the worker process
plus the ffmpeg processes it ran), per room-minute, and give the cost per room-hour at ``--price`` per core-hour.
Wall times on a machine shared with other work are distorted; the CPU figures much less so. Run by hand:

    .venv/bin/python -m tests.benchmarks.bench_scale [--rooms 3] [--room-minutes 2] [--long-minutes 6]
    .venv/bin/python -m tests.benchmarks.bench_scale --long-minutes 120   # the issue's 2-hour room
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from pipeline.devices import choose_device
from storage.records import StageRunRecord
from storage.stage_runs import StageLog, cost_report
from tests.benchmarks.benchrooms import build_room
from tests.servers import RedisServer, WorkerProcess
from workers.config import Settings
from workers.context import Context
from workers.cost_cli import DEFAULT_PRICE_PER_CORE_HOUR
from workers.distributed import submit_room


def run(base: Path, rooms: list[Path], workers: int) -> tuple[float, dict[str, list[StageRunRecord]]]:
    """Seconds from submitting ``rooms`` until all are published, and each room's stage runs."""
    folder = Path(tempfile.mkdtemp(dir=base))
    redis = RedisServer(folder)
    redis.start()
    settings = Settings(store=str(folder / "store"), database_url=f"sqlite:///{folder / 'catalog.sqlite'}",
                        broker_url=redis.url, cache_dir=folder / "cache", work_dir=folder / "work")
    env = {"ROOMCAST_STORE": settings.store, "ROOMCAST_DATABASE_URL": settings.database_url,
           "ROOMCAST_BROKER_URL": redis.url, "ROOMCAST_TRANSCRIBE": "1", "ROOMCAST_DEVICE": "auto"}
    processes = [WorkerProcess(f"scale{n}", folder, env, "--concurrency", "1") for n in range(workers)]
    try:
        for process in processes:
            process.start()
        catalog = Context.of(settings).catalog
        ids = []
        for room in rooms:
            copy = folder / "rooms" / room.name
            shutil.copytree(room, copy)
            ids.append(room.name)
        started = time.monotonic()
        for room_id in ids:
            submit_room(settings, folder / "rooms" / room_id)
        while True:
            statuses = [getattr(catalog.get_episode(i), "status", "") for i in ids]
            if "failed" in statuses:
                raise SystemExit(f"a room failed; see the logs in {folder}")
            if all(s == "published" for s in statuses):
                elapsed = time.monotonic() - started
                break
            time.sleep(0.5)
        log = StageLog(catalog)
        return elapsed, {i: log.runs(i) for i in ids}
    finally:
        for process in processes:
            process.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=3, help="rooms in the throughput batch")
    parser.add_argument("--room-minutes", type=float, default=2.0, help="length of each batch room")
    parser.add_argument("--long-minutes", type=float, default=6.0, help="length of the long room (120 for 2 h)")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to run")
    parser.add_argument("--price", type=float, default=DEFAULT_PRICE_PER_CORE_HOUR, help="$ per core-hour")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cores = len(os.sched_getaffinity(0))
    base = Path(tempfile.mkdtemp(prefix="roomcast-scale-"))
    try:
        batch = [build_room(base / f"scale-{n}", minutes=args.room_minutes, speakers=4, seed=20 + n).folder
                 for n in range(args.rooms)]
        long_room = build_room(base / "scale-long", minutes=args.long_minutes, speakers=6, seed=5).folder
        print(f"{cores} CPU core(s); Whisper tiny.en on {choose_device('auto').label} (device auto); batch of "
              f"{args.rooms} rooms x {args.room_minutes:g} min (4 speakers); long room {args.long_minutes:g} min "
              f"(6 speakers); price ${args.price}/core-hour")
        print(f"{'workers':>7} {'long room s':>11} {'x speed-up':>10} {'batch s':>8} {'rooms/h':>8} "
              f"{'room-h/h':>8} {'rooms/h/core':>12}")
        first_long = None
        ran: list[StageRunRecord] = []  # every stage run of every room and worker count
        minutes = 0.0
        for workers in [int(w) for w in args.workers.split(",")]:
            long_s, long_runs = run(base, [long_room], workers)
            batch_s, batch_runs = run(base, batch, workers)
            first_long = first_long or long_s
            rooms_per_hour = args.rooms / batch_s * 3600
            print(f"{workers:>7} {long_s:11.1f} {first_long / long_s:10.2f} {batch_s:8.1f} {rooms_per_hour:8.1f} "
                  f"{rooms_per_hour * args.room_minutes / 60:8.2f} {rooms_per_hour / min(workers, cores):12.1f}",
                  flush=True)
            spread = {r.worker.split()[0] for r in long_runs[long_room.name] if r.stage.startswith("track-")}
            print(f"        long room's 6 tracks ran on {len(spread)} worker(s)")
            ran += [r for runs in (*batch_runs.values(), *long_runs.values()) for r in runs]
            minutes += args.rooms * args.room_minutes + args.long_minutes
        # summed by kind of stage as `roomcast cost` sums them; per minute of all the rooms run (a room run again
        # for each worker count counts each time, which cost_report's room length would not)
        report = cost_report(ran, {})
        costs = {stage.point: stage.cpu_s for stage in report.stages}
        total = report.cpu_s
        print("CPU per room-minute by stage (all runs, from the catalog's stage runs):")
        for kind in ("ingest", "track", "finish"):
            print(f"  {kind:>7}: {costs.get(kind, 0.0) / minutes:6.2f} s")
        per_room_hour = total / minutes * 60
        print(f"  {'total':>7}: {total / minutes:6.2f} s per room-minute = {per_room_hour / 3600:.3f} core-hours "
              f"per room-hour = ${per_room_hour / 3600 * args.price:.4f} per room-hour at ${args.price}/core-hour")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
