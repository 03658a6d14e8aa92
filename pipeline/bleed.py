"""Microphone bleed: one speaker's words heard again, much quieter, on another speaker's track.

With open microphones in one room (or a speaker on loudspeakers), a track also carries the other voices. Whisper
transcribes them there too, so the merged transcript would show the words twice, once under the wrong speaker.
Bleed is found from the transcripts: the same words at the same time on two tracks, ``min_run`` of them in a row
(then, where the copy is far quieter, the rest of the source's sentence heard on the copy, misheard or not).
Which track is the source is decided by the audio: the level of each track over just those words (the short
windows are decoded, never the whole tracks); the louder track keeps the words, the quieter one loses them.

A single shared word ("yes" said by both at once) is not a run, so real overlapping speech is never dropped.
"""

from __future__ import annotations

import logging
import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np

from pipeline.audio import decode
from pipeline.room import Room
from pipeline.transcript import Segment, TrackTranscript, Word

log = logging.getLogger(__name__)

# The level of a window with no samples at all (the track has not started yet): quieter than any recording.
_SILENT_DB = -200.0
# Whisper's words last well under this; it bounds the search for a word's copy on another track.
_LONGEST_WORD_S = 2.0
# Whisper's word times are quantised to 20 ms and wander a little: the slack when a word must lie inside a span.
_WORD_TIME_S = 0.1


@dataclass(frozen=True)
class BleedSettings:
    """How bleed is recognised.

    - ``max_shift_s=0.3``: a copy starts or ends within this of the source word (Whisper's word times wander).
    - ``min_run=3``: at least this many matching words in a row; fewer is people agreeing at the same moment.
    - ``max_skip=2``: words either transcript may miss or mishear between two matches (bleed is quiet, and
      tiny.en heard "will ride" for "arrive on" in a -25 dB copy).
    - ``pad_s=0.1``: audio kept on each side of the run's words when the levels are measured.
    - ``whole_gap_db=15.0``, ``pause_s=1.0``: when the copy is this much quieter, every copy word inside the
      source's stretch of speech around the run (its words, pauses under ``pause_s``) goes too, if the copy
      track is as much quieter over that whole stretch: a -25 dB copy is misheard ("The new student will make
      with whom they're on Monday morning" for "The new studio microphones arrive on Monday morning"), and only
      its end matched word for word.
    """

    max_shift_s: float = 0.3
    min_run: int = 3
    max_skip: int = 2
    pad_s: float = 0.1
    whole_gap_db: float = 15.0
    pause_s: float = 1.0


@dataclass(frozen=True)
class TrackAudio:
    """Where a track's audio is, and where it starts on the room clock."""

    path: Path
    start: float


@dataclass(frozen=True)
class BleedRun:
    """Words heard on two tracks: ``source`` (louder) keeps them, ``copy`` loses its ``dropped`` words."""

    source: int
    copy: int
    start: float
    end: float
    dropped: tuple[Word, ...]
    level_gap_db: float


def room_audio(room: Room) -> dict[int, TrackAudio]:
    """Every track of ``room`` by index, for :func:`remove_bleed`."""
    return {t.index: TrackAudio(t.path, t.start) for t in room.tracks}


def remove_bleed(tracks: Sequence[TrackTranscript], audio: Mapping[int, TrackAudio], *,
                 settings: BleedSettings = BleedSettings(), what: str = "") -> list[TrackTranscript]:
    """``tracks`` with every bleed copy removed: each word kept once, on the track where it is loudest."""
    runs = find_bleed(tracks, audio, settings=settings, what=what)
    dropped = {(run.copy, id(w)) for run in runs for w in run.dropped}
    if not dropped:
        return list(tracks)
    return [_without(t, {i for idx, i in dropped if idx == t.track_index}) for t in tracks]


def find_bleed(tracks: Sequence[TrackTranscript], audio: Mapping[int, TrackAudio], *,
               settings: BleedSettings = BleedSettings(), what: str = "") -> list[BleedRun]:
    """Every run of words that two tracks share, with the louder track as its source."""
    words = {t.track_index: sorted((w for s in t.segments for w in s.words), key=lambda w: w.start) for t in tracks}
    runs: list[BleedRun] = []
    indices = sorted(words)
    for n, a in enumerate(indices):
        for b in indices[n + 1:]:
            for pairs in _shared_runs(words[a], words[b], settings):
                run = _judge(a, b, words[a], words[b], pairs, audio, settings, what)
                runs.append(_widen(run, words[run.source], words[run.copy], audio, settings, what))
    for run in runs:
        log.info("%s: %d words at %.1f-%.1f s on track %d are bleed from track %d (%.1f dB quieter)",
                 what or "room", len(run.dropped), run.start, run.end, run.copy, run.source, run.level_gap_db)
    return runs


