"""The one ffmpeg runner: every call of ffmpeg or ffprobe goes through pipeline.ffmpeg, with a timeout and one error
(MediaError) naming the file, the command and the end of ffmpeg's stderr."""

from __future__ import annotations

import ast
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pytest

from pipeline.audio import decode_blocks
from pipeline.errors import MediaError
from pipeline.ffmpeg import STDERR_TAIL_LINES, probe_audio, run_ffmpeg, stream_ffmpeg
from tests.roomgen import write_wav

ROOT = Path(__file__).resolve().parents[2]


def _chunks(stdout: IO[bytes]) -> Iterator[bytes]:
    while chunk := stdout.read(4096):
        yield chunk


def test_a_stream_that_fails_names_the_file_and_keeps_the_tail_of_stderr(tmp_path: Path) -> None:
    broken = tmp_path / "broken.opus"
    broken.write_bytes(b"not audio at all" * 100)
    with pytest.raises(MediaError, match="broken.opus: could not decode the audio") as caught:
        list(decode_blocks(broken, what=f"room 'r': {broken.name}"))
    assert "ffmpeg" in caught.value.command and str(broken) in caught.value.command
    assert caught.value.stderr_tail.strip()
    assert len(caught.value.stderr_tail.splitlines()) <= STDERR_TAIL_LINES


def test_a_stream_past_its_timeout_is_stopped(tmp_path: Path) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
           "-f", "f32le", "-"]
    started = time.monotonic()
    with pytest.raises(MediaError, match="endless: timed out after"):
        for _ in stream_ffmpeg(cmd, what="endless", read=_chunks, timeout=1.0):
            pass
    assert time.monotonic() - started < 10


def test_a_stream_reports_its_exit_and_yields_what_ffmpeg_wrote(tmp_path: Path) -> None:
    track = write_wav(tmp_path / "tone.wav", (0.1 * np.sin(np.arange(16_000) / 5)).astype(np.float32))
    exits: list[int] = []
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", str(track), "-f", "f32le", "-ac", "1", "-ar",
           "16000", "-"]
    data = b"".join(stream_ffmpeg(cmd, what="tone", read=_chunks, finished=exits.append))
    assert exits == [0] and len(data) == 4 * 16_000


def test_a_missing_program_is_a_media_error() -> None:
    with pytest.raises(MediaError, match="x: ffmpeg is not installed"):
        list(stream_ffmpeg(["ffmpeg-that-is-not-there", "-i", "a"], what="x", read=_chunks))


def test_run_and_probe_fail_with_the_same_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.wav"
    with pytest.raises(MediaError, match="mixing: ffmpeg exited with") as caught:
        run_ffmpeg(["-i", str(missing), "-f", "null", "-"], what="mixing")
    assert "-hide_banner" in caught.value.command and "-nostdin" in caught.value.command
    with pytest.raises(MediaError, match="probing"):
        probe_audio(missing, what="probing")


def test_only_the_runner_starts_processes() -> None:
    for package in ("pipeline", "storage", "feeds", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "pipeline" / "ffmpeg.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                assert "subprocess" not in names, \
                    f"{path.relative_to(ROOT)} starts processes itself: run ffmpeg through pipeline.ffmpeg"
