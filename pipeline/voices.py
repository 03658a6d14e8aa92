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
PRINT_SPEECH_S = 120.0  # a voice print listens to at most this much of a track's speech
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


def _mel(audio: np.ndarray) -> np.ndarray:
    """The encoder's (linear, not log) mel spectrogram of 16 kHz audio: (frames, 40)."""
    from resemblyzer.audio import wav_to_mel_spectrogram

    return np.asarray(wav_to_mel_spectrogram(audio), dtype=np.float32)


def _windows_of(audio: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first frame, mel window brought to the target level) for every window of a stretch of speech."""
    mel = _mel(audio)
    frames = mel.shape[0]
    if frames < WINDOW_FRAMES:
        mel = np.pad(mel, ((0, WINDOW_FRAMES - frames), (0, 0)))
        firsts = [0]
    else:
        firsts = list(range(0, frames - WINDOW_FRAMES + 1, HOP_FRAMES))
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
                  budget_s: float | None = None) -> VoiceWindows:
    """Embeddings of the speech in ``regions`` of ``audio`` (16 kHz mono float32, any array-like: a memory map of
    a decode on disk is read a piece at a time). ``budget_s``: stop after this much speech (a voice print)."""
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
        for first, window in _windows_of(piece):
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
               budget_s: float | None = None) -> VoiceWindows:
    """:func:`embed_regions` over a raw float32 16 kHz decode on disk, read through a memory map."""
    if path.stat().st_size < 4:
        return empty_windows()
    audio = np.memmap(path, dtype=np.float32, mode="r")
    try:
        return embed_regions(audio, regions, threads=threads, budget_s=budget_s)
    finally:
        del audio
