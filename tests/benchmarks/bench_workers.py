"""Throughput of distributed mode: rooms per hour for the generated ``short`` room (about 43 s, 3 speakers, one
declined) with 1 and with 2 ``roomcast worker`` processes (concurrency 1 each), transcription off and on.

Real Redis, a local folder store and a SQLite catalog shared by the workers (one machine). Every room is a copy of
the same room under a new id, so no stage is skipped. Run by hand:

    .venv/bin/python -m tests.benchmarks.bench_workers [--rooms 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from tests.roomgen import make_room, manifest, write_manifest
from tests.servers import RedisServer, WorkerProcess
from workers.config import Settings
from workers.context import Context
from workers.distributed import submit_room


def run(base: Path, room: Path, workers: int, transcribe: bool, rooms: int) -> float:
    """Seconds from the first submission until every room is published."""
    folder = Path(tempfile.mkdtemp(dir=base))
    redis = RedisServer(folder)
    redis.start()
    settings = Settings(store=str(folder / "store"), database_url=f"sqlite:///{folder / 'catalog.sqlite'}",
                        broker_url=redis.url, cache_dir=folder / "cache", work_dir=folder / "work",
                        transcribe=transcribe)
    env = {"ROOMCAST_STORE": settings.store, "ROOMCAST_DATABASE_URL": settings.database_url,
           "ROOMCAST_BROKER_URL": redis.url, "ROOMCAST_TRANSCRIBE": "1" if transcribe else "0"}
    processes = [WorkerProcess(f"bench{n}", folder, env) for n in range(workers)]
    try:
        for process in processes:
            process.start()
        catalog = Context.of(settings).catalog
        ids = []
        for n in range(rooms):
            copy = folder / "rooms" / f"bench-{n}"
            shutil.copytree(room, copy)
            data = manifest(copy)
            data["id"] = f"bench-{n}"
            write_manifest(copy, data)
            ids.append(data["id"])
        started = time.monotonic()
        for room_id in ids:
            submit_room(settings, folder / "rooms" / room_id)
        while True:
            statuses = [getattr(catalog.get_episode(i), "status", "") for i in ids]
            if "failed" in statuses:
                raise SystemExit(f"a room failed; see the logs in {folder}")
            if all(s == "published" for s in statuses):
                return time.monotonic() - started
            time.sleep(0.5)
    finally:
        for process in processes:
            process.stop()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=4, help="rooms per measurement")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = Path(tempfile.mkdtemp(prefix="roomcast-bench-"))
    try:
        room = make_room("short", base / "room")
        print(f"room: short ({room.name}), {args.rooms} rooms per run, {os.cpu_count()} CPU(s)")
        print(f"{'transcribe':>10} {'workers':>7} {'seconds':>8} {'rooms/hour':>10}")
        for transcribe in (False, True):
            for workers in (1, 2):
                elapsed = run(base, room, workers, transcribe, args.rooms)
                print(f"{'on' if transcribe else 'off':>10} {workers:>7} {elapsed:8.1f} "
                      f"{args.rooms / elapsed * 3600:10.0f}", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
