"""What stage runs cost: the record of the workers' runs summed by kind of stage, per room-minute and room-hour,
read from a real SQLite catalog by ``roomcast cost`` and ``roomcast status``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from storage.catalog import Catalog
from storage.records import StageRunRecord
from storage.stage_runs import StageLog, cost_report, stage_point
from workers.cli import main

NOW = datetime.now(UTC).replace(microsecond=0)


def _episode(catalog: Catalog, episode_id: str, duration_s: float | None) -> None:
    catalog.upsert_episode(episode_id=episode_id, show_id="show", title=episode_id, description="",
                           visibility="public", language="en", recorded_at=None, speakers=[], tracks=[])
    if duration_s is not None:
        catalog.mark_published(episode_id, duration_s)


def _run(episode_id: str, stage: str, cpu_s: float, *, hours_ago: float = 1.0, outcome: str = "done",
         worker: str = "w1@host pid 7") -> StageRunRecord:
    started = NOW - timedelta(hours=hours_ago)
    return StageRunRecord(episode_id, stage, worker, outcome, started, started + timedelta(seconds=cpu_s + 1), cpu_s)


@pytest.fixture()
def catalog(tmp_path: Path) -> Catalog:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    _episode(catalog, "one-hour", 3600.0)
    _episode(catalog, "half-hour", 1800.0)
    _episode(catalog, "never-published", None)
    log = StageLog(catalog)
    for run in (
        _run("one-hour", "ingest", 6.0), _run("one-hour", "track-0", 200.0), _run("one-hour", "track-1", 160.0),
        _run("one-hour", "track-1", 40.0, outcome="failed"),  # a try that failed, then ran again: both are paid
        _run("one-hour", "finish", 90.0),
        _run("half-hour", "ingest", 3.0), _run("half-hour", "track-0-replay", 50.0),
        _run("half-hour", "finish-replay", 40.0), _run("half-hour", "track-0", 60.0), _run("half-hour", "finish", 20.0),
        _run("never-published", "ingest", 1.0, hours_ago=24 * 10, outcome="failed"),
    ):
        log.record(run)
    return catalog


def test_stage_runs_are_costed_by_kind_and_per_hour_of_room(catalog: Catalog) -> None:
    runs = StageLog(catalog).finished_since(None)
    assert [stage_point(r.stage) for r in runs].count("track") == 5
    report = cost_report(runs, {"one-hour": 3600.0, "half-hour": 1800.0})
    by_point = {s.point: (s.runs, s.failed, s.cpu_s) for s in report.stages}
    assert by_point == {"ingest": (3, 1, 10.0), "track": (5, 1, 510.0), "finish": (3, 0, 150.0)}
    assert [s.point for s in report.stages] == ["ingest", "track", "finish"]
    assert (report.rooms, report.unknown, report.room_s) == (3, 1, 5400.0)
    assert report.core_hours_per_room_hour() == pytest.approx(670.0 / 5400.0)
    recent = cost_report(StageLog(catalog).finished_since(NOW - timedelta(days=2)), {"one-hour": 3600.0})
    assert (recent.rooms, recent.unknown, recent.cpu_s) == (2, 1, 669.0)  # the 10-day-old run is out
    with pytest.raises(ValueError):
        cost_report([], {})
    log = StageLog(catalog)
    assert log.room_lengths() == {"one-hour": 3600.0, "half-hour": 1800.0, "never-published": 0.0}
    assert log.room_lengths(NOW - timedelta(days=2)) == {"one-hour": 3600.0, "half-hour": 1800.0}


def test_roomcast_cost_prints_what_the_runs_cost(catalog: Catalog, tmp_path: Path) -> None:
    env = {"ROOMCAST_DATABASE_URL": catalog.url, "ROOMCAST_STORE": str(tmp_path / "store")}
    done = CliRunner().invoke(main, ["cost", "--days", "2", "--price", "0.05"], env=env)
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert "2 rooms, 1.50 room-hours" in lines[0], lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:6]}
    # runs, failed, CPU s, core-hours, CPU s per room-minute (90 minutes of room)
    assert rows["track"] == ["5", "1", "510.0", f"{510 / 3600:.4f}", f"{510 / 90:.2f}"]
    assert rows["all"] == ["10", "1", "669.0", f"{669 / 3600:.4f}", f"{669 / 90:.2f}"]
    assert f"core-hours per room-hour: {669 / 5400:.4f}" in done.output
    assert f"${669 / 5400 * 0.05:.4f} per room-hour, ${669 / 3600 * 0.05:.4f} in all" in done.output

    every = CliRunner().invoke(main, ["cost"], env=env)
    assert every.exit_code == 0, every.output
    assert "3 rooms, 1.50 room-hours (1 of unknown length, left out of the room-hours)" in every.output
    assert re.search(r"^all\s+11\s+2\s+670\.0\b", every.output, re.M), every.output

    empty = CliRunner().invoke(main, ["cost", "--days", "0.0001"], env=env)
    assert empty.exit_code == 0 and "no stage runs recorded in the last" in empty.output
    bad = CliRunner().invoke(main, ["cost", "--days", "0"], env=env)
    assert bad.exit_code == 2 and "--days" in bad.output


def test_roomcast_status_of_an_episode_lists_its_stage_runs(catalog: Catalog, tmp_path: Path) -> None:
    env = {"ROOMCAST_DATABASE_URL": catalog.url, "ROOMCAST_STORE": str(tmp_path / "store")}
    done = CliRunner().invoke(main, ["status", "half-hour"], env=env)
    assert done.exit_code == 0, done.output
    runs = [line.split() for line in done.output.splitlines() if "s CPU" in line]
    assert [(r[3], r[4], r[5], r[8]) for r in runs] == [
        ("ingest", "done", "4.0", "3.0"), ("track-0-replay", "done", "51.0", "50.0"),
        ("finish-replay", "done", "41.0", "40.0"), ("track-0", "done", "61.0", "60.0"),
        ("finish", "done", "21.0", "20.0")]
    assert all(line[-3:] == ["w1@host", "pid", "7"] for line in runs)
