"""Decoding tracks to 16 kHz mono float32 PCM, streamed in blocks so a long track never sits in memory whole."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from pipeline.ffmpeg import FFMPEG, stream_ffmpeg

ANALYSIS_RATE = 16_000


def decode_blocks(path: Path, *, what: str, block_s: float = 600.0, start: float = 0.0,
                  duration: float | None = None, copy: PcmCopy | None = None) -> Iterator[np.ndarray]:
    """Yield ``path`` as 16 kHz mono float32 blocks of ``block_s`` seconds (the last one shorter); with ``copy``,
    the same decode also writes the whole track as a :class:`PcmCopy`."""
    for block in stream_pcm(path, what=what, block_s=block_s, start=start, duration=duration, rate=ANALYSIS_RATE,
                            copy=copy):
        yield block[:, 0]


@dataclass(frozen=True)
class PcmCopy:
    """A track decoded to raw mono float32 at ``rate``, kept on disk so a later stage need not decode it again.
    It is written under a temporary name and renamed when ffmpeg has finished the whole track, so a copy that
    exists is complete."""

    path: Path
    rate: int

    def blocks(self, block_s: float) -> Iterator[np.ndarray]:
        """The copy as float32 blocks of ``block_s`` seconds (the last one shorter)."""
        with self.path.open("rb", buffering=0) as handle:
            yield from float_blocks(handle, max(1, int(block_s * self.rate)) * 4, 4)

    def kept(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass ``blocks`` (mono float32 at the copy's rate) through, writing them to the copy; the copy appears
        only when every block has been passed on (a stream stopped early or failed leaves none)."""
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        done = False
        try:
            with partial.open("wb") as handle:
                for block in blocks:
                    handle.write(np.ascontiguousarray(block, dtype=np.float32).data)  # no copy in bytes
                    yield block
            os.replace(partial, self.path)
            done = True
        finally:
            if not done:
                partial.unlink(missing_ok=True)


def float_blocks(stream: IO[bytes], block_bytes: int, frame: int) -> Iterator[np.ndarray]:
    """Raw float32 from ``stream`` in reads of ``block_bytes``, as flat arrays of whole ``frame``-byte frames (a
    frame split between two reads goes out with the second)."""
    pending = b""
    while data := stream.read(block_bytes):
        data = pending + data
        usable = len(data) - len(data) % frame
        pending = data[usable:]
        if usable:
            yield np.frombuffer(data[:usable], dtype=np.float32)


def stream_pcm(path: Path, *, what: str, block_s: float, rate: int, channels: int = 1, start: float = 0.0,
               duration: float | None = None, resample: bool = True, copy: PcmCopy | None = None,
               failure: str = "could not decode the audio") -> Iterator[np.ndarray]:
    """Yield ``path`` as float32 blocks of ``block_s`` seconds, shaped (samples, channels): resampled to ``rate``
    and mixed down to ``channels``, or (``resample=False``) as the file has them, ``rate``/``channels`` being what
    it holds. With ``copy`` (whole tracks only), the one decode also writes ``copy``. ``failure``: what a
    :class:`MediaError` says went wrong when ffmpeg fails."""
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error"]
    if start > 0:
        cmd += ["-ss", f"{start:.3f}"]
    cmd += ["-i", str(path)]
    if duration is not None:
        cmd += ["-t", f"{duration:.3f}"]
    cmd += ["-map", "0:a:0"]
    if resample:
        cmd += ["-ac", str(channels), "-ar", str(rate)]
    cmd += ["-f", "f32le", "-"]
    partial = None
    if copy is not None:
        if start > 0 or duration is not None:
            raise ValueError("a decoded copy is made of whole tracks only")
        partial = copy.path.with_name(f".{copy.path.name}.partial")
        cmd += ["-map", "0:a:0", "-ac", "1", "-ar", str(copy.rate), "-f", "f32le", "-y", str(partial)]

    def finished(rc: int) -> None:
        if partial is not None and copy is not None:
            if rc == 0:
                os.replace(partial, copy.path)
            else:  # stopped early or failed: no copy rather than a short one
                partial.unlink(missing_ok=True)

    return pcm_from(cmd, what=what, block_s=block_s, rate=rate, channels=channels, finished=finished,
                    failure=failure)


def pcm_from(cmd: list[str], *, what: str, block_s: float, rate: int, channels: int,
             finished: Callable[[int], None] | None = None,
             failure: str = "could not decode the audio") -> Iterator[np.ndarray]:
    """Run ``cmd``, an ffmpeg writing raw float32 audio (``rate``, ``channels``) to stdout, and yield that audio in
    blocks of ``block_s`` seconds shaped (samples, channels); ``finished(exit code)`` is called once ffmpeg has
    ended, whether it failed, was stopped early or did its work. A failure raises :class:`MediaError` (``failure``
    says what went wrong)."""
    frame = 4 * channels

    def read(stdout: IO[bytes]) -> Iterator[np.ndarray]:
        for block in float_blocks(stdout, max(1, int(block_s * rate)) * frame, frame):
            yield block.reshape(-1, channels)

    yield from stream_ffmpeg(cmd, what=what, read=read, finished=finished, failure=failure)


def decode(path: Path, *, what: str, start: float = 0.0, duration: float | None = None) -> np.ndarray:
    """The whole of ``path`` (or a window of it) as one 16 kHz mono float32 array: for short clips only."""
    blocks = list(decode_blocks(path, what=what, start=start, duration=duration))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
