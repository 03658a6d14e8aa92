"""Soundbites (Podcasting 2.0 ``podcast:soundbite``) chosen from the transcript: the most engaged stretch of talk.

A candidate is a run of consecutive transcript segments lasting ``MIN_S`` to ``MAX_S`` seconds. It scores for every
change of speaker (an exchange, not a monologue), for every distinct voice, and for the pace of its words; the
best ones that do not overlap are kept. Only words already in the transcript (consenting speakers) are used, and
times are on the replay's clock, as the transcript's are.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.transcript import Segment, Transcript

MIN_S = 15.0
MAX_S = 60.0


@dataclass(frozen=True)
class Bite:
    start: float
    duration: float
    score: float


def _score(run: list[Segment]) -> float:
    changes = sum(1 for a, b in zip(run, run[1:], strict=False) if a.speaker != b.speaker)
    voices = len({s.speaker for s in run})
    span = run[-1].end - run[0].start
    pace = sum(len(s.words) for s in run) / span if span > 0 else 0.0
    return changes * 2.0 + voices + pace


def pick_soundbites(t: Transcript, *, count: int = 1) -> list[Bite]:
    """Up to ``count`` non-overlapping soundbites, best first; none when the replay holds no long enough talk."""
    segments = [s for s in t.segments if s.words]
    segments.sort(key=lambda s: s.start)
    candidates: list[Bite] = []
    for i in range(len(segments)):
        for j in range(i, len(segments)):
            start, end = segments[i].start, segments[j].end
            if end - start > MAX_S:
                break
            if end - start >= MIN_S:
                run = segments[i:j + 1]
                candidates.append(Bite(round(start, 3), round(end - start, 3), _score(run)))
    chosen: list[Bite] = []
    for bite in sorted(candidates, key=lambda b: (-b.score, b.start)):
        if len(chosen) == count:
            break
        if all(bite.start + bite.duration <= c.start or c.start + c.duration <= bite.start for c in chosen):
            chosen.append(bite)
    return chosen
