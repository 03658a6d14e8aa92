"""Soundbites picked from a transcript: an exchange between voices beats a monologue; lengths stay 15-60 s."""

from __future__ import annotations

from pipeline.soundbites import MAX_S, MIN_S, pick_soundbites
from pipeline.transcript import Segment, Transcript, Word


def _segment(speaker: str, start: float, end: float, words: int) -> Segment:
    step = (end - start) / words
    return Segment(speaker, tuple(Word(start + i * step, start + (i + 1) * step, f"w{i}", speaker)
                                  for i in range(words)))


def test_the_liveliest_exchange_is_chosen() -> None:
    monologue = [_segment("u1", 0.0, 60.0, 150), _segment("u1", 61.0, 120.0, 150)]
    exchange = [_segment(s, 130.0 + 5 * k, 134.5 + 5 * k, 12) for k, s in enumerate("u1 u2 u3 u2 u1 u3".split())]
    t = Transcript("en", tuple(monologue + exchange), {"u1": "A", "u2": "B", "u3": "C"})
    bites = pick_soundbites(t, count=2)
    assert bites and MIN_S <= bites[0].duration <= MAX_S
    assert 130.0 <= bites[0].start and bites[0].start + bites[0].duration <= 160.0
    assert len(bites) == 2
    a, b = sorted(bites, key=lambda x: x.start)
    assert a.start + a.duration <= b.start  # never overlapping


def test_no_soundbite_without_enough_talk() -> None:
    t = Transcript("en", (_segment("u1", 0.0, 5.0, 10),), {"u1": "A"})
    assert pick_soundbites(t) == []
