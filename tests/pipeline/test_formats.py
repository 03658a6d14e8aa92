"""Transcript and chapter formats, checked with real parsers (webvtt-py, json) and a small SRT parser."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
import webvtt

from pipeline.chapters import Chapter
from pipeline.formats import (
    LINE_CHARS,
    captions,
    chapters_json,
    plain_text,
    podcast_json,
    srt,
    words_json,
)
from pipeline.formats import (
    webvtt as to_webvtt,
)
from pipeline.transcript import Segment, Transcript, Word

NAMES = {"u1": "Alice Martin", "u2": "Bob <Ops> & Co", "u3": "Chloé Dubois"}


def _words(speaker: str, start: float, text: str, step: float = 0.35) -> tuple[Word, ...]:
    return tuple(Word(round(start + i * step, 3), round(start + i * step + 0.3, 3), token, speaker, 0.9)
                 for i, token in enumerate(text.split()))


@pytest.fixture()
def transcript() -> Transcript:
    long_text = ("Welcome to the show, today we talk about shipping audio products to listeners who care about "
                 "sound, and why the details of mastering matter more than most people think.")
    segments = (
        Segment("u1", _words("u1", 0.5, long_text)),
        Segment("u2", _words("u2", 6.0, 'Thanks Alice. Q&A: is "x < y" true? Yes & no.')),  # overlaps Alice
        Segment("u1", _words("u1", 12.0, "Right.")),
        Segment("u3", _words("u3", 14.0, "Merci, ça marche très bien à Zürich.")),
        Segment("u1", _words("u1", 3725.25, "One more thing after an hour.")),
    )
    return Transcript("en", segments, NAMES)


def _srt_cues(text: str) -> list[tuple[int, str, str, list[str]]]:
    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        match = re.fullmatch(r"(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)", lines[1])
        assert match, block
        cues.append((int(lines[0]), match[1], match[2], lines[2:]))
    return cues


def _seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_webvtt_parses_with_voices_and_escaping(transcript: Transcript, tmp_path: Path) -> None:
    text = to_webvtt(transcript)
    assert text.startswith("WEBVTT\n\n")
    path = tmp_path / "t.vtt"
    path.write_text(text, encoding="utf-8")
    parsed = webvtt.read(str(path)).captions
    assert {html.unescape(c.voice or "") for c in parsed} == set(NAMES.values())
    assert "<v Bob &lt;Ops&gt; &amp; Co>" in text
    joined = " ".join(html.unescape(c.text) for c in parsed)
    for fragment in ('Q&A: is "x < y" true?', "ça marche très bien à Zürich.", "shipping audio products"):
        assert fragment in joined.replace("\n", " ")
    assert parsed[-1].start == "01:02:05.250"
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d", c.start) for c in parsed)


def test_webvtt_from_string_round_trips_cue_count(transcript: Transcript) -> None:
    assert len(webvtt.from_string(to_webvtt(transcript))) == len(captions(transcript))


@pytest.mark.parametrize("render", ["vtt", "srt"])
def test_cues_are_short_single_speaker_and_never_overlap_their_speaker(transcript: Transcript, render: str) -> None:
    cues = captions(transcript) if render == "vtt" else captions(transcript, prefix=lambda s: f"{NAMES[s]}: ")
    assert len(cues) > len(transcript.segments)  # the long segment was split
    word_speaker = {(w.start, w.text): w.speaker for w in transcript.words}
    for cue in cues:
        assert 1 <= len(cue.lines) <= 2
        longest_word = max(len(w.text) for w in transcript.words)
        assert all(len(line) <= max(LINE_CHARS, len(NAMES["u2"]) + 2 + longest_word) for line in cue.lines)
        assert cue.end > cue.start
        shown = [w for w in transcript.words if cue.start <= w.start < cue.end and w.speaker == cue.speaker]
        assert shown and {word_speaker[(w.start, w.text)] for w in shown} == {cue.speaker}
    for speaker in NAMES:
        own = [c for c in cues if c.speaker == speaker]
        assert all(a.end <= b.start for a, b in zip(own, own[1:], strict=False))
    # a cue holds the words of exactly one segment's speaker: no text of another speaker leaks in
    vtt_lines = " ".join(" ".join(c.lines) for c in cues if c.speaker == "u3")
    assert "Alice" not in vtt_lines and "Merci" in vtt_lines


def test_srt_numbering_times_and_names(transcript: Transcript) -> None:
    cues = _srt_cues(srt(transcript))
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    assert cues[0][1] == "00:00:00,500"
    assert cues[-1][1] == "01:02:05,250"
    assert all(_seconds(end) > _seconds(start) for _, start, end, _ in cues)
    assert all(c[3][0].split(": ")[0] in NAMES.values() for c in cues)
    assert any(line.startswith("Bob <Ops> & Co: Thanks Alice.") for c in cues for line in c[3])
    assert all(1 <= len(c[3]) <= 2 for c in cues)


def test_podcast_json_shape(transcript: Transcript) -> None:
    data = json.loads(podcast_json(transcript))
    assert data["version"] == "1.0.0"
    assert [s["speaker"] for s in data["segments"]] == ["Alice Martin", "Bob <Ops> & Co", "Alice Martin",
                                                        "Chloé Dubois", "Alice Martin"]
    first = data["segments"][0]
    assert set(first) == {"speaker", "startTime", "endTime", "body"}
    assert first["startTime"] == 0.5 and first["body"].startswith("Welcome to the show,")
    assert data["segments"][1]["body"] == 'Thanks Alice. Q&A: is "x < y" true? Yes & no.'
    assert all(isinstance(s["startTime"], float) and s["endTime"] >= s["startTime"] for s in data["segments"])
    assert "Chloé" in podcast_json(transcript)  # written as UTF-8, not \\u escapes


def test_plain_text_paragraphs_per_turn(transcript: Transcript) -> None:
    text = plain_text(transcript, title="Founders Hour")
    paragraphs = text.strip().split("\n\n")
    assert paragraphs[0] == "Founders Hour"
    assert paragraphs[1].startswith("[00:00:00] Alice Martin: Welcome to the show,")
    assert paragraphs[2].startswith("[00:00:06] Bob <Ops> & Co: Thanks Alice.")
    assert paragraphs[-1] == "[01:02:05] Alice Martin: One more thing after an hour."
    assert len(paragraphs) == 6


def test_words_json_keeps_every_word(transcript: Transcript) -> None:
    data = json.loads(words_json(transcript))
    assert data["version"] == 1 and data["language"] == "en"
    assert data["speakers"] == NAMES
    assert len(data["words"]) == len(transcript.words)
    assert [w["start"] for w in data["words"]] == sorted(w["start"] for w in data["words"])
    assert data["words"][0] == {"start": 0.5, "end": 0.8, "text": "Welcome", "speaker": "u1", "probability": 0.9}


def test_chapters_json_shape() -> None:
    chapters = [Chapter(0.0, 95.5, "Alice Martin: shipping audio", "u1"), Chapter(95.5, 200.0, "Chloé Dubois", "u3")]
    data = json.loads(chapters_json(chapters))
    assert data == {"version": "1.2.0", "chapters": [
        {"startTime": 0.0, "title": "Alice Martin: shipping audio", "endTime": 95.5},
        {"startTime": 95.5, "title": "Chloé Dubois", "endTime": 200.0},
    ]}


def test_empty_transcript_formats() -> None:
    empty = Transcript("en", (), {})
    assert to_webvtt(empty) == "WEBVTT\n"
    assert srt(empty) == ""
    assert json.loads(podcast_json(empty)) == {"version": "1.0.0", "segments": []}


def test_srt_lines_fit_32_characters_as_the_srt_parser_reads_them(transcript: Transcript) -> None:
    """Parsed by the ``srt`` package: every line within the Podcasting 2.0 caption width, every cue named, every
    word of the transcript shown once, even for a speaker whose name nearly fills a line."""
    import srt as srt_parser

    from pipeline.formats import SRT_LINE_CHARS

    long_named = Transcript(transcript.language, transcript.segments,
                            {**NAMES, "u3": "Maria-Fernanda Dos Santos Oliveira Bragança"})
    for t in (transcript, long_named):
        subtitles = list(srt_parser.parse(srt(t)))
        assert SRT_LINE_CHARS == 32 and subtitles
        lines = [line for s in subtitles for line in s.content.split("\n")]
        assert max(map(len, lines)) <= SRT_LINE_CHARS, [line for line in lines if len(line) > SRT_LINE_CHARS]
        assert all(1 <= len(s.content.split("\n")) <= 2 for s in subtitles)
        assert all(s.end > s.start for s in subtitles)
        def words_of(content: str) -> str:
            first = content.split("\n")[0]
            return content.split(": ", 1)[1] if ": " in first else content.split("\n", 1)[1]

        shown = " ".join(words_of(s.content) for s in subtitles).split()
        assert sorted(shown) == sorted(w.text for w in t.words)
