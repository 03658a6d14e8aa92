"""Mixed recordings, speakers found by voice: generated multitrack rooms summed into one file by ffmpeg
(:mod:`tests.mixdown`), their ground truth kept, then diarized on their own or run through the whole pipeline
beside the show's multitrack rooms, whose voice prints name the mixed room's speakers."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from tests.benchmarks.benchrooms import DISTINCT_VOICES, build_room
from tests.mixdown import diarize_recording, error_rate, label_map, mix_down, truth_turns, words_right
from tests.roomgen import make_room, speak, write_wav
from workers.cli import main
from workers.config import Settings
from workers.runner import process_room

SHOW = "founders-hour"
PODCAST_NS = "https://podcastindex.org/namespace/1.0"
DAVE = ("Dave", "Novák", "rather not be in the replay")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("diarize")


@pytest.mark.parametrize("voices", [2, 4])
def test_the_number_of_voices_is_found_and_turns_match_the_truth(generated: Path, voices: int) -> None:
    """Turns of 4-8 s, levels 12 dB apart, the last speaker leaving for a while and coming back: the clustering
    is not told how many people there are."""
    order = [0, 1] if voices == 2 else [0, 1, 2, 0, 1, 0, 2, 1, 3, 0, 3, 2]
    room = build_room(generated / f"room-{voices}", minutes=1.5, speakers=voices, spread_db=12.0,
                      loudest_db=-18.0, voices=DISTINCT_VOICES, turn_order=order)
    mixed = mix_down(room.folder, generated)
    found = diarize_recording(mixed / "recording.mp3")
    truth = truth_turns(mixed)
    turns = [(t.start, t.end, f"voice-{t.speaker}") for t in found.turns]
    assert found.speakers == voices, [(round(a, 1), round(b, 1), s) for a, b, s in turns]
    assert set(label_map(truth, turns).values()) == {f"s{n}" for n in range(voices)}
    assert error_rate(truth, turns) <= 0.10


def test_one_voice_and_silence_are_no_error(generated: Path) -> None:
    one = build_room(generated / "room-1", minutes=0.5, speakers=1, voices=DISTINCT_VOICES)
    found = diarize_recording(mix_down(one.folder, generated) / "recording.mp3")
    assert found.speakers == 1 and found.turns
    rng = np.random.default_rng(3)
    quiet = write_wav(generated / "quiet.wav", rng.normal(0.0, 10 ** (-70 / 20), 16_000 * 30).astype(np.float32))
    nobody = diarize_recording(quiet)
    assert nobody.speakers == 0 and nobody.turns == ()


# --- the whole pipeline: a show's multitrack room, then mixed recordings of it -----------------------------------


@pytest.fixture(scope="module")
def show(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The ``short`` room published as multitrack (its prints join the library), then its mixdown, with no
    speakers listed: Alice and Zoë consented, Dave declined."""
    home = tmp_path_factory.mktemp("mixed-show")
    rooms = home / "rooms"
    room = make_room("short", rooms)
    settings = Settings(store=str(home / "store"), database_url=f"sqlite:///{home / 'catalog.sqlite'}",
                        work_dir=home / "work", cache_dir=home / "cache")
    env = dict(os.environ, ROOMCAST_STORE=settings.store, ROOMCAST_DATABASE_URL=settings.database_url,
               ROOMCAST_WORK_DIR=str(settings.work_dir), ROOMCAST_CACHE_DIR=str(settings.cache_dir))
    multitrack = process_room(settings, room, processes=2)
    mixed_room = mix_down(room, rooms)
    mixed = process_room(settings, mixed_room, processes=2)
    return {"home": home, "rooms": rooms, "room": room, "settings": settings, "env": env, "multitrack": multitrack,
            "mixed_room": mixed_room, "mixed": mixed}


def _episode(state: dict[str, Any], episode_id: str) -> Path:
    return Path(state["settings"].store) / "shows" / SHOW / "episodes" / episode_id


def _words(state: dict[str, Any], episode_id: str) -> dict[str, Any]:
    return json.loads((_episode(state, episode_id) / "words.json").read_text(encoding="utf-8"))


def _truth_on_replay(room: Path, trim_start: float, consenting: bool = True) -> list[tuple[float, float, str]]:
    truth = json.loads((room / "truth.json").read_text(encoding="utf-8"))
    return [(t["start"] - trim_start, t["end"] - trim_start, t["speaker"]) for t in truth["turns"]
            if t.get("consent", True) == consenting]


def _share_right(state: dict[str, Any], episode_id: str, room: Path, trim_start: float) -> float:
    words = [(w["start"], w["end"], w["speaker"]) for w in _words(state, episode_id)["words"]]
    truth = _truth_on_replay(room, trim_start)
    return words_right(truth, words, names={s: s for s in {t[2] for t in truth}})


