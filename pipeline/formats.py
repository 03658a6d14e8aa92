"""Every published transcript and chapter format, made from one :class:`~pipeline.transcript.Transcript`.

Captions hold at most two lines, of ``LINE_CHARS`` characters in WebVTT and ``SRT_LINE_CHARS`` in SRT (the
Podcasting 2.0 guidance for caption files, whose players show SRT as is), a cue never mixes speakers, and cues of
the same speaker never overlap (cues of different speakers may: people talk over each other).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pipeline.chapters import Chapter
from pipeline.transcript import Segment, Transcript, Word

LINE_CHARS = 42
SRT_LINE_CHARS = 32
CUE_LINES = 2
# A cue shorter than this flashes by unread; it is stretched when the same speaker's next cue leaves room.
MIN_CUE_S = 0.5


@dataclass(frozen=True)
class Cue:
    """One caption: a speaker's words shown from ``start`` to ``end`` as at most ``CUE_LINES`` lines."""

    start: float
    end: float
    speaker: str
    lines: tuple[str, ...]


def podcast_json(t: Transcript) -> str:
    """Podcasting 2.0 JSON transcript: one entry per segment, times in seconds."""
    segments = [{"speaker": t.name(s.speaker), "startTime": _sec(s.start), "endTime": _sec(s.end), "body": s.text}
                for s in t.segments if s.words]
    return json.dumps({"version": "1.0.0", "segments": segments}, ensure_ascii=False, indent=2) + "\n"


def webvtt(t: Transcript) -> str:
    """WebVTT captions with a ``<v Speaker Name>`` voice span on every cue."""
    blocks = ["WEBVTT"]
    for cue in captions(t):
        text = "\n".join(_vtt_escape(line) for line in cue.lines)
        blocks.append(f"{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}\n"
                      f"<v {_vtt_escape(t.name(cue.speaker))}>{text}</v>")
    return "\n\n".join(blocks) + "\n"


def srt(t: Transcript) -> str:
    """SubRip captions: numbered cues whose text starts with ``Speaker Name:``."""
    blocks = []
    cues = captions(t, prefix=lambda speaker: f"{_label(t.name(speaker))}: ", line_chars=SRT_LINE_CHARS)
    for number, cue in enumerate(cues, start=1):
        blocks.append(f"{number}\n{_clock(cue.start, ',')} --> {_clock(cue.end, ',')}\n" + "\n".join(cue.lines))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def plain_text(t: Transcript, title: str | None = None) -> str:
    """Readable text: one paragraph per speaker turn, each starting ``[hh:mm:ss] Name:``."""
    paragraphs = [title.strip()] if title else []
    for turn in _turns(t.segments):
        body = " ".join(s.text for s in turn)
        paragraphs.append(f"[{_clock(turn[0].start, None)}] {t.name(turn[0].speaker)}: {body}")
    return "\n\n".join(paragraphs) + "\n" if paragraphs else ""


def words_json(t: Transcript) -> str:
    """Every word with its time, speaker and probability, for search and editing tools."""
    words = sorted(t.words, key=lambda w: (w.start, w.end))
    speakers = {w.speaker: t.name(w.speaker) for w in words} | dict(t.speaker_names)
    data = {"version": 1, "language": t.language, "speakers": speakers,
            "words": [{"start": _sec(w.start), "end": _sec(w.end), "text": w.text, "speaker": w.speaker,
                       "probability": round(w.probability, 3)} for w in words]}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


def chapters_json(chapters: Sequence[Chapter]) -> str:
    """Podcasting 2.0 JSON chapters."""
    items = []
    for chapter in chapters:
        item: dict[str, object] = {"startTime": _sec(chapter.start), "title": chapter.title}
        if chapter.end > chapter.start:
            item["endTime"] = _sec(chapter.end)
        items.append(item)
    return json.dumps({"version": "1.2.0", "chapters": items}, ensure_ascii=False, indent=2) + "\n"


def _label(name: str) -> str:
    """A speaker's name short enough to sit on an SRT line of its own."""
    limit = SRT_LINE_CHARS - 1  # room for the colon
    return name if len(name) <= limit else name[:limit - 1].rstrip() + "…"


