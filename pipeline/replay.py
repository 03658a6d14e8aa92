"""From tracks to a mastered, encoded replay in one pass.

Every track is decoded once, by its own ffmpeg process (or read from the copy its analysis kept), mixed here
with its envelope (gate, levelling; :func:`pipeline.mix.mixed_blocks`), brought to the mastering gain and held
under the peak ceiling (:mod:`pipeline.limiter`) once for every format; each format's encoder
(:func:`pipeline.master.encoder_args`) reads the result from its stdin in its own process, so mixing and every
encoder run side by side and nothing is written but the replay files. The mastering gain comes from the loudness
the plan predicts. As each encoder ends, its file is tagged (tags, chapters, cover) and measured (loudness and
true peak, encoder overshoot included): :func:`pipeline.master.tag_and_measure`. A format that misses is rendered
again, alone, with its gain corrected and its limiter lowered.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.analysis import TrackAnalysis
from pipeline.audio import PcmCopy
from pipeline.chapters import Chapter
from pipeline.ffmpeg import ProgressCallback, pipe_to_ffmpeg
from pipeline.limiter import limited
from pipeline.loudness import LoudnessReport
from pipeline.master import (
    ENCODER_OFFSET_LU,
    MAX_PASSES,
    EncodedFile,
    FormatState,
    Labels,
    MasterResult,
    MasterSettings,
    Tags,
    encoder_args,
    first_limiter,
    master_formats,
    tag_and_measure,
    untagged,
    upmix_db,
)
from pipeline.mix import MixPlan, MixSettings, mixed_blocks, plan_mix
from pipeline.room import Room

log = logging.getLogger(__name__)


def render_replay(room: Room, analyses: Sequence[TrackAnalysis], out_dir: Path, *, tags: Tags,
                  chapters: Sequence[Chapter], cover: Path | None = None, plan: MixPlan | None = None,
                  mix_settings: MixSettings = MixSettings(), settings: MasterSettings = MasterSettings(),
                  progress: ProgressCallback | None = None,
                  copies: Mapping[int, PcmCopy] | None = None,
                  transform: Callable[[Iterator[np.ndarray]], Iterator[np.ndarray]] | None = None,
                  ) -> tuple[MixPlan, MasterResult]:
    """Mix ``room`` and write ``out_dir/replay.mp3``, ``replay.m4a`` (and ``replay.opus``) on target.
    ``copies``: tracks the analysis kept decoded at the mixing rate (by track index), read instead of decoded.
    ``transform``: what is done to the mix before it is mastered (an edit's cuts and bleeps)."""
    what = f"room {room.id!r}"
    plan = plan or plan_mix(room, analyses, mix_settings)
    gain = settings.target - plan.predicted_lufs
    states = {fmt: FormatState(fmt, gain + ENCODER_OFFSET_LU.get(fmt, 0.0), first_limiter(fmt, settings))
              for fmt in master_formats(settings)}
    done: dict[str, tuple[EncodedFile, int]] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="roomcast-replay-", dir=out_dir) as folder:
        tmp = Path(folder)
        labels = Labels.written(tmp, tags, chapters, cover)
        stream = ["-f", "f32le", "-ar", str(mix_settings.sample_rate), "-ac", "1", "-i", "pipe:0"]
        reports: dict[str, LoudnessReport] = {}
        for attempt in range(1, MAX_PASSES + 1):
            todo = [states[fmt] for fmt in states if fmt not in done]
            if not todo:
                break
            paths = {s.fmt: tmp / f"pass{attempt}.{s.fmt}" for s in todo}
            # one gain and limiter for every format in this pass (the lowest ceiling any of them needs); a format
            # that wants more gain gets the difference in its encoder, after the limiter
            common = min(s.gain for s in todo)
            ceiling = min(s.limiter - (s.gain - common) for s in todo)
            sinks = [encoder_args(stream, untagged(paths[s.fmt]), s.fmt, s.gain - common, None, settings)
                     for s in todo]
            mixed = mixed_blocks(room, plan, analyses, mix_settings, what=what, copies=copies)
            if transform is not None:
                mixed = transform(mixed)
            reports.update(_encode_and_measure(
                limited(mixed, common, ceiling + upmix_db(settings), mix_settings.sample_rate), sinks,
                [(state.fmt, paths[state.fmt]) for state in todo], labels=labels, settings=settings,
                rate=mix_settings.sample_rate, what=what, progress=progress if attempt == 1 else None))
            for state in todo:
                if state.judge(attempt, reports[state.fmt], settings, what):
                    done[state.fmt] = (EncodedFile(paths[state.fmt], state.fmt, reports[state.fmt]), attempt)
        missing = [states[fmt] for fmt in states if fmt not in done]
        if missing:
            raise missing[0].failure(reports[missing[0].fmt], settings, what)
        files = []
        for fmt in states:
            encoded, _ = done[fmt]
            target = out_dir / f"replay.{fmt}"
            os.replace(encoded.path, target)
            files.append(EncodedFile(target, fmt, encoded.loudness))
    lead = next(iter(states.values()))
    log.info("%s: mixed %d tracks, %.1f s, predicted mix loudness %.2f LUFS", what, len(plan.tracks), plan.duration,
             plan.predicted_lufs)
    return plan, MasterResult(tuple(files), round(lead.gain, 2), round(lead.limiter, 2),
                              max(passes for _, passes in done.values()),
                              notes=tuple(n for s in states.values() for n in s.notes))


def _encode_and_measure(blocks: Iterator[np.ndarray], sinks: list[list[str]], files: list[tuple[str, Path]], *,
                        labels: Labels, settings: MasterSettings, rate: int, what: str,
                        progress: ProgressCallback | None) -> dict[str, LoudnessReport]:
    """Feed the mix to every encoder; as soon as one is done (while a slower encoder still runs), tag its file and
    measure it (:func:`pipeline.master.tag_and_measure`)."""
    def finish(fmt: str, path: Path) -> LoudnessReport:
        report = tag_and_measure(untagged(path), labels, path, fmt, settings, what=what)
        untagged(path).unlink(missing_ok=True)
        return report

    measuring: dict[str, Future[LoudnessReport]] = {}
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        def done(index: int) -> None:
            measuring[files[index][0]] = pool.submit(finish, *files[index])

        pipe_to_ffmpeg(blocks, sinks, sink_whats=[f"{what}: encoding {fmt}" for fmt, _ in files],
                       bytes_per_second=4.0 * rate, progress=progress, on_exit=done)
        return {fmt: future.result() for fmt, future in measuring.items()}
