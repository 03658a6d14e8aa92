"""Stage leases in a real SQLite catalog: one holder at a time (also when processes race), renewal and release
only by the holder, takeover of expired leases once, and the lost run written in the episode's history."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from storage.catalog import Catalog
from storage.leases import LeaseBook, LeaseRecord
from storage.records import SpeakerRecord, TrackRecord


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    catalog.upsert_episode(episode_id="room-1", show_id="show", title="Room 1", description="", visibility="public",
                           language="en", recorded_at=None, speakers=[SpeakerRecord("u1", "Alice")],
                           tracks=[TrackRecord("u1", "a.wav", 0.0, 10.0)], input_hash="h1")
    return catalog


def take(leases: LeaseBook, worker: str, duration_s: float = 30.0, stage: str = "track-0") -> LeaseRecord | None:
    return leases.acquire(episode_id="room-1", stage=stage, worker=worker, room_ref="store:inbox/room-1/",
                          task_id=f"task-{worker}", duration_s=duration_s)


def test_a_live_lease_has_one_holder_and_only_it_renews_or_releases(catalog: Catalog) -> None:
    leases = LeaseBook(catalog)
    mine = take(leases, "w1")
    assert mine is not None and mine.live()
    assert take(leases, "w2") is None
    assert take(leases, "w2", stage="track-1") is not None  # another stage of the room is free
    holder = leases.holder("room-1", "track-0")
    assert holder is not None and holder.worker == "w1" and holder.token == mine.token
    assert leases.by_task("task-w1") == holder
    assert leases.renew(mine, 60.0)
    assert leases.holder("room-1", "track-0").expires_at > mine.expires_at
    leases.release(mine)
    assert leases.holder("room-1", "track-0") is None
    assert not leases.renew(mine, 60.0)


def test_an_expired_lease_is_taken_by_the_next_worker_and_the_old_holder_cannot_renew(catalog: Catalog) -> None:
    leases = LeaseBook(catalog)
    old = take(leases, "w1", duration_s=0.2)
    assert old is not None
    time.sleep(0.4)
    assert not old.live()
    new = take(leases, "w2")
    assert new is not None and new.worker == "w2"
    assert not leases.renew(old, 30.0)
    leases.release(old)  # a late release by the old holder leaves the new lease alone
    assert leases.holder("room-1", "track-0") == new


@pytest.mark.parametrize("expired", [False, True])
def test_racing_workers_one_wins(catalog: Catalog, tmp_path: Path, expired: bool) -> None:
    """Eight threads, each with its own catalog connection pool on one SQLite file, race for one stage (new, or
    held by a dead worker): exactly one gets it."""
    if expired:
        assert take(LeaseBook(catalog), "dead", duration_s=0.1) is not None
        time.sleep(0.3)
    books = [LeaseBook(Catalog(catalog.url)) for _ in range(8)]
    start = threading.Barrier(len(books))
    won: list[str] = []

    def race(n: int) -> None:
        start.wait()
        if take(books[n], f"w{n}") is not None:
            won.append(f"w{n}")

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(books))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1, won
    assert LeaseBook(catalog).holder("room-1", "track-0").worker == won[0]


def test_expired_leases_are_taken_over_once_and_the_loss_is_in_the_history(catalog: Catalog) -> None:
    leases = LeaseBook(catalog)
    assert take(leases, "w1", duration_s=0.1) is not None
    assert take(leases, "w1", duration_s=0.1, stage="track-1") is not None
    assert take(leases, "w2", duration_s=30, stage="track-2") is not None
    time.sleep(0.3)
    assert {lease.stage for lease in leases.expired()} == {"track-0", "track-1"}
    first = leases.take_over("room-1")
    assert {lease.stage for lease in first} == {"track-0", "track-1"}
    assert leases.take_over("room-1") == []  # a second watcher finds nothing to take over
    assert [lease.stage for lease in leases.leases("room-1")] == ["track-2"]  # the live one is kept
    assert leases.record_lost("room-1", "worker w1 was lost during track-0, track-1")
    jobs = catalog.jobs("room-1")
    assert [job.status for job in jobs] == ["abandoned"] and "w1 was lost" in jobs[0].error
    assert catalog.get_episode("room-1").stage == "requeued after a lost worker"
    catalog.set_failed("room-1", "bad track")
    assert not leases.record_lost("room-1", "too late")  # a failed room is not enqueued again


def test_recovery_settings_from_the_environment() -> None:
    from workers.config import load_settings

    settings = load_settings(env={"ROOMCAST_LEASE_S": "6", "ROOMCAST_LEASE_CHECK_S": "2",
                                  "ROOMCAST_STAGE_TIME_LIMIT_S": "300"})
    assert (settings.lease_s, settings.lease_renew_s, settings.lease_check_s) == (6.0, 1.2, 2.0)
    assert settings.soft_time_limit_s == 270.0  # a tenth less than a short hard limit
    assert load_settings(env={}).soft_time_limit_s == 6 * 3600 - 60
    assert load_settings(env={"ROOMCAST_STAGE_SOFT_TIME_LIMIT_S": "0"}).soft_time_limit_s is None


def test_the_pause_hook_applies_to_its_point_and_room_only() -> None:
    from workers.config import Settings
    from workers.pauses import pause

    settings = Settings(test_pause="track@room-1:0.3,ingest:0.2")
    started = time.monotonic()
    pause(settings, "track", "room-2")
    pause(settings, "finish", "room-1")
    assert time.monotonic() - started < 0.1
    pause(settings, "track", "room-1")
    pause(settings, "ingest", "room-9")
    assert time.monotonic() - started >= 0.5
