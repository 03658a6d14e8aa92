"""Consent, decided in one place: which speakers, tracks, words and persons of a room may appear in any output.

A speaker with ``consent: false`` declined the replay. Nothing of theirs is published: not their tracks' audio
(the mix), not their words (every transcript format, chapter titles, soundbites, pages), not their name or picture
(tags, chapters, ``podcast:person``, the feed's links and wallets). :func:`room_consent` says who and what may
appear; every stage asks it rather than reading ``Speaker.consent`` itself.

A declined voice can still reach a consenting speaker's microphone (open microphones in one room): Whisper then
transcribes those words on the consenting track, where no transcript of the declined track is there to match
them as bleed. :func:`without_declined_voices` drops every word of a consenting track that is louder on a declined
speaker's own microphone than on the track it was heard on: the loudest microphone says whose voice it was, as
for bleed between consenting speakers (:mod:`pipeline.bleed`). :meth:`DeclinedVoices.muted` finds the same
stretches in the audio, which the mix silences. The levels come from one streamed decode of each track concerned,
kept as 20 ms frame energies.

In a mixed recording (one file for the whole room) the declined voices are found by voice and silenced within it
(:mod:`pipeline.diarize`); its tracks are all used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.audio import ANALYSIS_RATE, decode_blocks
from pipeline.room import Room, Speaker, Track
from pipeline.transcript import Segment, TrackTranscript
from pipeline.vad import SpeechRegion

log = logging.getLogger(__name__)

_FRAME = ANALYSIS_RATE // 50  # 20 ms, Whisper's word time step
_SILENT = 1e-20  # the energy of a frame where a track has no audio (before it starts, after it ends)


@dataclass(frozen=True)
class Consent:
    """What of a room may appear. ``speakers``: who agreed, in manifest order; ``tracks``: the audio that may be
    heard; ``declined_tracks``: the microphones of those who declined, listened to only to keep their voices out."""

    speakers: tuple[Speaker, ...]
    tracks: tuple[Track, ...]
    declined_tracks: tuple[Track, ...]

    @property
    def speaker_ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.speakers)

    @property
    def track_indices(self) -> frozenset[int]:
        return frozenset(t.index for t in self.tracks)

    @property
    def names(self) -> dict[str, str]:
        """Published names by speaker id: the only names any output may carry."""
        return {s.id: s.name for s in self.speakers}

    def allows(self, speaker_id: str) -> bool:
        return speaker_id in self.speaker_ids

    def transcripts(self, transcripts: Sequence[TrackTranscript]) -> list[TrackTranscript]:
        """The track transcripts that may be published at all: those of consenting tracks."""
        return [t for t in transcripts if t.track_index in self.track_indices]


def room_consent(room: Room) -> Consent:
    """Who and what of ``room`` may appear in its replay, transcripts, chapters, feed and pages."""
    speakers = tuple(s for s in room.speakers if s.consent)
    if room.is_mixed:  # one recording of everyone: the declined voices are silenced inside it once known
        return Consent(speakers, room.tracks, ())
    allowed = {s.id for s in speakers}
    return Consent(speakers, tuple(t for t in room.tracks if t.speaker in allowed),
                   tuple(t for t in room.tracks if t.speaker not in allowed))


def without_declined_voices(transcripts: Sequence[TrackTranscript], consent: Consent, *, what: str = "",
                            margin_db: float = 0.0) -> list[TrackTranscript]:
    """The consenting tracks' transcripts without the words a declined speaker's microphone heard louder (by more
    than ``margin_db``) than the track they were transcribed on."""
    return DeclinedVoices(consent, what=what).words(transcripts, margin_db=margin_db)


# On a consenting microphone, a stretch is muted where a declined speaker's microphone is louder than it (over
# 100 ms, the length of a syllable) and speaking (above -50 dBFS, well over a quiet room's noise); stretches
# shorter than 0.2 s are a click or a breath; each muted stretch is widened by 0.1 s on both sides.
_MUTE_SMOOTH_FRAMES = 5
_MUTE_MIN_ENERGY = 10 ** (-50.0 / 10)
_MUTE_MIN_S = 0.2
_MUTE_PAD_S = 0.1


class DeclinedVoices:
    """The microphones of the speakers who declined, measured once (20 ms frame energies, one streamed decode of
    each track concerned), to keep their voices out of the consenting tracks' words and audio."""

    def __init__(self, consent: Consent, *, what: str = "") -> None:
        self.consent = consent
        self.what = what
        self._levels: dict[int, _FrameLevels] = {}

    def _of(self, track: Track) -> _FrameLevels:
        if track.index not in self._levels:
            self._levels[track.index] = _FrameLevels.of(track, what=self.what)
        return self._levels[track.index]

    def words(self, transcripts: Sequence[TrackTranscript], *, margin_db: float = 0.0) -> list[TrackTranscript]:
        """See :func:`without_declined_voices`."""
        kept = self.consent.transcripts(transcripts)
        if not self.consent.declined_tracks or not any(t.segments for t in kept):
            return kept
        tracks = {t.index: t for t in self.consent.tracks}
        declined = [self._of(t) for t in self.consent.declined_tracks]
        out = []
        for transcript in kept:
            own = self._of(tracks[transcript.track_index])
            segments = []
            dropped = 0
            for segment in transcript.segments:
                words = tuple(w for w in segment.words
                              if not any(d.energy(w.start, w.end) > own.energy(w.start, w.end) * 10 ** (margin_db / 10)
                                         for d in declined))
                dropped += len(segment.words) - len(words)
                if words:
                    segments.append(Segment(segment.speaker, words))
            if dropped:
                log.info("%s: %d words on track %d were a declined speaker's voice: left out", self.what or "room",
                         dropped, transcript.track_index)
            out.append(TrackTranscript(transcript.track_index, transcript.speaker, transcript.language,
                                       tuple(segments)))
        return out

    def muted(self, track: Track) -> tuple[SpeechRegion, ...]:
        """Stretches of the consenting ``track`` (track seconds) where a declined speaker's voice is what it
        carries: the mix silences them (:attr:`pipeline.analysis.TrackAnalysis.muted`)."""
        if not self.consent.declined_tracks:
            return ()
        own = self._of(track)
        kernel = np.ones(_MUTE_SMOOTH_FRAMES) / _MUTE_SMOOTH_FRAMES
        mine = np.convolve(own.frames, kernel, mode="same")
        loud = np.zeros(mine.size, dtype=bool)
        for other in self.consent.declined_tracks:
            theirs = np.convolve(self._of(other).frames, kernel, mode="same")
            shift = int(round((track.start - other.start) * 50))  # their frame of our frame 0
            aligned = np.full(mine.size, _SILENT)
            lo, hi = max(0, -shift), min(mine.size, theirs.size - shift)
            if hi > lo:
                aligned[lo:hi] = theirs[lo + shift:hi + shift]
            loud |= (aligned > mine) & (aligned > _MUTE_MIN_ENERGY)
        return _stretches(loud)


