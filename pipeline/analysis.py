"""Per-track analysis: speech regions (VAD) and speech loudness, from one streamed decode of the track."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.audio import ANALYSIS_RATE, PcmCopy, decode_blocks
from pipeline.loudness import SILENCE_LUFS, SpeechMeter
from pipeline.room import Track
from pipeline.vad import BLOCK_S, SpeechRegion, VadSettings, speech_regions_in

log = logging.getLogger(__name__)

# A track whose decoded length differs from its container's duration, or from the span the manifest declares
# (``end - start``), by more than this is suspicious (truncated upload, sender stalls, clock drift): it is
# reported, never silently accepted.
DRIFT_WARN_S = 2.0
DRIFT_WARN_RATIO = 0.01
STEP_FLOOR_DB = -150.0


@dataclass(frozen=True)
class TrackAnalysis:
    """What the mixer and the transcriber need to know about one track (times in track seconds)."""

    track_index: int
    speaker: str
    start: float
    duration: float
    regions: tuple[SpeechRegion, ...]
    speech_lufs: float
    decoded_s: float
    warnings: tuple[str, ...] = ()
    # K-weighted level of every 100 ms step of the track (dB, mean square; STEP_FLOOR_DB for silence): the mixer
    # derives its levelling from it and predicts the mix's loudness without a measuring pass.
    step_db: tuple[float, ...] = ()
    # Stretches (track seconds) to silence completely: the turns of a declined voice in a mixed recording.
    muted: tuple[SpeechRegion, ...] = ()

    @property
    def speech_s(self) -> float:
        return sum(r.duration for r in self.regions)

    def to_dict(self) -> dict[str, Any]:
        return {"track_index": self.track_index, "speaker": self.speaker, "start": self.start,
                "duration": self.duration, "regions": [[r.start, r.end] for r in self.regions],
                "speech_lufs": self.speech_lufs, "decoded_s": self.decoded_s, "warnings": list(self.warnings),
                "step_db": list(self.step_db), "muted": [[r.start, r.end] for r in self.muted]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackAnalysis:
        return cls(int(data["track_index"]), str(data["speaker"]), float(data["start"]), float(data["duration"]),
                   tuple(SpeechRegion(float(a), float(b)) for a, b in data["regions"]), float(data["speech_lufs"]),
                   float(data["decoded_s"]), tuple(data.get("warnings", ())),
                   tuple(float(v) for v in data.get("step_db", ())),
                   tuple(SpeechRegion(float(a), float(b)) for a, b in data.get("muted", ())))

    def step_energies(self) -> np.ndarray:
        """Mean-square K-weighted energy of every 100 ms step (the inverse of ``step_db``)."""
        return np.power(10.0, np.asarray(self.step_db, dtype=np.float64) / 10)


def analyse_track(track: Track, *, what: str, vad: VadSettings | None = None, copy: PcmCopy | None = None,
                  keep: PcmCopy | None = None) -> TrackAnalysis:
    """Find the speech regions of ``track`` and measure the loudness of its speech, decoding it once (and, with
    ``copy``, keeping that decode at the mixing rate for the mix; with ``keep``, keeping the analysis's own
    16 kHz decode, which transcription reads)."""
    meter = SpeechMeter(ANALYSIS_RATE)
    decoded = 0

    def metered(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        nonlocal decoded
        for block in blocks:
            meter.add(block)
            decoded += block.size
            yield block

    blocks = decode_blocks(track.path, what=what, block_s=BLOCK_S, copy=copy)
    if keep is not None:
        if keep.rate != ANALYSIS_RATE:
            raise ValueError(f"the analysis decodes at {ANALYSIS_RATE} Hz, not {keep.rate} Hz")
        blocks = keep.kept(blocks)
    regions = speech_regions_in(metered(blocks), vad or VadSettings())
    decoded_s = decoded / ANALYSIS_RATE
    speech_lufs = meter.loudness([(r.start, r.end) for r in regions]) if regions else SILENCE_LUFS
    if speech_lufs <= SILENCE_LUFS and regions:
        speech_lufs = meter.loudness()  # regions too short for a 400 ms block: fall back to the whole track
    warnings = drift_warnings(track, decoded_s, what=what)
    for warning in warnings:
        log.warning("%s", warning)
    log.info("%s: %d speech regions, %.1f s of speech at %.1f LUFS", what, len(regions),
             sum(r.duration for r in regions), speech_lufs)
    levels = 10 * np.log10(np.maximum(np.asarray(meter.energies, dtype=np.float64), 10 ** (STEP_FLOOR_DB / 10)))
    return TrackAnalysis(track.index, track.speaker, track.start, track.info.duration, regions,
                         round(speech_lufs, 2), round(decoded_s, 3), warnings,
                         tuple(round(float(v), 2) for v in levels))


def drift_warnings(track: Track, decoded_s: float, *, what: str) -> tuple[str, ...]:
    """Disagreements between what a track holds and what its container or the manifest say it should."""
    found = []
    if abs(decoded_s - track.info.duration) > DRIFT_WARN_S:
        found.append(f"{what}: decodes to {decoded_s:.1f} s but its container says {track.info.duration:.1f} s "
                     "(truncated or damaged file?)")
    if track.declared_end is not None:
        span = track.declared_end - track.start
        if abs(decoded_s - span) > max(DRIFT_WARN_S, DRIFT_WARN_RATIO * span):
            found.append(f"{what}: holds {decoded_s:.1f} s of audio but the manifest gives it {span:.1f} s "
                         f"({track.start:.1f}-{track.declared_end:.1f} s): clock drift, stalls or truncation; "
                         "words after the gap may be misplaced")
    return tuple(found)
