"""A look-ahead peak limiter for the mix as it streams to the encoders, applied once for every format.

The gain needed at each sample is ``min(1, limit / |x|)``. Its minimum over the next ``window`` samples, averaged
over the last ``window`` samples, is the gain applied: it starts down ``window`` before a peak, reaches what the
peak needs exactly at the peak (every value averaged there already saw it), and comes back up over ``window``
after it; straight ramps, no overshoot, no delay. Levelled speech rarely reaches the limit, so a block that
stays under it (with its neighbours) is only multiplied by the gain.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

WINDOW_S = 0.05


def _sliding_min(values: np.ndarray, width: int) -> np.ndarray:
    """``out[i] = min(values[i:i + width])`` for every ``i`` where the window fits (van Herk / Gil-Werman)."""
    count = values.size - width + 1
    rows = -(-values.size // width)
    padded = np.concatenate([values, np.full(rows * width - values.size, np.inf, dtype=values.dtype)])
    blocks = padded.reshape(rows, width)
    prefix = np.minimum.accumulate(blocks, axis=1).ravel()
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(suffix[:count], prefix[width - 1:width - 1 + count])


class Limiter:
    """Gain ``gain_db``, then peaks held under ``limit_db`` (dBFS, sample peak), over a stream of mono float32
    blocks. :meth:`process` returns the samples it can already finish (all but the last ``window - 1`` seen) and
    :meth:`finish` the rest: the same samples at the same times, nothing delayed or dropped."""

    def __init__(self, gain_db: float, limit_db: float, rate: int, window_s: float = WINDOW_S):
        self.gain = np.float32(10 ** (gain_db / 20))
        self.limit = np.float32(10 ** (limit_db / 20))
        self.window = max(2, int(round(window_s * rate)))
        self.reach = self.window - 1
        self._pending = np.zeros(0, dtype=np.float32)  # samples seen, not yet output
        self._past = np.ones(self.reach, dtype=np.float32)  # needed gains of the last `reach` samples output

    def process(self, block: np.ndarray) -> np.ndarray:
        samples = np.concatenate([self._pending, np.asarray(block, dtype=np.float32) * self.gain])
        ready = max(0, samples.size - self.reach)
        needed = np.minimum(np.float32(1.0), self.limit / np.maximum(np.abs(samples), np.float32(1e-30)))
        history = np.concatenate([self._past, needed])  # history[i]: the needed gain of sample i - reach
        self._past, self._pending = history[ready:ready + self.reach], samples[ready:]
        out = samples[:ready]
        if ready == 0 or float(history.min()) >= 1.0:
            return out
        lowest = _sliding_min(history, self.window)  # the lowest need of each window of samples
        sums = np.concatenate([[0.0], np.cumsum(lowest, dtype=np.float64)])
        gain = (sums[self.window:self.window + ready] - sums[:ready]) / self.window
        return (out * gain).astype(np.float32)

    def finish(self) -> np.ndarray:
        """The samples still held back (past the end nothing needs turning down)."""
        return self.process(np.zeros(self.reach, dtype=np.float32))


def limited(blocks: Iterable[np.ndarray], gain_db: float, limit_db: float, rate: int) -> Iterator[np.ndarray]:
    """``blocks`` through a :class:`Limiter`: the same number of samples, the same timing."""
    limiter = Limiter(gain_db, limit_db, rate)
    for block in blocks:
        out = limiter.process(block)
        if out.size:
            yield out
    tail = limiter.finish()
    if tail.size:
        yield tail
