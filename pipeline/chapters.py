"""Chapters from speaker turns, shared by the encoders and the Podcasting 2.0 chapters file.

Input is speech intervals ``(speaker id, start, end)`` on the replay clock, so chapters can be built from the
VAD alone; a transcript, when there is one, adds a short phrase to each title.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from pipeline.transcript import Transcript, Word


@dataclass(frozen=True)
class Chapter:
    """A chapter of the replay: seconds on the replay's clock, a title, and the speaker holding the floor."""

    start: float
    end: float
    title: str
    speaker: str


@dataclass(frozen=True)
class Turn:
    """A speaker holding the floor from ``start`` to ``end`` (others may interject meanwhile)."""

    speaker: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


TITLE_CHARS = 60
PHRASE_WORDS = 4
# Words that say little about a chapter's subject: never the first or last word of a title phrase.
_FILLER = frozenset("""
a about actually after again all also am an and any are as at be because been before being but by can could
did do does doing don't for from get go going got had has have he her here hi his how i i'm if in into is it
it's its just know let let's like me more most much my no not now of oh ok okay on one or our out really right
say said see she so some something talk talking tell than thank thanks that that's the their them then there
these they thing things think this those to today too um uh up us very want was we we're well were what when
where which who why will with would yeah yes you you're your welcome everyone everybody hello please
""".split())


def intervals_from_transcript(t: Transcript) -> list[tuple[str, float, float]]:
    """The speech intervals of a transcript: one per segment."""
    return [(s.speaker, s.start, s.end) for s in t.segments if s.words]


def speaker_turns(intervals: Sequence[tuple[str, float, float]], *, interjection_s: float = 4.0,
                  gap_s: float = 5.0) -> list[Turn]:
    """Who holds the floor when. A speaker's intervals less than ``gap_s`` apart are one run even when others
    interject meanwhile; a run shorter than ``interjection_s``, or inside the current turn, does not end it."""
    turns: list[Turn] = []
    for run in _runs(intervals, interjection_s=interjection_s, gap_s=gap_s):
        current = turns[-1] if turns else None
        if current is not None and run.speaker == current.speaker:
            turns[-1] = replace(current, end=max(current.end, run.end))
        elif current is None or (run.duration >= interjection_s and run.end > current.end):
            turns.append(run)
    return turns


def _runs(intervals: Sequence[tuple[str, float, float]], *, interjection_s: float, gap_s: float) -> list[Turn]:
    runs: list[Turn] = []
    latest: dict[str, int] = {}  # speaker -> index of their latest run
    for speaker, start, end in sorted((i for i in intervals if i[2] > i[1]), key=lambda i: (i[1], i[2])):
        j = latest.get(speaker)
        if j is not None and start - runs[j].end <= gap_s and all(
                r.duration < interjection_s for r in runs[j + 1:] if r.speaker != speaker):
            runs[j] = replace(runs[j], end=max(runs[j].end, end))
        else:
            latest[speaker] = len(runs)
            runs.append(Turn(speaker, start, end))
    return sorted(runs, key=lambda r: (r.start, r.end))


def build_chapters(intervals: Sequence[tuple[str, float, float]], duration: float, *,
                   speaker_names: Mapping[str, str], min_chapter_s: float = 30.0,
                   transcript: Transcript | None = None, interjection_s: float = 4.0) -> list[Chapter]:
    """Chapters that start on speaker turns (the first at 0.0), last at least ``min_chapter_s`` (shorter turns
    are merged into a neighbour) and end at ``duration``. Titles name the speaker, plus a phrase of what they
    say first when a transcript is given."""
    turns = [t for t in speaker_turns(intervals, interjection_s=interjection_s) if t.start < duration]
    if not turns or duration <= 0:
        return []
    starts = [0.0] + [t.start for t in turns[1:]]
    ends = starts[1:] + [duration]
    parts = [Turn(t.speaker, s, e) for t, s, e in zip(turns, starts, ends, strict=True)]
    parts = _fuse_same_speaker(_merge_short(parts, min_chapter_s))
    words = sorted(transcript.words, key=lambda w: w.start) if transcript is not None else []
    return [Chapter(round(float(p.start), 3), round(float(p.end), 3), _title(p, speaker_names, words), p.speaker)
            for p in parts]


