"""Speech regions of a track, found with the Silero VAD model bundled with faster-whisper."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio import ANALYSIS_RATE, decode_blocks

log = logging.getLogger(__name__)

# A block boundary may cut a phrase; the overlap lets the VAD see it whole in the next block.
BLOCK_S = 600.0
OVERLAP_S = 30.0


@dataclass(frozen=True)
class SpeechRegion:
    """A stretch of speech, in seconds from the start of its track (not the room clock)."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class VadSettings:
    """Silero VAD settings for close-miked per-speaker tracks.

    ``min_silence_s`` is shorter than faster-whisper's default (2 s) because a track holds one voice: a
    short pause is a real boundary, and shorter regions keep the transcription windows tight.
    """

    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.6
    pad_s: float = 0.2


def speech_regions(path: Path, *, what: str, settings: VadSettings | None = None) -> tuple[SpeechRegion, ...]:
    """Every speech region of the audio in ``path``, in track seconds, sorted and non-overlapping."""
    regions = speech_regions_in(decode_blocks(path, what=what, block_s=BLOCK_S), settings or VadSettings())
    log.debug("%s: %d speech regions, %.1f s of speech", what, len(regions), sum(r.duration for r in regions))
    return regions


def speech_regions_in(blocks: Iterator[np.ndarray], settings: VadSettings) -> tuple[SpeechRegion, ...]:
    """Speech regions of a stream of 16 kHz mono blocks (see :func:`pipeline.audio.decode_blocks`)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=settings.threshold,
        min_speech_duration_ms=int(settings.min_speech_s * 1000),
        min_silence_duration_ms=int(settings.min_silence_s * 1000),
        speech_pad_ms=int(settings.pad_s * 1000),
    )
    regions: list[SpeechRegion] = []
    carry = np.zeros(0, dtype=np.float32)
    offset = 0.0  # track time of carry[0]
    tail = int(OVERLAP_S * ANALYSIS_RATE)
    for block, is_last in _with_last(blocks):
        audio = np.concatenate([carry, block]) if carry.size else block
        stamps = get_speech_timestamps(audio, vad_options=options, sampling_rate=ANALYSIS_RATE)
        keep_until = float("inf") if is_last else offset + max(0.0, (audio.size - tail) / ANALYSIS_RATE)
        for stamp in stamps:
            start = offset + stamp["start"] / ANALYSIS_RATE
            if start >= keep_until:
                break  # the next block sees this one again, with its context
            regions.append(SpeechRegion(round(start, 3), round(offset + stamp["end"] / ANALYSIS_RATE, 3)))
        carry = audio[-tail:] if audio.size > tail else audio
        offset += (audio.size - carry.size) / ANALYSIS_RATE
    return _merge(regions)


def _with_last(blocks: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, bool]]:
    previous: np.ndarray | None = None
    for block in blocks:
        if previous is not None:
            yield previous, False
        previous = block
    if previous is not None:
        yield previous, True


def _merge(regions: list[SpeechRegion]) -> tuple[SpeechRegion, ...]:
    merged: list[SpeechRegion] = []
    for region in sorted(regions, key=lambda r: r.start):
        if merged and region.start <= merged[-1].end:
            last = merged.pop()
            region = SpeechRegion(last.start, max(last.end, region.end))
        merged.append(region)
    return tuple(merged)