@pytest.mark.slow
@pytest.mark.model
def test_known_voices_are_named_and_words_land_on_their_speaker(show: dict[str, Any]) -> None:
    episode = show["mixed"]["episode"]
    assert show["mixed"]["status"] == "published"
    data = _words(show, episode)
    assert data["speakers"] == {"alice": "Alice Martin", "zoe": "Zoë O'Brien & <Friends>"}
    mixed_right = _share_right(show, episode, show["mixed_room"], show["mixed"]["trim_start_s"])
    multitrack_right = _share_right(show, show["multitrack"]["episode"], show["room"],
                                    show["multitrack"]["trim_start_s"])
    assert multitrack_right >= 0.95
    assert mixed_right >= 0.95, (mixed_right, multitrack_right)
    feed = ElementTree.parse(Path(show["settings"].store) / "shows" / SHOW / "feed.xml")
    item = next(i for i in feed.iter("item") if f"/{episode}/" in (i.findtext("link") or ""))
    persons = {p.text for p in item.iter(f"{{{PODCAST_NS}}}person")}
    assert persons == {"Alice Martin", "Zoë O'Brien & <Friends>"}


@pytest.mark.slow
@pytest.mark.model
def test_a_declined_voice_is_silenced_and_absent_from_every_text(show: dict[str, Any]) -> None:
    folder = _episode(show, show["mixed"]["episode"])
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(folder / "replay.mp3"), "-ac", "1", "-ar", "16000",
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    audio = np.frombuffer(raw, dtype=np.float32)
    others = _truth_on_replay(show["mixed_room"], show["mixed"]["trim_start_s"])
    declined = _truth_on_replay(show["mixed_room"], show["mixed"]["trim_start_s"], consenting=False)
    assert declined
    for start, end, _ in declined:
        # the part of Dave's turn nobody else speaks over, 0.3 s in from each edge (where turns are cut)
        if any(a < end and b > start for a, b, _ in others):
            continue
        piece = audio[int((start + 0.3) * 16000):int((end - 0.3) * 16000)]
        assert piece.size > 16000
        level = 20 * np.log10(np.sqrt(np.mean(piece.astype(np.float64) ** 2)) + 1e-12)
        assert level < -50.0, level
    texts = [p for p in folder.iterdir() if p.suffix in (".json", ".srt", ".vtt", ".txt", ".html")]
    texts.append(Path(show["settings"].store) / "shows" / SHOW / "feed.xml")
    for path in texts:
        body = path.read_text(encoding="utf-8")
        for mark in DAVE:
            assert mark.lower() not in body.lower(), (path.name, mark)


def _cli(show: dict[str, Any], *args: str) -> Any:
    result = CliRunner().invoke(main, list(args), env=show["env"], catch_exceptions=False)
    return result


@pytest.mark.slow
@pytest.mark.model
def test_speakers_list_forget_and_naming_by_hand(show: dict[str, Any]) -> None:
    listed = _cli(show, "speakers", "list", SHOW)
    assert listed.exit_code == 0
    lines = {line.split()[0]: line for line in listed.output.splitlines()}
    assert set(lines) == {"alice", "zoe", "dave"} and "declined" in lines["dave"]
    gone = _cli(show, "speakers", "forget", SHOW, "alice")
    assert gone.exit_code == 0, gone.output
    engine = create_engine(show["settings"].database_url)
    with engine.connect() as db:
        rows = db.execute(text("SELECT speaker_id FROM voice_prints WHERE show_id = :s"), {"s": SHOW}).scalars()
        assert sorted(rows) == ["dave", "zoe"]
    engine.dispose()
    assert _cli(show, "speakers", "forget", SHOW, "alice").exit_code != 0

    # The next mixed room, in two parts: Zoë is still known, Alice is a voice like any other.
    again = mix_down(show["room"], show["rooms"], room_id="short-room-again", parts=2, codec="m4a")
    summary = process_room(show["settings"], again, processes=2)
    assert summary["status"] == "published"
    speakers = _words(show, "short-room-again")["speakers"]
    assert speakers["zoe"] == "Zoë O'Brien & <Friends>" and "alice" not in speakers
    numbered = [k for k, v in speakers.items() if re.fullmatch(r"Speaker \d+", v)]
    assert len(numbered) == 1
    words = [(w["start"], w["end"], w["speaker"]) for w in _words(show, "short-room-again")["words"]]
    truth = _truth_on_replay(again, summary["trim_start_s"])
    assert words_right(truth, words, names={numbered[0]: "alice", "zoe": "zoe"}) >= 0.9

    named = _cli(show, "episode", "speakers", "short-room-again", "--name", f"{speakers[numbered[0]]}=Ana Ruiz")
    assert named.exit_code == 0, named.output
    renamed = _words(show, "short-room-again")["speakers"]
    assert renamed[numbered[0]] == "Ana Ruiz"
    transcript = (_episode(show, "short-room-again") / "transcript.vtt").read_text(encoding="utf-8")
    assert "<v Ana Ruiz>" in transcript and "<v Speaker" not in transcript
    listed = _cli(show, "episode", "speakers", "short-room-again")
    assert "Ana Ruiz" in listed.output


