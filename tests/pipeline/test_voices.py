"""The voice encoder's input and the voice prints of the show's library, on espeak-ng speech."""

from __future__ import annotations

import subprocess
import sys
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
    """A print listens to the first minute of a track's speech, a window every 1.6 s: it is what every window of
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


@pytest.mark.model
def test_the_print_encoder_is_resemblyzers_network(voices: dict[str, Path], tmp_path: Path) -> None:
    """The numpy encoder gives the vectors Resemblyzer's torch model gives for the same windows (every window of
    speech, of silence made audible, of a batch of one), from weights it read once and then from its cache."""
    from pipeline.voices import PrintEncoder, _windows_of, encoder, encoder_weights

    speech = np.fromfile(voices["en-gb+f2"], dtype=np.float32)[:ANALYSIS_RATE * 30]
    windows = np.stack([w for _first, w in _windows_of(speech)])
    noise = np.random.default_rng(5).random((3, windows.shape[1], windows.shape[2]), dtype=np.float32) ** 4
    read = encoder_weights(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.glob("resemblyzer-*.npz")).name]
    cached = encoder_weights(tmp_path)
    assert read.keys() == cached.keys() and all(np.array_equal(read[k], cached[k]) for k in read)
    ours, theirs = PrintEncoder(cached), encoder()
    for mels in (windows, noise, windows[:1]):
        mine, reference = ours(mels), theirs(mels)
        assert mine.shape == reference.shape == (len(mels), 256) and mine.dtype == np.float32
        assert np.abs(mine - reference).max() < 1e-5


@pytest.mark.model
def test_a_voice_print_never_imports_torch(voices: dict[str, Path], tmp_path: Path) -> None:
    """A worker that prints voices, once the weights are cached, does so without torch (1.3-1.6 s of CPU and about
    165 MB a process)."""
    from pipeline.voices import encoder_weights

    encoder_weights(tmp_path)  # what the first print on a machine leaves in the model cache
    code = ("import sys; from pathlib import Path; from pipeline.vad import SpeechRegion; "
            "from pipeline.voices import print_of_file; "
            "v = print_of_file(Path(sys.argv[1]), [SpeechRegion(0.0, 20.0)], cache_dir=Path(sys.argv[2])); "
            "print(v is not None and v.shape == (256,), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(voices["en-us+m3"]), str(tmp_path)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[2], check=True)
    assert done.stdout.split() == ["True", "False"]


@pytest.mark.model
def test_a_cache_that_cannot_be_written_still_gives_the_weights(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """The model cache is a file here, not a folder: the weights are read from the checkpoint all the same, and
    the log says why they were not kept."""
    from pipeline.voices import encoder_weights

    blocked = tmp_path / "cache"
    blocked.write_text("not a folder")
    with caplog.at_level("WARNING", logger="pipeline.voices"):
        weights = encoder_weights(blocked)
    assert weights["lstm.weight_hh_l2"].shape == (1024, 256) and weights["linear.bias"].shape == (256,)
    assert "could not cache the voice encoder's weights" in caplog.text and str(blocked) in caplog.text
    assert blocked.read_text() == "not a folder"
