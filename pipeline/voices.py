"""What a voice sounds like: speaker embeddings from Resemblyzer's voice encoder, offline, on the CPU.

Resemblyzer ships its pretrained encoder (a 3-layer LSTM trained on thousands of speakers, 17 MB) inside its PyPI
wheel, so a mixed recording is told apart with no account, token or download; it embeds 1.6 s of speech as 256
non-negative numbers of unit length, a few milliseconds each on one core. pyannote's and SpeechBrain's encoders
are stronger on real-world audio but are downloaded from a model hub at run time.

Windows of :data:`WINDOW_S` are taken every :data:`HOP_S` inside the speech regions the VAD found, each brought to
the loudness the encoder was trained at (-30 dBFS), so a quiet and a loud speaker are compared by their voices and
not by their levels. Audio is read region by region from a 16 kHz decode on disk: a 3-hour recording never sits
in memory.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio import ANALYSIS_RATE
from pipeline.vad import SpeechRegion

log = logging.getLogger(__name__)

FRAME_S = 0.01  # the encoder's mel frames: 25 ms windows every 10 ms
WINDOW_FRAMES = 160  # 1.6 s, the encoder's partial utterance
WINDOW_S = WINDOW_FRAMES * FRAME_S
HOP_FRAMES = 40
HOP_S = HOP_FRAMES * FRAME_S  # a speaker change is placed to within this
MIN_REGION_S = 0.3  # shorter speech says too little about a voice
TARGET_DBFS = -30.0
PIECE_S = 60.0  # long regions are embedded a minute at a time
BATCH = 64
# A voice print listens to at most this much of a track's speech, a window every 0.8 s (Resemblyzer's own rate for
# a whole utterance): for espeak-ng voices such a print is within 0.996 (cosine) of one made from two minutes every
# 0.4 s (30 s: 0.98), for a quarter of the encoder's work.
PRINT_SPEECH_S = 60.0
PRINT_HOP_FRAMES = 80
DIMENSIONS = 256


@dataclass(frozen=True)
class VoiceWindows:
    """Embeddings of a track's speech: window ``k`` spans ``starts[k]``..``ends[k]`` seconds (track clock)."""

    starts: np.ndarray
    ends: np.ndarray
    vectors: np.ndarray  # (n, 256) float32, each of unit length

    def __len__(self) -> int:
        return int(self.starts.size)

    def shifted(self, seconds: float) -> VoiceWindows:
        return VoiceWindows(self.starts + seconds, self.ends + seconds, self.vectors)

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.savez_compressed(out, starts=self.starts.astype(np.float64), ends=self.ends.astype(np.float64),
                            vectors=self.vectors.astype(np.float16))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> VoiceWindows:
        with np.load(io.BytesIO(data)) as arrays:
            return cls(arrays["starts"], arrays["ends"], unit(arrays["vectors"].astype(np.float32)))

    @classmethod
    def concat(cls, parts: Sequence[VoiceWindows]) -> VoiceWindows:
        if not parts:
            return empty_windows()
        return cls(np.concatenate([p.starts for p in parts]), np.concatenate([p.ends for p in parts]),
                   np.concatenate([p.vectors for p in parts]))


def empty_windows() -> VoiceWindows:
    return VoiceWindows(np.zeros(0), np.zeros(0), np.zeros((0, DIMENSIONS), dtype=np.float32))


def unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-9), dtype=np.float32)


_ENCODER: Any = None
_ENCODER_LOCK = threading.Lock()


def encoder(threads: int = 1) -> Any:
    """Resemblyzer's voice encoder, loaded once per process on the CPU."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            with warnings.catch_warnings():
                # its VAD dependency imports pkg_resources, its audio module a deprecated SciPy path
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                import torch
                from resemblyzer import VoiceEncoder

            torch.set_num_threads(max(1, threads))
            _ENCODER = VoiceEncoder(device="cpu", verbose=False)
            _ENCODER.eval()
        return _ENCODER


# The encoder's input, as Resemblyzer's ``wav_to_mel_spectrogram`` makes it with librosa: the power spectrum of
# 25 ms Hann windows every 10 ms (zero-padded at both ends), in 40 Slaney mel bands from 0 to 8 kHz. Computed here
# with numpy: librosa's first use costs every process about 1.7 s of CPU and 125 MB for the same numbers (a test
# holds the two together).
MEL_FFT = int(ANALYSIS_RATE * 0.025)
MEL_HOP = int(ANALYSIS_RATE * FRAME_S)
MEL_BANDS = 40


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear to 1 kHz (15 mels), logarithmic above."""
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * 27.0 / np.log(6.4),
                    hz * 3.0 / 200.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.where(mel >= 15.0, 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0), mel * 200.0 / 3.0)


def _mel_bands() -> np.ndarray:
    """Triangular filters, each of unit area (Slaney's normalisation): (MEL_BANDS, MEL_FFT // 2 + 1)."""
    freqs = np.fft.rfftfreq(MEL_FFT, 1.0 / ANALYSIS_RATE)
    edges = _mel_to_hz(np.linspace(0.0, float(_hz_to_mel(np.asarray(ANALYSIS_RATE / 2))), MEL_BANDS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    rising, falling = -ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]
    bands = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return bands.astype(np.float32)


MEL_FILTERS = _mel_bands()
MEL_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(MEL_FFT) / MEL_FFT)).astype(np.float32)


