"""An in-process run records its stage runs in the catalog as Celery workers do (``roomcast cost`` and ``roomcast
status ID`` read them): one run per stage, in each phase, with the CPU each took. A real ``roomcast process`` runs
in a child process, whose CPU (with every process it started) is measured here against what the catalog says."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.manifest import load_room
from storage.catalog import Catalog
from storage.records import StageRunRecord
from storage.stage_runs import StageLog, cost_report
from workers import runlog, stages


def _process(room: Path, tmp_path: Path, *args: str) -> tuple[dict[str, object], float]:
    """``roomcast process`` in a child process: its summary, and the CPU it took with every process it waited for."""
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(tmp_path / "work"), ROOMCAST_STORE=str(tmp_path / "store"),
               ROOMCAST_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "workers.cli", "process", str(room), "-q", *args],
                          capture_output=True, text=True, env=env, timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(done.stdout), cpu


def _runs(tmp_path: Path, episode_id: str) -> list[StageRunRecord]:
    return StageLog(Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")).runs(episode_id)


def _check(runs: list[StageRunRecord], room: Path, cpu_s: float, phases: tuple[str, ...]) -> None:
    tracks = [t.index for t in load_room(room).published_tracks]
    expected = ["ingest"]
    for phase in phases:
        names = [stages.run_name(stages.TRACK, phase, i) for i in tracks]
        expected += names + [stages.run_name(stages.FINISH, phase)]
        finish = next(r for r in runs if r.stage == stages.run_name(stages.FINISH, phase))
        assert all(r.finished_at <= finish.started_at for r in runs if r.stage in names), runs
    assert runs[0].stage == "ingest"
    assert sorted(r.stage for r in runs) == sorted(expected), [r.stage for r in runs]
    assert len(runs) == len(expected)
    assert all(r.outcome == "done" and r.worker.endswith("(in-process)") for r in runs), runs
    assert all(r.cpu_s > 0 and r.wall_s >= 0 for r in runs), runs
    recorded = sum(r.cpu_s for r in runs)
    # every stage's CPU is the run's, never counted twice (the command's start is its ingest's, each worker
    # process's start its first track's); what no stage holds is the command's end after its finish and the
    # worker processes' shut-down (here 9-12% of a 45-second room's run)
    assert recorded <= cpu_s * 1.02 + 0.05, (recorded, cpu_s)
    assert recorded >= 0.8 * cpu_s, (recorded, cpu_s)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_an_in_process_run_records_each_stage_and_its_cpu(short_room: Path, tmp_path: Path, processes: str) -> None:
    """Without Whisper: on one process (the Celery canvas in eager mode) and on two (the tracks on threads, their
    ffmpeg time shared among them). ``roomcast cost``'s sums are those of these runs."""
    summary, cpu = _process(short_room, tmp_path, "--no-transcribe", "-j", processes)
    runs = _runs(tmp_path, str(summary["episode"]))
    _check(runs, short_room, cpu, (stages.FULL,))
    report = cost_report(runs, {str(summary["episode"]): float(str(summary["duration_s"]))})
    assert [s.point for s in report.stages] == ["ingest", "track", "finish"]
    assert report.cpu_s == pytest.approx(sum(r.cpu_s for r in runs), abs=0.01)


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("replay_first", [False, True])
def test_a_run_on_worker_processes_records_each_stage_of_each_phase(short_room: Path, tmp_path: Path,
                                                                   replay_first: bool) -> None:
    """With Whisper on two worker processes: each track's run holds its worker's CPU (the first track of a worker
    also what the worker took to start: imports, the model), the finish the CPU of the process that ran it; with
    replay first, the replay phase's runs and the words phase's."""
    summary, cpu = _process(short_room, tmp_path, "-j", "2", *(["--replay-first"] if replay_first else []))
    runs = _runs(tmp_path, str(summary["episode"]))
    _check(runs, short_room, cpu, stages.PHASES[replay_first])
    tracks = [r for r in runs if r.stage.startswith("track-")]
    assert len({r.worker for r in tracks}) == 2  # the tracks ran on both worker processes, each named


def test_a_share_of_the_ffmpeg_time_follows_each_threads_own_cpu() -> None:
    from datetime import UTC, datetime

    at = datetime.now(UTC)
    runs = [StageRunRecord("room", f"track-{i}", "w", "done", at, at, cpu) for i, cpu in enumerate((1.0, 3.0, 0.0))]
    shared = runlog.share_children(runs, 2.0)
    assert [r.cpu_s for r in shared] == [1.5, 4.5, 0.0]
    assert runlog.share_children(runs, 0.0) == runs
    idle = [StageRunRecord("room", f"track-{i}", "w", "done", at, at, 0.0) for i in range(2)]
    assert [r.cpu_s for r in runlog.share_children(idle, 1.0)] == [0.5, 0.5]


@pytest.mark.parametrize("args", [("--no-transcribe", "-j", "1"), ("--no-transcribe", "-j", "2"),
                                  pytest.param(("-j", "2"), marks=pytest.mark.model)])
def test_a_room_that_fails_its_ingest_in_process_records_a_failed_ingest(short_room: Path, tmp_path: Path,
                                                                          args: tuple[str, ...]) -> None:
    """A room whose validation fails (a track missing) is paid for too: its ingest is recorded as failed, under
    the room's id, on each in-process path (the Celery canvas, threads, worker processes); nothing else runs."""
    room = tmp_path / "room"
    shutil.copytree(short_room, room)
    manifest = json.loads((room / "room.json").read_text())
    missing = manifest["tracks"][0]["file"]
    (room / missing).unlink()
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(tmp_path / "work"), ROOMCAST_STORE=str(tmp_path / "store"),
               ROOMCAST_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "workers.cli", "process", str(room), "-q", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    assert missing in done.stderr
    runs = StageLog(Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")).runs(str(manifest["id"]))
    assert [(r.stage, r.outcome) for r in runs] == [("ingest", "failed")], runs
    assert runs[0].cpu_s > 0 and runs[0].worker.endswith("(in-process)")
