"""Edits of a published replay, as pure functions over what the first run kept.

An edit is a list of operations (:class:`EditRequest`): speakers removed, spans cut, words or spans bleeped,
metadata corrected. Every span is given on the clock of the replay as published when the edit was made; the
edits of an episode are applied in order to the first run's outputs (:func:`resolve`), so the kept audio,
words and chapters are never edited twice over, and re-applying the recorded edits gives the same result.

The result is an :class:`EditState`: the stretches of the first run's replay that are kept (its *timeline*),
the spans replaced by a tone, the removed speakers and the corrected names. From it come the edited transcript
(:func:`edit_transcript`), chapters (:func:`edit_chapters`) and audio (:func:`pipeline.edit_audio.edited_blocks`,
a stream of the first run's mix cut, bleeped and muted, with a short crossfade at every join).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.chapters import Chapter, chapter_title
from pipeline.errors import InvalidEdit
from pipeline.transcript import Segment, Transcript, Word

BLEEP_TEXT = "[bleep]"
BLEEP_PAD_S = 0.04  # word times are Whisper's: a little either side so no syllable is left
_CLOCK = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)$")


@dataclass(frozen=True, order=True)
class Span:
    """Seconds ``start`` to ``end`` on a replay's clock."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end

    def label(self) -> str:
        return f"{clock(self.start)}-{clock(self.end)}"


def clock(seconds: float) -> str:
    """``h:mm:ss.mmm``, as the spans of an edit may be written."""
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours}:{minutes:02d}:{rest / 1000:06.3f}"


def parse_time(text: str) -> float:
    """Seconds from ``12.5``, ``1:02.5`` or ``1:02:03.5``."""
    match = _CLOCK.match(text.strip())
    if not match:
        raise InvalidEdit(f"{text!r} is not a time: give seconds (754.2) or h:mm:ss (0:12:34.2)")
    parts = [p for p in match.groups() if p is not None]
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


def parse_span(text: str) -> Span:
    """A span ``START-END`` (each seconds or h:mm:ss)."""
    start, sep, end = text.partition("-")
    if not sep:
        raise InvalidEdit(f"{text!r} is not a span: write START-END, e.g. 12.5-20 or 0:01:02-0:01:10")
    span = Span(parse_time(start), parse_time(end))
    if span.end <= span.start:
        raise InvalidEdit(f"span {text!r} ends before it starts")
    return span


def normal_word(text: str) -> str:
    """A word as a bleep matches it: lower case, no punctuation."""
    return re.sub(r"[^\w']+", "", text.lower()).strip("'")