def mel_spectrogram(audio: np.ndarray) -> np.ndarray:
    """The encoder's (power, not log) mel spectrogram of 16 kHz audio: (1 + samples // 160, 40) float32."""
    padded = np.pad(np.asarray(audio, dtype=np.float32), MEL_FFT // 2)
    count = 1 + (padded.size - MEL_FFT) // MEL_HOP
    frames = np.lib.stride_tricks.as_strided(padded, (count, MEL_FFT), (padded.strides[0] * MEL_HOP,
                                                                        padded.strides[0]), writeable=False)
    spectrum = np.fft.rfft(frames * MEL_WINDOW, axis=1)
    power = (np.square(spectrum.real) + np.square(spectrum.imag)).astype(np.float32)
    return np.asarray(power @ MEL_FILTERS.T, dtype=np.float32)


def _windows_of(audio: np.ndarray, hop_frames: int = HOP_FRAMES) -> Iterator[tuple[int, np.ndarray]]:
    """(first frame, mel window brought to the target level) for every window of a stretch of speech."""
    mel = mel_spectrogram(audio)
    frames = mel.shape[0]
    if frames < WINDOW_FRAMES:
        mel = np.pad(mel, ((0, WINDOW_FRAMES - frames), (0, 0)))
        firsts = [0]
    else:
        firsts = list(range(0, frames - WINDOW_FRAMES + 1, hop_frames))
        if firsts[-1] != frames - WINDOW_FRAMES:
            firsts.append(frames - WINDOW_FRAMES)
    per_frame = int(ANALYSIS_RATE * FRAME_S)
    target = 10 ** (TARGET_DBFS / 20)
    for first in firsts:
        samples = audio[first * per_frame:(first + WINDOW_FRAMES) * per_frame]
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
        if rms <= 1e-6:
            continue
        # the mel spectrogram is power: a gain g on the samples is g**2 on it
        yield first, mel[first:first + WINDOW_FRAMES] * (target / rms) ** 2


def embed_regions(audio: np.ndarray, regions: Sequence[SpeechRegion], *, threads: int = 1,
                  budget_s: float | None = None, hop_frames: int = HOP_FRAMES) -> VoiceWindows:
    """Embeddings of the speech in ``regions`` of ``audio`` (16 kHz mono float32, any array-like: a memory map of
    a decode on disk is read a piece at a time), a window every ``hop_frames`` mel frames. ``budget_s``: stop
    after this much speech."""
    model = encoder(threads)
    import torch

    starts: list[float] = []
    ends: list[float] = []
    vectors: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            with torch.no_grad():
                out = model(torch.from_numpy(np.stack(batch))).cpu().numpy()
            vectors.append(out.astype(np.float32))
            batch.clear()

    heard = 0.0
    for start, end in _pieces(regions, len(audio) / ANALYSIS_RATE):
        if budget_s is not None and heard >= budget_s:
            break
        piece = np.asarray(audio[int(start * ANALYSIS_RATE):int(math.ceil(end * ANALYSIS_RATE))], dtype=np.float32)
        if piece.size < MIN_REGION_S * ANALYSIS_RATE:
            continue
        heard += end - start
        for first, window in _windows_of(piece, hop_frames):
            at = start + first * FRAME_S
            starts.append(at)
            ends.append(min(end, at + WINDOW_S))
            batch.append(window)
            if len(batch) >= BATCH:
                flush()
    flush()
    if not starts:
        return empty_windows()
    return VoiceWindows(np.asarray(starts), np.asarray(ends), unit(np.concatenate(vectors)))


def _pieces(regions: Sequence[SpeechRegion], length_s: float) -> Iterator[tuple[float, float]]:
    """The regions, long ones cut into :data:`PIECE_S` pieces overlapping by a window."""
    for region in regions:
        start, end = max(0.0, region.start), min(length_s, region.end)
        while end - start > PIECE_S + WINDOW_S:
            yield start, start + PIECE_S + WINDOW_S
            start += PIECE_S
        if end > start:
            yield start, end


def voice_print(windows: VoiceWindows) -> np.ndarray | None:
    """One vector for a voice: the mean direction of its windows (None without speech)."""
    if len(windows) == 0:
        return None
    return unit(windows.vectors.mean(axis=0))


def embed_file(path: Path, regions: Sequence[SpeechRegion], *, threads: int = 1,
               budget_s: float | None = None, hop_frames: int = HOP_FRAMES) -> VoiceWindows:
    """:func:`embed_regions` over a raw float32 16 kHz decode on disk, read through a memory map."""
    if path.stat().st_size < 4:
        return empty_windows()
    audio = np.memmap(path, dtype=np.float32, mode="r")
    try:
        return embed_regions(audio, regions, threads=threads, budget_s=budget_s, hop_frames=hop_frames)
    finally:
        del audio


def print_of_file(path: Path, regions: Sequence[SpeechRegion], *, threads: int = 1) -> np.ndarray | None:
    """The voice print of the one speaker of a track (its 16 kHz decode on disk), from the first
    :data:`PRINT_SPEECH_S` of its speech; None without speech."""
    return voice_print(embed_file(path, regions, threads=threads, budget_s=PRINT_SPEECH_S,
                                  hop_frames=PRINT_HOP_FRAMES))
