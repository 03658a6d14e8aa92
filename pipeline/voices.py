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

import importlib.metadata
import importlib.util
import io
import logging
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio import ANALYSIS_RATE
from pipeline.models import default_cache_dir
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
# A voice print listens to at most this much of a track's speech, a window every 1.6 s (windows side by side): on a
# generated 10-minute room such a print was within 0.994-0.998 (cosine) of one made from all of the track's speech
# every 0.4 s (every 0.8 s: 0.999; 30 s every 0.8 s: 0.98), while the closest other speaker stayed at 0.86, for an
# eighth of the encoder's work. The encoder for prints is :class:`PrintEncoder`.
PRINT_SPEECH_S = 60.0
PRINT_HOP_FRAMES = 160
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
_PRINT_ENCODER: PrintEncoder | None = None
_ENCODER_LOCK = threading.Lock()

Encode = Callable[[np.ndarray], np.ndarray]  # (windows, WINDOW_FRAMES, MEL_BANDS) mels -> (windows, 256) vectors


def encoder(threads: int = 1) -> Encode:
    """Resemblyzer's voice encoder on torch, loaded once per process on the CPU: for embedding whole recordings."""
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
    model = _ENCODER
    import torch

    def encode(mels: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(model(torch.from_numpy(mels)).cpu().numpy(), dtype=np.float32)

    return encode


# A voice print is a few dozen windows: for it, the same network runs with numpy from Resemblyzer's own weights, so
# a worker that only prints voices never imports torch, which cost each process 1.3-1.6 s of CPU and about 165 MB
# for 0.2-0.5 s of encoding per track. Per window numpy is slower (1.8 times torch's time for a batch of 64: the
# LSTM's 480 steps are as many small matrix products), so whole recordings are embedded on torch. A test holds the
# two together. The weights are read out of Resemblyzer's checkpoint with torch once per machine and kept in the
# model cache as a numpy archive.
HIDDEN = 256


class PrintEncoder:
    """Resemblyzer's network (3 LSTM layers of 256, a linear layer, ReLU, unit length) in numpy, float32."""

    def __init__(self, weights: dict[str, np.ndarray], threads: int = 1) -> None:
        def gates(a: np.ndarray) -> np.ndarray:  # torch's gate order (in, forget, cell, out) -> (in, forget, out, cell)
            h = HIDDEN
            return np.ascontiguousarray(np.concatenate([a[:2 * h], a[3 * h:], a[2 * h:3 * h]]), dtype=np.float32)

        self.layers = [(gates(weights[f"lstm.weight_ih_l{k}"]).T.copy(),
                        gates(weights[f"lstm.weight_hh_l{k}"]).T.copy(),
                        gates(weights[f"lstm.bias_ih_l{k}"] + weights[f"lstm.bias_hh_l{k}"])) for k in range(3)]
        self.linear = (np.ascontiguousarray(weights["linear.weight"].T, dtype=np.float32),
                       np.asarray(weights["linear.bias"], dtype=np.float32))
        self.threads = threads

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.threads, user_api="blas"):  # one worker, one core
            return self._run(np.ascontiguousarray(mels, dtype=np.float32))

    def _run(self, x: np.ndarray) -> np.ndarray:
        batch, steps, _ = x.shape
        h = HIDDEN
        for n, (w_in, w_state, bias) in enumerate(self.layers):
            inputs = (x.reshape(batch * steps, -1) @ w_in).reshape(batch, steps, 4 * h)
            inputs += bias
            state = np.zeros((batch, h), dtype=np.float32)
            cell = np.zeros((batch, h), dtype=np.float32)
            outputs = np.empty((batch, steps, h), dtype=np.float32) if n < len(self.layers) - 1 else None
            acts = np.empty((batch, 4 * h), dtype=np.float32)
            for t in range(steps):
                np.matmul(state, w_state, out=acts)
                acts += inputs[:, t]
                sig = acts[:, :3 * h]  # sigmoid(x) = (1 + tanh(x / 2)) / 2, in place
                sig *= 0.5
                np.tanh(sig, out=sig)
                sig += 1.0
                sig *= 0.5
                np.tanh(acts[:, 3 * h:], out=acts[:, 3 * h:])
                cell *= sig[:, h:2 * h]
                cell += sig[:, :h] * acts[:, 3 * h:]
                state = np.tanh(cell)
                state *= sig[:, 2 * h:]
                if outputs is not None:
                    outputs[:, t] = state
            if outputs is not None:
                x = outputs
        raw = np.maximum(state @ self.linear[0] + self.linear[1], 0.0)
        return unit(raw)


