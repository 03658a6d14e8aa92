"""Overlap, bleed and segment rules of the merged room transcript, on real espeak-ng audio and the tiny.en model."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from pipeline import formats
from pipeline.audio import ANALYSIS_RATE
from pipeline.bleed import TrackAudio, find_bleed, level_db, normalise, remove_bleed
from pipeline.models import resolve_model
from pipeline.transcribe import SENTENCE_END, TranscribeSettings, load_model, split_segments, transcribe_track
from pipeline.transcript import Segment, TrackTranscript, Word, merge
from pipeline.vad import speech_regions
from tests.roomgen import speak, write_wav

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PHRASE_A = "The new studio microphones arrive on Monday morning."
PHRASE_B = "I will check the budget for the extra cables tomorrow."
A_AT, B_AT = 2.0, 12.0  # track seconds where each phrase starts
BLEED_DB = -25.0




def _place(track: np.ndarray, voice: np.ndarray, at: float, gain: float) -> None:
    i = int(at * ANALYSIS_RATE)
    track[i:i + voice.size] += gain * voice


@pytest.fixture(scope="module")
def bleed_room(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Track a: A's phrase. Track b: A's phrase again at -25 dB (bleed) and, later, B's own phrase."""
    folder = tmp_path_factory.mktemp("bleed")
    voice_a = speak(PHRASE_A, folder / "va.wav", "en-us+m3")
    voice_b = speak(PHRASE_B, folder / "vb.wav", "en-gb+f2")
    rng = np.random.default_rng(5)
    a = rng.normal(0.0, 0.0005, 22 * ANALYSIS_RATE).astype(np.float32)
    b = rng.normal(0.0, 0.0005, 22 * ANALYSIS_RATE).astype(np.float32)
    _place(a, voice_a, A_AT, 0.6)
    _place(b, voice_a, A_AT, 0.6 * 10 ** (BLEED_DB / 20))
    _place(b, voice_b, B_AT, 0.6)
    return {"a": write_wav(folder / "a.wav", a), "b": write_wav(folder / "b.wav", b)}


def _words(speaker: str, start: float, text: str, step: float = 0.4) -> list[Word]:
    return [Word(round(start + i * step, 3), round(start + i * step + 0.3, 3), t, speaker)
            for i, t in enumerate(text.split())]


def _track(index: int, speaker: str, words: list[Word]) -> TrackTranscript:
    return TrackTranscript(index, speaker, "en", split_segments(words))


@pytest.mark.model
@pytest.mark.parametrize("chunk_s", [30.0, 5.0])
def test_bleed_is_kept_once_on_the_louder_track(bleed_room: dict[str, Any], chunk_s: float) -> None:
    # Packed next to B's own loud phrase (30 s chunks), tiny.en ignores the quiet copy by itself. Alone in a chunk
    # (5 s chunks; in a real room: B silent for a long while as A talks), it is transcribed, and must be removed.
    model = load_model(resolve_model("tiny.en"), TranscribeSettings())
    tracks = []
    for index, (speaker, name) in enumerate([("ua", "a"), ("ub", "b")]):
        path = bleed_room[name]
        tracks.append(transcribe_track(path, speech_regions(path, what=name), track_index=index, speaker=speaker,
                                       offset=10.0, model=model, language="en", what=name,
                                       settings=TranscribeSettings(chunk_s=chunk_s)))
    a_words = {normalise(w.text) for s in tracks[0].segments for w in s.words}
    phrase_a = {normalise(w) for w in PHRASE_A.split()}
    assert len(a_words & phrase_a) >= 6
    audio = {0: TrackAudio(bleed_room["a"], 10.0), 1: TrackAudio(bleed_room["b"], 10.0)}
    if chunk_s < 30.0:
        bled = [w for s in tracks[1].segments for w in s.words if w.start < 10.0 + B_AT - 1.0]
        # The quiet copy really is transcribed on track b: without the bleed rule it would be published twice.
        assert len({normalise(w.text) for w in bled} & phrase_a) >= 4, [w.text for w in bled]
        runs = find_bleed(tracks, audio)
        assert runs and all(r.source == 0 and r.copy == 1 for r in runs)
        assert all(15.0 <= r.level_gap_db <= 35.0 for r in runs)  # about the 25 dB the copy was mixed at

    merged = merge(remove_bleed(tracks, audio), {"ua": "Ann", "ub": "Bo"}, "en")
    early = [w for w in merged.words if w.start < 10.0 + B_AT - 1.0]
    assert early and {w.speaker for w in early} == {"ua"}
    texts = [normalise(w.text) for w in early]
    assert all(texts.count(t) == 1 for t in phrase_a if t in texts)  # each word of A's phrase once
    late = [w for w in merged.words if w.start >= 10.0 + B_AT - 0.5]
    assert {w.speaker for w in late} == {"ub"}
    assert {"budget", "cables", "tomorrow"} <= {normalise(w.text) for w in late}


