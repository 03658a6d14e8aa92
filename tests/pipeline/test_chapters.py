"""Chapters from speaker turns: interjections, minimum length, turn starts, titles."""

from __future__ import annotations

import json

import pytest

from pipeline.chapters import (
    Turn,
    build_chapters,
    intervals_from_transcript,
    opening_phrase,
    speaker_turns,
)
from pipeline.formats import chapters_json
from pipeline.transcript import Segment, Transcript, Word

NAMES = {"u1": "Alice Martin", "u2": "Bob Okafor", "u3": "Chloé Dubois"}

# Alice opens; Bob says "right" twice over her; Bob takes the floor at 60.5 after an exchange of short
# answers; Chloé takes it at 121 and Alice's "mm-hm" at 150 does not interrupt her.
INTERVALS = [
    ("u1", 0.0, 19.0), ("u2", 20.0, 21.0), ("u1", 22.0, 45.0), ("u2", 30.0, 31.5), ("u1", 45.6, 60.0),
    ("u2", 60.5, 62.5), ("u1", 63.0, 63.5), ("u2", 64.0, 66.0), ("u1", 66.5, 67.5), ("u2", 68.0, 120.0),
    ("u3", 121.0, 150.0), ("u1", 150.5, 152.0), ("u3", 153.0, 200.0),
]


def _words(speaker: str, start: float, text: str) -> tuple[Word, ...]:
    return tuple(Word(start + 0.4 * i, start + 0.4 * i + 0.3, token, speaker) for i, token in enumerate(text.split()))


def test_interjections_do_not_split_a_turn() -> None:
    turns = speaker_turns(INTERVALS)
    assert [(t.speaker, t.start) for t in turns] == [("u1", 0.0), ("u2", 60.5), ("u3", 121.0)]
    assert turns[0].end == 63.5 and turns[2].end == 200.0


def test_a_long_overlap_inside_a_turn_is_an_interjection() -> None:
    turns = speaker_turns([("u1", 0.0, 90.0), ("u2", 40.0, 50.0), ("u2", 95.0, 130.0)])
    assert turns == [Turn("u1", 0.0, 90.0), Turn("u2", 95.0, 130.0)]


def test_a_short_reply_is_a_turn_when_the_interjection_limit_is_lower() -> None:
    turns = speaker_turns([("u1", 0.0, 10.0), ("u2", 10.5, 13.0), ("u1", 13.5, 30.0)], interjection_s=2.0)
    assert [t.speaker for t in turns] == ["u1", "u2", "u1"]


def test_chapters_start_on_turn_starts_and_cover_the_replay() -> None:
    chapters = build_chapters(INTERVALS, 210.0, speaker_names=NAMES, min_chapter_s=30.0)
    assert [c.start for c in chapters] == [0.0, 60.5, 121.0]
    assert [c.end for c in chapters] == [60.5, 121.0, 210.0]
    assert [c.title for c in chapters] == ["Alice Martin", "Bob Okafor", "Chloé Dubois"]
    assert [c.speaker for c in chapters] == ["u1", "u2", "u3"]


@pytest.mark.parametrize("minimum", [30.0, 65.0, 100.0])
def test_no_chapter_is_shorter_than_the_minimum(minimum: float) -> None:
    chapters = build_chapters(INTERVALS, 210.0, speaker_names=NAMES, min_chapter_s=minimum)
    turn_starts = {0.0} | {t.start for t in speaker_turns(INTERVALS)}
    assert all(c.end - c.start >= minimum for c in chapters)
    assert all(c.start in turn_starts for c in chapters)
    assert chapters[0].start == 0.0 and chapters[-1].end == 210.0
    assert all(a.end == b.start for a, b in zip(chapters, chapters[1:], strict=False))
    assert len(chapters) == {30.0: 3, 65.0: 2, 100.0: 1}[minimum]


def test_a_short_turn_merges_into_its_neighbour() -> None:
    intervals = [("u1", 0.0, 100.0), ("u2", 101.0, 110.0), ("u3", 111.0, 300.0)]
    chapters = build_chapters(intervals, 300.0, speaker_names=NAMES, min_chapter_s=30.0)
    assert [(c.start, c.end, c.speaker) for c in chapters] == [(0.0, 111.0, "u1"), (111.0, 300.0, "u3")]


def test_titles_take_a_phrase_from_the_transcript() -> None:
    transcript = Transcript("en", (
        Segment("u1", _words("u1", 0.5, "So today we are talking about shipping audio products.")),
        Segment("u2", _words("u2", 60.5, "Well, I think the real problem is latency in live rooms.")),
        Segment("u3", _words("u3", 121.0, "Merci! Our European listeners keep asking for transcripts.")),
    ), NAMES)
    chapters = build_chapters(INTERVALS, 210.0, speaker_names=NAMES, transcript=transcript)
    assert [c.title for c in chapters] == [
        "Alice Martin: shipping audio products",
        "Bob Okafor: real problem is latency",
        "Chloé Dubois: European listeners keep asking",
    ]
    assert all(len(c.title) <= 60 for c in chapters)
    data = json.loads(chapters_json(chapters))
    assert data["chapters"][0] == {"startTime": 0.0, "title": "Alice Martin: shipping audio products",
                                   "endTime": 60.5}


def test_opening_phrase_rules() -> None:
    assert opening_phrase("Welcome everyone!".split()) == ""
    assert opening_phrase("Yes.".split()) == ""
    assert opening_phrase("Merci! Oui.".split()) == "Merci"
    assert opening_phrase("Our podcast audience doubled after the summer.".split()) == "podcast audience doubled"
    assert opening_phrase("Ghent hosts the summit.".split()) == "Ghent hosts the summit"
    phrase = opening_phrase("Internationalisation localisation globalisation standardisation".split(), max_chars=30)
    assert len(phrase) <= 30 and phrase
    assert not opening_phrase("The budget, the plan.".split()).endswith((",", "."))


def test_intervals_from_transcript_follow_segments() -> None:
    transcript = Transcript("en", (Segment("u1", _words("u1", 1.0, "one two three")),
                                   Segment("u2", _words("u2", 5.0, "four"))), NAMES)
    assert intervals_from_transcript(transcript) == [("u1", 1.0, 2.1), ("u2", 5.0, 5.3)]


def test_no_speech_means_no_chapters() -> None:
    assert build_chapters([], 100.0, speaker_names=NAMES) == []


def test_the_first_chapter_is_named_after_the_voice_that_opens_it() -> None:
    """A short welcome by the host, then a long answer: the merged first chapter is the host's, titled with
    their opening words, although the guest holds more of it."""
    intervals = [("u1", 0.0, 12.0), ("u2", 13.0, 45.0), ("u1", 46.0, 200.0)]
    transcript = Transcript("en", (
        Segment("u1", _words("u1", 0.5, "Welcome to Founders Hour about shipping audio.")),
        Segment("u2", _words("u2", 13.0, "Thanks, latency in live rooms is my favourite subject.")),
        Segment("u1", _words("u1", 46.0, "Let us now talk about mastering loudness targets.")),
    ), NAMES)
    chapters = build_chapters(intervals, 200.0, speaker_names=NAMES, min_chapter_s=30.0, transcript=transcript)
    data = json.loads(chapters_json(chapters))["chapters"]
    assert data[0]["startTime"] == 0.0
    assert data[0]["title"].startswith("Alice Martin: ")
    assert "Founders Hour" in data[0]["title"]
    assert chapters[0].speaker == "u1" and chapters[0].end == 200.0
