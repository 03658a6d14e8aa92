"""The generated sample rooms are what the other tests rely on: valid rooms with varied codecs and rates,
speakers far apart in level, a late joiner, a rejoin, a declined speaker, and a ground truth that fits."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import InvalidRoom
from pipeline.manifest import load_room
from samples.generate import generate_room, main, parse_script
from tests.roomgen import audio_stream, duration, ebur128, make_room, manifest, script, truth


def test_sample_room_loads(sample_room: Path) -> None:
    room = load_room(sample_room)
    assert room.id == "founders-hour-2026-11-23"
    assert len(room.speakers) == 5 and len(room.tracks) == 6
    assert abs(room.duration - truth(sample_room)["duration"]) < 0.1


def test_short_room_loads_and_is_short(short_room: Path) -> None:
    room = load_room(short_room)
    assert 40 <= room.duration <= 60
    assert sum(not s.consent for s in room.speakers) == 1 and len(room.speakers) == 3


def test_sample_room_lasts_about_three_minutes(sample_room: Path) -> None:
    assert 165 <= truth(sample_room)["duration"] <= 215


def test_codecs_rates_and_channels_differ(sample_room: Path) -> None:
    streams = [audio_stream(sample_room / t["file"]) for t in manifest(sample_room)["tracks"]]
    codecs = {s["codec_name"] for s in streams}
    rates = {int(s["sample_rate"]) for s in streams}
    assert {"opus", "pcm_s16le", "mp3", "flac", "aac"} <= codecs
    assert {48_000, 44_100, 22_050, 16_000} <= rates
    assert {s["channels"] for s in streams} == {1, 2}


def test_speech_levels_are_at_least_15_db_apart(sample_room: Path) -> None:
    loudness: dict[str, float] = {}
    for track in manifest(sample_room)["tracks"]:
        report = ebur128(sample_room / track["file"])
        assert report["true_peak"] < 0.0, (track, report)  # loud speaker soft-clipped, never hard-clipped
        loudness[track["speaker"]] = max(loudness.get(track["speaker"], -99.0), report["integrated"])
    print("speech loudness per speaker (LUFS):", loudness)
    assert max(loudness.values()) - min(loudness.values()) >= 15.0, loudness


def test_noise_floor_before_speech(sample_room: Path) -> None:
    """Every track opens with noise only (before its speaker's first words): present, not digital silence,
    and around -60 dBFS."""
    turns = truth(sample_room)["turns"]
    for track in manifest(sample_room)["tracks"]:
        first = min(t["start"] for t in turns if t["speaker"] == track["speaker"] and t["start"] >= track["start"])
        lead = min(first - track["start"] - 0.05, 2.0)
        assert lead >= 0.5, (track, lead)
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(sample_room / track["file"]), "-t", f"{lead:.3f}",
                              "-ac", "1", "-f", "f32le", "-"], capture_output=True, check=True).stdout
        noise = np.frombuffer(raw, dtype=np.float32)
        rms_db = 20 * np.log10(np.sqrt(np.mean(noise.astype(np.float64) ** 2)) + 1e-12)
        assert -66 <= rms_db <= -50, (track, rms_db)


def test_late_joiner_rejoin_and_declined_speaker(sample_room: Path) -> None:
    data = manifest(sample_room)
    tracks = data["tracks"]
    by_speaker: dict[str, list[dict]] = {}
    for track in tracks:
        by_speaker.setdefault(track["speaker"], []).append(track)
    assert len(by_speaker["bob"]) == 2, "the speaker who leaves and rejoins has two tracks"
    first, second = sorted(by_speaker["bob"], key=lambda t: t["start"])
    assert second["start"] > first["start"] + duration(sample_room / first["file"])
    assert Path(first["file"]).suffix != Path(second["file"]).suffix
    assert by_speaker["zoe"][0]["start"] > 30.0, "the late joiner's track starts well after the room"
    declined = [s for s in data["speakers"] if s.get("consent") is False]
    assert [s["id"] for s in declined] == ["dave"]
    assert sum(t["speaker"] == "dave" for t in truth(sample_room)["turns"]) >= 2


def test_every_turn_lies_inside_its_speakers_track(sample_room: Path) -> None:
    spans = [(t["speaker"], t["start"], t["start"] + duration(sample_room / t["file"]))
             for t in manifest(sample_room)["tracks"]]
    for turn in truth(sample_room)["turns"]:
        assert any(s == turn["speaker"] and a <= turn["start"] and turn["end"] <= b for s, a, b in spans), turn


def test_truth_turns_are_sorted_and_inside_the_room(sample_room: Path) -> None:
    t = truth(sample_room)
    turns = t["turns"]
    starts = [turn["start"] for turn in turns]
    assert starts == sorted(starts)
    assert all(0.0 < turn["start"] < turn["end"] <= t["duration"] for turn in turns)
    assert {"speaker", "name", "start", "end", "text", "consent", "interjection"} <= set(turns[0])
    names = {s["id"]: s["name"] for s in manifest(sample_room)["speakers"]}
    assert all(turn["name"] == names[turn["speaker"]] for turn in turns)


def test_turn_timing_gaps_and_interjections(sample_room: Path) -> None:
    turns = truth(sample_room)["turns"]
    gaps = [t["start"] - max(o["end"] for o in turns[:n]) for n, t in enumerate(turns) if n and not t["interjection"]]
    assert all(0.29 <= g <= 1.21 for g in gaps), gaps
    assert len(set(round(g, 2) for g in gaps)) > len(gaps) // 2, "gaps vary"
    interjections = [t for t in turns if t["interjection"]]
    assert len(interjections) >= 2
    overlapping = [t for t in interjections
                   if any(o is not t and o["start"] < t["start"] < o["end"] for o in turns)]
    assert overlapping, "at least one interjection overlaps another speaker's turn"
    assert all(t["end"] - t["start"] < 1.6 for t in interjections)


def test_truth_times_are_where_the_speech_is(sample_room: Path) -> None:
    """espeak's own silence is trimmed: the track is loud inside a turn and at the noise floor just before it."""
    track = next(t for t in manifest(sample_room)["tracks"] if t["speaker"] == "bob")
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(sample_room / track["file"]), "-ac", "1", "-ar", "16000",
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    audio = np.frombuffer(raw, dtype=np.float32)
    for turn in [t for t in truth(sample_room)["turns"] if t["speaker"] == "bob"][:3]:
        at = int((turn["start"] - track["start"]) * 16_000)
        before = audio[at - 1600:at - 80]
        first = audio[at:at + 1600]
        assert np.abs(before).max() < 0.01 and np.abs(first).max() > 0.05, turn


def test_hostile_metadata_survives(sample_room: Path) -> None:
    room = load_room(sample_room)
    text = room.title + room.description + "".join(s.name for s in room.speakers)
    for needle in ("&", "<", '"', "é", "ë", "🎙"):
        assert needle in text, needle


def test_generation_is_deterministic(short_room: Path, tmp_path: Path) -> None:
    again = make_room("short", tmp_path)
    assert (again / "truth.json").read_bytes() == (short_room / "truth.json").read_bytes()
    assert (again / "room.json").read_bytes() == (short_room / "room.json").read_bytes()
    for track in manifest(short_room)["tracks"]:
        digest = [hashlib.sha256((room / track["file"]).read_bytes()).hexdigest() for room in (short_room, again)]
        assert digest[0] == digest[1], track["file"]


def test_another_seed_gives_other_timing(short_room: Path, tmp_path: Path) -> None:
    other = make_room("short", tmp_path, seed=8)
    assert [t["start"] for t in truth(other)["turns"]] != [t["start"] for t in truth(short_room)["turns"]]
    assert [t["text"] for t in truth(other)["turns"]] == [t["text"] for t in truth(short_room)["turns"]]


def test_cli_writes_the_room(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["short", str(tmp_path)])
    folder = Path(capsys.readouterr().out.strip())
    assert folder == tmp_path / "short-room-2026-11-20"
    assert load_room(folder).id == "short-room-2026-11-20"


def test_bad_scripts_are_refused_with_line_numbers(tmp_path: Path) -> None:
    bad = ("# room id=x show=y\n# speaker a name=A codec=ogg-vorbis\n# speaker a name=B\n"
           "a: hello\nnobody: hi\njust words\n# speaker c voice=en\n")
    with pytest.raises(InvalidRoom) as caught:
        parse_script(bad, name="bad.txt")
    problems = "\n".join(caught.value.problems)
    for expected in ("title", "declared twice", "unknown codec", "'nobody' is not declared", "line 6", "line 7"):
        assert expected in problems, (expected, problems)


def test_speaking_outside_the_room_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "late.txt"
    path.write_text("# room id=r show=s title=T\n# speaker a name=A\n# speaker b name=B\n"
                    "b: I am not here yet.\n# join b\na: hello there.\n", encoding="utf-8")
    with pytest.raises(InvalidRoom, match="while not in the room"):
        generate_room(path, tmp_path / "out")


def test_bundled_scripts_parse() -> None:
    parsed = parse_script(script("founders-hour").read_text(encoding="utf-8"))
    voices = {m.voice for m in parsed.cast}
    assert len(voices) == len(parsed.cast) == 5
    assert len({m.speed for m in parsed.cast}) >= 3