def _stretches(loud: np.ndarray) -> tuple[SpeechRegion, ...]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], loud.astype(np.int8), [0]])))
    out: list[SpeechRegion] = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if (b - a) / 50 < _MUTE_MIN_S:
            continue
        start, end = max(0.0, a / 50 - _MUTE_PAD_S), b / 50 + _MUTE_PAD_S
        if out and start <= out[-1].end:
            start = out.pop().start
        out.append(SpeechRegion(round(start, 3), round(end, 3)))
    return tuple(out)


@dataclass(frozen=True)
class _FrameLevels:
    """Mean energy of each 20 ms frame of a track, on the room clock from ``start``."""

    start: float
    frames: np.ndarray

    @classmethod
    def of(cls, track: Track, *, what: str) -> _FrameLevels:
        return cls(track.start, _frame_energies(track.path, what=f"{what}: {track.file}" if what else track.file))

    def energy(self, start: float, end: float) -> float:
        lo = max(0, int((start - self.start) * 50))
        hi = max(lo + 1, int(np.ceil((end - self.start) * 50)))
        window = self.frames[lo:hi]
        return float(window.mean()) if window.size else _SILENT


def _frame_energies(path: Path, *, what: str) -> np.ndarray:
    parts, carry = [], np.zeros(0, dtype=np.float32)
    for block in decode_blocks(path, what=what, block_s=60.0):
        block = np.concatenate([carry, block]) if carry.size else block
        usable = block.size - block.size % _FRAME
        parts.append(np.square(block[:usable].reshape(-1, _FRAME), dtype=np.float64).mean(axis=1) + _SILENT)
        carry = block[usable:]
    return np.concatenate(parts) if parts else np.zeros(0)

