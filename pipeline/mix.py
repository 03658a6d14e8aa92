"""Mixing: every consenting track placed at its offset, levelled on its speech, gated between phrases, summed.

Everything a track needs is decided from its analysis (:mod:`pipeline.analysis`) before any audio is mixed, and
folded into one gain curve per track (the *envelope*, at ENVELOPE_RATE):
1. a gate: 1 in speech regions, ``gate_floor_db`` between them, with short ramps, so N tracks do not add N noise
   floors and nobody's breathing or keyboard fills the gaps;
2. the track's gain, which brings its speech loudness to ``speech_level_lufs``: a quiet guest and a loud host end
   up at the same level;
3. a gentle leveller: where the track's short-term (400 ms) loudness rises more than ``compressor_threshold_lu``
   above the speech level, it is turned down by ``compressor_ratio`` (soft knee), the gain reduction reaching
   full depth before the loud stretch and letting go over 300 ms after it, so a laugh or a shout does not set the
   level. Being computed ahead of time it looks ahead: no overshoot on attacks, unlike a streaming compressor.

Because every gain is known, the mix's loudness is predicted from the tracks' K-weighted 100 ms energies (summed
on the room clock, gated as BS.1770 says), and mastering can apply its gain in the same ffmpeg pass that mixes.

The ffmpeg graph, per track: ``asetpts=PTS-STARTPTS`` (the manifest's ``start`` places the first sample, whatever
the container's start time says), resampling, the envelope multiplied in, ``adelay`` by the offset in samples;
then ``amix`` and ``atrim`` to the part of the room that holds speech (dead air before the first word and after
the last is cut, and the shift is recorded in the plan).
"""

from __future__ import annotations

import functools
import logging
import math
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.analysis import TrackAnalysis
from pipeline.ffmpeg import FFMPEG, ProgressCallback, run_ffmpeg
from pipeline.loudness import SILENCE_LUFS, STEP_S, gated_loudness, parse_integrated
from pipeline.manifest import Room

log = logging.getLogger(__name__)

ENVELOPE_RATE = 200  # Hz: fine enough for 30 ms ramps, small enough for a 3-hour track (8.6 MB)
MAX_TRACK_GAIN_DB = 30.0
# The envelope is brought to the mixing rate by libsoxr at 16-bit precision: within 0.01 of a straight line
# between its points, the same mean gain, and about 30 % cheaper than ffmpeg's own resampler with a short (8-tap)
# filter, the fallback where ffmpeg lacks libsoxr (shorter filters lose gain: 2 taps, -3 dB).
ENVELOPE_RESAMPLE = "resampler=soxr:precision=16"
ENVELOPE_RESAMPLE_FALLBACK = "filter_size=8:linear_interp=1"


@functools.cache
def envelope_resampler() -> str:
    """The aresample options for envelopes that this ffmpeg supports (asked once per process)."""
    probe = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
             f"anullsrc=r={ENVELOPE_RATE}:cl=mono", "-t", "0.1", "-af", f"aresample=44100:{ENVELOPE_RESAMPLE}",
             "-f", "null", "-"]
    try:
        works = subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    return ENVELOPE_RESAMPLE if works else ENVELOPE_RESAMPLE_FALLBACK


@dataclass(frozen=True)
class MixSettings:
    """How tracks are levelled and gated. Defaults suit close-miked voices in a live audio room."""

    sample_rate: int = 44_100
    speech_level_lufs: float = -24.0
    gate_floor_db: float = -40.0
    gate_attack_s: float = 0.04
    gate_release_s: float = 0.25
    compressor_threshold_lu: float = 4.0
    compressor_ratio: float = 2.5
    compressor_knee_lu: float = 4.0
    lead_in_s: float = 0.5
    tail_s: float = 1.0


@dataclass(frozen=True)
class TrackPlan:
    track_index: int
    gain_db: float
    delay_s: float


@dataclass(frozen=True)
class MixPlan:
    """Where every track goes and how loud; ``trim_start``/``trim_end`` bound the replay on the room clock;
    ``predicted_lufs`` is the integrated loudness the mix will measure (before mastering)."""

    tracks: tuple[TrackPlan, ...]
    trim_start: float
    trim_end: float
    predicted_lufs: float = SILENCE_LUFS

    @property
    def duration(self) -> float:
        return self.trim_end - self.trim_start


