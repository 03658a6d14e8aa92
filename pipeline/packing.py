"""Packing a track's speech regions into Whisper chunks: one streamed decode, cut where it is quietest.

The speech regions of a track are cut from one streamed decode of it and packed, with short silences between
them, into chunks of at most ~30 s of audio (one pass of Whisper's encoder). Each region's place in its chunk is a
:class:`Piece`, through which every word time is mapped back to the track (see :mod:`pipeline.transcribe`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from pipeline.audio import ANALYSIS_RATE, PcmCopy, decode_blocks
from pipeline.loudness import ride_gain
from pipeline.vad import SpeechRegion
from pipeline.whisper_model import TranscribeSettings


def longest_regions(regions: Sequence[SpeechRegion], settings: TranscribeSettings) -> list[SpeechRegion]:
    """The longest regions that fit one chunk together (or the longest alone, whose first part is used)."""
    chosen: list[SpeechRegion] = []
    length = 0.0
    for region in sorted(regions, key=lambda r: r.duration, reverse=True):
        length += (settings.gap_s if chosen else 0.0) + region.duration
        if chosen and length > settings.chunk_s:
            break
        chosen.append(region)
    return chosen


@dataclass(frozen=True)
class Piece:
    """Where one region lies in a packed chunk: chunk seconds [chunk_start, chunk_end) = track ``track_start``."""

    chunk_start: float
    chunk_end: float
    track_start: float


# Transcription streams the track in blocks of this length.
_STREAM_BLOCK_S = 60.0
# A region longer than a chunk is cut in the middle of its quietest 100 ms (five 20 ms frames: longer than the
# closure of a stop consonant, shorter than a breath) within this far (at most a quarter of a chunk) before each of
# the points that would cut it evenly.
_CUT_WINDOW_S = 3.0
_CUT_FRAME = ANALYSIS_RATE // 50
_CUT_FRAMES = 5


def speech_chunks(path: Path, regions: Sequence[SpeechRegion], settings: TranscribeSettings, *, what: str,
            audio: PcmCopy | None = None) -> Iterator[tuple[np.ndarray, list[Piece]]]:
    """The packed chunks of a track's speech, from one streamed decode of it (or from ``audio``, the track
    already decoded at 16 kHz): only the block being read, the part of a region being cut and the chunk being
    packed are held, however long the track or its regions."""
    regions = _merged(regions)
    if not regions:
        return
    if audio is not None:
        if audio.rate != ANALYSIS_RATE:
            raise ValueError(f"transcription reads {ANALYSIS_RATE} Hz audio, not {audio.rate} Hz")
        blocks = audio.blocks(_STREAM_BLOCK_S)
    else:
        blocks = decode_blocks(path, what=what, block_s=_STREAM_BLOCK_S, duration=regions[-1].end + 0.1)
    parts = _parts(_slices(blocks, regions), regions, settings.chunk_s)
    if settings.level:
        parts = ((at, ride_gain(part, ANALYSIS_RATE)) for at, part in parts)
    yield from _packed(parts, settings)


def _merged(regions: Iterable[SpeechRegion]) -> list[SpeechRegion]:
    """Regions sorted, overlapping ones joined: the stream passes each moment of the track once."""
    out: list[SpeechRegion] = []
    for region in sorted(regions, key=lambda r: r.start):
        if out and region.start < out[-1].end:  # touching regions (cut at a voice change) stay apart
            region = SpeechRegion(out[-1].start, max(out[-1].end, region.end))
            out.pop()
        out.append(region)
    return out


def to_sample(seconds: float) -> int:
    return int(round(seconds * ANALYSIS_RATE))


def _slices(blocks: Iterable[np.ndarray], regions: Sequence[SpeechRegion]) -> Iterator[tuple[int, np.ndarray]]:
    """(region index, audio) for each stretch of a region within a block, in track order: a region that spans
    blocks comes in several slices; a track that ends early ends its last regions early."""
    index, at = 0, 0  # next region to cut; track samples before the current block
    for block in blocks:
        end = at + block.size
        while index < len(regions):
            lo, hi = to_sample(regions[index].start), to_sample(regions[index].end)
            if lo >= end:
                break
            yield index, block[max(0, lo - at):max(0, min(hi, end) - at)]
            if hi > end:
                break  # the region goes on in the next block
            index += 1
        at = end


def _parts(slices: Iterable[tuple[int, np.ndarray]], regions: Sequence[SpeechRegion],
           limit_s: float) -> Iterator[tuple[float, np.ndarray]]:
    """(track seconds, audio) of every region, in parts of at most ``limit_s``: the batched pipeline transcribes
    only the first 30 s of a clip, so a longer region is cut, near even points, where it is quietest. Each part is
    a copy: a part waiting to be packed keeps no decoded block alive."""
    index, start = -1, 0  # the region being cut, and the track sample its held audio starts at
    held = np.zeros(0, dtype=np.float32)
    cuts: list[int] = []
    for n, audio in slices:
        if n != index:
            if held.size:
                yield start / ANALYSIS_RATE, held.copy()
            index, start, held, cuts = n, to_sample(regions[n].start), audio, _cut_points(regions[n], limit_s)
        else:
            held = np.concatenate([held, audio])
        while cuts and start + held.size >= cuts[0]:
            cut = _quiet_cut(held, cuts.pop(0) - start, to_sample(_cut_window(limit_s)))
            yield start / ANALYSIS_RATE, held[:cut].copy()
            start, held = start + cut, held[cut:]
    if held.size:
        yield start / ANALYSIS_RATE, held.copy()


def _cut_points(region: SpeechRegion, limit_s: float) -> list[int]:
    """Track samples near which a region longer than ``limit_s`` is cut: parts end within the cut window before
    each point, so none is longer than ``limit_s``."""
    if region.duration <= limit_s:
        return []
    parts = int(np.ceil(region.duration / (limit_s - _cut_window(limit_s))))
    return [to_sample(region.start + i * region.duration / parts) for i in range(1, parts)]


def _cut_window(limit_s: float) -> float:
    return min(_CUT_WINDOW_S, limit_s / 4)


def _quiet_cut(audio: np.ndarray, point: int, window: int) -> int:
    """The middle of the quietest stretch of ``audio`` in the ``window`` samples before ``point``."""
    lo = max(0, point - window)
    frames = (point - lo) // _CUT_FRAME
    if frames < _CUT_FRAMES:
        return point
    energy = np.square(audio[lo:lo + frames * _CUT_FRAME].reshape(frames, _CUT_FRAME)).sum(axis=1)
    stretches = np.convolve(energy, np.ones(_CUT_FRAMES), mode="valid")
    return lo + int(np.argmin(stretches)) * _CUT_FRAME + _CUT_FRAMES * _CUT_FRAME // 2


def _packed(parts: Iterable[tuple[float, np.ndarray]],
            settings: TranscribeSettings) -> Iterator[tuple[np.ndarray, list[Piece]]]:
    """Parts packed in track order, ``gap_s`` of silence between them, into chunks of at most ``chunk_s``."""
    gap, limit = to_sample(settings.gap_s), to_sample(settings.chunk_s)
    held: list[tuple[float, np.ndarray]] = []
    length = 0
    for start, audio in parts:
        if held and length + gap + audio.size > limit:
            yield assemble(held, gap)
            held, length = [], 0
        length += (gap if held else 0) + audio.size
        held.append((start, audio))
    if held:
        yield assemble(held, gap)


def assemble(parts: list[tuple[float, np.ndarray]], gap: int) -> tuple[np.ndarray, list[Piece]]:
    pieces: list[Piece] = []
    joined: list[np.ndarray] = []
    at = 0
    for start, audio in parts:
        if joined:
            joined.append(np.zeros(gap, dtype=np.float32))
            at += gap
        pieces.append(Piece(at / ANALYSIS_RATE, (at + audio.size) / ANALYSIS_RATE, start))
        joined.append(audio)
        at += audio.size
    return np.concatenate(joined), pieces


def batches(chunks: Iterable[tuple[np.ndarray, list[Piece]]],
             size: int) -> Iterator[list[tuple[np.ndarray, list[Piece]]]]:
    iterator = iter(chunks)
    while batch := list(islice(iterator, max(1, size))):
        yield batch
