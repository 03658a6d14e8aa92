"""Mastering and encoding: one gain to the loudness target, a limiter under the true-peak ceiling, MP3 + M4A
(+ optional Opus) with tags, cover art and embedded chapters: each format encoded in one ffmpeg pass, then tagged by
a stream copy of its audio.

The loudness and true peak are then measured on the encoded files themselves (encoders overshoot): when a file
misses the target by more than ``tolerance_lu`` or peaks above the ceiling, the pass is run again with the gain
corrected and the limiter lowered by the overshoot. ffmpeg's ``loudnorm`` is not used: it decodes twice, resamples
to 192 kHz and silently falls back to dynamic mode.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from mutagen.id3 import COMM, ID3, ID3NoHeaderError

from pipeline.audio import stream_pcm
from pipeline.chapters import Chapter
from pipeline.errors import MediaError
from pipeline.ffmpeg import run_ffmpeg
from pipeline.loudness import MEASURE_BLOCK_S, LoudnessReport, measure_blocks

log = logging.getLogger(__name__)

MONO_TARGET_LUFS = -19.0
STEREO_TARGET_LUFS = -16.0
MAX_PASSES = 4
# Our true-peak meter and ffmpeg's (which resamples to 192 kHz) differ by up to ~0.05 dB: keep clear of both.
TRUE_PEAK_MARGIN_DB = 0.1
# LAME's output measures about 0.4 LU below its input on speech (measured here on several rooms, any bitrate and
# lowpass); starting there usually saves a second MP3 pass. The encoded file is measured either way.
# libopus (voip, 48 kb/s) measures about 0.25 LU below the AAC file of the same pass, mono and stereo alike
# (measured on the generated test rooms); without the offset it missed by 0.49 LU and took a second pass.
ENCODER_OFFSET_LU = {"mp3": 0.4, "opus": 0.25}
# ffmpeg's AAC encoder overshoots the limiter by ~0.7 dB of true peak on speech (LAME by none): its limiter starts
# lower, so a long room does not need a second pass for a rare peak (a 3-hour room needed three).
ENCODER_PEAK_HEADROOM_DB = {"m4a": 0.5}
ISO639_2 = {"en": "eng", "fr": "fra", "de": "deu", "es": "spa", "it": "ita", "pt": "por", "nl": "nld", "ja": "jpn",
            "zh": "zho", "ru": "rus", "ar": "ara", "hi": "hin", "ko": "kor", "pl": "pol", "sv": "swe", "tr": "tur"}


# The mix is mono; ffmpeg spreads it over two channels at -3.01 dB each (the loudness, summed over channels, stays
# the same). A limiter working before that upmix holds peaks this much higher than the ceiling it is meant to keep
# in the stereo file: without it, stereo replays were limited 3 dB too hard (true peak -5.3 dBTP) and took four
# passes to climb to -16 LUFS.
STEREO_UPMIX_DB = 10 * math.log10(2)


def upmix_db(settings: MasterSettings) -> float:
    """How far below the mono mix each channel of the encoded file lies (0 for mono)."""
    return STEREO_UPMIX_DB if settings.channels == 2 else 0.0


def first_limiter(fmt: str, settings: MasterSettings) -> float:
    return settings.limiter_db - ENCODER_PEAK_HEADROOM_DB.get(fmt, 0.0)


@dataclass(frozen=True)
class MasterSettings:
    """Loudness target and encodings. Mono by default: a room is voices, and mono at -19 LUFS plays as loud as
    stereo at -16 on two speakers while needing half the bits.

    ``aac_coder="fast"``: ffmpeg's default AAC coder ('twoloop') took three times as long (12.1 s against 4.1 s for
    10 minutes of mono speech) and overshot true peak by up to 1.8 dB at some bitrates; at 96 kb/s mono speech
    the two are not told apart.

    ``mp3_quality=7``: LAME's fast setting (ffmpeg's ``compression_level``; 0 is its slowest, LAME's own default
    3). The MP3 was the slowest encoder of the mix, which waits for it: on 10 minutes of mono speech at 96 kb/s,
    3.4 s at 3, 2.3 s at 5 and 1.4 s at 7 (the AAC encoder: 1.7 s). Decoded, 7 is as close to the mix as 5: SNR
    25.7 against 25.0 dB (22.8 against 20.7 dB between 4 and 8 kHz; 2.6 against 5.7 dB above 12 kHz, where speech
    has little), PESQ wideband 4.61 against 4.59 over 8-s excerpts, the same loudness (0.4 LU under the mix) and
    true peak."""

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
    aac_coder: str = "fast"
    mp3_quality: int = 7

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
class Labels:
    """What a replay file carries besides its audio: its tags and chapters as an FFMETADATA file (``meta``, see
    :func:`ffmetadata`), and its cover."""

    meta: Path
    cover: Path | None
    comment: str = ""
    language: str = ""

    @classmethod
    def written(cls, folder: Path, tags: Tags, chapters: Sequence[Chapter], cover: Path | None) -> Labels:
        """The labels of ``tags``, ``chapters`` and ``cover``, their FFMETADATA file written in ``folder``."""
        meta = folder / "chapters.ffmeta"
        meta.write_text(ffmetadata(tags, chapters), encoding="utf-8")
        return cls(meta, cover, tags.comment, tags.language)


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


def master_formats(settings: MasterSettings) -> list[str]:
    return ["mp3", "m4a"] + (["opus"] if settings.opus else [])


@dataclass
class FormatState:
    """One format's way to the target: the gain and limiter of its next pass, and what was changed on the way."""

    fmt: str
    gain: float
    limiter: float
    notes: list[str] = field(default_factory=list)

    def judge(self, attempt: int, loudness: LoudnessReport, settings: MasterSettings, what: str) -> bool:
        """True when the encoded file is on target; otherwise correct the gain and lower the limiter by what the
        file missed, for the next pass."""
        miss = settings.target - loudness.integrated_lufs
        peak = loudness.true_peak_dbtp
        log.info("%s: %s pass %d: gain %.2f dB, limiter %.2f dB -> %.2f LUFS, true peak %.2f dBTP", what,
                 self.fmt, attempt, self.gain, self.limiter, loudness.integrated_lufs, peak)
        ceiling = settings.true_peak_db - TRUE_PEAK_MARGIN_DB
        if peak <= ceiling and abs(miss) <= settings.tolerance_lu:
            return True
        if peak > ceiling:
            self.limiter -= peak - ceiling + 0.2
            self.notes.append(f"{self.fmt} pass {attempt}: true peak {peak:.2f} dBTP, limiter lowered to "
                              f"{self.limiter:.2f} dB")
        if abs(miss) > settings.tolerance_lu:
            self.notes.append(f"{self.fmt} pass {attempt}: {loudness.integrated_lufs:.2f} LUFS, gain corrected by "
                              f"{miss:+.2f} dB")
        self.gain += miss
        return False

    def failure(self, loudness: LoudnessReport, settings: MasterSettings, what: str) -> MediaError:
        return MediaError(f"{what}: {self.fmt} could not reach {settings.target} LUFS / {settings.true_peak_db} dBTP "
                          f"in {MAX_PASSES} passes (last: {loudness.integrated_lufs:.2f} LUFS, "
                          f"{loudness.true_peak_dbtp:.2f} dBTP)")


