"""Crash recovery with stage leases, on real servers: Redis (Celery's default visibility timeout of 7 hours, so
nothing here is rescued by the broker redelivering), SeaweedFS, a PostgreSQL catalog, and real ``roomcast
worker`` processes killed with SIGKILL at chosen points. Workers hold leases of a few seconds here.

The points are reached with the ``test_pause`` hook (``ROOMCAST_TEST_PAUSE``): the victim sleeps there, holding
its lease, until it is killed; the worker started after it runs without the hook."""

from __future__ import annotations

import posixpath
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from feeds.page_publish import WORD_TIMES_NAME, episode_page_key
from storage.catalog import Catalog
from storage.leases import LeaseBook, LeaseRecord
from storage.objects import ObjectStore
from tests.roomgen import manifest, write_manifest
from tests.s3servers import WeedServer
from tests.servers import PostgresServer, RedisServer, WorkerProcess, wait_for
from workers.cli import main
from workers.config import Settings
from workers.context import Context
from workers.distributed import submit_room

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.postgres, pytest.mark.slow]

LEASE_S = 4.0
RECOVERY_S = 120  # the room is published this long after its worker was killed, at most
SHOW = "founders-hour"


@dataclass
class Cluster:
    settings: Settings
    env: dict[str, str]
    folder: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def worker(self, name: str, *args: str, **env: str) -> WorkerProcess:
        process = WorkerProcess(name, self.folder, {**self.env, **env}, *args)
        process.start()
        self.workers.append(process)
        return process

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()

    @property
    def catalog(self) -> Catalog:
        return Context.of(self.settings).catalog

    @property
    def store(self) -> ObjectStore:
        return Context.of(self.settings).store

    def leases(self, episode_id: str) -> list[LeaseRecord]:
        return LeaseBook(self.catalog).leases(episode_id)

    def status(self, episode_id: str) -> str:
        episode = self.catalog.get_episode(episode_id)
        return episode.status if episode else "absent"

    def wait_done(self, episode_id: str, timeout: float) -> str:
        try:
            wait_for(lambda: self.status(episode_id) in ("published", "failed"), timeout, f"room {episode_id}")
        except TimeoutError as exc:
            logs = "\n".join(f"--- {w.name}\n{w.text()[-5000:]}" for w in self.workers)
            raise AssertionError(f"{exc}: {self.catalog.get_episode(episode_id)}\n{logs}") from exc
        return self.status(episode_id)

    def feed_titles(self) -> list[str]:
        """The titles in the show's feed (none before its first episode made one)."""
        key = f"shows/{SHOW}/feed.xml"
        if not self.store.exists(key):
            return []
        return [e.title for e in feedparser.parse(self.store.get_bytes(key)).entries]

    def cli(self, *args: str) -> str:
        env = {**self.env, "ROOMCAST_CACHE_DIR": str(self.folder / "cli-cache"),
               "ROOMCAST_WORK_DIR": str(self.folder / "cli-work")}
        return CliRunner().invoke(main, list(args), env=env).output


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: WeedServer) -> Iterator[Cluster]:
    if not PostgresServer.available():
        pytest.skip("PostgreSQL 15 server binaries are not installed (Debian package postgresql)")
    folder = tmp_path_factory.mktemp("recovery")
    postgres = PostgresServer(tmp_path_factory.mktemp("recovery-pg"))
    postgres.start()
    redis = RedisServer(folder)
    redis.start()
    s3_server.create_bucket("rc-recovery")
    settings = Settings(store="s3://rc-recovery/podcasts", database_url=postgres.url, broker_url=redis.url,
                        cache_dir=folder / "submit-cache", work_dir=folder / "submit-work", transcribe=False,
                        min_chapter_s=10.0, lease_s=LEASE_S, lease_check_s=1.0)
    env = {**s3_server.env, "ROOMCAST_STORE": settings.store, "ROOMCAST_DATABASE_URL": postgres.url,
           "ROOMCAST_BROKER_URL": redis.url, "ROOMCAST_TRANSCRIBE": "0", "ROOMCAST_MIN_CHAPTER_S": "10",
           "ROOMCAST_LEASE_S": str(LEASE_S), "ROOMCAST_LEASE_CHECK_S": "1"}
    state = Cluster(settings, env, folder)
    try:
        yield state
    finally:
        state.stop_workers()
        redis.stop()
        postgres.stop()