@dataclass(frozen=True)
class MixResult:
    path: Path
    plan: MixPlan
    loudness_lufs: float


def track_gain(analysis: TrackAnalysis, settings: MixSettings) -> float:
    if analysis.speech_lufs <= SILENCE_LUFS:
        return 0.0
    return round(max(-MAX_TRACK_GAIN_DB, min(MAX_TRACK_GAIN_DB, settings.speech_level_lufs - analysis.speech_lufs)), 2)


def plan_mix(room: Room, analyses: Sequence[TrackAnalysis], settings: MixSettings = MixSettings()) -> MixPlan:
    """Gains and delays for every consenting track, the window of the room that holds speech, and the loudness
    the mix will have."""
    allowed = {t.index for t in room.published_tracks}
    used = [a for a in analyses if a.track_index in allowed]
    plans = tuple(TrackPlan(a.track_index, track_gain(a, settings), a.start) for a in used)
    starts = [a.start + a.regions[0].start for a in used if a.regions]
    ends = [a.start + a.regions[-1].end for a in used if a.regions]
    room_end = max((a.start + a.duration for a in used), default=0.0)
    trim_start = max(0.0, min(starts) - settings.lead_in_s) if starts else 0.0
    trim_end = min(room_end, max(ends) + settings.tail_s) if ends else room_end
    plan = MixPlan(plans, round(trim_start, 3), round(trim_end, 3))
    return MixPlan(plans, plan.trim_start, plan.trim_end, round(predict_loudness(used, plan, settings), 2))


def predict_loudness(analyses: Sequence[TrackAnalysis], plan: MixPlan, settings: MixSettings) -> float:
    """Integrated loudness of the mix: each track's K-weighted step energies times its envelope's mean square,
    summed on the room clock (voices are uncorrelated, so energies add), gated over the trimmed window."""
    first = int(math.floor(plan.trim_start / STEP_S))
    size = max(0, int(math.ceil(plan.trim_end / STEP_S)) - first)
    room = np.zeros(size, dtype=np.float64)
    per_step = int(round(ENVELOPE_RATE * STEP_S))
    for analysis in analyses:
        energies = analysis.step_energies()
        if energies.size == 0:
            continue
        env = envelope(analysis, settings)
        power = np.square(env[:energies.size * per_step].astype(np.float64))
        power = np.pad(power, (0, energies.size * per_step - power.size), mode="edge")
        processed = energies * power.reshape(-1, per_step).mean(axis=1)
        at = int(round(analysis.start / STEP_S)) - first
        lo, hi = max(0, at), min(size, at + processed.size)
        if hi > lo:
            room[lo:hi] += processed[lo - at:hi - at]
    if room.size < 4:
        return SILENCE_LUFS
    return gated_loudness(np.convolve(room, np.ones(4) / 4, mode="valid"))


def gate(analysis: TrackAnalysis, settings: MixSettings) -> np.ndarray:
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


