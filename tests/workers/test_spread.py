"""The per-track stages of one room spread over the workers: a real Redis broker, two real ``roomcast worker``
processes (concurrency 1 each) sharing a folder store and a SQLite catalog, and the catalog's record of which
worker ran each stage (:mod:`storage.stage_runs`)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from storage.stage_runs import StageLog
from tests.roomgen import manifest, write_manifest
from tests.servers import RedisServer, WorkerProcess, wait_for
from workers.cli import main
from workers.config import Settings
from workers.context import Context
from workers.distributed import submit_room

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture()
def two_workers(tmp_path: Path) -> Iterator[Settings]:
    redis = RedisServer(tmp_path)
    redis.start()
    settings = Settings(store=str(tmp_path / "store"), database_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                        broker_url=redis.url, cache_dir=tmp_path / "cache", work_dir=tmp_path / "work",
                        transcribe=False, min_chapter_s=10.0)
    # Every track stage takes at least a second (the test hook), so a worker holding one leaves the next to the
    # other worker however fast this machine is.
    env = {"ROOMCAST_STORE": settings.store, "ROOMCAST_DATABASE_URL": settings.database_url,
           "ROOMCAST_BROKER_URL": redis.url, "ROOMCAST_TRANSCRIBE": "0", "ROOMCAST_MIN_CHAPTER_S": "10",
           "ROOMCAST_TEST_PAUSE": "track:1"}
    workers = [WorkerProcess(name, tmp_path, env, "--concurrency", "1") for name in ("w1", "w2")]
    try:
        for worker in workers:
            worker.start()
        yield settings
    finally:
        for worker in workers:
            worker.stop()
        redis.stop()


def test_tracks_of_one_room_run_on_both_workers(two_workers: Settings, sample_room: Path, tmp_path: Path) -> None:
    room = tmp_path / "rooms" / "spread"
    shutil.copytree(sample_room, room)
    data = manifest(room)
    data["id"] = "spread"
    write_manifest(room, data)
    assert submit_room(two_workers, room).outcome == "queued"
    catalog = Context.of(two_workers).catalog
    wait_for(lambda: getattr(catalog.get_episode("spread"), "status", "") in ("published", "failed"), 300,
             "room spread")
    assert catalog.get_episode("spread").status == "published"

    runs = StageLog(catalog).runs("spread")
    tracks = [run for run in runs if run.stage.startswith("track-")]
    assert len(tracks) >= 4 and len({run.stage for run in tracks}) == len(tracks)  # each track ran once
    assert {run.stage for run in runs} >= {"ingest", "finish"}
    assert all(run.outcome == "done" and run.finished_at >= run.started_at for run in runs)
    hosts = {run.worker.split()[0] for run in tracks}
    assert hosts == {"w1@test", "w2@test"}, [(run.stage, run.worker) for run in tracks]
    assert all(run.wall_s >= 1.0 for run in tracks)  # the pause ran inside the recorded stage
    assert all(run.cpu_s > 0 for run in runs)

    # what an operator reads of those runs: each stage's worker, and what the room cost per room-hour
    env = {"ROOMCAST_DATABASE_URL": two_workers.database_url, "ROOMCAST_STORE": two_workers.store}
    status = CliRunner().invoke(main, ["status", "spread"], env=env)
    assert status.exit_code == 0, status.output
    for run in runs:
        assert re.search(rf"\b{run.stage}\s+done\b.*{re.escape(run.worker)}$", status.output, re.M), status.output
    cost = CliRunner().invoke(main, ["cost"], env=env)
    assert cost.exit_code == 0, cost.output
    total = sum(run.cpu_s for run in runs)
    found = re.search(rf"^all\s+{len(runs)}\s+0\s+([0-9.]+)\s", cost.output, re.M)
    assert found and float(found.group(1)) == pytest.approx(total, abs=0.06), cost.output
    hours = catalog.get_episode("spread").duration_s / 3600
    assert f"1 room, {hours:.2f} room-hours" in cost.output
    per_room_hour = re.search(r"core-hours per room-hour: ([0-9.]+)", cost.output)
    assert per_room_hour and float(per_room_hour.group(1)) == pytest.approx(total / 3600 / hours, abs=6e-5)
