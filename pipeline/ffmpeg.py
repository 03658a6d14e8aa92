"""The one ffmpeg/ffprobe runner: argument lists, a timeout, progress from ``-progress pipe:1``, and a
:class:`MediaError` with the command and the tail of stderr when anything goes wrong."""

from __future__ import annotations

import collections
import fcntl
import json
import logging
import math
import shlex
import subprocess
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from pipeline.errors import MediaError

log = logging.getLogger(__name__)

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
STDERR_TAIL_LINES = 20
DEFAULT_TIMEOUT_S = 6 * 3600.0

ProgressCallback = Callable[[float], None]
"""Called with the number of seconds of output written so far."""


def run_ffmpeg(
    args: Sequence[str],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: ProgressCallback | None = None,
) -> str:
    """Run ``ffmpeg`` with ``args`` (without the program name); return its stderr.

    ``what`` names the job in error messages (e.g. "mixing room 'x'"). ffmpeg's progress lines on stdout
    are handed to ``progress`` as the output time in seconds.
    """
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-y", "-progress", "pipe:1", "-nostats", *args]
    log.debug("running %s", shlex.join(cmd))
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
        )
    except FileNotFoundError as exc:
        raise MediaError(f"{what}: ffmpeg is not installed (apt-get install ffmpeg)", shlex.join(cmd)) from exc
    stderr_lines: collections.deque[str] = collections.deque(maxlen=400)
    reader = threading.Thread(target=_drain, args=(proc.stderr, stderr_lines), daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if progress and line.startswith("out_time_us="):
                value = line.split("=", 1)[1].strip()
                if value.isdigit():
                    progress(int(value) / 1e6)
        rc = proc.wait()
    finally:
        timer.cancel()
        reader.join(timeout=5)
    stderr = "".join(stderr_lines)
    if rc != 0:
        reason = f"timed out after {timeout:.0f} s" if rc == -9 else f"exited with {rc}"
        tail = "\n".join(stderr.splitlines()[-STDERR_TAIL_LINES:])
        raise MediaError(f"{what}: ffmpeg {reason}", shlex.join(cmd), tail)
    return stderr


def pipe_to_ffmpeg(blocks: Iterable[Any], sinks: Sequence[Sequence[str]], *, sink_whats: Sequence[str],
                   bytes_per_second: float, timeout: float = DEFAULT_TIMEOUT_S,
                   progress: ProgressCallback | None = None,
                   on_exit: Callable[[int], None] | None = None) -> list[str]:
    """Write ``blocks`` (raw audio: anything with the buffer protocol, such as numpy arrays) to the stdin
    (``pipe:0``) of several ffmpeg processes (``sinks``) running at once, every encoder on its own core. Returns
    their stderrs; raises :class:`MediaError` naming the first that failed (or what ``blocks`` raised, every sink
    being stopped first). ``on_exit(i)`` is called as soon as sink ``i`` has finished well, while the others may
    still be running (it should hand its work to another thread)."""
    commands = [[FFMPEG, "-hide_banner", "-y", "-nostats", *sink] for sink in sinks]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cmd in commands:
            log.debug("running %s", shlex.join(cmd))
            procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE))
    except FileNotFoundError as exc:
        for proc in procs:
            proc.kill()
        raise MediaError(f"{sink_whats[0]}: ffmpeg is not installed (apt-get install ffmpeg)") from exc
    for proc in procs:
        widen_pipe(proc.stdin)
    tails = [collections.deque[str](maxlen=400) for _ in procs]
    readers = [threading.Thread(target=_drain_bytes, args=(p.stderr, tail), daemon=True)
               for p, tail in zip(procs, tails, strict=True)]
    for reader in readers:
        reader.start()

    def kill_all() -> None:
        for proc in procs:
            proc.kill()

    timer = threading.Timer(timeout, kill_all)
    timer.start()
    try:
        _pump(blocks, procs, bytes_per_second, progress)
        codes = _wait_each(procs, on_exit)
    finally:
        timer.cancel()
        close = getattr(blocks, "close", None)
        if close is not None:  # a generator stopped early lets go of what it holds (its decoders)
            close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for reader in readers:
            reader.join(timeout=5)
    stderrs = ["".join(tail) for tail in tails]
    for cmd, rc, stderr, name in zip(commands, codes, stderrs, sink_whats, strict=True):
        if rc != 0:
            reason = f"timed out after {timeout:.0f} s" if rc == -9 else f"exited with {rc}"
            tail = "\n".join(stderr.splitlines()[-STDERR_TAIL_LINES:])
            raise MediaError(f"{name}: ffmpeg {reason}", shlex.join(cmd), tail)
    return stderrs