def test_level_is_measured_on_the_room_clock(bleed_room: dict[str, Any]) -> None:
    a = TrackAudio(bleed_room["a"], 10.0)
    b = TrackAudio(bleed_room["b"], 10.0)
    # A's phrase sits at 12-15 s on the room clock; before 10 s the track has not started.
    assert level_db(a, 12.5, 14.5) - level_db(b, 12.5, 14.5) == pytest.approx(25.0, abs=1.5)
    assert level_db(b, 22.5, 24.5) - level_db(a, 22.5, 24.5) > 30.0
    assert level_db(a, 2.0, 9.0) < -150.0


def test_run_of_shared_words_goes_to_the_louder_track(bleed_room: dict[str, Any]) -> None:
    # Real audio decides the source even when the transcripts are written out by hand: track b is the quiet one.
    audio = {0: TrackAudio(bleed_room["a"], 10.0), 1: TrackAudio(bleed_room["b"], 10.0)}
    own = _words("ub", 22.0, "I will check the budget.")
    copy = _words("ub", 12.15, "new studio microphone arrive on Monday")  # shifted, one word missed, one misheard
    source = _words("ua", 12.0, "The new studio microphones arrive on Monday morning.")
    tracks = [_track(0, "ua", source), _track(1, "ub", copy + own)]
    kept = remove_bleed(tracks, audio)
    assert [w.text for s in kept[0].segments for w in s.words] == [w.text for w in source]
    assert [w.text for s in kept[1].segments for w in s.words] == [w.text for w in own]
    # Swapping which track holds which words does not fool it: the audio says track 0 is louder there.
    swapped = remove_bleed([_track(0, "ua", copy), _track(1, "ub", source + own)], audio)
    assert [w.text for s in swapped[0].segments for w in s.words] == [w.text for w in copy]
    # Only the shared run is dropped: the words around it were not heard on the louder track.
    assert [w.text for s in swapped[1].segments for w in s.words] == ["The", "morning.", *(w.text for w in own)]


def test_short_agreement_and_far_apart_words_are_not_bleed(bleed_room: dict[str, Any]) -> None:
    audio = {0: TrackAudio(bleed_room["a"], 10.0), 1: TrackAudio(bleed_room["b"], 10.0)}
    both = [_track(0, "ua", _words("ua", 12.0, "yes exactly")), _track(1, "ub", _words("ub", 12.1, "yes exactly"))]
    assert find_bleed(both, audio) == []
    later = [_track(0, "ua", _words("ua", 12.0, "we ship on monday")),
             _track(1, "ub", _words("ub", 12.5, "we ship on monday"))]  # the same words, 0.5 s apart: a quote
    assert find_bleed(later, audio) == []
    assert remove_bleed(later, audio) == later


def test_overlapping_speech_keeps_both_speakers_in_time_order() -> None:
    long_turn = _words("ua", 10.0, "so the plan is that we record every room and publish the replay within the hour")
    interjection = _words("ub", 12.0, "right, sounds good.")
    other = _words("ub", 20.0, "And the transcript?")
    merged = merge([_track(0, "ua", long_turn), _track(1, "ub", interjection + other)], {}, "en")
    words = merged.words
    assert sorted(w.text for w in words) == sorted(w.text for w in long_turn + interjection + other)
    # The long turn is cut where the interjection starts, so the segments read in the order things were said.
    assert [s.speaker for s in merged.segments] == ["ua", "ub", "ua", "ub"]
    assert [s.start for s in merged.segments] == sorted(s.start for s in merged.segments)
    assert merged.segments[0].end < 12.0 <= merged.segments[2].start
    assert all(len({w.speaker for w in s.words}) == 1 for s in merged.segments)
    # No caption holds two speakers' words, and the text reads in the order things were said.
    cues = formats.captions(merged)
    assert all(c.speaker in ("ua", "ub") for c in cues)
    for cue in cues:
        spoken = {w.text for w in words if w.speaker == cue.speaker}
        assert set(" ".join(cue.lines).split()) <= spoken
    text = formats.plain_text(merged)
    assert text.index("right,") < text.index("replay") < text.index("transcript?")


def test_segments_end_on_speaker_changes_and_sentence_ends() -> None:
    a = _words("ua", 0.0, "Hello everyone. Welcome to the room today")
    b = _words("ub", 1.9, "Thanks. Glad to be here.")  # B starts while A is still talking
    merged = merge([_track(0, "ua", a), _track(1, "ub", b)], {}, "en")
    for segment in merged.segments:
        # a sentence end is always the last word of a segment, never in its middle
        assert not any(w.text.endswith(SENTENCE_END) for w in segment.words[:-1])
    for before, after in zip(merged.segments, merged.segments[1:], strict=False):
        assert before.speaker != after.speaker or before.text.endswith(SENTENCE_END)
    assert [s.text for s in merged.segments] == ["Hello everyone.", "Welcome to the", "Thanks.", "room",
                                                 "Glad to be here.", "today"]
    assert merge([_track(0, "ua", a)], {}, "en").segments == split_segments(a)
    assert all(isinstance(s, Segment) for s in merged.segments)
