"""The in-process runner: the order of a room's tracks, and the decodes its analysis keeps for the mix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.audio import ANALYSIS_RATE, PcmCopy, decode_blocks
from pipeline.errors import MediaError, StorageError
from pipeline.manifest import load_room
from tests.roomgen import manifest, write_manifest
from workers import jobs, stages, track
from workers.config import Settings
from workers.context import Job
from workers.runner import _heaviest_first, process_room


def test_the_dearest_track_is_analysed_first(short_room: Path, tmp_path: Path) -> None:
    """Tracks of about the same length: the 48 kHz Opus track (the costliest to decode) starts first, even when
    the manifest lists it last, so the pool does not end waiting on it alone."""
    room = tmp_path / short_room.name
    shutil.copytree(short_room, room)
    data = manifest(room)
    data["tracks"] = sorted(data["tracks"], key=lambda t: str(t["file"]).endswith(".opus"))
    write_manifest(room, data)
    tracks = tuple(range(len(data["tracks"])))
    job = Job(str(data["id"]), str(room), "0" * 64, "en", tracks)
    order = _heaviest_first(Settings(), job)
    assert sorted(order) == list(tracks)
    assert str(data["tracks"][order[0]]["file"]).endswith(".opus"), (order, data["tracks"])


def _spy_runs(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Path], list[dict[int, Path]]]:
    """Record every track the mixer decodes itself, and the decoded copies that exist when the room is rendered."""
    import pipeline.mix
    import workers.render

    decoded: list[Path] = []
    copies_seen: list[dict[int, Path]] = []
    real_stream, real_render = pipeline.mix.stream_pcm, workers.render.render_room

    def stream(path: Path, **kwargs: Any) -> Any:
        decoded.append(path)
        return real_stream(path, **kwargs)

    def render(*args: Any, copies: Any = None, **kwargs: Any) -> Any:
        copies_seen.append({i: c.path for i, c in (copies or {}).items() if c.path.exists()})
        return real_render(*args, copies=copies, **kwargs)

    monkeypatch.setattr(pipeline.mix, "stream_pcm", stream)
    monkeypatch.setattr(workers.render, "render_room", render)
    return decoded, copies_seen


@pytest.mark.parametrize("budget_mb", [4096, 0])
def test_the_mix_reads_what_the_analysis_decoded_and_nothing_is_left_behind(
        short_room: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget_mb: int) -> None:
    """An in-process run keeps each track decoded at the mixing rate while analysing it, and the mix reads those
    copies instead of decoding the tracks again; over the budget, no copy is kept and the mix decodes. Either
    way the published replay is the same length and no copy outlives the run."""
    decoded, copies_seen = _spy_runs(monkeypatch)
    settings = Settings(store=str(tmp_path / "store"), database_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                        work_dir=tmp_path / "work", transcribe=False, keep_decoded_mb=budget_mb)
    summary = process_room(settings, short_room, processes=2)
    room = load_room(short_room)
    consenting = {t.index for t in room.published_tracks}
    assert summary["status"] == "published"
    assert len(copies_seen) == 1
    if budget_mb:
        assert set(copies_seen[0]) == consenting and decoded == []
    else:
        assert copies_seen[0] == {} and sorted(decoded) == sorted(t.path for t in room.published_tracks)
    assert not list((tmp_path / "work").rglob("decoded-*")) and not list((tmp_path / "work").rglob("*.f32*"))


def test_a_catalog_that_cannot_be_opened_fails_the_run_and_leaves_nothing(short_room: Path, tmp_path: Path) -> None:
    """The tracks are analysed while the catalog opens and records the episode: when it cannot be opened, the run
    fails with the catalog's error, publishes nothing and keeps no decoded copy."""
    (tmp_path / "a-file").write_text("not a folder")
    settings = Settings(store=str(tmp_path / "store"), database_url=f"sqlite:///{tmp_path / 'a-file' / 'c.sqlite'}",
                        work_dir=tmp_path / "work", transcribe=False)
    with pytest.raises(StorageError, match="catalog .*cannot open it"):
        process_room(settings, short_room, processes=2)
    published = [p for p in (tmp_path / "store").rglob("*") if p.is_file() and "/work/" not in str(p)]
    assert published == []
    assert not list((tmp_path / "work").rglob("*.f32*"))


