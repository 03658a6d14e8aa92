"""Speech regions (pipeline.vad) on espeak-ng phrases placed at known times in silence and in noise: each phrase
found where it was put, nothing found in noise alone, and the same regions whether the VAD sees the whole track,
its audible stretches only, or the track cut into blocks across a phrase."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import ANALYSIS_RATE
from pipeline.vad import SpeechRegion, VadSettings, audible_stretches, speech_regions, speech_regions_in

RATE = ANALYSIS_RATE
PHRASES = [(2.0, "The first guest joins the room and says hello to everyone."),
           (9.5, "A second thought arrives after a long pause in the conversation."),
           (21.0, "And the last words of the track close the session.")]


def _speech(text: str, folder: Path) -> np.ndarray:
    wav = folder / "phrase.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-ac", "1", "-ar", str(RATE), "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


@pytest.fixture(scope="module")
def track(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """30 s of a -60 dBFS noise floor with the three phrases at their times; and where each phrase really is
    (its samples above -40 dBFS)."""
    folder = tmp_path_factory.mktemp("vad")
    audio = np.random.default_rng(5).normal(0, 10 ** (-60 / 20), RATE * 30).astype(np.float32)
    truth = []
    for at, text in PHRASES:
        phrase = _speech(text, folder)
        start = int(at * RATE)
        audio[start:start + phrase.size] += phrase
        loud = np.flatnonzero(np.abs(phrase) > 0.01)
        truth.append((at + loud[0] / RATE, at + loud[-1] / RATE))
    return audio, truth


def _blocks(audio: np.ndarray, seconds: float) -> Iterator[np.ndarray]:
    size = int(seconds * RATE)
    return (audio[i:i + size] for i in range(0, audio.size, size))


def _covers(regions: tuple[SpeechRegion, ...], truth: list[tuple[float, float]]) -> None:
    assert len(regions) >= len(truth), regions
    for start, end in truth:
        inside = [r for r in regions if r.end > start and r.start < end]
        assert inside, (start, end, regions)
        assert inside[0].start <= start + 0.15 and inside[-1].end >= end - 0.15, (start, end, inside)
        assert inside[0].start >= start - 0.8 and inside[-1].end <= end + 0.8, (start, end, inside)
    speech = sum(e - s for s, e in truth)
    found = sum(r.duration for r in regions)
    assert found <= speech + 2 * len(truth) * 0.8, (found, speech)  # no region outside the phrases


def test_each_phrase_is_found_where_it_was_put(track: tuple[np.ndarray, list[tuple[float, float]]]) -> None:
    audio, truth = track
    _covers(speech_regions_in(iter([audio]), VadSettings()), truth)


def test_blocks_cutting_through_a_phrase_find_the_same_regions(
        track: tuple[np.ndarray, list[tuple[float, float]]]) -> None:
    """Blocks of 7 s cut the first and third phrases; the overlap carried from block to block sees them whole."""
    import pipeline.vad

    audio, truth = track
    whole = speech_regions_in(iter([audio]), VadSettings())
    saved = pipeline.vad.OVERLAP_S
    pipeline.vad.OVERLAP_S = 3.0  # the block stream's overlap, scaled to a 30-second track
    try:
        cut = speech_regions_in(_blocks(audio, 7.0), VadSettings())
    finally:
        pipeline.vad.OVERLAP_S = saved
    _covers(cut, truth)
    assert len(cut) == len(whole)
    for a, b in zip(cut, whole, strict=True):  # a block's own noise floor moves an edge by up to 0.3 s (vad.py)
        assert abs(a.start - b.start) <= 0.3 and abs(a.end - b.end) <= 0.3, (cut, whole)


def test_noise_alone_and_silence_hold_no_speech() -> None:
    noise = np.random.default_rng(9).normal(0, 10 ** (-50 / 20), RATE * 10).astype(np.float32)
    assert speech_regions_in(iter([noise]), VadSettings()) == ()
    assert speech_regions_in(iter([np.zeros(RATE * 5, dtype=np.float32)]), VadSettings()) == ()


def test_audible_stretches_leave_the_noise_floor_out(track: tuple[np.ndarray, list[tuple[float, float]]]) -> None:
    """The stretches the model is run on hold every phrase (with its margins) and much less than the track."""
    audio, truth = track
    stretches = [(a / RATE, b / RATE) for a, b in audible_stretches(audio)]
    for start, end in truth:
        assert any(a <= start and end <= b for a, b in stretches), (start, end, stretches)
    assert sum(b - a for a, b in stretches) < 0.6 * audio.size / RATE


def test_a_track_file_is_decoded_and_read_in_track_seconds(
        track: tuple[np.ndarray, list[tuple[float, float]]], tmp_path: Path) -> None:
    audio, truth = track
    path = tmp_path / "track.opus"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "f32le", "-ar", str(RATE), "-ac", "1", "-i", "-",
                    "-ar", "48000", "-c:a", "libopus", "-b:a", "48k", str(path)], input=audio.tobytes(), check=True)
    _covers(speech_regions(path, what="track.opus"), truth)
