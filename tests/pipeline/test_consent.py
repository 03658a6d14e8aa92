"""Consent: one decision (pipeline.consent) of which speakers, tracks, words and persons may appear, and a declined
voice that bleeds into a consenting speaker's microphone kept out of every transcript (real espeak-ng audio,
tiny.en, the in-process runner)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.audio import ANALYSIS_RATE, decode
from pipeline.bleed import normalise
from pipeline.consent import DeclinedVoices, room_consent, without_declined_voices
from pipeline.manifest import load_room
from pipeline.models import resolve_model
from pipeline.transcribe import load_model, transcribe_track
from pipeline.vad import speech_regions
from storage.catalog import Catalog
from tests.roomgen import speak, write_wav
from workers.config import Settings
from workers.runner import process_room

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DECLINED = "The secret merger with the northern bank closes in March."
CONSENTING = ("I will check the budget for the extra cables tomorrow.",
              "Our podcast audience doubled after the summer season.",
              "Please remember to update the documentation before Friday.")
DECLINED_AT, CONSENTING_AT = 2.0, (10.0, 16.0, 22.0)
BLEED_DB = -14.0  # loud enough that Whisper transcribes the declined voice on the consenting microphone
DECLINED_WORDS = {"secret", "merger", "northern", "bank", "closes", "march"}


def _place(track: np.ndarray, voice: np.ndarray, at: float, gain: float) -> None:
    i = int(at * ANALYSIS_RATE)
    track[i:i + voice.size] += gain * voice


@pytest.fixture(scope="module")
def bleed_room(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """u1 consents and speaks from 10 s; u2 declined and speaks at 2 s, heard at -14 dB on u1's microphone too."""
    folder = tmp_path_factory.mktemp("consent") / "consent-bleed"
    (folder / "tracks").mkdir(parents=True)
    declined = speak(DECLINED, folder / "declined.wav", "en-us+m3")
    rng = np.random.default_rng(11)
    u1 = rng.normal(0.0, 0.0005, 30 * ANALYSIS_RATE).astype(np.float32)
    u2 = rng.normal(0.0, 0.0005, 30 * ANALYSIS_RATE).astype(np.float32)
    _place(u2, declined, DECLINED_AT, 0.6)
    _place(u1, declined, DECLINED_AT, 0.6 * 10 ** (BLEED_DB / 20))
    for n, (text, at) in enumerate(zip(CONSENTING, CONSENTING_AT, strict=True)):
        _place(u1, speak(text, folder / f"own-{n}.wav", "en-gb+f2"), at, 0.6)
        (folder / f"own-{n}.wav").unlink()
    write_wav(folder / "tracks" / "u1.wav", u1)
    write_wav(folder / "tracks" / "u2.wav", u2)
    (folder / "declined.wav").unlink()
    (folder / "room.json").write_text(json.dumps({
        "id": "consent-bleed", "show": "consent-show", "title": "Consent and bleed", "language": "en",
        "speakers": [{"id": "u1", "name": "Alice Martin", "role": "host"},
                     {"id": "u2", "name": "Chloé Dubois", "consent": False}],
        "tracks": [{"speaker": "u1", "file": "tracks/u1.wav", "start": 0.0},
                   {"speaker": "u2", "file": "tracks/u2.wav", "start": 0.0}],
    }))
    return folder


def _words(text: str) -> set[str]:
    return {normalise(w) for w in text.split()} - {""}


def test_the_consent_decides_speakers_tracks_and_names(bleed_room: Path) -> None:
    room = load_room(bleed_room)
    consent = room_consent(room)
    assert [s.id for s in consent.speakers] == ["u1"] and consent.names == {"u1": "Alice Martin"}
    assert [t.speaker for t in consent.tracks] == ["u1"] and [t.speaker for t in consent.declined_tracks] == ["u2"]
    assert room.published_tracks == consent.tracks and room.consenting_speakers == consent.speakers
    assert consent.allows("u1") and not consent.allows("u2")


@pytest.mark.model
def test_declined_words_heard_on_a_consenting_microphone_are_dropped(bleed_room: Path) -> None:
    room = load_room(bleed_room)
    track = room.tracks[0]
    model = load_model(resolve_model("tiny.en"))
    heard = transcribe_track(track.path, speech_regions(track.path, what="u1"), track_index=track.index,
                             speaker="u1", offset=track.start, model=model, language="en")
    raw = _words(" ".join(w.text for s in heard.segments for w in s.words))
    assert raw & DECLINED_WORDS, f"the bleed was not transcribed at all ({raw}): the test would prove nothing"
    kept = without_declined_voices([heard], room_consent(room), what="test")
    words = _words(" ".join(w.text for t in kept for s in t.segments for w in s.words))
    assert not words & DECLINED_WORDS
    assert {"budget", "cables", "tomorrow"} <= words  # the consenting speaker's own words stay


def test_a_declined_voice_on_a_consenting_microphone_is_muted_there(bleed_room: Path) -> None:
    room = load_room(bleed_room)
    consent = room_consent(room)
    muted = DeclinedVoices(consent, what="test").muted(consent.tracks[0])
    assert muted, "the declined voice on u1's microphone was not found"
    assert all(DECLINED_AT - 0.5 <= r.start and r.end <= DECLINED_AT + 5.0 for r in muted)
    assert sum(r.duration for r in muted) > 1.5  # most of the declined sentence
    assert not any(r.end > CONSENTING_AT[0] for r in muted)  # u1's own speech is never muted


@pytest.mark.model
@pytest.mark.slow
def test_no_published_transcript_carries_a_declined_voice(bleed_room: Path, tmp_path: Path) -> None:
    settings = Settings(store=str(tmp_path / "store"), database_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                        work_dir=tmp_path / "work", min_chapter_s=5.0)
    summary: dict[str, Any] = process_room(settings, bleed_room, processes=1)
    assert summary["status"] == "published"
    episode = tmp_path / "store" / "shows" / "consent-show" / "episodes" / "consent-bleed"
    published = {name: (episode / name).read_text() for name in
                 ("transcript.json", "transcript.vtt", "transcript.srt", "transcript.txt", "words.json",
                  "chapters.json")}
    for name, text in published.items():
        assert not _words(text) & DECLINED_WORDS, f"{name} carries the declined speaker's words"
        assert "Chloé" not in text and "Dubois" not in text, f"{name} names the declined speaker"
    assert {"budget", "cables"} <= _words(published["transcript.txt"])
    replay = decode(episode / "replay.mp3", what="replay", start=DECLINED_AT + 0.5 - summary["trim_start_s"],
                    duration=2.0)
    level = 10 * np.log10(float(np.mean(np.square(replay, dtype=np.float64))) + 1e-12)
    assert level < -60.0, f"the declined voice is heard in the replay at {level:.1f} dBFS"
    catalog = Catalog(settings.database_url)
    try:
        record = catalog.get_episode("consent-bleed")
        assert record is not None and [p.name for p in record.persons] == ["Alice Martin"]
    finally:
        catalog.close()
