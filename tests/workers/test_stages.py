"""The stage graph (workers.stages): declared once, retried the same way by every executor, and the same room
giving the same replay, transcript and chapters whichever executor runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import MediaError, StorageError
from workers import stages, tasks
from workers.config import Settings, load_settings
from workers.runner import process_room


def test_the_graph_is_ingest_then_tracks_then_finish_and_celery_runs_it() -> None:
    assert [(s.name, s.per_track) for s in stages.GRAPH] == [("ingest", False), ("track", True), ("finish", False)]
    for stage in stages.GRAPH:
        assert stage.task_name in tasks.app.tasks
    assert tasks.app.conf.task_routes == {"roomcast.track": {"queue": stages.TRANSCRIBE_QUEUE}}


def test_only_transient_storage_errors_are_retried_with_backoff() -> None:
    policy = stages.RetryPolicy(max_retries=8, base_s=5.0, cap_s=300.0)
    transient = StorageError("store: connection reset", transient=True)
    assert [policy.delay(n, transient) for n in range(8)] == [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    assert policy.delay(8, transient) is None
    assert policy.delay(0, StorageError("store: access denied")) is None
    assert policy.delay(0, MediaError("track: cannot decode")) is None
    assert not policy.is_final(7) and policy.is_final(8)


def test_in_process_nodes_are_retried_as_the_graph_says() -> None:
    waits: list[float] = []
    finals: list[bool] = []

    def flaky(final: bool) -> str:
        finals.append(final)
        if len(finals) < 3:
            raise StorageError("catalog: database is locked", transient=True)
        return "done"

    policy = stages.RetryPolicy(max_retries=2, base_s=1.0)
    assert stages.with_retries(stages.FINISH, flaky, what="room 'r'", policy=policy, sleep=waits.append) == "done"
    assert waits == [1.0, 2.0] and finals == [False, False, True]

    def always(final: bool) -> str:
        raise StorageError("catalog: database is locked", transient=True)

    waits.clear()
    with pytest.raises(StorageError, match="locked"):
        stages.with_retries(stages.TRACK, always, what="room 'r'", policy=policy, sleep=waits.append)
    assert waits == [1.0, 2.0]


def _outputs(store: Path, show: str, episode: str) -> dict[str, Any]:
    folder = store / "shows" / show / "episodes" / episode
    chapters = json.loads((folder / "chapters.json").read_text())["chapters"]
    out: dict[str, Any] = {"chapters": [(round(c["startTime"], 1), c["title"]) for c in chapters],
                           "assets": sorted(p.name for p in folder.iterdir())}
    if (folder / "transcript.txt").exists():
        out["transcript"] = (folder / "transcript.txt").read_text()
    return out


def _run(short_room: Path, folder: Path, *, processes: int, transcribe: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = Settings(store=str(folder / "store"), database_url=f"sqlite:///{folder / 'catalog.sqlite'}",
                        work_dir=folder / "work", transcribe=transcribe, min_chapter_s=10.0)
    summary = process_room(settings, short_room, processes=processes)
    assert summary["status"] == "published"
    return summary, _outputs(folder / "store", *_episode(folder / "store"))


def _episode(store: Path) -> tuple[str, str]:
    (show,) = (store / "shows").iterdir()
    (episode,) = (show / "episodes").iterdir()
    return show.name, episode.name


@pytest.mark.slow
def test_threads_and_the_eager_canvas_publish_the_same_room(short_room: Path, tmp_path: Path) -> None:
    one, one_out = _run(short_room, tmp_path / "j1", processes=1, transcribe=False)
    threads, threads_out = _run(short_room, tmp_path / "threads", processes=2, transcribe=False)
    assert one_out == threads_out and one_out["chapters"]
    assert one["duration_s"] == pytest.approx(threads["duration_s"], abs=0.05)


@pytest.mark.slow
@pytest.mark.model
def test_the_process_pool_and_the_eager_canvas_publish_the_same_room(short_room: Path, tmp_path: Path) -> None:
    one, one_out = _run(short_room, tmp_path / "j1", processes=1, transcribe=True)
    pool, pool_out = _run(short_room, tmp_path / "pool", processes=2, transcribe=True)
    assert one_out == pool_out and one_out["transcript"].strip()
    assert one["duration_s"] == pytest.approx(pool["duration_s"], abs=0.05)


@pytest.mark.slow
@pytest.mark.redis
def test_a_celery_worker_publishes_what_the_eager_canvas_does(short_room: Path, tmp_path: Path) -> None:
    """A real ``roomcast worker`` on a Redis broker, sharing a folder store and a SQLite catalog with this process."""
    from storage.catalog import Catalog
    from tests.servers import RedisServer, WorkerProcess, wait_for
    from workers.distributed import submit_room

    one, one_out = _run(short_room, tmp_path / "j1", processes=1, transcribe=False)
    folder = tmp_path / "celery"
    folder.mkdir()
    redis = RedisServer(folder)
    redis.start()
    settings = Settings(store=str(folder / "store"), database_url=f"sqlite:///{folder / 'catalog.sqlite'}",
                        broker_url=redis.url, work_dir=folder / "submit-work", cache_dir=folder / "submit-cache",
                        transcribe=False, min_chapter_s=10.0)
    env = {"ROOMCAST_STORE": settings.store, "ROOMCAST_DATABASE_URL": settings.database_url,
           "ROOMCAST_BROKER_URL": redis.url, "ROOMCAST_TRANSCRIBE": "0", "ROOMCAST_MIN_CHAPTER_S": "10"}
    worker = WorkerProcess("w1", folder, env)
    try:
        worker.start()
        submission = submit_room(settings, short_room)
        assert submission.outcome == "queued", submission.detail
        room_id = submission.room
        catalog = Catalog(settings.database_url)
        try:
            def done() -> bool:
                episode = catalog.get_episode(room_id)
                return episode is not None and episode.status in ("published", "failed")

            wait_for(done, 180, f"room {room_id} through the worker", 1.0)
            episode = catalog.get_episode(room_id)
            assert episode is not None and episode.status == "published", worker.text()[-3000:]
        finally:
            catalog.close()
    finally:
        worker.stop()
        redis.stop()
    assert _outputs(folder / "store", *_episode(folder / "store")) == one_out
    assert episode.duration_s == pytest.approx(one["duration_s"], abs=0.05)


def test_configuring_again_replaces_the_result_backend_the_app_had_built() -> None:
    """A process that ran a room on one Redis and then runs one in-process (or on another Redis) must not keep
    waiting on the first server: Celery builds its backend once and keeps it unless it is dropped."""
    before, eager = tasks.current_settings_or_none() or load_settings(), bool(tasks.app.conf.task_always_eager)
    try:
        tasks.configure(Settings(broker_url="redis://127.0.0.1:1/0"))
        assert tasks.app.backend.url == "redis://127.0.0.1:1/0"
        tasks.configure(Settings(broker_url="redis://127.0.0.1:1/0", result_backend="redis://127.0.0.1:2/0"))
        assert tasks.app.backend.url == "redis://127.0.0.1:2/0"
        tasks.configure(Settings(broker_url="redis://127.0.0.1:1/0"), eager=True)
        memory = tasks.app.backend
        assert type(memory).__name__ == "CacheBackend"
        tasks.configure(Settings(broker_url="redis://127.0.0.1:1/0"), eager=True)
        assert tasks.app.backend is memory  # the same configuration keeps the backend it built
    finally:
        tasks.configure(before, eager=eager)
