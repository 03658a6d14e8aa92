"""Loudness measurement (ITU-R BS.1770 / EBU R128).

Two meters:
- :class:`SpeechMeter` measures a track's loudness on its speech only, from the same 16 kHz blocks the VAD reads,
  so levelling costs no extra decode. K-weighting is designed for the block's sample rate (bilinear transform);
  at 16 kHz it ignores the little speech energy above 8 kHz, which moves the figure by a few tenths of a dB at most.
  The filter is applied in the frequency domain, one 100 ms step at a time (the energy of each step is the sum of
  its spectrum weighted by the filter's squared response): the same integrated loudness as time-domain filtering
  within 0.01 LU on speech, at about the same cost, without SciPy, whose import alone cost each worker 1 s.
- :func:`measure_file` measures a finished file (integrated loudness, LRA, true peak) as ffmpeg decodes it, and
  :func:`measure_blocks` the same from any stream of decoded blocks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio import stream_pcm
from pipeline.errors import MediaError
from pipeline.ffmpeg import probe_audio

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
STEP_S = 0.1  # 400 ms gating blocks with 75 % overlap are four consecutive 100 ms steps
SILENCE_LUFS = -120.0


def _k_weighting(rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of the two BS.1770 K-weighting stages (high shelf, then high pass) at ``rate``."""
    def shelf(fc: float, gain_db: float, q: float) -> tuple[np.ndarray, np.ndarray]:
        a = 10 ** (gain_db / 40)
        w0 = 2 * math.pi * fc / rate
        alpha = math.sin(w0) / (2 * q)
        cos, root = math.cos(w0), 2 * math.sqrt(a) * alpha
        b = [a * ((a + 1) + (a - 1) * cos + root), -2 * a * ((a - 1) + (a + 1) * cos),
             a * ((a + 1) + (a - 1) * cos - root)]
        d = [(a + 1) - (a - 1) * cos + root, 2 * ((a - 1) - (a + 1) * cos), (a + 1) - (a - 1) * cos - root]
        return np.array(b) / d[0], np.array(d) / d[0]

    def high_pass(fc: float, q: float) -> tuple[np.ndarray, np.ndarray]:
        w0 = 2 * math.pi * fc / rate
        alpha, cos = math.sin(w0) / (2 * q), math.cos(w0)
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        d = [1 + alpha, -2 * cos, 1 - alpha]
        return np.array(b) / d[0], np.array(d) / d[0]

    b1, a1 = shelf(1500.0, 4.0, 1 / math.sqrt(2))
    b2, a2 = high_pass(38.0, 0.5)
    return b1, a1, b2, a2