def _merge_short(parts: list[Turn], min_s: float) -> list[Turn]:
    """Fold the shortest chapter under ``min_s`` into its shorter neighbour until none is left."""
    parts = list(parts)
    while len(parts) > 1:
        i = min(range(len(parts)), key=lambda k: parts[k].duration)
        if parts[i].duration >= min_s:
            break
        if i == 0:
            j = 1
        elif i == len(parts) - 1:
            j = i - 1
        else:
            j = i - 1 if parts[i - 1].duration <= parts[i + 1].duration else i + 1
        a, b = sorted((i, j))
        # The merged chapter is named after whoever held more of it; the first after the voice that opens the
        # replay (a listener pressing play hears them first).
        if a == 0:
            speaker = parts[0].speaker
        else:
            speaker = parts[a].speaker if parts[a].duration >= parts[b].duration else parts[b].speaker
        parts[a:b + 1] = [Turn(speaker, parts[a].start, parts[b].end)]
    return parts


def _fuse_same_speaker(parts: list[Turn]) -> list[Turn]:
    fused: list[Turn] = []
    for part in parts:
        if fused and fused[-1].speaker == part.speaker:
            fused[-1] = replace(fused[-1], end=part.end)
        else:
            fused.append(part)
    return fused


def _title(part: Turn, names: Mapping[str, str], words: Sequence[Word]) -> str:
    return chapter_title(part.speaker, part.start, part.end, names, words)


def chapter_title(speaker: str, start: float, end: float, names: Mapping[str, str], words: Sequence[Word]) -> str:
    """A chapter's title: the speaker's name and a phrase of what they say first in it."""
    name = names.get(speaker, speaker)
    opening = [w for w in words if w.speaker == speaker and start - 1.0 <= w.start < end][:20]
    phrase = opening_phrase([w.text for w in opening], max_chars=TITLE_CHARS - len(name) - 2)
    return f"{name}: {phrase}" if phrase else name


def opening_phrase(words: Sequence[str], *, max_words: int = PHRASE_WORDS, max_chars: int = 40) -> str:
    """The best run of up to ``max_words`` words from the opening of ``words``: it begins and ends on a content
    word and holds as many content words as it can. The first sentence with two content words wins; a lone
    "Yes." or "Merci!" before it is skipped."""
    fallback: tuple[float, list[str]] = (0.0, [])
    for sentence in _sentences(words):
        score, window = _best_window(sentence, max_words, max_chars)
        if score >= 2:
            return " ".join(window)
        fallback = max(fallback, (score, window), key=lambda f: f[0])
    return " ".join(fallback[1])


def _sentences(words: Sequence[str]) -> list[list[str]]:
    sentences: list[list[str]] = [[]]
    for raw in words:
        word = raw.strip()
        clean = _bare(word)
        if clean:
            sentences[-1].append(clean)  # case kept as transcribed: a capital may be a name, not grammar
        if word.endswith((".", "?", "!", "…")) and sentences[-1]:
            sentences.append([])
    return [s for s in sentences if s]


def _best_window(sentence: Sequence[str], max_words: int, max_chars: int) -> tuple[float, list[str]]:
    best: tuple[float, list[str]] = (0.0, [])
    for i in range(len(sentence)):
        for j in range(i + 1, min(len(sentence), i + max_words) + 1):
            window = list(sentence[i:j])
            if not (_content(window[0]) and _content(window[-1])) or len(" ".join(window)) > max_chars:
                continue
            score = sum(1.0 if _content(w) else -0.5 for w in window)
            if score > best[0]:
                best = (score, window)
    return best


def _bare(word: str) -> str:
    return re.sub(r"^[^\w]+|[^\w']+$|'$", "", word)


def _content(word: str) -> bool:
    return len(word) >= 3 and word.lower() not in _FILLER and not word.isdigit()
