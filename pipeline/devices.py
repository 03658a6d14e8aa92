"""Where Whisper runs: ``--device auto`` (the default), ``cpu`` or ``cuda``.

``auto`` takes the GPU when CTranslate2 (the engine under faster-whisper) sees a CUDA device, with float16 weights
and larger batches, and the CPU with int8 weights otherwise; nothing in roomcast needs a GPU. ``cuda`` asked for
on a machine without one is refused before any work starts, saying what to give instead.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

from pipeline.errors import TranscriptionError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
# A GPU transcribes a batch of 16 chunks in about the time a CPU takes for one; on a CPU one chunk at a time is
# the fastest, as each batch's window is cut to its longest chunk (see pipeline.whisper_model.TranscribeSettings).
CPU_BATCH_SIZE = 1
CUDA_BATCH_SIZE = 16


@dataclass(frozen=True)
class Device:
    """What the model runs on: ``name`` ("cpu" or "cuda"), ``compute_type`` ("int8", "float16") and how many
    packed chunks go through the batched pipeline at once."""

    name: str
    compute_type: str
    batch_size: int

    @property
    def label(self) -> str:
        """``cuda/float16`` or ``cpu/int8``: what summaries, logs and benchmarks print."""
        return f"{self.name}/{self.compute_type}"


CPU = Device("cpu", "int8", CPU_BATCH_SIZE)
CUDA = Device("cuda", "float16", CUDA_BATCH_SIZE)


def cuda_device_count() -> int:
    """CUDA devices CTranslate2 can use here (0 when it has no CUDA build, no driver or no GPU)."""
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception as exc:  # an old driver or a CPU-only build raises its own types
        log.debug("no CUDA device: %s", exc)
        return 0


@functools.cache
def choose_device(requested: str) -> Device:
    """The device for ``requested`` ("auto", "cpu" or "cuda"); raises :class:`TranscriptionError` for an
    unknown name, or for "cuda" on a machine where CTranslate2 sees no CUDA device."""
    wanted = requested.strip().lower()
    if wanted not in DEVICES:
        raise TranscriptionError(f"unknown device {requested!r}: give one of {', '.join(DEVICES)}")
    if wanted == "cpu":
        return CPU
    gpus = cuda_device_count()
    if wanted == "cuda" and gpus == 0:
        raise TranscriptionError(
            "device 'cuda' was asked for, but CTranslate2 sees no CUDA device on this machine (no GPU, no NVIDIA "
            "driver, or a driver too old for its CUDA runtime): use --device auto (the default, CPU here) or "
            "--device cpu"
        )
    device = CUDA if gpus else CPU
    if wanted == "auto":
        log.info("device auto: %s (%d CUDA device(s) seen)", device.label, gpus)
    return device


def hold_cpu_threads(threads: int) -> None:
    """Hold this process's BLAS pool (numpy's OpenBLAS) to ``threads`` threads from now on: a worker process
    that runs beside one per core. OpenBLAS otherwise starts a thread per core in every process, and two workers
    on two cores each split their small matrix products (the mel filter bank of Whisper's features, the voice
    encoder) over two threads that then wait for each other: transcribing a 10-minute room's 4 tracks took
    15.9 s of CPU that way, and 13.4 s with one thread per worker, for the same words."""
    import numpy  # noqa: F401  (loads OpenBLAS, so that the limit below holds it)
    from threadpoolctl import threadpool_limits

    count = max(1, threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(count)  # a BLAS loaded later (scipy's) reads it as it loads
    threadpool_limits(limits=count, user_api="blas")