def print_encoder(cache_dir: Path | None = None, threads: int = 1) -> PrintEncoder:
    """The numpy encoder, loaded once per process (with the first caller's ``threads``); its weights from
    ``cache_dir`` (the model cache)."""
    global _PRINT_ENCODER
    with _ENCODER_LOCK:
        if _PRINT_ENCODER is None:
            _PRINT_ENCODER = PrintEncoder(encoder_weights(cache_dir or default_cache_dir()), threads)
        return _PRINT_ENCODER


def encoder_weights(cache_dir: Path) -> dict[str, np.ndarray]:
    """Resemblyzer's weights as numpy arrays: from the cache, else read from its checkpoint with torch and cached
    (atomically; a cache that cannot be written only costs the next process the same reading)."""
    spec = importlib.util.find_spec("resemblyzer")  # finding the package does not import it (nor torch)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("resemblyzer is not installed")
    checkpoint = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    cached = cache_dir / f"resemblyzer-{importlib.metadata.version('resemblyzer')}-{checkpoint.stat().st_size}.npz"
    if cached.is_file():
        with np.load(cached) as arrays:
            return {name: arrays[name] for name in arrays.files}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import torch

        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model_state"]
    weights = {name: value.numpy() for name, value in state.items() if name.startswith(("lstm.", "linear."))}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, prefix=".resemblyzer-", suffix=".npz", delete=False) as out:
            np.savez(out, **weights)
        os.replace(out.name, cached)
        log.info("voice encoder weights cached in %s", cached)
    except OSError as exc:
        log.warning("could not cache the voice encoder's weights in %s: %s", cache_dir, exc)
    return weights


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
                  budget_s: float | None = None, hop_frames: int = HOP_FRAMES,
                  encode: Encode | None = None) -> VoiceWindows:
    """Embeddings of the speech in ``regions`` of ``audio`` (16 kHz mono float32, any array-like: a memory map of
    a decode on disk is read a piece at a time), a window every ``hop_frames`` mel frames. ``budget_s``: stop
    after this much speech. ``encode``: the encoder (torch's by default)."""
    encode = encode or encoder(threads)
    starts: list[float] = []
    ends: list[float] = []
    vectors: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            vectors.append(encode(np.stack(batch)))
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
               budget_s: float | None = None, hop_frames: int = HOP_FRAMES,
               encode: Encode | None = None) -> VoiceWindows:
    """:func:`embed_regions` over a raw float32 16 kHz decode on disk, read through a memory map."""
    if path.stat().st_size < 4:
        return empty_windows()
    audio = np.memmap(path, dtype=np.float32, mode="r")
    try:
        return embed_regions(audio, regions, threads=threads, budget_s=budget_s, hop_frames=hop_frames, encode=encode)
    finally:
        del audio


def print_of_file(path: Path, regions: Sequence[SpeechRegion], *, threads: int = 1,
                  cache_dir: Path | None = None) -> np.ndarray | None:
    """The voice print of the one speaker of a track (its 16 kHz decode on disk), from the first
    :data:`PRINT_SPEECH_S` of its speech, on the numpy encoder (its weights cached in ``cache_dir``); None
    without speech."""
    return voice_print(embed_file(path, regions, budget_s=PRINT_SPEECH_S, hop_frames=PRINT_HOP_FRAMES,
                                  encode=print_encoder(cache_dir, threads)))
