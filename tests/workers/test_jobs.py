"""The stages' own functions (workers.context, workers.jobs, workers.track), called directly on the short sample
room with a folder store and a SQLite catalog: what a job carries, what ingest records, how a room published from
the same inputs is left alone, and what a failure keeps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import InvalidRoom
from storage import layout
from tests.roomgen import manifest, write_manifest
from workers import jobs, stages, track
from workers.config import Settings
from workers.context import Context, Job, phases, run_settings
from workers.runner import process_room


def _settings(home: Path, **changes: Any) -> Settings:
    changes.setdefault("transcribe", False)
    return Settings(store=str(home / "store"), database_url=f"sqlite:///{home / 'catalog.sqlite'}",
                    work_dir=home / "work", cache_dir=home / "cache", **changes)


def test_a_job_travels_as_json_and_its_phase_decides_what_runs(tmp_path: Path) -> None:
    job = Job("ep", "store:inbox/ep/", "a" * 64, "en", (0, 2), phase=stages.WORDS)
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))) == job
    older = {k: v for k, v in job.to_dict().items() if k != "phase"}  # a message queued before phases existed
    assert Job.from_dict(older).phase == stages.FULL
    transcribing = _settings(tmp_path, transcribe=True, replay_first=True)
    assert phases(transcribing) == (stages.REPLAY, stages.WORDS)
    assert phases(transcribing.replace(replay_first=False)) == (stages.FULL,)
    assert phases(_settings(tmp_path, replay_first=True)) == (stages.FULL,)  # nothing to transcribe: one run
    assert run_settings(transcribing, job.in_phase(stages.REPLAY)).transcribe is False
    assert run_settings(transcribing, job).transcribe is True
    replay_key = track.track_result_key(transcribing, job.in_phase(stages.REPLAY), 2)
    assert replay_key != track.track_result_key(transcribing, job, 2)  # the phases never read each other's result
    assert replay_key == layout.track_result_key("ep", "a" * 64, 2, transcribed=False)


def test_ingest_records_the_room_and_queues_only_consenting_tracks(short_room: Path, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    job = jobs.ingest(settings, short_room)
    data = manifest(short_room)
    declined = {s["id"] for s in data["speakers"] if s.get("consent") is False}
    assert declined, "the short room has a speaker who declined"
    expected = tuple(i for i, t in enumerate(data["tracks"]) if t["speaker"] not in declined)
    assert sorted(job.tracks) == sorted(expected) and len(job.tracks) < len(data["tracks"])
    assert job.episode_id == data["id"] and len(job.input_hash) == 64 and job.room_dir == str(short_room)
    episode = Context.of(settings).catalog.get_episode(job.episode_id)
    assert episode is not None and episode.status != "published" and episode.stage == "analysing"
    names = {s["id"]: s["name"] for s in data["speakers"]}
    persons = {p.name for p in episode.persons}  # who the feed will name: never a speaker who declined
    assert persons and not persons & {names[d] for d in declined}


def test_an_invalid_room_is_recorded_failed_naming_the_file(short_room: Path, tmp_path: Path) -> None:
    room = tmp_path / "broken" / short_room.name
    shutil.copytree(short_room, room)
    data = manifest(room)
    missing = str(data["tracks"][1]["file"])
    (room / missing).unlink()
    settings = _settings(tmp_path)
    with pytest.raises(InvalidRoom) as raised:
        jobs.ingest(settings, room)
    assert missing in str(raised.value) and str(data["id"]) in str(raised.value)
    episode = Context.of(settings).catalog.get_episode(str(data["id"]))
    assert episode is not None and episode.status == "failed" and missing in episode.error


def test_a_room_published_from_the_same_inputs_is_not_run_again(short_room: Path, tmp_path: Path) -> None:
    """``ingest_once`` (a queued room, maybe delivered twice): nothing to do for the same inputs, except finishing a
    feed a crash left unwritten; a changed room is a new job."""
    settings = _settings(tmp_path)
    room = tmp_path / "room" / short_room.name
    shutil.copytree(short_room, room)
    process_room(settings, room, processes=2)
    feed = tmp_path / "store" / "shows" / str(manifest(room)["show"]) / "feed.xml"
    feed.unlink()  # as if the run had died between marking the episode published and uploading its feed
    assert jobs.ingest_once(settings, str(room)) is None
    assert feed.is_file() and "<item>" in feed.read_text(encoding="utf-8")
    data = manifest(room)
    data["title"] = "A corrected title"
    write_manifest(room, data)
    again = jobs.ingest_once(settings, str(room))
    assert again is not None and again.episode_id == data["id"]
    assert not jobs.published_from(Context.of(settings).catalog, again.episode_id, again.input_hash)


def test_a_failure_after_the_replay_keeps_it_published_and_the_first_error_stays(short_room: Path,
                                                                              tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    room = tmp_path / "room" / short_room.name
    shutil.copytree(short_room, room)
    process_room(settings, room, processes=2)
    catalog = Context.of(settings).catalog
    episode_id = str(manifest(room)["id"])
    digest = catalog.get_episode(episode_id).input_hash
    assert jobs.replay_out(catalog, episode_id, digest) and not jobs.replay_out(catalog, episode_id, "b" * 64)
    words = Job(episode_id, str(room), digest, "en", (0,), phase=stages.WORDS)
    jobs.fail_room(settings, words, "the transcription model could not load")
    episode = catalog.get_episode(episode_id)
    assert episode is not None and episode.status == "published" and "could not load" in episode.error
    jobs.fail_room(settings, words.in_phase(stages.FULL), "a later error")
    assert catalog.get_episode(episode_id).status == "failed"
    jobs.fail_room(settings, words.in_phase(stages.FULL), "yet another")
    assert catalog.get_episode(episode_id).error == "a later error"


def test_discard_work_removes_the_decoded_copies_and_nothing_else(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    job = Job("ep", str(tmp_path), "c" * 64, None, (0, 1))
    copy = track.decoded_copy(settings, job, 0)
    copy.path.parent.mkdir(parents=True)
    copy.path.write_bytes(b"\0" * 16)
    older = Path(settings.work_dir) / "ep" / f"{track.DECODED_PREFIX}{'d' * 16}"  # an earlier run's inputs
    older.mkdir()
    kept = Path(settings.work_dir) / "ep" / "notes.json"
    kept.write_text("{}")
    speech = track.carried_speech(settings, job, 0)  # kept by the replay phase for the words phase
    speech.path.parent.mkdir(parents=True)
    speech.path.write_bytes(b"\0" * 16)
    jobs.discard_work(settings, job.in_phase(stages.REPLAY))
    assert not copy.path.parent.exists() and not older.exists() and kept.is_file() and speech.path.is_file()
    jobs.discard_work(settings, job.in_phase(stages.WORDS))
    assert not speech.path.parent.exists() and kept.is_file()