@dataclass(frozen=True)
class EditRequest:
    """One edit of an episode, as the creator asked for it."""

    remove_speakers: tuple[str, ...] = ()
    cuts: tuple[Span, ...] = ()
    bleep_words: tuple[str, ...] = ()
    bleep_spans: tuple[Span, ...] = ()
    title: str | None = None
    description: str | None = None
    speaker_names: tuple[tuple[str, str], ...] = ()

    @property
    def touches_audio(self) -> bool:
        return bool(self.remove_speakers or self.cuts or self.bleep_words or self.bleep_spans)

    @property
    def is_empty(self) -> bool:
        return not (self.touches_audio or self.title is not None or self.description is not None
                    or self.speaker_names)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "remove_speakers": list(self.remove_speakers), "cuts": [[s.start, s.end] for s in self.cuts],
            "bleep_words": list(self.bleep_words), "bleep_spans": [[s.start, s.end] for s in self.bleep_spans],
            "speaker_names": [list(p) for p in self.speaker_names]}
        for name in ("title", "description"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EditRequest:
        return cls(tuple(str(s) for s in data.get("remove_speakers", ())),
                   tuple(Span(float(a), float(b)) for a, b in data.get("cuts", ())),
                   tuple(str(w) for w in data.get("bleep_words", ())),
                   tuple(Span(float(a), float(b)) for a, b in data.get("bleep_spans", ())),
                   data.get("title"), data.get("description"),
                   tuple((str(a), str(b)) for a, b in data.get("speaker_names", ())))

    def describe(self) -> str:
        parts = [f"remove speaker {s}" for s in self.remove_speakers]
        parts += [f"cut {s.label()}" for s in self.cuts]
        parts += [f"bleep {w!r}" for w in self.bleep_words] + [f"bleep {s.label()}" for s in self.bleep_spans]
        parts += [f"title {self.title!r}"] if self.title is not None else []
        parts += ["description"] if self.description is not None else []
        parts += [f"name {a}={b!r}" for a, b in self.speaker_names]
        return "; ".join(parts) or "nothing"


def state_hash(previous: str, request: EditRequest) -> str:
    """The identity of the episode after ``request``, from its identity before (the room's input hash first)."""
    text = previous + json.dumps(request.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class EditState:
    """What the edits so far make of the first run's replay (of ``duration`` seconds): the stretches kept (on
    the first run's clock), the spans bleeped (same clock), the speakers removed and the corrected metadata."""

    duration: float
    speakers: tuple[str, ...]
    kept: tuple[Span, ...] = ()
    bleep_spans: tuple[Span, ...] = ()
    bleep_words: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    names: Mapping[str, str] = field(default_factory=dict)
    title: str | None = None
    description: str | None = None

    @property
    def timeline(self) -> tuple[Span, ...]:
        return self.kept or (Span(0.0, self.duration),)

    @property
    def current_duration(self) -> float:
        return sum(s.duration for s in self.timeline)

    @property
    def cut_spans(self) -> tuple[Span, ...]:
        """The stretches of the first run's replay that are gone."""
        gaps, at = [], 0.0
        for span in self.timeline:
            if span.start > at:
                gaps.append(Span(at, span.start))
            at = span.end
        if at < self.duration:
            gaps.append(Span(at, self.duration))
        return tuple(gaps)

    def to_original(self, span: Span) -> list[Span]:
        """A span of the current replay as spans of the first run's (several when it covers a join)."""
        out, at = [], 0.0
        for kept in self.timeline:
            lo, hi = max(span.start, at), min(span.end, at + kept.duration)
            if hi > lo:
                out.append(Span(round(kept.start + lo - at, 6), round(kept.start + hi - at, 6)))
            at += kept.duration
        return out

    def to_current(self, t: float) -> float | None:
        """A time of the first run's replay on the current one; None when it was cut."""
        at = 0.0
        for kept in self.timeline:
            if kept.start <= t <= kept.end:
                return at + t - kept.start
            at += kept.duration
        return None

    def to_current_start(self, t: float) -> float:
        """Like :meth:`to_current`, but a time inside a cut moves to where the cut was."""
        at = 0.0
        for kept in self.timeline:
            if t < kept.start:
                return at
            if t <= kept.end:
                return at + t - kept.start
            at += kept.duration
        return at


def check(state: EditState, request: EditRequest, what: str) -> None:
    """Refuse an edit that cannot apply to ``state``: nothing is changed by an edit that fails here."""
    known = [s for s in state.speakers if s not in state.removed]
    for speaker in list(request.remove_speakers) + [s for s, _ in request.speaker_names]:
        if speaker not in known:
            gone = " (already removed)" if speaker in state.removed else ""
            raise InvalidEdit(f"{what}: unknown speaker {speaker!r}{gone}; the episode's speakers are "
                              f"{', '.join(known) or 'none'}")
    length = state.current_duration
    for kind, spans in (("cut", request.cuts), ("bleep", request.bleep_spans)):
        for span in spans:
            if span.start < 0 or span.end > length + 1e-3 or span.end <= span.start:
                raise InvalidEdit(f"{what}: {kind} {span.label()} is outside the replay (0:00:00.000-"
                                  f"{clock(length)})")
    ordered = sorted(request.cuts)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.overlaps(b):
            raise InvalidEdit(f"{what}: cuts {a.label()} and {b.label()} overlap; give each stretch once")
    if request.cuts and sum(s.duration for s in request.cuts) >= length - 1.0:
        raise InvalidEdit(f"{what}: the cuts leave less than a second of the replay; unpublish it instead")
    if request.title is not None and not request.title.strip():
        raise InvalidEdit(f"{what}: the title cannot be empty")
    for word in request.bleep_words:
        if not normal_word(word):
            raise InvalidEdit(f"{what}: {word!r} has no letters to bleep")


def apply(state: EditState, request: EditRequest, what: str) -> EditState:
    """``state`` after ``request`` (checked first: :func:`check`)."""
    check(state, request, what)
    bleeps = list(state.bleep_spans) + [o for s in request.bleep_spans for o in state.to_original(s)]
    gone = [o for s in request.cuts for o in state.to_original(s)]
    kept = list(state.timeline)
    for cut in gone:
        kept = [piece for span in kept for piece in _minus(span, cut)]
    return replace(
        state, kept=tuple(kept), bleep_spans=tuple(sorted(bleeps)),
        bleep_words=state.bleep_words | {normal_word(w) for w in request.bleep_words},
        removed=state.removed | set(request.remove_speakers),
        names={**state.names, **dict(request.speaker_names)},
        title=request.title if request.title is not None else state.title,
        description=request.description if request.description is not None else state.description)


def _minus(span: Span, cut: Span) -> list[Span]:
    if not span.overlaps(cut):
        return [span]
    return [s for s in (Span(span.start, cut.start), Span(cut.end, span.end)) if s.duration > 1e-6]


def resolve(duration: float, speakers: Sequence[str], requests: Iterable[EditRequest], what: str) -> EditState:
    """Every edit applied in order to a first run's replay of ``duration`` seconds."""
    state = EditState(duration, tuple(speakers))
    for request in requests:
        state = apply(state, request, what)
    return state


def _bleeped(word: Word, state: EditState) -> bool:
    if normal_word(word.text) in state.bleep_words:
        return True
    span = Span(word.start, word.end)
    return any(span.overlaps(b) for b in state.bleep_spans)


def edit_transcript(transcript: Transcript, state: EditState) -> tuple[Transcript, tuple[Span, ...]]:
    """The first run's transcript (on its replay's clock) after the edits: removed speakers' words gone, bleeped
    words shown as ``[bleep]``, cut words gone and later words moved earlier. Also returns the spans (first run's
    clock) the audio must bleep: the bleep spans and every bleeped word's."""
    tones = list(state.bleep_spans)
    segments = []
    for segment in transcript.segments:
        if segment.speaker in state.removed:
            continue
        words = []
        for word in segment.words:
            if word.speaker in state.removed:
                continue
            if _bleeped(word, state):
                tones.append(Span(max(0.0, word.start - BLEEP_PAD_S), min(state.duration, word.end + BLEEP_PAD_S)))
                word = replace(word, text=BLEEP_TEXT)
            start, end = state.to_current(word.start), state.to_current(word.end)
            if start is None or end is None:
                continue  # a word touched by a cut is cut
            words.append(replace(word, start=round(start, 3), end=round(end, 3)))
        if words:
            segments.append(Segment(segment.speaker, tuple(words)))
    names = {k: v for k, v in {**dict(transcript.speaker_names), **state.names}.items() if k not in state.removed}
    edited = Transcript(transcript.language, tuple(sorted(segments, key=lambda s: (s.start, s.end, s.speaker))),
                        names)
    return edited, merge_spans(tones)


def merge_spans(spans: Iterable[Span]) -> tuple[Span, ...]:
    merged: list[Span] = []
    for span in sorted(spans):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Span(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return tuple(merged)


def edit_chapters(chapters: Sequence[Chapter], state: EditState, transcript: Transcript | None,
                  names: Mapping[str, str]) -> tuple[Chapter, ...]:
    """The first run's chapters after the edits: a removed speaker's chapters merge into their neighbours, cut
    chapters go, later ones move earlier, and every title is made again from the edited words and names."""
    held = [c for c in chapters if c.speaker not in state.removed]
    if not held:
        return ()
    speakers: list[str] = []
    starts: list[float] = []
    for chapter in held:
        start, end = state.to_current_start(chapter.start), state.to_current_start(chapter.end)
        if end - start < 1e-3:
            continue  # cut whole
        if speakers and speakers[-1] == chapter.speaker:
            continue  # its neighbour, of the same speaker, was removed: one chapter now
        speakers.append(chapter.speaker)
        starts.append(start)
    if not starts:
        return ()
    starts[0] = 0.0
    ends = starts[1:] + [state.current_duration]  # a removed or cut chapter's time goes to the one before it
    words = sorted((w for w in transcript.words if w.text != BLEEP_TEXT), key=lambda w: w.start) \
        if transcript is not None else []
    return tuple(Chapter(round(a, 3), round(b, 3), chapter_title(p, a, b, names, words), p)
                 for p, a, b in zip(speakers, starts, ends, strict=True) if b - a > 1e-3)


def mute_spans(words: Iterable[Word], removed: Iterable[str], own_tracks: Mapping[str, Sequence[Span]]) -> tuple[
        Span, ...]:
    """Spans (first run's clock) to silence for removed speakers whose words were heard on a track that is not
    theirs (a room recorded on one mixed track): dropping their own tracks silences the rest."""
    gone = set(removed)
    spans = []
    for word in words:
        if word.speaker not in gone:
            continue
        span = Span(max(0.0, word.start - BLEEP_PAD_S), word.end + BLEEP_PAD_S)
        if not any(t.start <= span.start and span.end <= t.end for t in own_tracks.get(word.speaker, ())):
            spans.append(span)
    return merge_spans(spans)
