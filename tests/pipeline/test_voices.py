"""The voice encoder's input and the voice prints of the show's library, on espeak-ng speech."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from pipeline.audio import ANALYSIS_RATE
from pipeline.vad import SpeechRegion
from pipeline.voices import embed_file, mel_spectrogram, print_of_file, unit
from tests.roomgen import script, speak

LINES = script("founders-hour").read_text(encoding="utf-8").split()


def _speech(folder: Path, voice: str, seconds: float) -> np.ndarray:
    """About ``seconds`` of one espeak-ng voice reading the sample script."""
    words = " ".join(LINES[:int(seconds * 2.6)])
    return speak(words, folder / f"{voice}.wav", voice=voice)


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two voices' decodes on disk as the analysis keeps them (raw float32 at 16 kHz), each about 130 s long."""
    folder = tmp_path_factory.mktemp("voices")
    out = {}
    for voice in ("en-us+m3", "en-gb+f2"):
        path = folder / f"{voice}.f32"
        _speech(folder, voice, 130.0).astype(np.float32).tofile(path)
        out[voice] = path
    return out


def test_the_mel_spectrogram_is_resemblyzers(voices: dict[str, Path]) -> None:
    """The encoder's input made with numpy equals the one Resemblyzer makes with librosa, for speech and for
    lengths that leave a partial frame, shorter than one window or empty of sound."""
    with warnings.catch_warnings():  # its VAD dependency imports pkg_resources, its audio module old SciPy paths
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        from resemblyzer.audio import wav_to_mel_spectrogram

    speech = np.fromfile(voices["en-us+m3"], dtype=np.float32)
    for audio in (speech[:ANALYSIS_RATE * 20], speech[ANALYSIS_RATE:ANALYSIS_RATE * 2 + 37], speech[:1000],
                  np.zeros(ANALYSIS_RATE, dtype=np.float32)):
        ours, theirs = mel_spectrogram(audio), wav_to_mel_spectrogram(audio)
        assert ours.shape == theirs.shape and ours.dtype == np.float32
        assert np.allclose(ours, theirs, rtol=1e-4, atol=1e-6 * max(1.0, float(theirs.max())))


@pytest.mark.model
def test_a_print_from_its_first_speech_is_the_voice_heard_longer(voices: dict[str, Path]) -> None:
    """A print listens to the first minute of a track's speech, a window every 0.8 s: it is what every window of
    two minutes of that voice says (cosine >= 0.99), and closer to it than to the other voice's print."""
    regions = [SpeechRegion(float(s), float(s + 5)) for s in range(0, 125, 5)]
    prints = {voice: print_of_file(path, regions) for voice, path in voices.items()}
    assert all(p is not None and p.shape == (256,) for p in prints.values())
    for voice, path in voices.items():
        heard = embed_file(path, regions)  # every 0.4 s of all of it
        assert len(heard) >= 250  # ten windows in every 5 s
        whole = unit(heard.vectors.mean(axis=0))
        other = next(p for v, p in prints.items() if v != voice)
        assert float(whole @ prints[voice]) >= 0.99
        assert float(whole @ prints[voice]) > float(whole @ other) + 0.05