def leveller(analysis: TrackAnalysis, gain_db: float, settings: MixSettings) -> np.ndarray:
    """Gain reduction (dB, <= 0) of every 100 ms step, from the short-term loudness the track has after
    ``gain_db``: a soft-knee ratio above ``speech_level + compressor_threshold_lu``, held 200 ms either side of a
    loud step and smoothed over 300 ms, so it is at full depth before the loud stretch begins."""
    energies = analysis.step_energies()
    if energies.size == 0 or settings.compressor_ratio <= 1.0:
        return np.zeros(energies.size)
    short_term = np.convolve(energies, np.ones(4) / 4, mode="same")
    loudness = -0.691 + 10 * np.log10(np.maximum(short_term, 1e-30)) + gain_db
    over = loudness - (settings.speech_level_lufs + settings.compressor_threshold_lu)
    slope, knee = 1 / settings.compressor_ratio - 1, settings.compressor_knee_lu
    reduction = np.where(over <= -knee / 2, 0.0,
                         np.where(over >= knee / 2, slope * over, slope * (over + knee / 2) ** 2 / (2 * knee)))
    padded = np.pad(reduction, 2, mode="edge")
    deepest = np.min(np.stack([padded[i:i + reduction.size] for i in range(5)]), axis=0)  # held 200 ms either side
    smoothed: np.ndarray = np.convolve(np.pad(deepest, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    return np.minimum(smoothed, 0.0)


def envelope(analysis: TrackAnalysis, settings: MixSettings) -> np.ndarray:
    """The whole gain curve of a track at ENVELOPE_RATE: gate, speech-level gain and leveller."""
    gain_db = track_gain(analysis, settings)
    env = gate(analysis, settings) * np.float32(10 ** (gain_db / 20))
    reduction = leveller(analysis, gain_db, settings)
    if reduction.size and reduction.min() < 0:
        centres = (np.arange(reduction.size) + 0.5) * STEP_S
        times = np.arange(env.size) / ENVELOPE_RATE
        env *= np.power(10.0, np.interp(times, centres, reduction) / 20).astype(np.float32)
    return env


def mix_graph(room: Room, plan: MixPlan, analyses: Sequence[TrackAnalysis], settings: MixSettings,
              folder: Path, out_label: str = "mix") -> tuple[list[str], str]:
    """ffmpeg inputs and filter graph that mix ``plan`` into the label ``[out_label]``, with the envelopes written
    into ``folder``. The graph ends after the trim: callers add mastering and outputs."""
    by_index = {a.track_index: a for a in analyses}
    tracks = {t.index: t for t in room.tracks}
    rate = settings.sample_rate
    inputs: list[str] = []
    for track_plan in plan.tracks:
        inputs += ["-i", str(tracks[track_plan.track_index].path)]
    graph: list[str] = []
    resampler = envelope_resampler()
    for n, track_plan in enumerate(plan.tracks):
        env_path = folder / f"env{n}.f32"
        envelope(by_index[track_plan.track_index], settings).tofile(env_path)
        inputs += ["-f", "f32le", "-ar", str(ENVELOPE_RATE), "-ac", "1", "-i", str(env_path)]
        env_input = len(plan.tracks) + n
        delay = int(round(track_plan.delay_s * rate))
        graph.append(
            f"[{n}:a:0]asetpts=PTS-STARTPTS,aresample={rate},aformat=sample_fmts=flt:channel_layouts=mono[t{n}];"
            f"[{env_input}:a]aresample={rate}:{resampler},aformat=sample_fmts=flt:channel_layouts=mono[e{n}];"
            f"[t{n}][e{n}]amultiply,adelay=delays={delay}S:all=1[m{n}]"
        )
    count = len(plan.tracks)
    summed = "".join(f"[m{n}]" for n in range(count))
    graph.append(
        f"{summed}amix=inputs={count}:normalize=0:duration=longest:dropout_transition=0,"
        f"atrim=start={plan.trim_start:.4f}:end={plan.trim_end:.4f},asetpts=PTS-STARTPTS,"
        # one-second frames: a pipe to the encoders carries a few large writes, not thousands of small ones
        f"asetnsamples=n={rate}:p=0[{out_label}]"
    )
    return inputs, ";".join(graph)


def mix(room: Room, analyses: Sequence[TrackAnalysis], out: Path, *, settings: MixSettings = MixSettings(),
        progress: ProgressCallback | None = None) -> MixResult:
    """Write the levelled, gated, aligned and trimmed mix of ``room`` to ``out`` (float WAV, mono), measured.
    (Publishing mixes and masters in one pass: :func:`pipeline.replay.render_replay`.)"""
    plan = plan_mix(room, analyses, settings)
    with tempfile.TemporaryDirectory(prefix="roomcast-mix-") as tmp:
        inputs, graph = mix_graph(room, plan, analyses, settings, Path(tmp))
        stderr = run_ffmpeg(
            ["-v", "info", *inputs, "-filter_complex", f"{graph};[mix]ebur128=framelog=verbose[out]",
             "-map", "[out]", "-c:a", "pcm_f32le", "-ar", str(settings.sample_rate), "-rf64", "auto", "-f", "wav",
             str(out)],
            what=f"room {room.id!r}: mixing {len(plan.tracks)} tracks", progress=progress,
        )
    loudness = parse_integrated(stderr)
    log.info("room %s: mixed %d tracks, %.1f s, %.2f LUFS (predicted %.2f)", room.id, len(plan.tracks),
             plan.duration, loudness, plan.predicted_lufs)
    return MixResult(out, plan, loudness)
