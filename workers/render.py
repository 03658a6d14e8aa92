"""Rendering a room's outputs in a local workspace: the mix, chapters, the mastered replay and the transcripts."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from feeds.shows import show_config
from pipeline import formats
from pipeline.analysis import TrackAnalysis
from pipeline.audio import PcmCopy
from pipeline.bleed import remove_bleed, room_audio
from pipeline.chapters import Chapter, build_chapters, intervals_from_transcript
from pipeline.consent import DeclinedVoices, room_consent
from pipeline.master import Labels, MasterResult, MasterSettings, Tags, retag
from pipeline.mix import MixSettings, plan_mix
from pipeline.replay import render_replay
from pipeline.room import Room
from pipeline.transcript import TrackTranscript, Transcript, merge
from storage.catalog import Catalog
from workers.config import Settings
from workers.progress import notify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """Files ready to publish (name in the storage layout -> local path) and what the feed needs to know."""

    files: dict[str, Path]
    duration_s: float
    trim_start_s: float
    chapters: tuple[Chapter, ...]
    transcript: Transcript | None
    master: MasterResult


def write_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def speech_intervals(room: Room, analyses: Sequence[TrackAnalysis], shift: float) -> list[tuple[str, float, float]]:
    """Every consenting speaker's speech regions on the replay clock."""
    allowed = room_consent(room).track_indices
    return sorted(
        (a.speaker, max(0.0, a.start + r.start + shift), max(0.0, a.start + r.end + shift))
        for a in analyses if a.track_index in allowed for r in a.regions
    )


def master_settings(settings: Settings, show_id: str) -> MasterSettings:
    """Encoding for a show: its ``shows.toml`` table where it says, the roomcast settings otherwise."""
    show = show_config(show_id, settings.shows_config)
    return MasterSettings(channels=show.channels or settings.channels, mp3_kbps=show.mp3_kbps,
                          aac_kbps=show.aac_kbps, opus=show.opus or settings.opus)


def show_title(settings: Settings, catalog: Catalog, show_id: str) -> str:
    """The show's title as its feed gives it (the album of its replays)."""
    show = catalog.get_show(show_id)
    return show.title if show else show_config(show_id, settings.shows_config).title


def render_room(settings: Settings, catalog: Catalog, room: Room,
                results: Sequence[tuple[TrackAnalysis, TrackTranscript | None]], workspace: Path,
                *, language: str | None, cover: Path | None = None,
                copies: Mapping[int, PcmCopy] | None = None,
                turns: Sequence[tuple[str, float, float]] | None = None,
                replays: Mapping[str, Path] | None = None) -> Rendered:
    """``turns``: a mixed recording's speaker turns (room clock), found by voice; its transcripts already carry
    each word's speaker, with declined voices' words left out. ``replays``: the room's replays as published from
    the same inputs (replay first), re-tagged with this rendering's tags and chapters instead of mixed again."""
    consent = room_consent(room)
    names = consent.names  # declined speakers never reach any output
    what = f"room {room.id!r}"
    declined = DeclinedVoices(consent, what=what)
    tracks = {t.index: t for t in room.tracks}
    # A declined voice heard on a consenting microphone is silenced there (mixed rooms have theirs already muted).
    analyses = [replace(a, muted=a.muted + declined.muted(tracks[a.track_index])) for a, _ in results]

    def progress(stage: str, total: float):
        def report(seconds: float) -> None:
            notify(room.id, stage, min(1.0, seconds / total) if total > 0 else None)
        return report

    plan = plan_mix(room, analyses, MixSettings())
    shift = -plan.trim_start
    duration = plan.duration

    transcript: Transcript | None = None
    if all(t is not None for _, t in results) and settings.transcribe:
        if room.is_mixed:
            consenting = [t for _, t in results if t is not None]
        else:
            heard = declined.words([t for _, t in results if t is not None])
            consenting = remove_bleed(heard, room_audio(room))
        transcript = merge(consenting, names, language or room.language or "en").shifted(shift)
    if transcript is not None and transcript.segments:
        intervals = intervals_from_transcript(transcript)
    elif turns is not None:
        intervals = sorted((who, max(0.0, a + shift), max(0.0, b + shift))
                           for who, a, b in turns if consent.allows(who))
    else:
        intervals = speech_intervals(room, analyses, shift)
    chapters = tuple(build_chapters(intervals, duration, speaker_names=names,
                                    min_chapter_s=settings.min_chapter_s, transcript=transcript))

    stage = "re-tagging the replay" if replays else "mixing and encoding"
    catalog.set_stage(room.id, stage, 0.0)
    notify(room.id, stage, 0.0)
    consenting_names = [s.name for s in consent.speakers]
    tags = Tags(
        title=room.title, artist=", ".join(consenting_names), album=show_title(settings, catalog, room.show),
        date=room.recorded_at.strftime("%Y-%m-%d") if room.recorded_at else "",
        comment=room.description, language=language or room.language or "",
    )
    files: dict[str, Path] = {}
    if replays:
        labels = Labels.written(workspace, tags, chapters, cover)
        for name, published in sorted(replays.items()):
            files[name] = workspace / name
            retag(published, labels, files[name], Path(name).suffix[1:], what=what)
        mastered = MasterResult((), 0.0, 0.0, 0)
    else:
        _plan, mastered = render_replay(
            room, analyses, workspace, tags=tags, chapters=chapters, cover=cover, plan=plan,
            settings=master_settings(settings, room.show), progress=progress("mixing and encoding", duration),
            copies=copies)
        files.update({f"replay.{f.format}": f.path for f in mastered.files})
    files["chapters.json"] = write_atomic(workspace / "chapters.json", formats.chapters_json(chapters))
    if transcript is not None:
        files["transcript.json"] = write_atomic(workspace / "transcript.json", formats.podcast_json(transcript))
        files["transcript.vtt"] = write_atomic(workspace / "transcript.vtt", formats.webvtt(transcript))
        files["transcript.srt"] = write_atomic(workspace / "transcript.srt", formats.srt(transcript))
        files["transcript.txt"] = write_atomic(workspace / "transcript.txt",
                                               formats.plain_text(transcript, title=room.title))
        files["words.json"] = write_atomic(workspace / "words.json", formats.words_json(transcript))
    log.info("%s: rendered %.1f s replay (lead-in of %.2f s trimmed), %d chapters", what, duration, -shift,
             len(chapters))
    return Rendered(files, duration, -shift, chapters, transcript, mastered)