def _response(b: np.ndarray, a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Complex response of the biquad (b, a) at angular frequencies ``w`` (radians per sample)."""
    z = np.exp(-1j * w)
    return (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)


def _k_weights(rate: int, size: int) -> np.ndarray:
    """Per-bin weights turning an rfft of ``size`` samples into the mean square of its K-weighted signal."""
    b1, a1, b2, a2 = _k_weighting(rate)
    w = 2 * np.pi * np.fft.rfftfreq(size)
    weights = np.abs(_response(b1, a1, w) * _response(b2, a2, w)) ** 2
    weights[1:(size + 1) // 2] *= 2.0  # the negative frequencies an rfft leaves out
    return weights / (size * size)


STEPS_PER_FFT = 300  # 30 s of steps transformed at once


def step_energies(samples: np.ndarray, step: int, weights: np.ndarray) -> np.ndarray:
    """Mean square of the K-weighted signal in each ``step``-sample stretch of ``samples`` (a multiple of step)."""
    rows = samples.reshape(-1, step)
    out = np.empty(rows.shape[0])
    for first in range(0, rows.shape[0], STEPS_PER_FFT):  # the spectra of a long block would need ~25x its size
        spectrum = np.fft.rfft(rows[first:first + STEPS_PER_FFT], axis=1)
        out[first:first + STEPS_PER_FFT] = (spectrum.real ** 2 + spectrum.imag ** 2) @ weights
    return out


class SpeechMeter:
    """Accumulates K-weighted energy in 100 ms steps while blocks stream past; keeps O(duration / 100 ms) floats."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.step = int(rate * STEP_S)
        self.weights = _k_weights(rate, self.step)
        self.pending = np.zeros(0, dtype=np.float32)
        self.energies: list[float] = []

    def add(self, block: np.ndarray) -> None:
        data = np.concatenate([self.pending, block]) if self.pending.size else block
        whole = data.size // self.step * self.step
        if whole:
            self.energies.extend(step_energies(data[:whole], self.step, self.weights).tolist())
        self.pending = data[whole:]

    def loudness(self, regions: Sequence[tuple[float, float]] | None = None) -> float:
        """Gated integrated loudness (LUFS) of the 400 ms blocks lying inside ``regions`` (all blocks if None)."""
        steps = np.asarray(self.energies)
        if steps.size < 4:
            return SILENCE_LUFS
        blocks = np.convolve(steps, np.ones(4) / 4, mode="valid")  # block k covers steps k..k+3
        if regions is not None:
            starts = np.arange(blocks.size) * STEP_S
            inside = np.zeros(blocks.size, dtype=bool)
            for start, end in regions:
                inside |= (starts >= start - 1e-9) & (starts + 0.4 <= end + 1e-9)
            blocks = blocks[inside]
        return gated_loudness(blocks)


def gated_loudness(block_energies: np.ndarray) -> float:
    """BS.1770 integrated loudness from mean-square energies of 400 ms blocks (absolute, then relative gate)."""
    def lufs(energy: np.ndarray | float) -> np.ndarray | float:
        return -0.691 + 10 * np.log10(np.maximum(energy, 1e-30))

    kept = block_energies[lufs(block_energies) > ABSOLUTE_GATE_LUFS]
    if kept.size == 0:
        return SILENCE_LUFS
    relative = float(lufs(np.mean(kept))) + RELATIVE_GATE_LU
    kept = kept[lufs(kept) > relative]
    return float(lufs(np.mean(kept))) if kept.size else SILENCE_LUFS


@dataclass(frozen=True)
class LoudnessReport:
    integrated_lufs: float
    range_lu: float
    true_peak_dbtp: float


_SUMMARY = {
    "integrated_lufs": re.compile(r"I:\s+(-?[\d.]+|-inf)\s+LUFS"),
    "range_lu": re.compile(r"LRA:\s+(-?[\d.]+|-inf)\s+LU\b"),
    "true_peak_dbtp": re.compile(r"Peak:\s+(-?[\d.]+|-inf)\s+dBFS"),
}


# Seconds of audio measured at a time. A block must be well under the decoder's pipe (1 MB: about 6 s of 44.1 kHz
# mono float32), or the decoder stops while a block is measured. On a 10-minute MP3, 10 s blocks took 1.8 s and 1.0 s
# of CPU; 2 s blocks took 0.84 s and 0.6 s of CPU, with the same results.
MEASURE_BLOCK_S = 2.0


def measure_file(path: Path, *, what: str) -> LoudnessReport:
    """Integrated loudness, loudness range and true peak of ``path`` (every channel), streamed.

    Loudness is BS.1770-4 (K-weighting per 100 ms step as in :class:`SpeechMeter`, 400 ms blocks, absolute and
    relative gates); the range is EBU Tech 3342 (3 s short-term loudness, gated, 10th to 95th percentile). True
    peak is the peak of the signal oversampled four times (a 49-tap Kaiser-windowed sinc), computed around the
    samples loud enough for an interpolated point to beat the peak found so far and TRUE_PEAK_FROM_DBFS: a file
    that never comes near that floor reports its sample peak. Agrees with ffmpeg's ebur128 within 0.1 LU and
    0.1 dB, at under half its cost (it resamples everything to 192 kHz).
    """
    info = probe_audio(path, what=what)
    rate, channels = info.sample_rate, max(1, info.channels)
    return measure_blocks(stream_pcm(path, what=f"{what}: measuring", block_s=MEASURE_BLOCK_S, rate=rate,
                                     channels=channels, resample=False), rate=rate, channels=channels)


def measure_blocks(blocks: Iterable[np.ndarray], *, rate: int, channels: int) -> LoudnessReport:
    """:func:`measure_file`'s report of audio arriving as float32 blocks shaped (samples, channels), such as the
    blocks of MEASURE_BLOCK_S that :func:`pipeline.audio.pcm_from` reads from a decoder."""
    step = int(rate * STEP_S)
    weights = _k_weights(rate, step)
    energies: list[np.ndarray] = []
    peak = 0.0
    tail = np.zeros((0, channels), dtype=np.float32)
    pending = np.zeros((0, channels), dtype=np.float32)
    for block in blocks:
        frames = np.concatenate([pending, block]) if pending.size else block
        whole = frames.shape[0] // step * step
        pending, frames = frames[whole:], frames[:whole]
        if not whole:
            continue
        energies.append(np.sum([step_energies(frames[:, c], step, weights) for c in range(channels)], axis=0))
        peak = max(peak, _true_peak(frames, tail, peak))
        tail = frames[-_TAPS_PER_PHASE:]
    if pending.size:
        peak = max(peak, float(np.max(np.abs(pending))))
    steps = np.concatenate(energies) if energies else np.zeros(0)
    gating = np.convolve(steps, np.ones(4) / 4, mode="valid") if steps.size >= 4 else np.zeros(0)
    integrated = gated_loudness(gating) if gating.size else SILENCE_LUFS
    return LoudnessReport(round(integrated, 2), round(_loudness_range(steps), 2),
                          round(20 * math.log10(peak), 2) if peak > 0 else float("-inf"))


TRUE_PEAK_FROM_DBFS = -6.0
_TAPS_PER_PHASE = 12
_BEFORE, _AFTER = 5, 6  # the samples each interpolated point between x[m] and x[m + 1] is made of: m-5 .. m+6


def _interpolator() -> np.ndarray:
    """Three fractional-delay filters (1/4, 2/4, 3/4 of a sample) of a 4x oversampler, as columns."""
    size = 4 * _TAPS_PER_PHASE + 1
    n = np.arange(size) - (size - 1) / 2
    h = np.sinc(n / 4) * np.kaiser(size, 8.0)
    phases = [h[p::4][:_TAPS_PER_PHASE] for p in (3, 2, 1)]
    return np.stack([ph / ph.sum() for ph in phases], axis=1).astype(np.float32)


_PHASES = _interpolator()


# An interpolated point is a weighted sum of 12 samples: it is at most this many times the largest of them.
_GAIN_BOUND = float(np.max(np.sum(np.abs(_PHASES), axis=0)))


def _true_peak(frames: np.ndarray, before: np.ndarray, known: float) -> float:
    """The peak of ``frames`` (samples x channels) oversampled 4x where it matters; ``before``: the samples that
    precede them (filter history); ``known``: the peak found so far. Only the points whose samples could reach
    above the known peak (and above TRUE_PEAK_FROM_DBFS) are computed: speech has few such samples."""
    peak = float(np.max(np.abs(frames), initial=0.0))
    bar = max(known, peak, 10 ** (TRUE_PEAK_FROM_DBFS / 20)) / _GAIN_BOUND
    history = np.concatenate([before, frames]) if before.size else frames
    loud = np.max(np.abs(history), axis=1) >= bar
    if not loud.any():
        return peak
    # the points between samples m and m + 1 read m-5 .. m+6, so a loud sample c counts for m = c-6 .. c+5
    wanted = np.zeros(loud.size + _BEFORE + _AFTER, dtype=bool)
    for shift in range(_BEFORE + _AFTER + 1):
        wanted[shift:shift + loud.size] |= loud
    rows = np.flatnonzero(wanted[_AFTER:_AFTER + loud.size])
    first = max(_BEFORE, history.shape[0] - frames.shape[0] - _AFTER)  # the last chunk's end is done here
    rows = rows[(rows >= first) & (rows + _AFTER < history.shape[0])]
    for channel in range(history.shape[1]):
        windows = np.lib.stride_tricks.sliding_window_view(history[:, channel], _TAPS_PER_PHASE)
        between = windows[rows - _BEFORE] @ _PHASES  # the three points after each sample
        peak = max(peak, float(np.max(np.abs(between), initial=0.0)))
    return peak


def _loudness_range(steps: np.ndarray) -> float:
    """EBU Tech 3342 loudness range from 100 ms K-weighted step energies."""
    if steps.size < 30:
        return 0.0
    short = -0.691 + 10 * np.log10(np.maximum(np.convolve(steps, np.ones(30) / 30, mode="valid"), 1e-30))
    short = short[short > ABSOLUTE_GATE_LUFS]
    if short.size == 0:
        return 0.0
    relative = -0.691 + 10 * np.log10(np.mean(10 ** ((short + 0.691) / 10))) - 20.0
    short = short[short > relative]
    if short.size == 0:
        return 0.0
    low, high = np.percentile(short, [10, 95])
    return float(high - low)


def parse_ebur128_summary(stderr: str, *, what: str) -> LoudnessReport:
    summary = stderr[stderr.rfind("Summary:"):] if "Summary:" in stderr else ""
    values: dict[str, float] = {}
    for name, pattern in _SUMMARY.items():
        found = pattern.search(summary)
        if not found:
            raise MediaError(f"{what}: ffmpeg's ebur128 summary has no {name}", stderr_tail=summary[-1500:])
        values[name] = float("-inf") if found.group(1) == "-inf" else float(found.group(1))
    return LoudnessReport(**values)


def ride_gain(samples: np.ndarray, rate: int, *, target_dbfs: float = -20.0, window_s: float = 0.4,
              max_gain_db: float = 30.0, floor_dbfs: float = -65.0) -> np.ndarray:
    """``samples`` (mono float32) with a slow gain riding each ``window_s`` stretch towards ``target_dbfs`` RMS:
    a quiet voice in a mixed recording reaches Whisper as loud as the others. Stretches under ``floor_dbfs`` (the
    silence between words) keep their level; the gain moves smoothly between window centres, boosts by at most
    ``max_gain_db`` and cuts by at most 10 dB."""
    size = max(1, int(window_s * rate))
    if samples.size == 0:
        return samples.astype(np.float32)
    count = -(-samples.size // size)
    frames = np.zeros(count * size, dtype=np.float32)
    frames[:samples.size] = samples
    rms_db = 10 * np.log10(np.mean(frames.reshape(count, size).astype(np.float64) ** 2, axis=1) + 1e-13)
    gain_db = np.where(rms_db < floor_dbfs, 0.0, np.clip(target_dbfs - rms_db, -10.0, max_gain_db))
    if count > 2:
        gain_db = np.convolve(np.pad(gain_db, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    centres = (np.arange(count) + 0.5) * size
    gain = np.interp(np.arange(samples.size), centres, 10 ** (gain_db / 20))
    return np.clip(samples * gain, -1.0, 1.0).astype(np.float32)