def _shared_runs(a: Sequence[Word], b: Sequence[Word], settings: BleedSettings) -> list[list[tuple[int, int]]]:
    """Runs of (index in a, index in b) of the same word at the same time, both indices rising by small steps."""
    starts = [w.start for w in b]
    step = 1 + settings.max_skip
    runs: list[list[tuple[int, int]]] = []
    run: list[tuple[int, int]] = []
    for i, word in enumerate(a):
        lo = bisect_left(starts, word.start - settings.max_shift_s - _LONGEST_WORD_S)
        hi = bisect_right(starts, word.end + settings.max_shift_s)
        near = [j for j in range(lo, hi) if _same_word(word, b[j], settings.max_shift_s)]
        if run:
            last_i, last_j = run[-1]
            follow = [j for j in near if last_j < j <= last_j + step]
            if follow and i - last_i <= step:
                run.append((i, follow[0]))
                continue
            if not near and i - last_i < step:
                continue  # a word the other transcript missed or misheard: the run may still go on
            runs.append(run)
            run = []
        if near:
            run = [(i, min(near, key=lambda j: abs(b[j].start - word.start)))]
    runs.append(run)
    return [r for r in runs if len(r) >= settings.min_run]


def _same_word(a: Word, b: Word, max_shift_s: float) -> bool:
    """The same word at the same time: its start or its end within ``max_shift_s``, the text equal or all but
    an ending ("microphone" / "microphones": a quiet copy is often heard slightly wrong)."""
    if abs(a.start - b.start) > max_shift_s and abs(a.end - b.end) > max_shift_s:
        return False
    x, y = normalise(a.text), normalise(b.text)
    if not x or not y:
        return False
    return x == y or (min(len(x), len(y)) >= 5 and SequenceMatcher(None, x, y).ratio() >= 0.85)


def _judge(a: int, b: int, words_a: Sequence[Word], words_b: Sequence[Word], pairs: list[tuple[int, int]],
           audio: Mapping[int, TrackAudio], settings: BleedSettings, what: str) -> BleedRun:
    """The run between tracks ``a`` and ``b``, its source being the track that is louder over those words."""
    span_a = words_a[pairs[0][0]:pairs[-1][0] + 1]
    span_b = words_b[pairs[0][1]:pairs[-1][1] + 1]
    start = min(span_a[0].start, span_b[0].start) - settings.pad_s
    end = max(span_a[-1].end, span_b[-1].end) + settings.pad_s
    level_a = level_db(audio[a], start, end, what=what)
    level_b = level_db(audio[b], start, end, what=what)
    if level_a >= level_b:
        return BleedRun(a, b, start, end, tuple(span_b), level_a - level_b)
    return BleedRun(b, a, start, end, tuple(span_a), level_b - level_a)


def _widen(run: BleedRun, source: Sequence[Word], copy: Sequence[Word], audio: Mapping[int, TrackAudio],
           settings: BleedSettings, what: str) -> BleedRun:
    """``run`` grown to every copy word inside the source's stretch of speech around it, when the copy track is
    ``whole_gap_db`` quieter over that stretch too (see :class:`BleedSettings`)."""
    if run.level_gap_db < settings.whole_gap_db:
        return run
    inside = [n for n, w in enumerate(source) if w.end >= run.start and w.start <= run.end]
    if not inside:
        return run
    lo, hi = inside[0], inside[-1]
    while lo > 0 and source[lo].start - source[lo - 1].end < settings.pause_s:
        lo -= 1
    while hi + 1 < len(source) and source[hi + 1].start - source[hi].end < settings.pause_s:
        hi += 1
    start, end = source[lo].start - _WORD_TIME_S, source[hi].end + _WORD_TIME_S
    taken = {id(w) for w in run.dropped}
    more = [w for w in copy if w.start >= start and w.end <= end and id(w) not in taken]
    if not more:
        return run
    gap = level_db(audio[run.source], start, end, what=what) - level_db(audio[run.copy], start, end, what=what)
    if gap < settings.whole_gap_db:
        return run
    dropped = tuple(sorted((*run.dropped, *more), key=lambda w: w.start))
    return BleedRun(run.source, run.copy, min(run.start, start), max(run.end, end), dropped, run.level_gap_db)


def level_db(track: TrackAudio, start: float, end: float, *, what: str = "") -> float:
    """RMS level in dBFS of ``track`` between room-clock seconds ``start`` and ``end``."""
    lo = max(0.0, start - track.start)
    hi = end - track.start
    if hi <= lo:
        return _SILENT_DB
    samples = decode(track.path, what=what or str(track.path), start=lo, duration=hi - lo)
    if samples.size == 0:
        return _SILENT_DB
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else _SILENT_DB


def normalise(text: str) -> str:
    """A word as compared across tracks: lower case, without punctuation."""
    return re.sub(r"[^\w']", "", text.lower())


def _without(track: TrackTranscript, dropped: set[int]) -> TrackTranscript:
    if not dropped:
        return track
    segments = []
    for segment in track.segments:
        kept = tuple(w for w in segment.words if id(w) not in dropped)
        if kept:
            segments.append(Segment(segment.speaker, kept))
    return TrackTranscript(track.track_index, track.speaker, track.language, tuple(segments))
