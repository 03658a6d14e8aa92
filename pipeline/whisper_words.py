"""Whisper's words made ours: assigned to the region they were spoken in, guarded against invented text and
repetition loops, mapped to the room clock, and grouped into segments."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.packing import Piece
from pipeline.transcript import Segment, Word
from pipeline.whisper_model import TranscribeSettings

SENTENCE_END = (".", "?", "!", "…", "。", "？", "！")
# Whisper's captions for sounds it heard instead of words: "[Music]", "(upbeat music)", "♪ ♪", "*coughs*".
_ANNOTATION = re.compile(r"^\W*(\[[^\]]*\]|\([^)]*\)|\*[^*]*\*|[♪♫#\s-]+)\W*$")


def split_segments(words: Sequence[Word], *, pause_s: float = 1.0) -> tuple[Segment, ...]:
    """Group one speaker's words into segments that end on a sentence end or a pause longer than ``pause_s``."""
    segments: list[Segment] = []
    current: list[Word] = []
    for word in sorted(words, key=lambda w: w.start):
        if current and (current[-1].text.endswith(SENTENCE_END) or word.start - current[-1].end > pause_s):
            segments.append(Segment(current[0].speaker, tuple(current)))
            current = []
        current.append(word)
    if current:
        segments.append(Segment(current[0].speaker, tuple(current)))
    return tuple(segments)


@dataclass(frozen=True)
class ChunkWord:
    """A word of a batched result, on its chunk's clock, and the region it was spoken in."""

    word: str
    start: float
    end: float
    probability: float
    piece: Piece


@dataclass(frozen=True)
class _RegionSegment:
    """One region's share of a batched segment: the segment's scores, the words spoken in that region, so the
    word-level guards judge each stretch of speech on its own."""

    text: str
    words: list[ChunkWord]
    avg_logprob: float
    compression_ratio: float


def by_region(segments: list[Any], pieces: Sequence[Piece], shift: float) -> list[_RegionSegment]:
    out: list[_RegionSegment] = []
    previous: ChunkWord | None = None
    for seg in segments:
        groups: dict[Piece, list[ChunkWord]] = {}
        for w in seg.words or ():
            start, end, text = float(w.start) - shift, float(w.end) - shift, str(w.word)
            previous = ChunkWord(text, start, end, float(w.probability), _piece_of(start, end, text, previous, pieces))
            groups.setdefault(previous.piece, []).append(previous)
        for piece in sorted(groups, key=lambda p: p.chunk_start):
            words = groups[piece]
            text = "".join(w.word for w in words)
            out.append(_RegionSegment(text, words, seg.avg_logprob,
                                      min(seg.compression_ratio, _compression_ratio(text))))
    return out


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def kept_words(segments: Iterable[Any], settings: TranscribeSettings) -> list[Any]:
    """Whisper's words from the segments that pass the hallucination guards, with repetition loops cut."""
    words: list[Any] = []
    for seg in segments:
        if seg.avg_logprob < settings.log_prob_threshold:
            continue  # low confidence: Whisper heard no speech, or would have retried at a higher temperature
        if seg.compression_ratio > settings.compression_ratio_threshold or _ANNOTATION.match(seg.text.strip()):
            continue
        seg_words = [w for w in seg.words or () if _norm(w.word) and not _ANNOTATION.match(w.word.strip())]
        if not seg_words or np.mean([w.probability for w in seg_words]) < settings.min_word_probability:
            continue
        if _anomalous(seg_words):
            continue
        words += seg_words
    return cut_loops(words, key=lambda w: _norm(w.word))


def _anomalous(words: Sequence[Any]) -> bool:
    """faster-whisper's own test for invented text (used by its ``hallucination_silence_threshold``): improbable
    words, and words too short or stretched over seconds, in the first 8 words of a segment. A word Whisper is
    sure of (probability 0.5 or more) is not held short: in a packed chunk the aligner gives the first word of a
    region, or of a sentence, no duration at all ("I", "Simple" at 0.97 and 0.98), and two of those had a whole
    region of speech dropped."""
    score = 0.0
    for w in words[:8]:
        duration = w.end - w.start
        short = max(0.0, (0.133 - duration) * 15) if w.probability < 0.5 else 0.0
        score += (w.probability < 0.15) + short + max(0.0, duration - 2.0)
    return score >= 3 or score + 0.01 >= len(words[:8])


def cut_loops(items: list[Any], *, key: Any = str, max_n: int = 8) -> list[Any]:
    """Collapse an n-gram repeated back to back (4+ times, or 3+ times for n >= 4) to its first occurrence."""
    keys = [key(i) for i in items]
    out: list[Any] = []
    i = 0
    while i < len(items):
        n, repeats = _loop_at(keys, i, max_n)
        out += items[i:i + n]
        i += n * repeats
    return out


def _loop_at(keys: list[Any], i: int, max_n: int) -> tuple[int, int]:
    """(n, repeats) of the repetition loop starting at ``i``, or (1, 1) when there is none."""
    for n in range(1, min(max_n, len(keys) - i) + 1):
        gram = keys[i:i + n]
        repeats = 1
        while keys[i + repeats * n:i + (repeats + 1) * n] == gram:
            repeats += 1
        if repeats >= 4 or (n >= 4 and repeats >= 3):
            return n, repeats
    return 1, 1


def _norm(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


def _piece_of(start: float, end: float, text: str, previous: ChunkWord | None,
              pieces: Sequence[Piece]) -> Piece:
    """The region a word at ``start``-``end`` (chunk seconds) was spoken in, ``previous`` being the word before it.

    Whisper stretches words over the silence of the packing. Of 25 words that reached into a gap on four 10-minute
    tracks, 22 were a region's last word, ending up to 0.4 s into the gap; 3 were the next region's first word,
    starting in the gap or in the last 0.3 s of the region before, mostly in the gap and the next region. Next to a
    quiet region (bleed that Whisper did not transcribe) a first word lay wholly over that region's end and the
    gap. So a word belongs to the region holding most of it (the next one, if it lies wholly in a gap), unless it
    reaches on into the gap after that region and starts an utterance there: the region's first word or the one
    after a sentence end, itself no sentence end. That word belongs to the next region.
    """
    best, most = None, 0.0
    for piece in pieces:
        inside = min(end, piece.chunk_end) - max(start, piece.chunk_start)
        if inside > most:
            best, most = piece, inside
    if best is None:
        middle = (start + end) / 2
        return next((piece for piece in pieces if middle < piece.chunk_end), pieces[-1])
    after = pieces.index(best) + 1
    late = after < len(pieces) and end > best.chunk_end + _LATE_END_S
    starts = previous is None or previous.piece != best or previous.word.strip().endswith(SENTENCE_END)
    return pieces[after] if late and starts and not text.strip().endswith(SENTENCE_END) else best


# How far a word may end after its region's end (word timing is quantised to 20 ms).
_LATE_END_S = 0.1


def to_room_words(raw: Iterable[ChunkWord], offset: float, speaker: str) -> list[Word]:
    """Map chunk-clock words to the room clock through the region each was spoken in (see :func:`_piece_of`)."""
    words = []
    for w in raw:
        piece = w.piece
        start = min(max(w.start, piece.chunk_start), piece.chunk_end)
        end = min(max(w.end, start), piece.chunk_end)
        shift = offset + piece.track_start - piece.chunk_start
        words.append(Word(round(start + shift, 3), round(end + shift, 3), w.word.strip(), speaker,
                          round(w.probability, 3)))
    return words