def test_a_track_that_fails_its_analysis_fails_the_episode_in_the_catalog(
        short_room: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A track that cannot be analysed (here one whose decoder fails midway) ends the run with its error, which
    the catalog records against the episode; no decoded copy of the other tracks is left behind."""
    from storage.catalog import Catalog
    from storage.stage_runs import StageLog

    room = load_room(short_room)
    broken = room.published_tracks[-1].path
    real = track.analyse_track

    def analyse(track: Any, **kwargs: Any) -> Any:
        if track.path == broken:
            raise MediaError(f"room {room.id!r}: {track.file}: could not decode the audio")
        return real(track, **kwargs)

    monkeypatch.setattr(track, "analyse_track", analyse)
    database = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    settings = Settings(store=str(tmp_path / "store"), database_url=database, work_dir=tmp_path / "work",
                        transcribe=False)
    with pytest.raises(MediaError, match="could not decode"):
        process_room(settings, short_room, processes=2)
    episode = Catalog(database).get_episode(room.id)
    assert episode is not None and episode.status == "failed"
    assert broken.name in episode.error and room.id in episode.error
    assert not list((tmp_path / "work").rglob("*.f32*"))
    # what the room took until it failed is paid for: its ingest, and the track that failed
    runs = {(r.stage, r.outcome) for r in StageLog(Catalog(database)).runs(room.id)}
    assert {("ingest", "done"), (f"track-{room.published_tracks[-1].index}", "failed")} <= runs, runs


def test_a_worker_whose_track_fails_marks_the_episode_failed(short_room: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-track stage as a Celery worker runs it (``track.process_track``, reporting to the catalog): a track
    that cannot be decoded marks its episode failed with the error, instead of leaving it "analysing"."""
    from storage.catalog import Catalog

    database = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    settings = Settings(store=str(tmp_path / "store"), database_url=database, work_dir=tmp_path / "work",
                        transcribe=False)
    job = jobs.ingest(settings, short_room)
    room = load_room(short_room)
    broken = next(t for t in room.published_tracks)

    def analyse(track: Any, **kwargs: Any) -> Any:
        raise MediaError(f"room {room.id!r}: {track.file}: could not decode the audio")

    monkeypatch.setattr(track, "analyse_track", analyse)
    with pytest.raises(MediaError):
        track.process_track(settings, job, broken.index)
    episode = Catalog(database).get_episode(room.id)
    assert episode is not None and episode.status == "failed" and broken.file in episode.error


def test_a_show_whose_artwork_is_broken_fails_the_episode(short_room: Path, tmp_path: Path) -> None:
    """The show is prepared (artwork checked and stored) while the tracks are analysed: configured artwork that is
    not an image still fails the episode with a message naming the file, recorded in the catalog, and nothing is
    published."""
    from storage.catalog import Catalog

    art = tmp_path / "cover.png"
    art.write_text("not an image")
    shows = tmp_path / "shows.toml"
    shows.write_text(f'[shows.founders-hour]\ntitle = "Founders"\nartwork = "{art}"\n', encoding="utf-8")
    database = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    settings = Settings(store=str(tmp_path / "store"), database_url=database, work_dir=tmp_path / "work",
                        transcribe=False, shows_config=shows)
    with pytest.raises(Exception, match="cover.png"):
        process_room(settings, short_room, processes=2)
    episode = Catalog(database).get_episode(load_room(short_room).id)
    assert episode is not None and episode.status == "failed" and "cover.png" in episode.error
    assert not [p for p in (tmp_path / "store").rglob("replay.*")]
    assert not list((tmp_path / "work").rglob("*.f32*"))


def test_a_decode_that_stops_early_or_fails_leaves_no_copy(short_room: Path, tmp_path: Path) -> None:
    """A copy exists only once ffmpeg has written the whole track: not after the reader stops early, not when the
    file cannot be decoded."""
    track = load_room(short_room).tracks[0]
    early = PcmCopy(tmp_path / "early.f32", 44_100)
    blocks = decode_blocks(track.path, what="test", block_s=1.0, copy=early)
    assert next(blocks).size == ANALYSIS_RATE
    blocks.close()  # type: ignore[attr-defined]
    broken = tmp_path / "broken.opus"
    broken.write_bytes(track.path.read_bytes()[:200] + bytes(5000))
    failed = PcmCopy(tmp_path / "failed.f32", 44_100)
    with pytest.raises(MediaError):
        for _ in decode_blocks(broken, what="test", copy=failed):
            pass
    whole = PcmCopy(tmp_path / "whole.f32", 44_100)
    samples = sum(block.size for block in decode_blocks(track.path, what="test", copy=whole))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.opus", "whole.f32"]
    assert abs(whole.path.stat().st_size / 4 / 44_100 - samples / ANALYSIS_RATE) < 0.01


def test_a_copy_kept_from_a_stream_exists_only_when_the_stream_ended(short_room: Path, tmp_path: Path) -> None:
    """``PcmCopy.kept`` passes the blocks on unchanged and keeps them; a reader that stops early, or a decode that
    fails, leaves no copy."""
    track = load_room(short_room).tracks[0]
    whole = PcmCopy(tmp_path / "whole.f32", ANALYSIS_RATE)
    passed = np.concatenate(list(whole.kept(decode_blocks(track.path, what="test", block_s=1.0))))
    assert np.array_equal(np.concatenate(list(whole.blocks(7.0))), passed)
    early = PcmCopy(tmp_path / "early.f32", ANALYSIS_RATE)
    blocks = early.kept(decode_blocks(track.path, what="test", block_s=1.0))
    assert next(blocks).size == ANALYSIS_RATE
    blocks.close()  # type: ignore[attr-defined]
    broken = tmp_path / "broken.opus"
    broken.write_bytes(track.path.read_bytes()[:200] + bytes(5000))
    failed = PcmCopy(tmp_path / "failed.f32", ANALYSIS_RATE)
    with pytest.raises(MediaError):
        for _ in failed.kept(decode_blocks(broken, what="test")):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.opus", "whole.f32"]


def transcription_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The tracks the transcription decodes itself from now on (in this process), in order."""
    import pipeline.packing

    decodes: list[Path] = []
    real_decode = pipeline.packing.decode_blocks

    def decode(path: Path, **kwargs: Any) -> Any:
        decodes.append(path)
        return real_decode(path, **kwargs)

    monkeypatch.setattr(pipeline.packing, "decode_blocks", decode)
    return decodes


@pytest.mark.model
def test_transcription_reads_the_decode_of_its_analysis(short_room: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A track's transcription reads the 16 kHz audio its analysis decoded (the track is decoded once per task),
    gets the same words as from a decode of its own, and the kept audio is gone when the task ends."""
    decodes = transcription_decodes(monkeypatch)
    settings = Settings(store=str(tmp_path / "store"), database_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                        work_dir=tmp_path / "work")
    job = jobs.ingest(settings, short_room)
    index = max(job.tracks, key=lambda i: load_room(short_room).tracks[i].info.duration)
    once = track.load_track_voices(settings, [track.process_track(settings, job, index)])[0][1]
    assert once is not None
    once_words = [(w.text, w.start, w.end) for s in once.segments for w in s.words]
    assert decodes == [] and once_words
    assert not list((tmp_path / "work").rglob("*.f32*"))

    monkeypatch.setattr(track, "speech_copy", lambda *args: None)  # no room for the copy: the track is decoded again
    settings = Settings(store=str(tmp_path / "store2"), database_url=f"sqlite:///{tmp_path / 'catalog2.sqlite'}",
                        work_dir=tmp_path / "work2")
    job = jobs.ingest(settings, short_room)
    twice = track.load_track_voices(settings, [track.process_track(settings, job, index)])[0][1]
    assert decodes and twice is not None
    assert [(w.text, w.start, w.end) for s in twice.segments for w in s.words] == once_words


@pytest.mark.model
def test_each_track_is_probed_once_in_a_run_with_worker_processes(short_room: Path, tmp_path: Path,
                                                                   room_copy: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest probes every track; the worker processes that analyse and transcribe them are handed those probes
    instead of running ffprobe on every track of the room again (counted by an ffprobe on PATH that logs and runs
    the real one). The room is a fresh copy: files this test process probed before would not be probed at all."""
    short_room = room_copy(short_room)
    real = shutil.which("ffprobe")
    assert real is not None
    calls = tmp_path / "ffprobe.log"
    wrapper = tmp_path / "bin" / "ffprobe"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nfor last; do :; done\necho "$last" >> {calls}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    settings = Settings(store=str(tmp_path / "store"), database_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                        work_dir=tmp_path / "work")
    assert process_room(settings, short_room, processes=2)["status"] == "published"
    probed = [Path(line).name for line in calls.read_text().splitlines()]
    tracks = [Path(str(t["file"])).name for t in manifest(short_room)["tracks"]]
    assert sorted(p for p in probed if p in tracks) == sorted(tracks), probed


@pytest.mark.model
def test_in_process_replay_first_transcribes_from_the_replay_phases_decode(short_room: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, the replay phase keeps each track's 16 kHz decode past its finish; the words phase transcribes
    from it, without decoding the track again, to the words a full run hears, and removes it. A Celery track task
    (no ``keep_decoded``: its words phase may run on another machine) keeps nothing."""
    decodes = transcription_decodes(monkeypatch)

    def words_of(settings: Settings, key: str) -> list[tuple[str, float, float]]:
        said = track.load_track_voices(settings, [key])[0][1]
        assert said is not None
        return [(w.text, w.start, w.end) for s in said.segments for w in s.words]

    full = Settings(store=str(tmp_path / "full"), database_url=f"sqlite:///{tmp_path / 'full.sqlite'}",
                    work_dir=tmp_path / "work-full")
    job = jobs.ingest(full, short_room)
    index = max(job.tracks, key=lambda i: load_room(short_room).tracks[i].info.duration)
    heard = words_of(full, track.process_track(full, job, index, keep_decoded=True))
    assert heard and decodes == []

    for keep, kept in ((True, True), (False, False)):
        settings = Settings(store=str(tmp_path / f"store-{keep}"), work_dir=tmp_path / f"work-{keep}",
                            database_url=f"sqlite:///{tmp_path / f'{keep}.sqlite'}", replay_first=True)
        job = jobs.ingest(settings, short_room)
        track.process_track(settings, job.in_phase(stages.REPLAY), index, keep_decoded=keep)
        jobs.discard_work(settings, job.in_phase(stages.REPLAY))  # the replay's finish
        carried = track.carried_speech(settings, job, index)
        assert carried.path.is_file() == kept
        assert sorted(p.name for p in (tmp_path / f"work-{keep}").rglob("*.f32")) == (
            [carried.path.name] if kept else [])
        decodes.clear()
        said = words_of(settings, track.process_track(settings, job.in_phase(stages.WORDS), index, keep_decoded=keep))
        assert decodes == ([] if kept else [load_room(short_room).tracks[index].path])
        assert said == heard
        assert not carried.path.exists()


def _modules_of_a_worker(barrier: Any, names: tuple[str, ...]) -> tuple[int, list[str]]:
    """This pool process's pid and which of ``names`` it has imported, once every pool process is here."""
    import sys

    barrier.wait(timeout=60)  # each pool process answers one check: none takes a second while waiting here
    return os.getpid(), [name for name in names if name in sys.modules]


@pytest.mark.model
def test_a_run_on_worker_processes_records_progress_from_here_and_its_workers_open_no_catalog(
        short_room: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tracks' progress reaches the catalog from the running process, once per track done; the worker
    processes, which analyse and transcribe, never import SQLAlchemy (its import and the catalog's schema check
    are CPU a run would spend on every worker)."""
    import multiprocessing

    from workers import runner

    workers = 2
    found: list[tuple[int, list[str]]] = []
    real_pool = runner.worker_pool

    class CheckedPool:
        """The run's pool, which answers the check from each of its processes before it shuts down."""

        def __init__(self, settings: Settings, count: int) -> None:
            self.pool, self.count = real_pool(settings, count), count

        def __enter__(self) -> Any:
            return self.pool.__enter__()

        def __exit__(self, *exc: Any) -> Any:
            if exc[0] is None:
                with multiprocessing.get_context("spawn").Manager() as manager:
                    barrier = manager.Barrier(self.count)
                    checks = [self.pool.submit(_modules_of_a_worker, barrier, ("sqlalchemy", "storage.catalog"))
                              for _ in range(self.count)]
                    found.extend(check.result(timeout=90) for check in checks)
            return self.pool.__exit__(*exc)

    reported: list[tuple[int, int]] = []  # (tracks done, tracks the job has: a declined speaker's is not one)
    real_report = track.report_tracks
    monkeypatch.setattr(runner, "worker_pool", CheckedPool)

    def report(settings: Settings, job: Job, done: int) -> None:
        reported.append((done, len(job.tracks)))
        real_report(settings, job, done)

    monkeypatch.setattr(track, "report_tracks", report)
    settings = Settings(store=str(tmp_path / "store"), database_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                        work_dir=tmp_path / "work")
    assert process_room(settings, short_room, processes=workers)["status"] == "published"
    tracks = reported[-1][1]
    assert tracks >= workers and [done for done, _ in reported] == list(range(1, tracks + 1)), reported
    assert len({pid for pid, _ in found}) == workers and all(imported == [] for _, imported in found), found