def stream_ffmpeg(cmd: Sequence[str], *, what: str, read: Callable[[IO[bytes]], Iterator[Any]],
                  timeout: float = DEFAULT_TIMEOUT_S, finished: Callable[[int], None] | None = None,
                  failure: str = "ffmpeg failed") -> Iterator[Any]:
    """Run ``cmd`` (a whole ffmpeg command line writing to stdout) and yield what ``read`` makes of its stdout,
    while the caller works on each item; ``finished(exit code)`` is called once ffmpeg has ended, whether it failed,
    was stopped early or did its work. A failure, a missing ffmpeg or a run past ``timeout`` raises
    :class:`MediaError` naming ``what`` (``failure`` says what went wrong) with the command and stderr's tail."""
    log.debug("running %s", shlex.join(cmd))
    try:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise MediaError(f"{what}: ffmpeg is not installed (apt-get install ffmpeg)", shlex.join(cmd)) from exc
    assert proc.stdout is not None
    widen_pipe(proc.stdout)  # ffmpeg decodes the next stretch while this one is worked on
    tail: collections.deque[str] = collections.deque(maxlen=400)
    reader = threading.Thread(target=_drain_bytes, args=(proc.stderr, tail), daemon=True)
    reader.start()
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        yield from read(proc.stdout)
    finally:
        timer.cancel()
        proc.stdout.close()
        rc = proc.wait()
        reader.join(timeout=5)
        if finished is not None:
            finished(rc)
    if rc != 0:
        reason = f"timed out after {timeout:.0f} s: " if expired.is_set() else ""
        stderr_tail = "\n".join("".join(tail).splitlines()[-STDERR_TAIL_LINES:])
        raise MediaError(f"{what}: {reason}{failure}", shlex.join(cmd), stderr_tail)


def widen_pipe(pipe: object) -> None:
    """A 1 MiB pipe instead of 64 KiB: the mixer and the encoders then run free of each other's pace."""
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)  # type: ignore[attr-defined]
    except (AttributeError, OSError):  # not Linux, or a lower system limit: the default size works too
        pass


def _pump(blocks: Iterable[Any], sinks: Sequence[subprocess.Popen[bytes]], bytes_per_second: float,
          progress: ProgressCallback | None) -> None:
    alive = [s for s in sinks if s.stdin is not None]
    done, reported = 0, 0.0
    for block in blocks:
        for sink in list(alive):
            try:
                sink.stdin.write(block)  # type: ignore[union-attr]
            except BrokenPipeError:  # that encoder died (or timed out): its exit code says why
                alive.remove(sink)
        if not alive:
            break
        done += memoryview(block).nbytes
        if progress and done / bytes_per_second - reported >= 1.0:
            reported = done / bytes_per_second
            progress(reported)
    for sink in alive:
        try:
            sink.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass


def _wait_each(procs: Sequence[subprocess.Popen[bytes]], on_exit: Callable[[int], None] | None) -> list[int]:
    """Every process's exit code, calling ``on_exit`` for each that succeeded as it exits."""
    codes = [0] * len(procs)

    def wait(index: int) -> None:
        codes[index] = procs[index].wait()
        if codes[index] == 0 and on_exit is not None:
            on_exit(index)

    waiters = [threading.Thread(target=wait, args=(i,), daemon=True) for i in range(len(procs))]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    return codes


