"""roomcast's internal transcript type: words with their speaker on the room clock, grouped in segments.

Every output format (``pipeline.formats``) and the chapter titles are made from :class:`Transcript`.
faster-whisper's own types never leave ``pipeline.transcribe``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Word:
    """One spoken word: seconds on the room clock, the speaker's id, Whisper's probability."""

    start: float
    end: float
    text: str
    speaker: str
    probability: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text, "speaker": self.speaker,
                "probability": self.probability}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Word:
        return cls(float(data["start"]), float(data["end"]), str(data["text"]), str(data["speaker"]),
                   float(data.get("probability", 1.0)))


@dataclass(frozen=True)
class Segment:
    """Consecutive words of one speaker, ending on a sentence end, a pause or a speaker change."""

    speaker: str
    words: tuple[Word, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words).strip()


@dataclass(frozen=True)
class Transcript:
    """A whole room's transcript: segments in time order, and the display name of every speaker id."""

    language: str
    segments: tuple[Segment, ...]
    speaker_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def words(self) -> tuple[Word, ...]:
        return tuple(w for s in self.segments for w in s.words)

    def name(self, speaker_id: str) -> str:
        return self.speaker_names.get(speaker_id, speaker_id)

    def shifted(self, seconds: float) -> Transcript:
        """The same transcript with every time moved by ``seconds`` (e.g. minus the trimmed lead-in)."""
        def move(w: Word) -> Word:
            return replace(w, start=round(max(0.0, w.start + seconds), 3), end=round(max(0.0, w.end + seconds), 3))
        return replace(self, segments=tuple(Segment(s.speaker, tuple(move(w) for w in s.words)) for s in self.segments))

    def to_dict(self) -> dict[str, Any]:
        return {"language": self.language, "speaker_names": dict(self.speaker_names),
                "segments": [{"speaker": s.speaker, "words": [w.to_dict() for w in s.words]} for s in self.segments]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transcript:
        segments = tuple(Segment(str(s["speaker"]), tuple(Word.from_dict(w) for w in s["words"]))
                         for s in data["segments"] if s["words"])
        return cls(str(data["language"]), segments, dict(data.get("speaker_names", {})))


@dataclass(frozen=True)
class TrackTranscript:
    """The words of one track, already on the room clock and tagged with the track's speaker."""

    track_index: int
    speaker: str
    language: str
    segments: tuple[Segment, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"track_index": self.track_index, "speaker": self.speaker, "language": self.language,
                "segments": [[w.to_dict() for w in s.words] for s in self.segments]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackTranscript:
        speaker = str(data["speaker"])
        segments = tuple(
            Segment(speaker, tuple(Word.from_dict(w) for w in words)) for words in data["segments"] if words
        )
        return cls(int(data["track_index"]), speaker, str(data["language"]), segments)


def merge(tracks: Iterable[TrackTranscript], speaker_names: Mapping[str, str], language: str) -> Transcript:
    """Interleave the segments of every track into one room transcript, in time order.

    When another speaker starts talking inside a segment (an interjection, people talking over each other), the
    segment is cut there, so the transcript reads in the order things were said and no segment hides another's
    words behind its start time. Every word of every track is kept.
    """
    segments = [s for t in tracks for s in t.segments if s.words]
    starts = sorted((s.start, s.speaker) for s in segments)
    pieces = [piece for s in segments for piece in _cut_at_others(s, starts)]
    pieces.sort(key=lambda s: (s.start, s.end, s.speaker))
    return Transcript(language=language, segments=tuple(pieces), speaker_names=dict(speaker_names))


def _cut_at_others(segment: Segment, starts: Sequence[tuple[float, str]]) -> list[Segment]:
    """``segment`` cut before its first word at or after each start of another speaker's segment inside it."""
    cuts: list[float] = []
    for k in range(bisect_right(starts, (segment.start, "\uffff")), len(starts)):
        t, speaker = starts[k]
        if t >= segment.end:
            break
        if speaker != segment.speaker:
            cuts.append(t)
    if not cuts:
        return [segment]
    pieces: list[Segment] = []
    current: list[Word] = []
    for word in segment.words:
        if current and cuts and word.start >= cuts[0]:
            pieces.append(Segment(segment.speaker, tuple(current)))
            current = []
        while cuts and word.start >= cuts[0]:
            cuts.pop(0)
        current.append(word)
    pieces.append(Segment(segment.speaker, tuple(current)))
    return pieces
