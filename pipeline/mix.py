"""Mixing: every consenting track placed at its offset, levelled on its speech, gated between phrases, summed.

One ffmpeg pass streams all tracks through a filter graph and writes a lossless float mix of the part of the
room that holds speech (dead air before the first word and after the last is trimmed), measuring the mix's
loudness on the way. Mastering (:mod:`pipeline.master`) then applies one gain and a true-peak limiter.

Per track, in order:
1. ``asetpts=PTS-STARTPTS``: the manifest's ``start`` places the track's first sample, whatever the container's
   start time says;
2. an envelope (1 in speech regions, ``gate_floor_db`` between them, with short ramps) multiplied in: N tracks
   do not add N noise floors, and nobody's breathing or keyboard fills the gaps;
3. a gain that brings the track's speech loudness to ``speech_level_lufs``: a quiet guest and a loud host end up
   at the same level;
4. a gentle compressor, so a laugh or a shout does not set the level;
5. ``adelay`` by the track's offset, in samples.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.analysis import TrackAnalysis
from pipeline.ffmpeg import ProgressCallback, run_ffmpeg
from pipeline.loudness import SILENCE_LUFS, parse_integrated
from pipeline.manifest import Room

log = logging.getLogger(__name__)

ENVELOPE_RATE = 200  # Hz: fine enough for 30 ms ramps, small enough for a 3-hour track (8.6 MB)
MAX_TRACK_GAIN_DB = 30.0


@dataclass(frozen=True)
class MixSettings:
    """How tracks are levelled and gated. Defaults suit close-miked voices in a live audio room."""

    sample_rate: int = 44_100
    speech_level_lufs: float = -24.0
    gate_floor_db: float = -40.0
    gate_attack_s: float = 0.04
    gate_release_s: float = 0.25
    compressor_threshold_db: float = -20.0
    compressor_ratio: float = 2.5
    lead_in_s: float = 0.5
    tail_s: float = 1.0


@dataclass(frozen=True)
class TrackPlan:
    track_index: int
    gain_db: float
    delay_s: float


@dataclass(frozen=True)
class MixPlan:
    """Where every track goes and how loud; ``trim_start``/``trim_end`` bound the replay on the room clock."""

    tracks: tuple[TrackPlan, ...]
    trim_start: float
    trim_end: float

    @property
    def duration(self) -> float:
        return self.trim_end - self.trim_start


@dataclass(frozen=True)
class MixResult:
    path: Path
    plan: MixPlan
    loudness_lufs: float


def plan_mix(room: Room, analyses: Sequence[TrackAnalysis], settings: MixSettings) -> MixPlan:
    """Gains and delays for every consenting track, and the window of the room that holds speech."""
    allowed = {t.index for t in room.published_tracks}
    used = [a for a in analyses if a.track_index in allowed]
    plans = []
    for analysis in used:
        if analysis.speech_lufs <= SILENCE_LUFS:
            gain = 0.0
        else:
            gain = max(-MAX_TRACK_GAIN_DB, min(MAX_TRACK_GAIN_DB, settings.speech_level_lufs - analysis.speech_lufs))
        plans.append(TrackPlan(analysis.track_index, round(gain, 2), analysis.start))
    starts = [a.start + a.regions[0].start for a in used if a.regions]
    ends = [a.start + a.regions[-1].end for a in used if a.regions]
    room_end = max((a.start + a.duration for a in used), default=0.0)
    trim_start = max(0.0, min(starts) - settings.lead_in_s) if starts else 0.0
    trim_end = min(room_end, max(ends) + settings.tail_s) if ends else room_end
    return MixPlan(tuple(plans), round(trim_start, 3), round(trim_end, 3))


def envelope(analysis: TrackAnalysis, settings: MixSettings) -> np.ndarray:
    """Gate gain over the track at ENVELOPE_RATE: 1 in speech, the floor elsewhere, linear ramps between."""
    size = int(math.ceil(analysis.duration * ENVELOPE_RATE)) + ENVELOPE_RATE
    floor = 10 ** (settings.gate_floor_db / 20)
    env = np.full(size, floor, dtype=np.float32)
    times = np.arange(size, dtype=np.float64) / ENVELOPE_RATE
    attack, release = settings.gate_attack_s, settings.gate_release_s
    for region in analysis.regions:
        lo = max(0, int((region.start - attack) * ENVELOPE_RATE))
        hi = min(size, int(math.ceil((region.end + release) * ENVELOPE_RATE)) + 1)
        t = times[lo:hi]
        rise = np.clip((t - (region.start - attack)) / attack, 0.0, 1.0)
        fall = np.clip(((region.end + release) - t) / release, 0.0, 1.0)
        shape = floor + (1 - floor) * np.minimum(rise, fall)
        env[lo:hi] = np.maximum(env[lo:hi], shape)
    return env


def mix(room: Room, analyses: Sequence[TrackAnalysis], out: Path, *, settings: MixSettings = MixSettings(),
        progress: ProgressCallback | None = None) -> MixResult:
    """Write the levelled, gated, aligned and trimmed mix of ``room`` to ``out`` (float WAV, mono)."""
    plan = plan_mix(room, analyses, settings)
    by_index = {a.track_index: a for a in analyses}
    tracks = {t.index: t for t in room.tracks}
    rate = settings.sample_rate
    with tempfile.TemporaryDirectory(prefix="roomcast-mix-") as tmp:
        inputs: list[str] = []
        for track_plan in plan.tracks:
            inputs += ["-i", str(tracks[track_plan.track_index].path)]
        graph: list[str] = []
        for n, track_plan in enumerate(plan.tracks):
            env_path = Path(tmp) / f"env{n}.f32"
            envelope(by_index[track_plan.track_index], settings).tofile(env_path)
            inputs += ["-f", "f32le", "-ar", str(ENVELOPE_RATE), "-ac", "1", "-i", str(env_path)]
            env_input = len(plan.tracks) + n
            delay = int(round(track_plan.delay_s * rate))
            graph.append(
                f"[{n}:a:0]asetpts=PTS-STARTPTS,aresample={rate},aformat=sample_fmts=flt:channel_layouts=mono[t{n}];"
                f"[{env_input}:a]aresample={rate},aformat=sample_fmts=flt:channel_layouts=mono[e{n}];"
                f"[t{n}][e{n}]amultiply,volume={track_plan.gain_db:.2f}dB,"
                f"acompressor=threshold={10 ** (settings.compressor_threshold_db / 20):.5f}:"
                f"ratio={settings.compressor_ratio}:attack=10:release=200:knee=4,"
                f"adelay=delays={delay}S:all=1[m{n}]"
            )
        count = len(plan.tracks)
        summed = "".join(f"[m{n}]" for n in range(count))
        graph.append(
            f"{summed}amix=inputs={count}:normalize=0:duration=longest:dropout_transition=0,"
            f"atrim=start={plan.trim_start:.4f}:end={plan.trim_end:.4f},asetpts=PTS-STARTPTS,"
            f"ebur128=framelog=verbose[out]"
        )
        what = f"room {room.id!r}: mixing {count} tracks"
        stderr = run_ffmpeg(
            ["-v", "info", *inputs, "-filter_complex", ";".join(graph), "-map", "[out]",
             "-c:a", "pcm_f32le", "-ar", str(rate), "-rf64", "auto", "-f", "wav", str(out)],
            what=what, progress=progress,
        )
    loudness = parse_integrated(stderr)
    log.info("room %s: mixed %d tracks, %.1f s, %.1f LUFS before mastering", room.id, count, plan.duration, loudness)
    return MixResult(out, plan, loudness)