def untagged(path: Path) -> Path:
    """Where the encoder writes the file that :func:`tag_and_measure` makes ``path`` of."""
    return path.with_name(f"{path.stem}.untagged{path.suffix}")


# The muxer (and its options) of each format's encoded file, which carries no tags yet (see tag_and_measure).
_FILE_MUXERS = {"mp3": ["-f", "mp3", "-id3v2_version", "0", "-write_xing", "1"], "m4a": ["-f", "mp4"],
                "opus": ["-f", "opus"]}


def encoder_args(source: list[str], path: Path, fmt: str, gain: float, limiter: float | None,
                 settings: MasterSettings) -> list[str]:
    """ffmpeg arguments encoding the mix (``source``: its input arguments, a file or ``pipe:0``) to ``path`` in
    ``fmt``: gain, limiter (None: the mix arrives limited), the format's codec and bitrate, and no tags (see
    :func:`tag_and_measure`). The encoder has the mix as its only input: with a second one (the tags), ffmpeg reads the
    mix on a thread through a packet queue, which cost about 0.5 s of CPU per encoder on a 10-minute room."""
    mono = settings.channels == 1
    layout = "mono" if mono else "stereo"
    chain = f"volume={gain:.3f}dB," if gain or limiter is not None else ""
    if limiter is not None:
        limiter = min(limiter + upmix_db(settings), 0.0)
        chain += f"alimiter=limit={10 ** (limiter / 20):.5f}:level=false:latency=true:attack=5:release=80,"
    chain += f"aformat=channel_layouts={layout}"
    args = [*source, "-map", "0:a", "-af", chain, "-map_metadata", "-1", "-ar", str(_output_rate(fmt, settings))]
    if fmt == "mp3":
        kbps = settings.mp3_kbps or (96 if mono else 128)
        args += ["-c:a", "libmp3lame", "-b:a", f"{kbps}k", "-compression_level", str(settings.mp3_quality)]
    elif fmt == "m4a":
        kbps = settings.aac_kbps or (96 if mono else 128)
        args += ["-c:a", "aac", "-aac_coder", settings.aac_coder, "-b:a", f"{kbps}k"]
    else:
        args += ["-c:a", "libopus", "-b:a", f"{settings.opus_kbps}k", "-application", "voip"]
    return [*args, *_FILE_MUXERS[fmt], str(path)]


