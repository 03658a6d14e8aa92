"""The mastering limiter, against the signal it is given: peaks held at the ceiling, nothing else touched, the
same output however the stream is cut into blocks, and no delay."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.limiter import Limiter, limited

RATE = 44_100


def _signal() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    audio = rng.normal(0, 0.05, RATE * 12).astype(np.float32)
    peaks = np.sort(rng.choice(np.arange(RATE, audio.size - RATE, RATE // 2), size=8, replace=False))
    for at in peaks:
        audio[at:at + 40] += np.float32(0.9) * np.hanning(40).astype(np.float32)
    return audio, peaks


def _run(audio: np.ndarray, sizes: list[int], gain_db: float = 3.0, limit_db: float = -2.0) -> np.ndarray:
    limiter, out, at, n = Limiter(gain_db, limit_db, RATE), [], 0, 0
    while at < audio.size:
        size = sizes[n % len(sizes)]
        out.append(limiter.process(audio[at:at + size]))
        at, n = at + size, n + 1
    out.append(limiter.finish())
    return np.concatenate(out)


@pytest.mark.parametrize("sizes", [[RATE], [1000], [7, 50_000, 3, RATE * 20]])
def test_peaks_are_held_at_the_ceiling_and_the_rest_is_only_gained(sizes: list[int]) -> None:
    audio, peaks = _signal()
    gain, ceiling = np.float32(10 ** (3 / 20)), 10 ** (-2 / 20)
    out = _run(audio, sizes)
    assert out.size == audio.size
    assert float(np.max(np.abs(out))) <= ceiling * (1 + 1e-6)
    assert float(np.max(np.abs(audio * gain))) > 1.0  # the peaks did need limiting
    window = int(0.05 * RATE)
    far = np.ones(audio.size, dtype=bool)
    for at in peaks:
        far[max(0, at - window):at + 40 + window] = False
    assert np.array_equal(out[far], audio[far] * gain)  # no delay, no change away from the peaks
    for at in peaks:  # the gain is down before the peak arrives and back after it
        assert abs(out[at - window - 1] - audio[at - window - 1] * gain) < 1e-7
        assert abs(out[at + 40 + window] - audio[at + 40 + window] * gain) < 1e-7
    assert np.array_equal(out, _run(audio, [RATE]))


def test_a_stream_under_the_ceiling_passes_with_its_gain_and_length() -> None:
    audio = np.random.default_rng(2).normal(0, 0.01, 12_345).astype(np.float32)
    out = np.concatenate(list(limited(iter([audio[:100], audio[100:]]), -6.0, -1.0, RATE)))
    assert np.array_equal(out, audio * np.float32(10 ** (-6 / 20)))
