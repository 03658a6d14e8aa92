"""Room sources: each platform's output, built here in its documented shape from generated speech (a late joiner,
a speaker who rejoins), imported into a room that validates, names its speakers and, processed by the real
``roomcast process --source``, puts every speaker's speech where it was on the room clock (within 20 ms on the
replay) and publishes. Inputs that do not add up, and hostile archives, fail with nothing written."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import feedparser
import jiwer
import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.errors import InvalidSource
from pipeline.importers import ArchiveLimits, import_room
from pipeline.importers.aligned import speaker_name
from pipeline.manifest import load_room
from tests import platforms
from tests.platforms import NAMES, RATE, Scenario, onset
from tests.servers import RedisServer
from workers.cli import main

BUILDERS: dict[str, Callable[[Scenario, Path], Path]] = {
    "livekit": platforms.livekit, "twilio": platforms.twilio, "agora": platforms.agora,
    "aligned": platforms.craig_zip,
}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return platforms.scenario(tmp_path_factory.mktemp("speech"))


def _env(home: Path) -> dict[str, str]:
    return {"ROOMCAST_DATABASE_URL": f"sqlite:///{home / 'catalog.sqlite'}", "ROOMCAST_WORK_DIR": str(home / "work"),
            "ROOMCAST_CACHE_DIR": str(home / "cache"), "ROOMCAST_STORE": str(home / "store"), "HF_HUB_OFFLINE": "1",
            "ROOMCAST_MIN_CHAPTER_S": "5"}


@pytest.fixture(scope="module", params=list(BUILDERS))
def processed(request: pytest.FixtureRequest, scenario: Scenario,
              tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One platform's output imported with ``roomcast import`` and processed by ``roomcast process --source``."""
    source = request.param
    home = tmp_path_factory.mktemp(f"source-{source}")
    raw = BUILDERS[source](scenario, home / "raw")
    runner = CliRunner()
    imported = runner.invoke(main, ["import", source, str(raw), "--out", str(home / "room"), "--show", "founders"],
                             env=_env(home))
    assert imported.exit_code == 0, imported.output
    done = runner.invoke(main, ["process", "--source", source, str(raw), "--no-transcribe", "-q"], env=_env(home))
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    return {"source": source, "home": home, "raw": raw, "room": home / "room", "summary": summary,
            "report": imported.stdout, "store": home / "store"}


@pytest.mark.slow
def test_imported_room_validates_and_names_its_speakers(processed: dict[str, Any], scenario: Scenario) -> None:
    room = load_room(processed["room"])
    assert room.show == "founders"
    assert sorted(s.name for s in room.speakers) == sorted(NAMES.values())
    by_name = {s.name: s.id for s in room.speakers}
    segments = {name: sorted(t.start for t in room.tracks if t.speaker == by_name[name]) for name in by_name}
    if processed["source"] == "aligned":  # every file starts at the room's start, absences are silence
        assert all(starts == [0.0] for starts in segments.values())
    else:
        truth = {NAMES[k]: sorted(s.start for s in scenario.segments if s.speaker == k) for k in NAMES}
        for name, starts in segments.items():
            assert starts == pytest.approx(truth[name], abs=0.002), name  # Chloé twice: she rejoined
        assert len(segments[NAMES["chloe"]]) == 2
    assert all(line in processed["report"] for line in (f"speaker {by_name['Bob Okafor']}: Bob Okafor",))


@pytest.mark.slow
def test_speech_lands_where_it_was_said_on_the_replay(processed: dict[str, Any], scenario: Scenario) -> None:
    summary = processed["summary"]
    replay = (processed["store"] / "shows" / "rooms" / "episodes" / summary["episode"] / "replay.mp3")
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(replay), "-ac", "1", "-ar", str(RATE), "-f", "f32le",
                          "-"], capture_output=True, check=True).stdout
    audio = np.frombuffer(raw, dtype=np.float32)
    errors = []
    for speaker, when in scenario.onsets:
        expected = when - summary["trim_start_s"]
        errors.append((speaker, round(onset(audio, RATE, expected) - expected, 4)))
    # Each turn where it was said relative to the first one (the alignment between tracks), within 20 ms; the room
    # clock itself may start a few ms early (Agora's stays are placed before their AAC priming samples).
    anchor = errors[0][1]
    assert all(abs(error - anchor) <= 0.020 for _, error in errors), errors
    assert abs(anchor) <= 0.030, errors