def _drain_bytes(stream: object, sink: collections.deque[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.append(line.decode(errors="replace"))


def _drain(stream: object, sink: collections.deque[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        sink.append(line)


@dataclass(frozen=True)
class AudioInfo:
    """What ffprobe says about the first audio stream of a file."""

    path: Path
    codec: str
    sample_rate: int
    channels: int
    duration: float
    start_time: float
    format_name: str


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """A cache of this process, safe to share between threads, that forgets its least recently used entries past
    ``size`` (a worker handles room after room)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: collections.OrderedDict[K, V] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def update(self, items: Mapping[K, V]) -> None:
        with self._lock:
            for key, value in items.items():
                self._items[key] = value
                self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def snapshot(self) -> dict[K, V]:
        with self._lock:
            return dict(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


_PROBED: Remembered[tuple[str, int, int, int], AudioInfo] = Remembered(256)


def probe_audio(path: Path, *, what: str, timeout: float = 60.0) -> AudioInfo:
    """Probe ``path`` with ffprobe; raise :class:`MediaError` unless it holds a decodable audio stream.

    A file probed before in this process, unchanged since (same size, modification time and inode), is not
    probed again: a room's stages each load the manifest, and a worker handles many tracks of one room."""
    key = file_key(path)  # None: ffprobe reports what is wrong with it
    if key is not None and (known := _PROBED.get(key)) is not None:
        return known
    info = _probe_audio(path, what=what, timeout=timeout)
    if key is not None:
        remember_probes({key: info})
    return info


def file_key(path: Path) -> tuple[str, int, int, int] | None:
    """What identifies the contents of ``path`` for the caches of this process: its name, size, modification time
    and inode (None when it cannot be read)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path), st.st_size, st.st_mtime_ns, st.st_ino


def known_probes() -> dict[tuple[str, int, int, int], AudioInfo]:
    """What this process has probed (file, size, modification time, inode -> info), to hand to another process
    on this machine working on the same files (:func:`remember_probes`)."""
    return _PROBED.snapshot()


def remember_probes(probes: dict[tuple[str, int, int, int], AudioInfo]) -> None:
    """Keep probes, made here or by another process on this machine: a file that changed since has another key and
    is probed again. The least recently used are forgotten past their number (``_PROBED.size``)."""
    _PROBED.update(probes)


def _probe_audio(path: Path, *, what: str, timeout: float) -> AudioInfo:
    cmd = [
        FFPROBE, "-hide_banner", "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", "-select_streams", "a:0", str(path),
    ]
    done, tail = _run_captured(cmd, what=what, timeout=timeout)
    if done.returncode != 0:
        raise MediaError(f"{what}: not a readable media file", shlex.join(cmd), tail)
    data = json.loads(done.stdout.decode(errors="replace") or "{}")
    streams = data.get("streams") or []
    if not streams:
        raise MediaError(f"{what}: the file has no audio stream", shlex.join(cmd), tail)
    stream, fmt = streams[0], data.get("format", {})
    duration = _number(stream.get("duration")) or _number(fmt.get("duration"))
    if not duration or not math.isfinite(duration) or duration <= 0:
        raise MediaError(f"{what}: the audio stream has no duration (empty or truncated file)", shlex.join(cmd))
    return AudioInfo(
        path=path,
        codec=str(stream.get("codec_name", "?")),
        sample_rate=int(_number(stream.get("sample_rate")) or 0),
        channels=int(stream.get("channels") or 0),
        duration=duration,
        start_time=_number(stream.get("start_time")) or 0.0,
        format_name=str(fmt.get("format_name", "?")),
    )


def check_decodes(path: Path, *, what: str, duration: float, seconds: float = 2.0, timeout: float = 60.0) -> None:
    """Decode the first and the last ``seconds`` of ``path`` (one ffmpeg, which stops at the first error); raise
    :class:`MediaError` if it cannot, or if nothing decodes near the end: a cut-off MP3 or FLAC keeps a header that
    claims the full duration (``duration``, as probed), so its start decodes and only its end shows the damage."""
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-xerror",
           "-t", f"{seconds}", "-i", str(path), "-sseof", f"-{seconds}", "-i", str(path),
           "-map", "0:a:0", "-f", "null", "-", "-map", "1:a:0", "-ac", "1", "-c:a", "pcm_s16le", "-f", "s16le", "-"]
    done, tail = _run_captured(cmd, what=what, timeout=timeout)
    if done.returncode != 0:
        raise MediaError(f"{what}: ffmpeg exited with {done.returncode}", shlex.join(cmd), tail)
    if not done.stdout:
        raise MediaError(f"{what}: the file is truncated: its header claims {duration:.1f} s but nothing decodes "
                         "near its end; upload the complete recording", shlex.join(cmd))


def _run_captured(cmd: list[str], *, what: str, timeout: float) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """Run ffmpeg or ffprobe (``cmd``) to the end, keeping its output; return it with the tail of its stderr.
    A program that is missing or runs past ``timeout`` raises :class:`MediaError`."""
    program = cmd[0]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise MediaError(f"{what}: {program} is not installed (apt-get install ffmpeg)", shlex.join(cmd)) from exc
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{what}: {program} timed out after {timeout:.0f} s", shlex.join(cmd)) from exc
    return done, "\n".join(done.stderr.decode(errors="replace").splitlines()[-STDERR_TAIL_LINES:])


def _number(value: object) -> float | None:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None
