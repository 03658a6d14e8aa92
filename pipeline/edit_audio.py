"""The audio of an edit: the first run's mix as a stream of blocks, cut, bleeped and muted as an
:class:`~pipeline.edits.EditState` says, with a short equal-power crossfade at every join."""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Iterator, Sequence

import numpy as np

from pipeline.edits import EditState, Span

BLEEP_HZ = 1000.0
BLEEP_LEVEL = 0.08  # in the mix, before mastering: about as loud as the speech it replaces
CROSSFADE_S = 0.02
FADE_S = 0.005


def _tone(first: int, size: int, rate: int) -> np.ndarray:
    t = (np.arange(first, first + size, dtype=np.float64)) / rate
    return (BLEEP_LEVEL * np.sin(2 * math.pi * BLEEP_HZ * t)).astype(np.float32)


def _replace_spans(block: np.ndarray, at: int, spans: Sequence[tuple[int, int]], rate: int, tone: bool) -> None:
    """Replace samples of ``spans`` (absolute sample indices) in ``block`` (starting at ``at``) by the tone (or
    silence), with short fades into and out of it."""
    fade = max(1, int(FADE_S * rate))
    for lo, hi in spans:
        a, b = max(lo, at), min(hi, at + block.size)
        if b <= a:
            continue
        idx = np.arange(a, b)
        weight = np.clip(np.minimum(idx - lo, hi - 1 - idx) / fade, 0.0, 1.0).astype(np.float32)
        fill = _tone(a, b - a, rate) if tone else np.zeros(b - a, dtype=np.float32)
        block[a - at:b - at] = block[a - at:b - at] * (1 - weight) + fill * weight


class _Reader:
    """Samples of a block stream taken in order: ``take(n)`` the next n, ``skip(n)`` past n."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self.blocks, self.buffer = blocks, np.zeros(0, dtype=np.float32)

    def take(self, n: int) -> Iterator[np.ndarray]:
        while n > 0:
            if not self.buffer.size:
                block = next(self.blocks, None)
                if block is None:
                    return
                self.buffer = block
            piece, self.buffer = self.buffer[:n], self.buffer[n:]
            n -= piece.size
            yield piece

    def grab(self, n: int) -> np.ndarray:
        pieces = list(self.take(n))
        out = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        return np.pad(out, (0, n - out.size)) if out.size < n else out

    def skip(self, n: int) -> None:
        for _ in self.take(n):
            pass


def edited_blocks(blocks: Iterable[np.ndarray], rate: int, state: EditState, *, tones: Sequence[Span] = (),
                  mutes: Sequence[Span] = ()) -> Iterator[np.ndarray]:
    """The first run's mix (``blocks``, from its replay's first sample) with ``mutes`` silenced, ``tones``
    replaced by a tone, and the cut stretches removed: at every join the audio either side crossfades over
    CROSSFADE_S (half of it from each side), so the replay shortens by exactly the cuts."""
    def samples(spans: Sequence[Span]) -> list[tuple[int, int]]:
        return [(int(round(s.start * rate)), int(round(s.end * rate))) for s in spans]

    silent, bleeps = samples(mutes), samples(tones)

    def marked() -> Generator[np.ndarray, None, None]:
        at = 0
        for block in blocks:
            block = np.array(block, dtype=np.float32, copy=True)
            _replace_spans(block, at, silent, rate, tone=False)
            _replace_spans(block, at, bleeps, rate, tone=True)
            at += block.size
            yield block

    source: Generator[np.ndarray, None, None] = marked()
    try:
        yield from _joined(_Reader(source), state, rate)
    finally:
        source.close()
        close = getattr(blocks, "close", None)
        if close is not None:
            close()


def _joined(reader: _Reader, state: EditState, rate: int) -> Iterator[np.ndarray]:
    def samples(spans: Sequence[Span]) -> list[tuple[int, int]]:
        return [(int(round(s.start * rate)), int(round(s.end * rate))) for s in spans]

    pos = 0
    total = int(round(state.duration * rate))
    kept = samples(state.timeline)
    half_max = int(CROSSFADE_S * rate / 2)
    for k, (lo, hi) in enumerate(kept):
        if k == 0:
            reader.skip(lo - pos)
            pos = lo
        nxt = kept[k + 1] if k + 1 < len(kept) else None
        if nxt is None:
            yield from reader.take(hi - pos)
            pos = hi
            continue
        a, b = hi, nxt[0]
        half = max(0, min(half_max, (a - pos) // 2, (b - a) // 2, (nxt[1] - b) // 2, total - b))
        yield from reader.take(a - half - pos)
        before, cut_start = reader.grab(half), reader.grab(half)
        reader.skip(b - a - 2 * half)
        cut_end, after = reader.grab(half), reader.grab(half)
        if half:
            w = ((np.arange(2 * half, dtype=np.float32) + 0.5) / (2 * half))
            # equal power (speech either side of a cut is uncorrelated), with gentle ends
            fade_in, fade_out = np.sin(np.pi / 2 * w), np.cos(np.pi / 2 * w)
            yield before * fade_out[:half] + cut_end * fade_in[:half]
            yield cut_start * fade_out[half:] + after * fade_in[half:]
        pos = b + half