@pytest.fixture
def workers(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster, its workers stopped after the test."""
    try:
        yield cluster
    finally:
        cluster.stop_workers()


def room_variant(room: Path, folder: Path, room_id: str) -> Path:
    copy = folder / room_id
    shutil.copytree(room, copy)
    data = manifest(copy)
    data.update(id=room_id, title=f"Room {room_id}")
    write_manifest(copy, data)
    return copy


def held_by(cluster: Cluster, episode_id: str, point: str, worker: WorkerProcess) -> list[LeaseRecord]:
    return [lease for lease in cluster.leases(episode_id)
            if lease.stage.startswith(point) and lease.worker.startswith(f"{worker.name}@") and lease.live()]


def assert_published_once(cluster: Cluster, episode_id: str) -> None:
    """Published, one feed item, every object under the episode's prefix one of its assets, no work left."""
    assert cluster.status(episode_id) == "published"
    assert cluster.feed_titles().count(f"Room {episode_id}") == 1
    episode = cluster.catalog.get_episode(episode_id)
    stored = {info.key for info in cluster.store.list(f"shows/{SHOW}/episodes/{episode_id}/")}
    assert episode is not None
    page = episode_page_key(episode)
    assert page in stored  # the episode page, published with the assets before the feed
    derived = {page, posixpath.dirname(page) + "/" + WORD_TIMES_NAME}  # the page and, with a transcript, its data
    assert stored - derived == {asset.key for asset in episode.assets}
    assert "replay.mp3" in {a.name for a in episode.assets}
    assert not list(cluster.store.list(f"work/{episode_id}/"))
    assert not cluster.leases(episode_id)
    assert [job.status for job in cluster.catalog.jobs(episode_id)].count("done") == 1


def before_feed(cluster: Cluster, episode_id: str, worker: WorkerProcess) -> bool:
    """The victim is in its finish, its assets uploaded and listed, the feed not yet rebuilt."""
    episode = cluster.catalog.get_episode(episode_id)
    return bool(held_by(cluster, episode_id, "finish", worker)) and episode.stage == "updating feeds" and \
        cluster.store.exists(f"shows/{SHOW}/episodes/{episode_id}/replay.mp3")


@pytest.mark.parametrize("point", ["ingest", "track", "finish", "before-feed"])
def test_worker_killed_in_a_stage_the_room_is_published_once(workers: Cluster, short_room: Path, tmp_path: Path,
                                                             point: str) -> None:
    room_id = f"lost-{point}"
    victim = workers.worker(f"victim-{point}", ROOMCAST_TEST_PAUSE=f"{point}@{room_id}:600")
    assert submit_room(workers.settings, room_variant(short_room, tmp_path, room_id)).outcome == "queued"
    if point == "before-feed":
        wait_for(lambda: before_feed(workers, room_id, victim), 120, "the victim before the feed")
        assert f"Room {room_id}" not in workers.feed_titles()
    else:
        wait_for(lambda: bool(held_by(workers, room_id, point, victim)), 120, f"the victim holding {point}")
    stage = held_by(workers, room_id, "finish" if point == "before-feed" else point, victim)[0].stage
    victim.kill()
    killed = time.monotonic()
    workers.worker(f"rescuer-{point}")
    assert workers.wait_done(room_id, RECOVERY_S) == "published"
    recovered_s = time.monotonic() - killed
    assert_published_once(workers, room_id)
    lost = [job for job in workers.catalog.jobs(room_id) if job.status == "abandoned"]
    assert len(lost) == 1 and f"worker victim-{point}@test" in lost[0].error and stage in lost[0].error
    assert "was lost" in workers.cli("status", room_id)
    print(f"{point}: published {recovered_s:.1f} s after the kill")  # noqa: T201 - the recovery time, with -s


def test_all_workers_killed_at_once(workers: Cluster, short_room: Path, tmp_path: Path) -> None:
    room_id = "lost-all"
    victims = [workers.worker(f"power-{n}", ROOMCAST_TEST_PAUSE=f"track@{room_id}:600") for n in (1, 2)]
    assert submit_room(workers.settings, room_variant(short_room, tmp_path, room_id)).outcome == "queued"
    wait_for(lambda: all(held_by(workers, room_id, "track", v) for v in victims), 120, "both victims on tracks")
    for victim in victims:
        victim.kill()
    workers.worker("after-power")
    assert workers.wait_done(room_id, RECOVERY_S) == "published"
    assert_published_once(workers, room_id)
    assert "no stuck rooms" in workers.cli("status", "--stuck")


def test_stuck_lists_a_room_no_live_worker_holds(workers: Cluster, short_room: Path, tmp_path: Path) -> None:
    room_id = "lost-stuck"
    victim = workers.worker("stuck-victim", ROOMCAST_TEST_PAUSE=f"track@{room_id}:600")
    assert submit_room(workers.settings, room_variant(short_room, tmp_path, room_id)).outcome == "queued"
    wait_for(lambda: bool(held_by(workers, room_id, "track", victim)), 120, "the victim on a track")
    status = workers.cli("status", room_id)
    assert "held: track-" in status and "stuck-victim@test" in status
    assert room_id not in workers.cli("status", "--stuck")  # held by a live worker
    victim.kill()
    wait_for(lambda: room_id in workers.cli("status", "--stuck"), 60, "the room listed as stuck")
    assert "stopped renewing its lease" in workers.cli("status", "--stuck")
    lines = workers.cli("scan", str(_empty(tmp_path)))
    assert f"{room_id}: enqueued again" in lines and "stuck-victim@test" in lines
    workers.worker("stuck-rescuer")
    assert workers.wait_done(room_id, RECOVERY_S) == "published"
    assert_published_once(workers, room_id)


def _empty(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return inbox


def test_a_slow_stage_renewing_its_lease_is_not_taken_over(workers: Cluster, short_room: Path,
                                                           tmp_path: Path) -> None:
    room_id = "slow-track"
    slow = workers.worker("slow", ROOMCAST_TEST_PAUSE=f"track@{room_id}:{4 * LEASE_S}")
    workers.worker("watcher")  # a live worker looking for expired leases every second
    assert submit_room(workers.settings, room_variant(short_room, tmp_path, room_id)).outcome == "queued"
    longest = 0.0

    def watch() -> bool:
        nonlocal longest
        longest = max([longest] + [lease.age_s() for lease in held_by(workers, room_id, "track", slow)])
        return workers.status(room_id) in ("published", "failed")

    wait_for(watch, 180, "the slow room", interval=0.3)
    assert longest > 2 * LEASE_S, longest  # the slow worker held its track well past one lease length
    assert_published_once(workers, room_id)
    assert [job.status for job in workers.catalog.jobs(room_id)] == ["done"]  # never enqueued again
    assert "was lost" not in (slow.text() + workers.workers[1].text())


def test_a_hung_stage_hits_the_hard_time_limit_and_the_worker_goes_on(workers: Cluster, short_room: Path,
                                                                      tmp_path: Path) -> None:
    hung, after = "hung-track", "after-hung"
    worker = workers.worker("limited", ROOMCAST_TEST_PAUSE=f"track@{hung}:600", ROOMCAST_STAGE_TIME_LIMIT_S="8",
                            ROOMCAST_STAGE_SOFT_TIME_LIMIT_S="0")
    assert submit_room(workers.settings, room_variant(short_room, tmp_path, hung)).outcome == "queued"
    assert submit_room(workers.settings, room_variant(short_room, tmp_path, after)).outcome == "queued"
    assert workers.wait_done(hung, 90) == "failed"
    episode = workers.catalog.get_episode(hung)
    assert "ran past its time limit of 8 s" in episode.error and "track-" in episode.error
    assert "limited@test" in episode.error
    assert workers.wait_done(after, 120) == "published"
    assert worker.alive() and "Hard time limit (8" in worker.text()
    assert_published_once(workers, after)
    assert not workers.leases(hung)
    assert f"Room {hung}" not in workers.feed_titles()
