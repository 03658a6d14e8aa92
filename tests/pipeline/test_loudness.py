"""The loudness meter on signals whose loudness is known from BS.1770 itself, and against pyloudnorm (an
independent implementation): integrated loudness, gating, loudness range, true peak between samples, and the
gain rider that brings a quiet voice up for Whisper."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest

from pipeline.loudness import (
    MEASURE_BLOCK_S,
    SILENCE_LUFS,
    LoudnessReport,
    gated_loudness,
    measure_blocks,
    ride_gain,
)

RATE = 48_000


def _sine(freq: float, seconds: float, peak_dbfs: float, *, phase: float = 0.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (peak_dbfs / 20) * np.sin(2 * math.pi * freq * t + phase)).astype(np.float32)


def _measure(samples: np.ndarray, rate: int = RATE, block_s: float = MEASURE_BLOCK_S) -> LoudnessReport:
    frames = samples.reshape(-1, 1) if samples.ndim == 1 else samples
    size = int(block_s * rate)
    return measure_blocks((frames[i:i + size] for i in range(0, len(frames), size)), rate=rate,
                          channels=frames.shape[1])


def test_a_997_hz_sine_at_full_scale_reads_minus_3_lufs() -> None:
    """BS.1770's own calibration: a 0 dBFS 997 Hz sine in one channel is -3.01 LUFS; 20 dB down is 20 LU down."""
    assert _measure(_sine(997, 10, 0.0)).integrated_lufs == pytest.approx(-3.01, abs=0.05)
    assert _measure(_sine(997, 10, -20.0)).integrated_lufs == pytest.approx(-23.01, abs=0.05)


def test_stereo_sums_the_channels_and_agrees_with_pyloudnorm() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 0.05, (RATE * 12, 2)).astype(np.float32)
    noise[:, 1] *= 0.5
    ours = _measure(noise).integrated_lufs
    reference = pyloudnorm.Meter(RATE).integrated_loudness(noise.astype(np.float64))
    assert ours == pytest.approx(reference, abs=0.1)
    left_only = _measure(np.ascontiguousarray(noise[:, :1])).integrated_lufs
    assert left_only < ours  # the right channel adds its energy


def test_how_the_audio_arrives_in_blocks_changes_nothing() -> None:
    rng = np.random.default_rng(3)
    speechlike = (rng.normal(0, 0.1, RATE * 9) * np.repeat(rng.random(90) > 0.4, RATE // 10)).astype(np.float32)
    reports = {_measure(speechlike, block_s=b) for b in (0.37, 1.0, 2.0, 9.0)}
    assert len(reports) == 1, reports


def test_silence_is_gated_out_and_silent_input_reports_silence() -> None:
    """The absolute gate (-70 LUFS) and the relative gate (-10 LU) leave out what is quiet: a tone with silences
    twice as long measures as the tone (less the blocks across its edges, as pyloudnorm has it too), not 4.8 LU
    lower as an ungated mean would."""
    tone = _sine(997, 4, -20.0)
    gapped = np.concatenate([tone, np.zeros(RATE * 8, dtype=np.float32), tone])
    ours = _measure(gapped).integrated_lufs
    assert ours == pytest.approx(pyloudnorm.Meter(RATE).integrated_loudness(gapped.astype(np.float64)), abs=0.1)
    assert ours == pytest.approx(_measure(tone).integrated_lufs, abs=0.3)
    assert _measure(np.zeros(RATE * 3, dtype=np.float32)).integrated_lufs == SILENCE_LUFS
    assert gated_loudness(np.full(10, 1e-12)) == SILENCE_LUFS


def test_loudness_range_of_two_levels_is_their_difference() -> None:
    """EBU Tech 3342: 20 s at -20 LUFS then 20 s at -30 LUFS spread the short-term loudness over 10 LU."""
    signal = np.concatenate([_sine(997, 20, -17.0), _sine(997, 20, -27.0)])
    assert _measure(signal).range_lu == pytest.approx(10.0, abs=0.6)
    assert _measure(_sine(997, 20, -17.0)).range_lu == pytest.approx(0.0, abs=0.2)


def test_true_peak_finds_the_peak_between_samples() -> None:
    """A sine at a quarter of the rate, 45 degrees off its samples: every sample is at 0.707 of the peak, so the
    sample peak reads 3 dB under the true one; oversampling finds it."""
    signal = _sine(RATE / 4, 2, -3.0, phase=math.pi / 4)
    sample_peak = 20 * math.log10(float(np.max(np.abs(signal))))
    assert sample_peak == pytest.approx(-6.01, abs=0.05)
    assert _measure(signal).true_peak_dbtp == pytest.approx(-3.0, abs=0.3)
    assert _measure(np.zeros(RATE, dtype=np.float32)).true_peak_dbtp == float("-inf")


def test_the_gain_rider_brings_a_quiet_voice_up_and_leaves_silence_alone() -> None:
    rate = 16_000
    loud, quiet = _sine(220, 2, -14.0, rate=rate), _sine(220, 2, -40.0, rate=rate)
    silence = np.zeros(rate * 2, dtype=np.float32)
    ridden = ride_gain(np.concatenate([loud, silence, quiet]), rate)

    def rms_db(x: np.ndarray) -> float:
        return 10 * math.log10(float(np.mean(x.astype(np.float64) ** 2)) + 1e-20)

    middle = slice(int(0.5 * rate), int(1.5 * rate))
    assert rms_db(ridden[4 * rate:6 * rate][middle]) == pytest.approx(-20.0, abs=1.5)  # raised to the target
    assert rms_db(ridden[:2 * rate][middle]) == pytest.approx(-20.0, abs=1.5)  # cut to it
    assert np.max(np.abs(ridden[int(2.6 * rate):int(3.4 * rate)])) == 0.0  # silence stays silent
    assert ride_gain(np.zeros(0, dtype=np.float32), rate).size == 0
