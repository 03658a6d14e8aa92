"""Distributed mode on real servers: a Redis broker, the SeaweedFS S3 store, a PostgreSQL catalog (made at the
newest Alembic revision) and real ``roomcast worker`` processes sharing them. Workers run without Whisper here (one
test with it), and with a short visibility timeout so a job whose worker died is delivered again within seconds."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from storage.catalog import Catalog
from storage.migrations import HEAD_REVISION
from storage.objects import ObjectStore, open_store
from tests.mixdown import mix_down
from tests.roomgen import manifest, write_manifest
from tests.s3servers import WeedServer
from tests.servers import PostgresServer, RedisServer, WorkerProcess, wait_for
from workers.cli import main
from workers.config import Settings
from workers.context import Context
from workers.distributed import enqueue, requeue_stale, submit_room
from workers.inbox import inbox_prefix, store_ref

pytestmark = [pytest.mark.redis, pytest.mark.s3, pytest.mark.slow]

VISIBILITY_S = 20  # a job taken by a worker that died is delivered again after this long


@dataclass
class Cluster:
    redis: RedisServer
    settings: Settings
    env: dict[str, str]
    folder: Path
    workers: list[WorkerProcess]

    def worker(self, name: str, *args: str, **env: str) -> WorkerProcess:
        process = WorkerProcess(name, self.folder, {**self.env, **env}, *args)
        process.start()
        self.workers.append(process)
        return process

    @property
    def catalog(self) -> Catalog:
        return Context.of(self.settings).catalog

    @property
    def store(self) -> ObjectStore:
        return Context.of(self.settings).store

    def wait_done(self, episode_ids: list[str], timeout: float, poll: float = 1.0,
                  between: object = None) -> dict[str, str]:
        """Wait until every episode is published or failed; ``between`` (a callable) runs at every poll."""
        deadline = time.monotonic() + timeout
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            # "published" with its run still open is replay first's first publish: the transcripts follow
            statuses = {e: self._status(e) for e in episode_ids}
            if all(s in ("published", "failed") for s in statuses.values()):
                return statuses
            if callable(between):
                between()
            time.sleep(poll)
        logs = "\n".join(f"--- {w.name}\n{w.text()[-4000:]}" for w in self.workers)
        raise AssertionError(f"not done within {timeout:.0f} s: {statuses}\n{logs}")

    def _status(self, episode_id: str) -> str:
        episode = self.catalog.get_episode(episode_id)
        if episode is None:
            return "absent"
        if episode.status == "published" and episode.stage != "published":
            return f"published ({episode.stage})"
        return episode.status

    def feed(self, show: str = "founders-hour") -> feedparser.FeedParserDict:
        return feedparser.parse(self.store.get_bytes(f"shows/{show}/feed.xml"))


def room_variant(room: Path, folder: Path, room_id: str, **changes: object) -> Path:
    copy = folder / room_id
    shutil.copytree(room, copy)
    data = manifest(copy)
    data.update(id=room_id, title=f"Room {room_id}", **changes)
    write_manifest(copy, data)
    return copy


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PostgresServer.available():
        pytest.skip("PostgreSQL 15 server binaries are not installed (Debian package postgresql)")
    server = PostgresServer(tmp_path_factory.mktemp("pg"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: WeedServer, postgres: str) -> Iterator[Cluster]:
    """Redis, a bucket, the PostgreSQL catalog and two workers (no Whisper) sharing them."""
    folder = tmp_path_factory.mktemp("cluster")
    redis = RedisServer(folder)
    redis.start()
    bucket = "rc-cluster"
    s3_server.create_bucket(bucket)
    settings = Settings(store=f"s3://{bucket}/podcasts", database_url=postgres, broker_url=redis.url,
                        cache_dir=folder / "submit-cache", work_dir=folder / "submit-work", transcribe=False,
                        min_chapter_s=10.0)
    env = {**s3_server.env, "ROOMCAST_STORE": settings.store, "ROOMCAST_DATABASE_URL": postgres,
           "ROOMCAST_BROKER_URL": redis.url, "ROOMCAST_TRANSCRIBE": "0", "ROOMCAST_MIN_CHAPTER_S": "10",
           "ROOMCAST_VISIBILITY_TIMEOUT": str(VISIBILITY_S)}
    state = Cluster(redis, settings, env, folder, [])
    try:
        state.worker("w1")
        state.worker("w2")
        yield state
    finally:
        for worker in state.workers:
            worker.stop()
        redis.stop()


@pytest.mark.postgres
def test_catalog_is_made_at_the_newest_revision_on_postgres(cluster: Cluster) -> None:

    assert cluster.catalog.list_episodes() == []  # opening the catalog made its tables
    engine = create_engine(cluster.settings.database_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD_REVISION
        assert {"shows", "episodes", "speakers", "tracks", "assets", "jobs"} <= set(inspect(conn).get_table_names())
    engine.dispose()


@pytest.mark.postgres
def test_submitted_room_is_processed_by_the_workers_once(cluster: Cluster, short_room: Path, tmp_path: Path) -> None:
    room = room_variant(short_room, tmp_path, "dist-once")
    env = {**cluster.env, "ROOMCAST_CACHE_DIR": str(tmp_path / "cache"), "ROOMCAST_WORK_DIR": str(tmp_path / "w")}
    runner = CliRunner()
    first = runner.invoke(main, ["submit", str(room)], env=env)
    second = runner.invoke(main, ["submit", str(room)], env=env)
    assert first.exit_code == 0 and "queued" in first.output, first.output
    assert second.exit_code == 0 and "duplicate" in second.output, second.output
    assert cluster.store.exists(inbox_prefix("dist-once") + "room.json")
    assert cluster.wait_done(["dist-once"], 120) == {"dist-once": "published"}
    status = runner.invoke(main, ["status", "dist-once"], env=env)
    assert "published" in status.output
    third = runner.invoke(main, ["submit", str(room)], env=env)
    assert "duplicate" in third.output and "published" in third.output
    assert [job.status for job in cluster.catalog.jobs("dist-once")] == ["done"]
    items = [e for e in cluster.feed().entries if e.title == "Room dist-once"]
    assert len(items) == 1
    assert not list(cluster.store.list("work/dist-once/"))  # intermediate results cleaned up


@pytest.mark.postgres
def test_invalid_room_fails_at_once_with_its_message(cluster: Cluster, short_room: Path) -> None:
    data = manifest(short_room)
    data.update(id="dist-invalid", visibility="secret")
    prefix = inbox_prefix("dist-invalid")
    cluster.store.put_bytes(prefix + "room.json", json.dumps(data).encode())
    for track in data["tracks"]:
        cluster.store.put_file(prefix + track["file"], short_room / track["file"])
    enqueue(cluster.settings, store_ref(prefix))
    assert cluster.wait_done(["dist-invalid"], 60) == {"dist-invalid": "failed"}
    episode = cluster.catalog.get_episode("dist-invalid")
    assert "visibility" in episode.error and "secret" in episode.error
    assert [job.status for job in cluster.catalog.jobs("dist-invalid")] in ([], ["failed"])
    time.sleep(3)  # no retry comes later
    assert cluster.catalog.get_episode("dist-invalid").status == "failed"


@pytest.mark.postgres
def test_worker_killed_mid_job_other_worker_completes(cluster: Cluster, short_room: Path, tmp_path: Path) -> None:
    room = room_variant(short_room, tmp_path, "dist-killed")
    marks = {w.name: len(w.text()) for w in cluster.workers if w.alive()}
    assert submit_room(cluster.settings, room).outcome == "queued"

    def busy() -> WorkerProcess | None:
        for worker in cluster.workers:
            if worker.alive() and "roomcast.track[" in worker.text()[marks.get(worker.name, 0):]:
                return worker
        return None

    wait_for(lambda: busy() is not None, 60, "a worker taking a track")
    victim = busy()
    assert victim is not None
    victim.kill()
    assert cluster.wait_done(["dist-killed"], 150) == {"dist-killed": "published"}
    assert len([e for e in cluster.catalog.list_episodes() if e.id == "dist-killed"]) == 1
    assert len([e for e in cluster.feed().entries if e.title == "Room dist-killed"]) == 1
    cluster.worker(victim.name + "b")  # back to two workers for the next tests


@pytest.mark.postgres
def test_batch_of_one_show_survives_a_redis_restart(cluster: Cluster, short_room: Path, tmp_path: Path) -> None:
    """N rooms of one show at once, Redis restarted (without persistence) mid-batch: the stale-episode sweep
    that ``roomcast beat`` runs enqueues the lost ones again; every room is published and the feed has N items."""
    count = 6
    ids = [f"dist-batch-{n}" for n in range(count)]
    for n, room_id in enumerate(ids):
        room = room_variant(short_room, tmp_path, room_id, recorded_at=f"2026-11-{n + 1:02d}T09:30:00Z")
        assert submit_room(cluster.settings, room).outcome == "queued"
    wait_for(lambda: any(cluster.catalog.get_episode(i).status == "published" for i in ids), 120, "a first room")
    cluster.redis.restart()
    requeued: list[str] = []
    statuses = cluster.wait_done(ids, 240, poll=2.0,
                                 between=lambda: requeued.extend(requeue_stale(cluster.settings, 25)))
    assert statuses == dict.fromkeys(ids, "published")
    titles = [e.title for e in cluster.feed().entries]
    assert all(titles.count(f"Room {i}") == 1 for i in ids), titles
    assert requeued, "the restart lost no message: the test did not exercise the sweep"


def test_scan_submits_complete_rooms_once(cluster: Cluster, short_room: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    room_variant(short_room, inbox, "scan-complete")
    partial = room_variant(short_room, inbox, "scan-partial")
    missing = partial / manifest(partial)["tracks"][0]["file"]
    held = missing.read_bytes()
    missing.write_bytes(b"")  # still being uploaded
    settings = cluster.settings.replace(broker_url=cluster.redis.url.replace("/0", "/3"))  # no worker listens
    env = {**cluster.env, "ROOMCAST_BROKER_URL": settings.broker_url}
    runner = CliRunner()
    first = runner.invoke(main, ["scan", str(inbox)], env=env)
    assert first.exit_code == 0, first.output
    assert "scan-complete: queued" in first.output and "scan-partial: incomplete" in first.output
    assert str(missing.relative_to(partial)) in first.output
    second = runner.invoke(main, ["scan", str(inbox)], env=env)
    assert "scan-complete: duplicate" in second.output and "scan-partial: incomplete" in second.output
    missing.write_bytes(held)
    third = runner.invoke(main, ["scan", str(inbox)], env=env)
    assert "scan-partial: queued" in third.output and "scan-complete: duplicate" in third.output
    queue = cluster.redis.client(3)
    assert queue.llen("roomcast") == 2
    assert cluster.catalog.get_episode("scan-partial").status == "pending"


def test_scan_of_an_s3_inbox(cluster: Cluster, short_room: Path, s3_server: WeedServer, tmp_path: Path) -> None:
    s3_server.create_bucket("rc-inbox")
    source = open_store("s3://rc-inbox/incoming")
    data = manifest(short_room)
    data["id"] = "scan-s3"
    for track in data["tracks"][1:]:
        source.put_file(f"scan-s3/{track['file']}", short_room / track["file"])
    source.put_bytes("scan-s3/room.json", json.dumps(data).encode())
    settings = cluster.settings.replace(broker_url=cluster.redis.url.replace("/0", "/4"),
                                        cache_dir=tmp_path / "cache")
    env = {**cluster.env, "ROOMCAST_BROKER_URL": settings.broker_url, "ROOMCAST_CACHE_DIR": str(tmp_path / "c")}
    runner = CliRunner()
    first = runner.invoke(main, ["scan", "s3://rc-inbox/incoming"], env=env)
    assert "scan-s3: incomplete" in first.output and data["tracks"][0]["file"] in first.output, first.output
    first_track = data["tracks"][0]["file"]
    source.put_file(f"scan-s3/{first_track}", short_room / first_track)
    second = runner.invoke(main, ["scan", "s3://rc-inbox/incoming"], env=env)
    assert "scan-s3: queued" in second.output, second.output
    third = runner.invoke(main, ["scan", "s3://rc-inbox/incoming"], env=env)
    assert "scan-s3: duplicate" in third.output
    assert cluster.redis.client(4).llen("roomcast") == 1
    assert cluster.store.stat(inbox_prefix("scan-s3") + first_track) is not None


@pytest.mark.model
def test_worker_with_transcription(cluster: Cluster, short_room: Path, tmp_path: Path) -> None:
    """A worker with Whisper on its own broker database, replay first (the workers' default): the replay is
    published first, then the same episode with a speaker-attributed transcript."""
    url = cluster.redis.url.replace("/0", "/5")
    worker = cluster.worker("whisper", "--transcribe", ROOMCAST_BROKER_URL=url, ROOMCAST_TRANSCRIBE="1")
    settings = cluster.settings.replace(broker_url=url, transcribe=True)
    try:
        assert submit_room(settings, room_variant(short_room, tmp_path, "dist-words")).outcome == "queued"
        assert cluster.wait_done(["dist-words"], 180) == {"dist-words": "published"}
    finally:
        worker.stop()
    episode = cluster.catalog.get_episode("dist-words")
    names = {asset.name for asset in episode.assets}
    assert {"transcript.json", "transcript.vtt", "replay.mp3"} <= names
    vtt = next(a for a in episode.assets if a.name == "transcript.vtt")
    body = cluster.store.get_bytes(vtt.key).decode()
    assert "<v Alice Martin>" in body and "Novák" not in body
    from storage.stage_runs import StageLog

    finishes = [r.stage for r in StageLog(cluster.catalog).runs("dist-words") if r.stage.startswith("finish")]
    assert finishes == ["finish-replay", "finish"], finishes
    assert [e.title for e in cluster.feed().entries].count("Room dist-words") == 1


def test_mixed_recording_on_the_workers_names_known_voices(cluster: Cluster, short_room: Path,
                                                           tmp_path: Path) -> None:
    """A show's multitrack room, then the same conversation as one mixed recording in two parts: the workers
    embed each part's voices, diarize at the finish, name the voices from the library in the PostgreSQL catalog
    and silence the speaker who declined."""
    first = room_variant(short_room, tmp_path, "dist-voices")
    assert submit_room(cluster.settings, first).outcome == "queued"
    assert cluster.wait_done(["dist-voices"], 180) == {"dist-voices": "published"}
    mixed = mix_down(first, tmp_path, room_id="dist-mixed", parts=2)
    assert submit_room(cluster.settings, mixed).outcome == "queued"
    assert cluster.wait_done(["dist-mixed"], 180) == {"dist-mixed": "published"}
    speakers = {s.id: s for s in cluster.catalog.speakers("dist-mixed")}
    assert {k for k, s in speakers.items() if s.consent} == {"alice", "zoe"}
    item = next(e for e in cluster.feed().entries if "dist-mixed" in e.link)
    chapters = next(a for a in cluster.catalog.get_episode("dist-mixed").assets if a.name == "chapters.json")
    titles = [c["title"] for c in json.loads(cluster.store.get_bytes(chapters.key))["chapters"]]
    assert titles and all("Dave" not in t for t in titles)
    assert "Novák" not in json.dumps(item, default=str)


@pytest.mark.postgres
def test_an_edit_queued_for_the_workers_is_published_in_place(cluster: Cluster, short_room: Path,
                                                               tmp_path: Path) -> None:
    """``roomcast submit --edit``: a bad edit is refused before it is queued; a good one runs on a worker, which
    fetches the room from the inbox, cuts the replay and publishes it under the same guid and keys."""
    from storage import edit_log

    room = room_variant(short_room, tmp_path, "dist-edit")
    assert submit_room(cluster.settings, room).outcome == "queued"
    assert cluster.wait_done(["dist-edit"], 180) == {"dist-edit": "published"}
    first = cluster.catalog.get_episode("dist-edit")
    keys = sorted(a.key for a in first.assets)
    item = next(e for e in cluster.feed().entries if "dist-edit" in e.link)
    env = {**cluster.env, "ROOMCAST_CACHE_DIR": str(tmp_path / "cache"), "ROOMCAST_WORK_DIR": str(tmp_path / "w")}
    runner = CliRunner()

    bad = runner.invoke(main, ["submit", "--edit", "dist-edit", "--remove-speaker", "nobody"], env=env)
    assert bad.exit_code != 0 and "unknown speaker 'nobody'" in bad.output, bad.output
    assert edit_log.edits(cluster.catalog, "dist-edit") == []

    queued = runner.invoke(main, ["submit", "--edit", "dist-edit", "--cut", "2-4", "--title", "Cut on a worker",
                                  "--by", "moderator"], env=env)
    assert queued.exit_code == 0 and "edit queued" in queued.output, queued.output
    wait_for(lambda: [e.status for e in edit_log.edits(cluster.catalog, "dist-edit")] == ["done"], 180,
             what="the queued edit to finish")
    edited = cluster.catalog.get_episode("dist-edit")
    assert edited.guid == first.guid and sorted(a.key for a in edited.assets) == keys
    assert abs((first.duration_s - edited.duration_s) - 2.0) < 0.1, (first.duration_s, edited.duration_s)
    items = [e for e in cluster.feed().entries if "dist-edit" in e.link]
    assert [e.title for e in items] == ["Cut on a worker"] and items[0].id == item.id
    history = runner.invoke(main, ["episode", "history", "dist-edit"], env=env)
    assert "by moderator [done]" in history.output and "cut 0:00:02.000-0:00:04.000" in history.output


TINY_SCRIPT = """# room id=tiny-room show=founders-hour title="Tiny room" language=en
# speaker alice name="Alice Martin" role=host voice=en-us+f3 level=-20 codec=opus rate=48000
# speaker bob name="Bob Okafor" voice=en-gb+m3 level=-30 codec=wav rate=16000
alice: Welcome back, this is a very short room.
bob: Thanks, it is good to be here.
"""


@pytest.fixture(scope="module")
def tiny_room(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from samples.generate import generate_room

    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.txt").write_text(TINY_SCRIPT)
    return generate_room(folder / "tiny.txt", folder / "rooms")


def test_twenty_rooms_of_one_show_at_once_all_reach_the_feed(cluster: Cluster, tiny_room: Path,
                                                               tmp_path: Path) -> None:
    """20 rooms of one show submitted together and published by two workers at once: the feed rebuilds are
    serialised by the show's lock in the catalog, so the feed ends with all 20 items, each once."""
    ids = [f"dist-twenty-{n:02d}" for n in range(20)]
    for n, room_id in enumerate(ids):
        room = room_variant(tiny_room, tmp_path, room_id, recorded_at=f"2026-10-{n + 1:02d}T09:30:00Z")
        assert submit_room(cluster.settings, room).outcome == "queued"
    assert cluster.wait_done(ids, 400, poll=2.0) == dict.fromkeys(ids, "published")
    titles = [e.title for e in cluster.feed().entries]
    assert all(titles.count(f"Room {i}") == 1 for i in ids), titles
