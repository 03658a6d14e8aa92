"""Mastering and encoding: one gain to the loudness target, a limiter under the true-peak ceiling, MP3 + M4A
(+ optional Opus) with tags, cover art and embedded chapters, all from one ffmpeg pass.

The loudness and true peak are then measured on the encoded files themselves (encoders overshoot): when a file
misses the target by more than ``tolerance_lu`` or peaks above the ceiling, the pass is run again with the gain
corrected and the limiter lowered by the overshoot. ffmpeg's ``loudnorm`` is not used: it decodes twice, resamples
to 192 kHz and silently falls back to dynamic mode.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.chapters import Chapter
from pipeline.errors import MediaError
from pipeline.ffmpeg import ProgressCallback, run_ffmpeg
from pipeline.loudness import LoudnessReport, measure_file

log = logging.getLogger(__name__)

MONO_TARGET_LUFS = -19.0
STEREO_TARGET_LUFS = -16.0
MAX_PASSES = 4


@dataclass(frozen=True)
class MasterSettings:
    """Loudness target and encodings. Mono by default: a room is voices, and mono at -19 LUFS plays as loud as
    stereo at -16 on two speakers while needing half the bits."""

    channels: int = 1
    target_lufs: float | None = None  # None: -19 LUFS mono, -16 LUFS stereo
    true_peak_db: float = -1.0
    limiter_db: float = -2.0
    tolerance_lu: float = 0.4
    sample_rate: int = 44_100
    mp3_kbps: int | None = None  # None: 96 mono, 128 stereo
    aac_kbps: int | None = None  # None: 96 mono, 128 stereo
    opus: bool = False
    opus_kbps: int = 48

    @property
    def target(self) -> float:
        if self.target_lufs is not None:
            return self.target_lufs
        return MONO_TARGET_LUFS if self.channels == 1 else STEREO_TARGET_LUFS


@dataclass(frozen=True)
class Tags:
    title: str
    artist: str
    album: str
    date: str = ""
    comment: str = ""
    language: str = ""


@dataclass(frozen=True)
class EncodedFile:
    path: Path
    format: str
    loudness: LoudnessReport


@dataclass(frozen=True)
class MasterResult:
    files: tuple[EncodedFile, ...]
    gain_db: float
    limiter_db: float
    passes: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def file(self, fmt: str) -> EncodedFile:
        return next(f for f in self.files if f.format == fmt)


def ffmetadata(tags: Tags, chapters: Sequence[Chapter]) -> str:
    """An FFMETADATA1 document carrying the tags and chapters (ffmpeg writes ID3 CHAP/CTOC and MP4 chapters)."""
    def esc(text: str) -> str:
        for char in ("\\", "=", ";", "#", "\n"):
            text = text.replace(char, "\\" + char)
        return text

    lines = [";FFMETADATA1", f"title={esc(tags.title)}", f"artist={esc(tags.artist)}", f"album={esc(tags.album)}"]
    if tags.date:
        lines.append(f"date={esc(tags.date)}")
    if tags.comment:
        lines.append(f"comment={esc(tags.comment)}")
    for chapter in chapters:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={int(round(chapter.start * 1000))}",
                  f"END={int(round(chapter.end * 1000))}", f"title={esc(chapter.title)}"]
    return "\n".join(lines) + "\n"


def master(mix_path: Path, mix_lufs: float, out_dir: Path, *, tags: Tags, chapters: Sequence[Chapter],
           cover: Path | None = None, settings: MasterSettings = MasterSettings(), what: str,
           progress: ProgressCallback | None = None) -> MasterResult:
    """Encode ``mix_path`` to ``out_dir/replay.mp3`` and ``replay.m4a`` (and ``replay.opus``) at the target."""
    gain = settings.target - mix_lufs
    limiter = settings.limiter_db
    notes: list[str] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="roomcast-master-", dir=out_dir) as tmp:
        meta = Path(tmp) / "chapters.ffmeta"
        meta.write_text(ffmetadata(tags, chapters), encoding="utf-8")
        safe: set[str] = set()
        previous: dict[str, float] = {}
        for attempt in range(1, MAX_PASSES + 1):
            outputs = _encode(mix_path, meta, cover, Path(tmp), gain, limiter, settings, what, progress,
                              frozenset(safe))
            files = tuple(EncodedFile(p, fmt, measure_file(p, what=f"{what}: measuring {p.name}"))
                          for fmt, p in outputs)
            worst_peak = max(f.loudness.true_peak_dbtp for f in files)
            mean_lufs = sum(f.loudness.integrated_lufs for f in files) / len(files)
            error = settings.target - mean_lufs
            worst_miss = max(abs(settings.target - f.loudness.integrated_lufs) for f in files)
            log.info("%s: pass %d: gain %.2f dB, limiter %.2f dB -> %.2f LUFS, true peak %.2f dBTP", what, attempt,
                     gain, limiter, mean_lufs, worst_peak)
            if worst_peak <= settings.true_peak_db and worst_miss <= settings.tolerance_lu:
                break
            if attempt == MAX_PASSES:
                raise MediaError(f"{what}: could not reach {settings.target} LUFS / {settings.true_peak_db} dBTP in "
                                 f"{MAX_PASSES} passes (last: {mean_lufs:.2f} LUFS, {worst_peak:.2f} dBTP)")
            for f in files:
                peak = f.loudness.true_peak_dbtp
                if peak > settings.true_peak_db and previous.get(f.format, -99.0) >= peak - 0.1:
                    safe.add(f.format)  # a lower limiter did not help: an encoder overshoot, not the signal
                    notes.append(f"pass {attempt}: {f.format} overshoots whatever the limiter; safe encoder mode")
                previous[f.format] = peak
            if worst_peak > settings.true_peak_db:
                limiter -= worst_peak - settings.true_peak_db + 0.2
                notes.append(f"pass {attempt}: true peak {worst_peak:.2f} dBTP, limiter lowered to {limiter:.2f} dB")
            gain += error
        final = []
        for f in files:
            target = out_dir / f"replay.{f.format}"
            os.replace(f.path, target)
            final.append(EncodedFile(target, f.format, f.loudness))
    return MasterResult(tuple(final), round(gain, 2), round(limiter, 2), attempt, notes=tuple(notes))


def _encode(mix_path: Path, meta: Path, cover: Path | None, tmp: Path, gain: float, limiter: float,
            settings: MasterSettings, what: str, progress: ProgressCallback | None,
            safe: frozenset[str] = frozenset()) -> list[tuple[str, Path]]:
    """One ffmpeg pass: gain, limiter, then every format. Formats in ``safe`` use their most conservative
    encoder mode (ffmpeg's AAC 'twoloop' coder occasionally overshoots by ~2 dB at some bitrates)."""
    mono = settings.channels == 1
    formats = ["mp3", "m4a"] + (["opus"] if settings.opus else [])
    limit = 10 ** (limiter / 20)
    layout = "mono" if mono else "stereo"
    chain = (f"[0:a]volume={gain:.3f}dB,alimiter=limit={limit:.5f}:level=false:latency=true:attack=5:release=80,"
             f"aformat=channel_layouts={layout},asplit={len(formats)}" + "".join(f"[{f}]" for f in formats))
    args = ["-i", str(mix_path), "-i", str(meta)]
    if cover is not None:
        args += ["-i", str(cover)]
    args += ["-filter_complex", chain]
    outputs = []
    for fmt in formats:
        path = tmp / f"replay.{fmt}"
        args += ["-map", f"[{fmt}]", "-map_metadata", "1", "-map_chapters", "1", "-ar",
                 str(48_000 if fmt == "opus" else settings.sample_rate)]
        if cover is not None and fmt != "opus":
            args += ["-map", "2:v", "-c:v", "copy", "-disposition:v:0", "attached_pic"]
        if fmt == "mp3":
            kbps = settings.mp3_kbps or (96 if mono else 128)
            args += ["-c:a", "libmp3lame", "-b:a", f"{kbps}k", "-id3v2_version", "3", "-write_xing", "1"]
        elif fmt == "m4a":
            kbps = settings.aac_kbps or (96 if mono else 128)
            args += ["-c:a", "aac", "-b:a", f"{kbps}k", "-movflags", "+faststart"]
            if "m4a" in safe:
                args += ["-aac_coder", "fast"]
        else:
            args += ["-c:a", "libopus", "-b:a", f"{settings.opus_kbps}k", "-application", "voip"]
        args.append(str(path))
        outputs.append((fmt, path))
    run_ffmpeg(args, what=f"{what}: encoding", progress=progress)
    return outputs
