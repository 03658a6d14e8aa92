"""What an episode page shows of a transcript and its chapters, read back from the published objects.

Pages are rebuilt from the store (a ``feed rebuild`` has no workspace), so they read the same files a listener can
download: ``words.json`` (every word of the consenting speakers, with its time and speaker id) and
``chapters.json`` (Podcasting 2.0 chapters). The words become speaker turns for the HTML transcript, lanes for
the speaker timeline and a compact table of word times that the page's script loads for highlighting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import FeedError

# A speaker's words closer than this are drawn as one stretch of speech on the timeline.
LANE_GAP_S = 1.5
# A turn longer than this is split into paragraphs at the next sentence end, so long monologues stay readable and
# every paragraph has a link to its moment.
PARAGRAPH_S = 60.0
_SENTENCE_ENDS = (".", "?", "!", "…")


@dataclass(frozen=True)
class PageWord:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class PageTurn:
    """Consecutive words of one speaker, shown as one paragraph with its speaker and time."""

    speaker: str
    name: str
    words: tuple[PageWord, ...]

    @property
    def start(self) -> float:
        return self.words[0].start

    @property
    def end(self) -> float:
        return self.words[-1].end


@dataclass(frozen=True)
class Lane:
    """One speaker's row on the timeline: the stretches (start, end) in seconds when they spoke."""

    speaker: str
    name: str
    spans: tuple[tuple[float, float], ...]

    @property
    def spoken_s(self) -> float:
        return sum(end - start for start, end in self.spans)


@dataclass(frozen=True)
class PageChapter:
    start: float
    title: str


@dataclass(frozen=True)
class PageTranscript:
    """A transcript as the page uses it: speaker names by id (consenting speakers only), turns, lanes."""

    language: str
    speakers: Mapping[str, str]
    turns: tuple[PageTurn, ...]
    lanes: tuple[Lane, ...]

    @property
    def word_count(self) -> int:
        return sum(len(t.words) for t in self.turns)


def read_words(data: bytes, where: str) -> PageTranscript:
    """Parse a published ``words.json``; ``where`` (episode and key) names it in errors."""
    doc = _json(data, where)
    try:
        speakers = {str(k): str(v) for k, v in doc.get("speakers", {}).items()}
        words = sorted(((float(w["start"]), float(w["end"]), str(w["text"]).strip(), str(w["speaker"]))
                        for w in doc["words"]), key=lambda w: (w[0], w[1]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FeedError(f"{where}: not a roomcast words file ({exc!r}); process the room again") from exc
    words = [w for w in words if w[2]]
    for _start, _end, _text, speaker in words:
        speakers.setdefault(speaker, speaker)
    turns = _turns(words, speakers)
    return PageTranscript(language=str(doc.get("language") or ""), speakers=speakers, turns=turns,
                          lanes=_lanes(words, speakers))


def read_chapters(data: bytes, where: str) -> tuple[PageChapter, ...]:
    """Parse a published Podcasting 2.0 ``chapters.json``."""
    doc = _json(data, where)
    try:
        chapters = [PageChapter(float(c["startTime"]), str(c.get("title") or "")) for c in doc["chapters"]
                    if c.get("toc", True) is not False]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FeedError(f"{where}: not a Podcasting 2.0 chapters file ({exc!r}); process the room again") from exc
    return tuple(sorted(chapters, key=lambda c: c.start))


def word_times_json(transcript: PageTranscript) -> bytes:
    """The start and end of every word in page order, in centiseconds: what the script needs to highlight and
    seek, at a tenth of the size of ``words.json``."""
    words = [w for t in transcript.turns for w in t.words]
    data = {"version": 1, "count": len(words), "start": [round(w.start * 100) for w in words],
            "end": [round(w.end * 100) for w in words]}
    return json.dumps(data, separators=(",", ":")).encode()


def _json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FeedError(f"{where}: not valid JSON ({exc}); process the room again") from exc
    if not isinstance(doc, dict):
        raise FeedError(f"{where}: expected a JSON object; process the room again")
    return doc


def _turns(words: Sequence[tuple[float, float, str, str]], names: Mapping[str, str]) -> tuple[PageTurn, ...]:
    turns: list[PageTurn] = []
    current: list[PageWord] = []
    speaker = ""
    for start, end, text, who in words:
        if current and (who != speaker or _paragraph_ends(current, start)):
            turns.append(PageTurn(speaker, names[speaker], tuple(current)))
            current = []
        speaker = who
        current.append(PageWord(start, end, text))
    if current:
        turns.append(PageTurn(speaker, names[speaker], tuple(current)))
    return tuple(turns)


def _paragraph_ends(current: Sequence[PageWord], next_start: float) -> bool:
    return current[-1].text.endswith(_SENTENCE_ENDS) and next_start - current[0].start >= PARAGRAPH_S


def _lanes(words: Sequence[tuple[float, float, str, str]], names: Mapping[str, str]) -> tuple[Lane, ...]:
    spans: dict[str, list[list[float]]] = {speaker: [] for speaker in names}
    for start, end, _text, speaker in words:
        own = spans[speaker]
        if own and start - own[-1][1] <= LANE_GAP_S:
            own[-1][1] = max(own[-1][1], end)
        else:
            own.append([start, max(end, start)])
    return tuple(Lane(speaker, names[speaker], tuple((round(a, 2), round(b, 2)) for a, b in spans[speaker]))
                 for speaker in names)
