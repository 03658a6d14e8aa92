"""From tracks to a mastered, encoded replay in one pass.

One ffmpeg process decodes every track once, applies each track's envelope (gate, levelling; :mod:`pipeline.mix`),
sums, trims and streams the mix out; each format's encoder (:func:`pipeline.master.encode`: gain, true-peak
limiter, tags, chapters, cover) reads that stream in its own process, so decoding, mixing and every encoder run
side by side. The mastering gain comes from the loudness the plan predicts; the same pass measures the mix and
keeps a lossless copy of it, and every encoded file is then measured: a format that misses the target (loudness
or true peak) is encoded again from the kept mix with its gain corrected (:func:`pipeline.master.master`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.analysis import TrackAnalysis
from pipeline.chapters import Chapter
from pipeline.ffmpeg import ProgressCallback, tee_ffmpeg
from pipeline.loudness import parse_integrated
from pipeline.manifest import Room
from pipeline.master import (
    ENCODER_OFFSET_LU,
    MasterResult,
    MasterSettings,
    Tags,
    encode,
    ffmetadata,
    master,
    master_formats,
)
from pipeline.mix import MixPlan, MixSettings, mix_graph, plan_mix

log = logging.getLogger(__name__)


def render_replay(room: Room, analyses: Sequence[TrackAnalysis], out_dir: Path, *, tags: Tags,
                  chapters: Sequence[Chapter], cover: Path | None = None, plan: MixPlan | None = None,
                  mix_settings: MixSettings = MixSettings(), settings: MasterSettings = MasterSettings(),
                  progress: ProgressCallback | None = None) -> tuple[MixPlan, float, MasterResult]:
    """Mix ``room`` and write ``out_dir/replay.mp3``, ``replay.m4a`` (and ``replay.opus``) on target.
    Returns the plan, the measured loudness of the mix before mastering, and the mastering result."""
    what = f"room {room.id!r}"
    plan = plan or plan_mix(room, analyses, mix_settings)
    formats = master_formats(settings)
    rate = mix_settings.sample_rate
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="roomcast-replay-", dir=out_dir) as folder:
        tmp = Path(folder)
        meta = tmp / "chapters.ffmeta"
        meta.write_text(ffmetadata(tags, chapters), encoding="utf-8")
        inputs, graph = mix_graph(room, plan, analyses, mix_settings, tmp)
        kept = tmp / "mix.wav"
        source = ["-v", "info", *inputs, "-filter_complex",
                  f"{graph};[mix]asplit=2[live][copy];[copy]ebur128=framelog=verbose[kept]",
                  "-map", "[live]", "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1",
                  "-map", "[kept]", "-c:a", "pcm_f32le", "-rf64", "auto", "-f", "wav", str(kept)]
        stream = ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0"]
        gains = {fmt: settings.target - plan.predicted_lufs + ENCODER_OFFSET_LU.get(fmt, 0.0) for fmt in formats}
        firsts = {fmt: tmp / f"first.{fmt}" for fmt in formats}
        sinks = [encode(stream, meta, cover, firsts[fmt], fmt, gains[fmt], settings.limiter_db, settings, what,
                        run=False) for fmt in formats]
        mix_stderr, _ = tee_ffmpeg(source, sinks, what=f"{what}: mixing {len(plan.tracks)} tracks",
                                   sink_whats=[f"{what}: encoding {fmt}" for fmt in formats],
                                   bytes_per_second=4.0 * rate, progress=progress)
        measured = parse_integrated(mix_stderr)
        log.info("%s: mixed %d tracks, %.1f s; mix loudness %.2f LUFS, predicted %.2f", what, len(plan.tracks),
                 plan.duration, measured, plan.predicted_lufs)
        result = master(kept, measured, out_dir, tags=tags, chapters=chapters, cover=cover, settings=settings,
                        what=what, progress=progress, first={fmt: (firsts[fmt], gains[fmt]) for fmt in formats})
    return plan, measured, result