def tag_and_measure(bare: Path, labels: Labels, path: Path, fmt: str, settings: MasterSettings, *,
                    what: str) -> LoudnessReport:
    """Make ``path`` of the encoded file ``bare`` by a stream copy that adds the tags, chapters and cover of
    ``labels`` (ID3v2.3 with CHAP/CTOC and APIC for MP3, MP4 chapters and cover for M4A with the index in front for
    playback while downloading), while another ffmpeg decodes ``bare`` for the meter (loudness and true peak, as
    :func:`pipeline.loudness.measure_file` measures a file). A stream copy leaves the samples as they are, encoder
    delay and padding included: the report is the tagged file's. (One ffmpeg doing both at once read its inputs
    through a packet queue, as ffmpeg does with more than one input, which cost about 0.4 s of CPU per 10 minutes.)"""
    rate, channels = _output_rate(fmt, settings), settings.channels
    blocks = stream_pcm(bare, what=f"{what}: measuring {fmt}", block_s=MEASURE_BLOCK_S, rate=rate, channels=channels,
                        failure="could not decode the encoded file")
    with ThreadPoolExecutor(max_workers=1) as pool:
        tagging = pool.submit(run_ffmpeg, ["-v", "error", *_tagging(bare, labels, path, fmt)],
                              what=f"{what}: tagging {fmt}")
        try:
            report = measure_blocks(blocks, rate=rate, channels=channels)
        finally:
            tagging.exception()  # the copy is waited for either way
        tagging.result()
    if fmt == "mp3" and labels.comment:
        id3_comment(path, labels.comment, labels.language)
    return report


def retag(published: Path, labels: Labels, path: Path, fmt: str, *, what: str) -> None:
    """Make ``path`` of the replay ``published`` with the tags, chapters and cover of ``labels`` instead of its own,
    by the same stream copy that first tagged it: its audio frames are kept byte for byte (a corrected title or a
    speaker's new name re-publishes the replay without encoding it)."""
    run_ffmpeg(["-v", "error", *_tagging(published, labels, path, fmt)], what=f"{what}: retagging {fmt}")
    if fmt == "mp3" and labels.comment:
        id3_comment(path, labels.comment, labels.language)


def id3_comment(path: Path, comment: str, language: str) -> None:
    """Give the MP3 its comment as the ID3 ``COMM`` frame players show (ffmpeg writes ``TXXX:comment``)."""
    try:
        tags = ID3(path)
        tags.delall("TXXX:comment")
        tags.setall("COMM", [COMM(encoding=3, lang=_iso639_2(language), desc="", text=[comment])])
        tags.save(path, v2_version=3)
    except (ID3NoHeaderError, OSError) as exc:
        raise MediaError(f"{path}: could not write its ID3 comment: {exc}") from exc


def _iso639_2(language: str) -> str:
    """The three-letter code ID3 wants for a language tag ("XXX": unknown)."""
    primary = language.split("-")[0].lower()
    return ISO639_2.get(primary, primary if len(primary) == 3 else "XXX")


def _output_rate(fmt: str, settings: MasterSettings) -> int:
    return 48_000 if fmt == "opus" else settings.sample_rate


def _tagging(bare: Path, labels: Labels, path: Path, fmt: str) -> list[str]:
    args = ["-i", str(bare), "-i", str(labels.meta)]
    if labels.cover is not None and fmt != "opus":
        # the stream comment is what ffmpeg's ID3 writer takes the APIC picture type from (3: front cover)
        args += ["-i", str(labels.cover), "-map", "2:v", "-c:v", "copy", "-disposition:v:0", "attached_pic",
                 "-metadata:s:v:0", "comment=Cover (front)"]
    args += ["-map", "0:a", "-c:a", "copy", "-map_metadata", "1", "-map_chapters", "1"]
    if fmt == "mp3":
        args += ["-id3v2_version", "3", "-write_xing", "1"]
    elif fmt == "m4a":
        args += ["-movflags", "+faststart"]
    return [*args, str(path)]