@pytest.mark.slow
@pytest.mark.model
def test_a_mixed_room_of_silence_or_one_voice_publishes(show: dict[str, Any], generated: Path) -> None:
    folder = generated / "silent-room"
    folder.mkdir()
    rng = np.random.default_rng(9)
    write_wav(folder / "recording.wav", rng.normal(0.0, 10 ** (-65 / 20), 16_000 * 40).astype(np.float32))
    (folder / "room.json").write_text(json.dumps({
        "id": "silent-mixed", "show": "quiet-show", "title": "Nobody spoke", "recorded_at": "2026-12-01T10:00:00Z",
        "language": "en", "recording": "mixed", "tracks": [{"file": "recording.wav", "start": 0}]}))
    silent = process_room(show["settings"], folder, processes=2)
    assert silent["status"] == "published" and silent["words"] == 0 and silent["chapters"] == 0

    voice = generated / "one-voice"
    voice.mkdir()
    speech = speak("Welcome to a room with only one person in it. I will talk for a little while about "
                   "the weather and then say goodbye.", voice / "line.wav", "en-us+f3")
    audio = np.concatenate([np.zeros(16_000, np.float32), speech, np.zeros(16_000 * 2, np.float32), speech])
    write_wav(voice / "recording.wav", audio)
    (voice / "room.json").write_text(json.dumps({
        "id": "one-voice-mixed", "show": "quiet-show", "title": "Monologue", "recorded_at": "2026-12-01T11:00:00Z",
        "language": "en", "recording": "mixed", "speakers": [{"id": "host", "name": "Mia Chen", "role": "host"}],
        "tracks": [{"file": "recording.wav", "start": 0}]}))
    summary = process_room(show["settings"], voice, processes=2)
    assert summary["status"] == "published" and summary["words"] >= 20
    published = json.loads((Path(show["settings"].store) / "shows" / "quiet-show" / "episodes" / "one-voice-mixed"
                            / "words.json").read_text(encoding="utf-8"))
    assert published["speakers"] == {"host": "Mia Chen"}


@pytest.mark.slow
@pytest.mark.model
def test_a_voice_removed_after_publishing_is_gone_from_the_audio_and_every_text(show: dict[str, Any]) -> None:
    """``roomcast episode edit --remove-speaker`` on a mixed room (last in this module: it edits the fixture's
    episode): the voice shares its track with the others, so its turns are silenced in the mix, its words leave
    every text, its name the page and the feed, and the others are still heard."""
    episode = show["mixed"]["episode"]
    folder = _episode(show, episode)
    before = _words(show, episode)
    assert "zoe" in before["speakers"] and any(w["speaker"] == "zoe" for w in before["words"])
    done = _cli(show, "-q", "episode", "edit", episode, "--remove-speaker", "zoe", "--by", "moderator")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["encoded"] is True

    after = _words(show, episode)
    assert "zoe" not in after["speakers"] and all(w["speaker"] != "zoe" for w in after["words"])
    assert [w["text"] for w in after["words"]] == [w["text"] for w in before["words"] if w["speaker"] != "zoe"]
    for path in folder.iterdir():
        if path.suffix in (".json", ".srt", ".vtt", ".txt", ".html"):
            assert "Brien" not in path.read_text(encoding="utf-8"), path.name
    assert "Alice Martin" in (folder / "index.html").read_text(encoding="utf-8")
    feed = ElementTree.parse(Path(show["settings"].store) / "shows" / SHOW / "feed.xml")
    item = next(i for i in feed.iter("item") if f"/{episode}/" in (i.findtext("link") or ""))
    assert {p.text for p in item.iter(f"{{{PODCAST_NS}}}person")} == {"Alice Martin"}
    assert "Brien" not in ElementTree.tostring(item, encoding="unicode")

    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(folder / "replay.mp3"), "-ac", "1", "-ar", "16000",
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    audio = np.frombuffer(raw, dtype=np.float32)
    trim = show["mixed"]["trim_start_s"]
    turns = _truth_on_replay(show["mixed_room"], trim)
    levels: dict[str, list[float]] = {"zoe": [], "alice": []}
    for start, end, speaker in turns:
        if any(a < end and b > start for a, b, s in turns if s != speaker) or end - start < 1.2:
            continue  # only the part of a turn nobody else speaks over, 0.3 s in from each edge
        piece = audio[int((start + 0.3) * 16000):int((end - 0.3) * 16000)].astype(np.float64)
        levels[speaker].append(float(20 * np.log10(np.sqrt(np.mean(piece ** 2)) + 1e-12)))
    assert levels["zoe"] and max(levels["zoe"]) < -50.0, levels
    assert levels["alice"] and min(levels["alice"]) > -35.0, levels


def test_validate_explains_a_mixed_room(short_room: Path, generated: Path) -> None:
    mixed = mix_down(short_room, generated, room_id="validate-mixed")
    ok = CliRunner().invoke(main, ["validate", str(mixed)])
    assert ok.exit_code == 0, ok.output
    data = json.loads((mixed / "room.json").read_text(encoding="utf-8"))
    data["tracks"][0]["speaker"] = "alice"
    (mixed / "room.json").write_text(json.dumps(data), encoding="utf-8")
    bad = CliRunner().invoke(main, ["validate", str(mixed)])
    assert bad.exit_code == 1
    assert "validate-mixed" in bad.output and "recording.mp3" in bad.output and "found by voice" in bad.output
