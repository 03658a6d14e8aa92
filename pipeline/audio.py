"""Decoding tracks to 16 kHz mono float32 PCM, streamed in blocks so a long track never sits in memory whole."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pipeline.errors import MediaError
from pipeline.ffmpeg import FFMPEG

ANALYSIS_RATE = 16_000


def decode_blocks(path: Path, *, what: str, block_s: float = 600.0, start: float = 0.0,
                  duration: float | None = None) -> Iterator[np.ndarray]:
    """Yield ``path`` as 16 kHz mono float32 blocks of ``block_s`` seconds (the last one shorter)."""
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error"]
    if start > 0:
        cmd += ["-ss", f"{start:.3f}"]
    cmd += ["-i", str(path)]
    if duration is not None:
        cmd += ["-t", f"{duration:.3f}"]
    cmd += ["-map", "0:a:0", "-ac", "1", "-ar", str(ANALYSIS_RATE), "-f", "f32le", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    block_bytes = int(block_s * ANALYSIS_RATE) * 4
    try:
        while True:
            data = proc.stdout.read(block_bytes)
            if not data:
                break
            usable = len(data) - len(data) % 4
            yield np.frombuffer(data[:usable], dtype=np.float32)
    finally:
        proc.stdout.close()
        stderr = proc.stderr.read().decode(errors="replace")
        rc = proc.wait()
    if rc != 0:
        raise MediaError(f"{what}: could not decode the audio", shlex.join(cmd), stderr[-2000:])


def decode(path: Path, *, what: str, start: float = 0.0, duration: float | None = None) -> np.ndarray:
    """The whole of ``path`` (or a window of it) as one 16 kHz mono float32 array: for short clips only."""
    blocks = list(decode_blocks(path, what=what, start=start, duration=duration))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