@pytest.mark.slow
def test_imported_room_publishes(processed: dict[str, Any]) -> None:
    summary = processed["summary"]
    assert summary["status"] == "published"
    feed = feedparser.parse((processed["store"] / "shows" / "rooms" / "feed.xml").read_bytes())
    assert [e.title for e in feed.entries] == [load_room(processed["room"]).title]
    assert feed.entries[0].enclosures[0].href.endswith(f"{summary['episode']}/replay.mp3")


@pytest.fixture(scope="module")
def livekit_raw(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return platforms.livekit(scenario, tmp_path_factory.mktemp("livekit") / "raw")


@pytest.fixture
def livekit_copy(livekit_raw: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(livekit_raw, tmp_path / "raw"))


def _refused(source: str, path: Path, out: Path, **kwargs: Any) -> InvalidSource:
    before = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
    with pytest.raises(InvalidSource) as caught:
        import_room(source, path, out, **kwargs)
    assert not out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == before  # no half-written room beside it
    return caught.value


def test_reports_what_it_skipped(scenario: Scenario, tmp_path: Path) -> None:
    raw = platforms.twilio(scenario, tmp_path / "raw")
    report = import_room("twilio", raw, tmp_path / "room")
    assert any("video" in why for _, why in report.skipped)
    assert {t.speaker for t in report.tracks} == {"alice-martin", "bob-okafor", "chloe-dubois"}
    assert all(t.duration > 4 for t in report.tracks)


def test_a_file_the_metadata_names_is_missing(livekit_copy: Path, tmp_path: Path) -> None:
    (livekit_copy / "files" / "founders-live-bob-1.webm").unlink()
    error = _refused("livekit", livekit_copy, tmp_path / "out" / "room")
    assert error.missing == ("founders-live-bob-1.webm",)
    assert "founders-live-bob-1.webm" in str(error)


def test_a_file_no_metadata_names_is_refused(livekit_copy: Path, tmp_path: Path) -> None:
    shutil.copy(livekit_copy / "files" / "founders-live-alice-0.ogg", livekit_copy / "files" / "stranger.ogg")
    assert "stranger.ogg" in str(_refused("livekit", livekit_copy, tmp_path / "out" / "room"))


def test_a_start_after_the_end_is_refused(livekit_copy: Path, tmp_path: Path) -> None:
    info = json.loads((livekit_copy / "egress-1.json").read_text())
    info["fileResults"][0]["endedAt"] = str(int(info["fileResults"][0]["startedAt"]) - 1_000_000_000)
    (livekit_copy / "egress-1.json").write_text(json.dumps(info))
    error = _refused("livekit", livekit_copy, tmp_path / "out" / "room")
    assert "founders-live-bob-1.webm" in str(error) and "after its end" in str(error)


def test_overlapping_tracks_of_one_speaker_are_refused(livekit_copy: Path, tmp_path: Path) -> None:
    info = json.loads((livekit_copy / "egress-3.json").read_text())
    first = json.loads((livekit_copy / "egress-2.json").read_text())
    info["fileResults"][0]["startedAt"] = str(int(first["fileResults"][0]["startedAt"]) + 3_000_000_000)
    (livekit_copy / "egress-3.json").write_text(json.dumps(info))
    error = _refused("livekit", livekit_copy, tmp_path / "out" / "room")
    assert "founders-live-chloe-3.ogg" in str(error) and "twice at once" in str(error)


def test_mixed_recording_makes_a_mixed_manifest(scenario: Scenario, tmp_path: Path) -> None:
    mix = platforms.encode(np.sum([scenario.full_track(s) for s in NAMES], axis=0), tmp_path / "space" / "x-space.m4a",
                           "-c:a", "aac")
    report = import_room("mixed", mix, tmp_path / "room", show="spaces")
    data = json.loads((tmp_path / "room" / "room.json").read_text())
    assert data["recording"] == "mixed" and data["show"] == "spaces" and "speakers" not in data
    assert data["tracks"] == [{"file": "tracks/mixed-1.m4a", "start": 0.0}]
    assert (tmp_path / "room" / "tracks" / "mixed-1.m4a").stat().st_size == mix.stat().st_size
    assert report.tracks[0].duration == pytest.approx(scenario.length, abs=0.1)


@pytest.mark.slow
@pytest.mark.model
def test_a_mixed_download_processes_directly(scenario: Scenario, tmp_path: Path) -> None:
    """``roomcast process --source mixed`` on a platform's single file: imported, diarized, transcribed and
    published. The scenario's three speakers share one espeak-ng voice, so one voice is found, numbered."""
    mix = platforms.encode(np.sum([scenario.full_track(s) for s in NAMES], axis=0), tmp_path / "space" / "x-space.m4a",
                           "-c:a", "aac")
    done = CliRunner().invoke(main, ["process", "--source", "mixed", str(mix), "-q"], env=_env(tmp_path))
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["status"] == "published" and summary["words"] >= 30
    assert summary["duration_s"] == pytest.approx(scenario.length, abs=4.0)
    words = json.loads(next((tmp_path / "store").glob("shows/*/episodes/*/words.json")).read_text())
    assert list(words["speakers"].values()) == ["Speaker 1"]
    said = " ".join(re.sub(r"[^a-z' ]", " ", w["text"].lower()) for w in words["words"])
    script = " ".join(re.sub(r"[^a-z' ]", " ", text.lower()) for _, text in platforms.TURNS)
    assert jiwer.wer(" ".join(script.split()), " ".join(said.split())) <= 0.25


def test_aligned_exports_name_speakers_from_their_files(tmp_path: Path) -> None:
    assert speaker_name("audioAliceMartin21234567890") == (None, "Alice Martin")  # Zoom
    assert speaker_name("Bob Okafor - Riverside") == (None, "Bob Okafor")
    assert speaker_name("chloe-dubois") == (None, "Chloe Dubois")  # Zencastr
    assert speaker_name("2-bob_okafor") == (2, "bob_okafor")  # Craig, without info.txt
    folder = tmp_path / "zoom"
    for stem in ("audioAliceMartin21234567890", "audioBobOkafor31234567890"):
        platforms.encode(np.zeros(RATE, dtype=np.float32) + 0.01, folder / f"{stem}.m4a", "-c:a", "aac")
    report = import_room("aligned", folder, tmp_path / "room")
    assert sorted(s.name for s in report.speakers) == ["Alice Martin", "Bob Okafor"]
    assert load_room(tmp_path / "room").title == "zoom"


def _zip(path: Path, entries: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return path


@pytest.fixture(scope="module")
def flac(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = platforms.encode(np.full(RATE, 0.01, dtype=np.float32), tmp_path_factory.mktemp("flac") / "a.flac",
                            "-c:a", "flac")
    return path.read_bytes()


@pytest.mark.parametrize("case", ["traversal", "absolute", "symlink", "bomb", "truncated"])
def test_hostile_archives_fail_with_nothing_written(case: str, flac: bytes, tmp_path: Path) -> None:
    good = {"1-alice.flac": flac}
    archive = tmp_path / "in" / f"{case}.zip"
    archive.parent.mkdir()
    if case == "traversal":
        _zip(archive, good | {"../../escaped.flac": flac})
    elif case == "absolute":
        _zip(archive, good | {"/tmp/escaped.flac": flac})
    elif case == "symlink":
        _zip(archive, good, symlink="2-bob.flac")
    elif case == "bomb":
        _zip(archive, good | {"2-bob.flac": bytes(64 << 20)})
    else:
        whole = _zip(tmp_path / "whole.zip", good | {"2-bob.flac": flac}).read_bytes()
        archive.write_bytes(whole[: len(whole) // 2])
    error = _refused("aligned", archive, tmp_path / "out" / "room", limits=ArchiveLimits(max_bytes=32 << 20))
    assert archive.name in str(error)
    assert not (tmp_path / "escaped.flac").exists() and not Path("/tmp/escaped.flac").exists()
    if case in ("traversal", "absolute", "symlink"):
        assert "entry" in str(error)


def test_a_zip_larger_than_the_cap_is_refused(flac: bytes, tmp_path: Path) -> None:
    archive = _zip(tmp_path / "big.zip", {"1-alice.flac": flac, "2-bob.flac": flac})
    error = _refused("aligned", archive, tmp_path / "out" / "room", limits=ArchiveLimits(max_bytes=len(flac)))
    assert "more than the" in str(error)


def test_a_symlink_in_a_folder_is_not_followed(flac: bytes, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "1-alice.flac").write_bytes(flac)
    outside = tmp_path / "secret.flac"
    outside.write_bytes(flac)
    os.symlink(outside, folder / "2-bob.flac")
    assert "2-bob.flac" in str(_refused("aligned", folder, tmp_path / "out" / "room"))


def test_a_truncated_zip_that_lies_about_sizes_is_refused(flac: bytes, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("1-alice.flac", flac)
    data = bytearray(buffer.getvalue())
    data[60:80] = bytes(20)  # damage the entry's data: its CRC no longer matches
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    assert "bad.zip" in str(_refused("aligned", tmp_path / "bad.zip", tmp_path / "out" / "room"))


@pytest.fixture()
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.redis
def test_scan_of_an_inbox_of_raw_outputs(livekit_raw: Path, redis: RedisServer, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    shutil.copytree(livekit_raw, inbox / "room-a")
    partial = Path(shutil.copytree(livekit_raw, inbox / "room-b"))
    for n in range(4):  # another room: its egresses name other files, one of which is still uploading
        info = json.loads((partial / f"egress-{n}.json").read_text())
        info["roomName"] = "other-room"
        (partial / f"egress-{n}.json").write_text(json.dumps(info))
    waiting = partial / "files" / "founders-live-chloe-3.ogg"
    held = waiting.read_bytes()
    waiting.unlink()
    env = _env(tmp_path) | {"ROOMCAST_BROKER_URL": redis.url}
    runner = CliRunner()
    first = runner.invoke(main, ["scan", "--source", "livekit", str(inbox)], env=env)
    assert first.exit_code == 0, first.output
    assert "founders-live-20261123-180000: queued" in first.output
    assert "room-b: incomplete (waiting for founders-live-chloe-3.ogg)" in first.output
    waiting.write_bytes(held)
    second = runner.invoke(main, ["scan", "--source", "livekit", str(inbox)], env=env)
    assert "founders-live-20261123-180000: duplicate" in second.output
    assert "other-room-20261123-180000: queued" in second.output
    assert redis.client().llen("roomcast") == 2
    assert (tmp_path / "store" / "inbox" / "other-room-20261123-180000" / "room.json").is_file()


@pytest.mark.redis
def test_submit_imports_a_raw_output_and_queues_it_once(livekit_raw: Path, redis: RedisServer,
                                                       tmp_path: Path) -> None:
    """``roomcast submit --source``: the platform's output is imported, uploaded to the inbox as a room and
    queued; submitting the same output again is a duplicate (the import is the same room, byte for byte)."""
    env = _env(tmp_path) | {"ROOMCAST_BROKER_URL": redis.url}
    runner = CliRunner()
    first = runner.invoke(main, ["submit", "--source", "livekit", str(livekit_raw)], env=env)
    assert first.exit_code == 0, first.output
    assert "founders-live-20261123-180000: queued" in first.output
    second = runner.invoke(main, ["submit", "--source", "livekit", str(livekit_raw)], env=env)
    assert second.exit_code == 0 and "founders-live-20261123-180000: duplicate" in second.output, second.output
    assert redis.client().llen("roomcast") == 1
    uploaded = tmp_path / "store" / "inbox" / "founders-live-20261123-180000"
    room = json.loads((uploaded / "room.json").read_text(encoding="utf-8"))
    assert sorted({t["speaker"] for t in room["tracks"]}) == sorted(s["id"] for s in room["speakers"])
    assert all((uploaded / t["file"]).is_file() for t in room["tracks"])
    bad = runner.invoke(main, ["submit", "--source", "twilio", str(livekit_raw)], env=env)
    assert bad.exit_code != 0 and str(livekit_raw.name) in bad.output, bad.output
    assert redis.client().llen("roomcast") == 1