def captions(t: Transcript, *, prefix: Callable[[str], str] | None = None, line_chars: int = LINE_CHARS) -> list[Cue]:
    """The caption cues of ``t``, lines of at most ``line_chars``. ``prefix(speaker)`` is text put before the
    first line (it counts toward it; a long one gets the first line to itself)."""
    cues: list[Cue] = []
    for segment in t.segments:
        cues += _segment_cues(segment, prefix(segment.speaker) if prefix else "", line_chars)
    return _no_overlaps(sorted(cues, key=lambda c: (c.start, c.end)))


def _segment_cues(segment: Segment, lead: str, limit: int) -> list[Cue]:
    groups: list[list[Word]] = []
    for word in (w for w in segment.words if w.text):
        if groups and _wrap([w.text for w in groups[-1]] + [word.text], lead, limit) is not None:
            groups[-1].append(word)
        else:
            groups.append([word])
    if len(groups) > 1:
        groups[-2:] = _rebalance(groups[-2] + groups[-1], lead, limit)
    return [Cue(g[0].start, g[-1].end, segment.speaker,
                tuple(_wrap([w.text for w in g], lead, limit) or _forced(lead, [w.text for w in g])))
            for g in groups]


def _forced(lead: str, texts: Sequence[str]) -> list[str]:
    """A lone word too long for a line beside its lead: the lead on its own line, the word on the next."""
    return [lead.rstrip(), " ".join(texts)] if lead.strip() else [" ".join(texts)]


def _wrap(texts: Sequence[str], lead: str, limit: int) -> list[str] | None:
    """``texts`` as one line, or two lines of even length, within ``limit``; None when they do not fit. A lead
    too long to share a line keeps the first to itself. A single word is never refused (it cannot be split)."""
    one = lead + " ".join(texts)
    if len(one) <= limit or (len(texts) == 1 and not lead):
        return [one]
    best: list[str] | None = None
    for k in range(1, len(texts)):
        lines = [lead + " ".join(texts[:k]), " ".join(texts[k:])]
        if max(map(len, lines)) <= limit and (best is None or max(map(len, lines)) < max(map(len, best))):
            best = lines
    if best is None and lead.strip() and len(" ".join(texts)) <= limit:
        best = [lead.rstrip(), " ".join(texts)]
    return best


def _rebalance(words: list[Word], lead: str, limit: int) -> list[list[Word]]:
    """Split the last two cues' words so neither is a stub: even lengths, preferring a break after punctuation."""
    texts = [w.text for w in words]
    options = []
    for k in range(1, len(words)):
        if _wrap(texts[:k], lead, limit) is not None and _wrap(texts[k:], lead, limit) is not None:
            imbalance = abs(len(" ".join(texts[:k])) - len(" ".join(texts[k:])))
            options.append((imbalance - (15 if texts[k - 1].endswith((".", ",", "?", "!", ";", ":")) else 0), k))
    k = min(options)[1] if options else len(words) - 1
    return [words[:k], words[k:]]


def _no_overlaps(cues: list[Cue]) -> list[Cue]:
    """Give each cue a readable length, but end it before the same speaker's next cue starts."""
    out = list(cues)
    last: dict[str, int] = {}  # speaker -> index in ``out`` of their latest cue
    for i, cue in enumerate(out):
        j = last.get(cue.speaker)
        if j is not None:
            previous = out[j]
            end = max(min(max(previous.end, previous.start + MIN_CUE_S), cue.start), previous.start + 0.001)
            out[j] = replace(previous, end=end)
            if cue.start < end:
                out[i] = cue = replace(cue, start=end, end=max(cue.end, end + 0.001))
        last[cue.speaker] = i
    for speaker, j in last.items():
        if out[j].speaker == speaker:
            out[j] = replace(out[j], end=max(out[j].end, out[j].start + MIN_CUE_S))
    return [replace(c, start=round(c.start, 3), end=round(c.end, 3)) for c in out]


def _turns(segments: Sequence[Segment]) -> list[list[Segment]]:
    turns: list[list[Segment]] = []
    for segment in segments:
        if not segment.words:
            continue
        if turns and turns[-1][-1].speaker == segment.speaker:
            turns[-1].append(segment)
        else:
            turns.append([segment])
    return turns


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _sec(value: float) -> float:
    return round(float(value), 3)


def _clock(seconds: float, decimal: str | None) -> str:
    """``HH:MM:SS.mmm`` (WebVTT), ``HH:MM:SS,mmm`` (SRT) or ``HH:MM:SS`` when ``decimal`` is None."""
    millis = int(round(max(0.0, seconds) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return text if decimal is None else f"{text}{decimal}{millis:03d}"
