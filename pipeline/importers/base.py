"""What every importer shares: the plan an importer makes of its input, the checks a plan must pass, the report
of what was inferred, and the writer that turns a plan into a room folder all at once (a temporary folder beside
the target, renamed when complete: a failed import leaves nothing).

An importer is a function ``plan(files: SourceFiles) -> ImportPlan``: it reads the platform's metadata, names
every track's file, speaker and start on the room clock, and lists what it skipped and why. It raises
:class:`InvalidSource` for input that does not add up, naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.errors import InvalidSource, MediaError
from pipeline.ffmpeg import AudioInfo, probe_audio
from pipeline.importers.archive import ArchiveLimits, SourceFiles, open_input
from pipeline.manifest import MANIFEST_NAME, SEGMENT_OVERLAP_TOLERANCE_S, SLUG, load_room

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset({".ogg", ".opus", ".oga", ".mka", ".webm", ".mp4", ".m4a", ".aac", ".mp3", ".wav",
                            ".flac", ".ts", ".m3u8", ".weba", ".mkv", ".mov", ".aif", ".aiff", ".wma"})
DEFAULT_SHOW = "rooms"
# A platform's declared end may differ from the file's probed end by this much before the report says so.
DECLARED_END_TOLERANCE_S = 2.0


@dataclass(frozen=True)
class PlannedTrack:
    """One segment: the input files that make it (several are joined byte for byte: MPEG-TS slices), its
    speaker (None in a mixed room) and its start on the room clock."""

    parts: tuple[str, ...]
    speaker: str | None
    start: float
    declared_end: float | None = None
    source: str = ""  # what in the metadata named it, for the report


@dataclass(frozen=True)
class PlannedSpeaker:
    id: str
    name: str


@dataclass(frozen=True)
class ImportPlan:
    room_id: str
    title: str
    speakers: tuple[PlannedSpeaker, ...]
    tracks: tuple[PlannedTrack, ...]
    recorded_at: datetime | None = None
    skipped: tuple[tuple[str, str], ...] = ()  # (what, why)
    notes: tuple[str, ...] = ()
    mixed: bool = False


@dataclass(frozen=True)
class ImportedTrack:
    file: str
    speaker: str | None
    start: float
    duration: float
    source: str
    declared_end: float | None = None


@dataclass(frozen=True)
class ImportReport:
    """What an import inferred, for the operator: speakers, tracks with offsets and durations, what was skipped."""

    source: str
    room_id: str
    folder: Path
    speakers: tuple[PlannedSpeaker, ...]
    tracks: tuple[ImportedTrack, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def lines(self) -> list[str]:
        out = [f"room {self.room_id!r} imported from {self.source} into {self.folder}"]
        names = {s.id: s.name for s in self.speakers}
        for s in self.speakers:
            out.append(f"  speaker {s.id}: {s.name}")
        for t in self.tracks:
            who = f"{t.speaker} ({names.get(t.speaker or '', '?')})" if t.speaker else "mixed"
            out.append(f"  track {t.file}: {who}, starts at {t.start:.3f} s, {t.duration:.2f} s long "
                       f"[{t.source}]")
        out += [f"  skipped {what}: {why}" for what, why in self.skipped]
        out += [f"  note: {note}" for note in self.notes]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "room": self.room_id, "folder": str(self.folder),
                "speakers": [{"id": s.id, "name": s.name} for s in self.speakers],
                "tracks": [t.__dict__ for t in self.tracks], "skipped": [list(s) for s in self.skipped],
                "notes": list(self.notes)}


Planner = Callable[[SourceFiles], ImportPlan]


def slug(text: str, fallback: str = "room") -> str:
    """A storage-safe id made of ``text``: ASCII letters, digits, '.', '_' and '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text).strip("-._").lower()[:100]
    value = re.sub(r"\.{2,}", ".", value)
    return value if value and SLUG.match(value) else fallback


def unique_ids(names: Iterable[str]) -> dict[str, str]:
    """Speaker ids for display names (or identities), one each, stable in order of first appearance."""
    ids: dict[str, str] = {}
    for name in names:
        if name in ids:
            continue
        base = slug(name, "speaker")
        candidate, n = base, 2
        while candidate in ids.values():
            candidate, n = f"{base}-{n}", n + 1
        ids[name] = candidate
    return ids


def refuse(files: SourceFiles, problems: list[str], missing: tuple[str, ...] = ()) -> InvalidSource:
    return InvalidSource(files.label, [f"{files.label}: {p}" for p in problems], missing)


def load_json(files: SourceFiles, name: str) -> Any:
    try:
        return json.loads(files.path(name).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise refuse(files, [f"{name}: not readable JSON ({exc})"]) from exc


def find_named(files: SourceFiles, named: str, what: str, missing: list[str]) -> str | None:
    """The input file a metadata record names (by its base name: platforms give storage keys or URLs); None
    when absent (added to ``missing``). Two files of that name are refused as ambiguous."""
    base = PurePosixPath(named.split("?", 1)[0]).name
    found = files.by_basename().get(base, [])
    if len(found) > 1:
        raise refuse(files, [f"{what} names {base!r}, which is in the input {len(found)} times: {', '.join(found)}"])
    if not found:
        missing.append(base)
        return None
    return found[0]


def check_all_named(files: SourceFiles, used: Iterable[str], ignored: Iterable[str] = ()) -> None:
    """Refuse media files the metadata does not name: a file nobody explains may be a speaker left out."""
    known = set(used) | set(ignored)
    stray = [n for n in files.names if n not in known and PurePosixPath(n).suffix.lower() in AUDIO_SUFFIXES]
    if stray:
        raise refuse(files, [f"{n}: this media file is named by none of the metadata; remove it or add the "
                             "metadata that describes it" for n in stray])


def probe(files: SourceFiles, name: str) -> AudioInfo:
    try:
        return probe_audio(files.path(name), what=f"{files.label}: {name}")
    except MediaError as exc:
        raise refuse(files, [f"{name}: not decodable audio ({exc.message.split(': ')[-1]})"]) from exc


def check_segments(files: SourceFiles, tracks: Iterable[PlannedTrack], durations: dict[str, float]) -> None:
    """A speaker's segments must not overlap, and none may end before it starts."""
    by_speaker: dict[str, list[PlannedTrack]] = {}
    for track in tracks:
        if track.declared_end is not None and track.declared_end < track.start:
            raise refuse(files, [f"{track.parts[0]}: starts at {track.start:.3f} s, after its end at "
                                 f"{track.declared_end:.3f} s ({track.source})"])
        if track.speaker is not None:
            by_speaker.setdefault(track.speaker, []).append(track)
    for speaker, segments in by_speaker.items():
        segments.sort(key=lambda t: t.start)
        for before, after in zip(segments, segments[1:], strict=False):
            end = before.start + durations[before.parts[0]]
            if after.start < end - SEGMENT_OVERLAP_TOLERANCE_S:
                raise refuse(files, [f"{after.parts[0]}: speaker {speaker!r} starts this track at "
                                     f"{after.start:.3f} s, before their track {before.parts[0]} ends at "
                                     f"{end:.3f} s: one person cannot be recorded twice at once"])


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def import_room(source: str, planner: Planner, path: Path, out: Path, *, show: str | None = None,
                title: str | None = None, room_id: str | None = None,
                limits: ArchiveLimits = ArchiveLimits()) -> ImportReport:
    """Import ``path`` (a folder, ZIP or file from ``source``) as the room folder ``out``, which must not exist.
    Nothing is left at ``out`` (or beside it) unless the whole room was written and validates."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise InvalidSource(out.name, [f"{out}: already exists; remove it or give another --out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.part-", dir=out.parent))
    try:
        files = open_input(Path(path), staging / ".input", limits)
        plan = planner(files)
        plan = replace(plan, room_id=slug(room_id) if room_id else slug(plan.room_id),
                       title=title or plan.title)
        tracks = _write_tracks(files, plan, staging)
        _write_manifest(staging, plan, show or DEFAULT_SHOW, source, tracks)
        shutil.rmtree(staging / ".input", ignore_errors=True)
        if not plan.mixed:  # a mixed room's manifest is checked by the mixed-room loader
            load_room(staging)
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report = ImportReport(source, plan.room_id, out, plan.speakers, tuple(tracks), plan.skipped, plan.notes)
    for line in report.lines():
        log.info("%s", line)
    return report


def _write_tracks(files: SourceFiles, plan: ImportPlan, staging: Path) -> list[ImportedTrack]:
    (staging / "tracks").mkdir()
    written: list[ImportedTrack] = []
    counts: dict[str, int] = {}
    for track in sorted(plan.tracks, key=lambda t: (t.start, t.speaker or "")):
        who = track.speaker or "mixed"
        counts[who] = counts.get(who, 0) + 1
        suffix = PurePosixPath(track.parts[0]).suffix.lower() or ".audio"
        name = f"tracks/{who}-{counts[who]}{suffix}"
        _place(files, track.parts, staging / name)
        duration = probe_audio(staging / name, what=f"{files.label}: {track.parts[0]}").duration
        end = round(track.declared_end, 3) if track.declared_end is not None else None
        written.append(ImportedTrack(name, track.speaker, round(track.start, 3), round(duration, 3), track.source,
                                     end if end is not None and end > round(track.start, 3) else None))
    return written


def _place(files: SourceFiles, parts: tuple[str, ...], target: Path) -> None:
    """Hard-link a single file (copy across file systems); join several (MPEG-TS slices) byte for byte."""
    if len(parts) == 1:
        try:
            os.link(files.path(parts[0]), target)
        except OSError:
            shutil.copy2(files.path(parts[0]), target)
        return
    with open(target, "xb") as out:
        for part in parts:
            with open(files.path(part), "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 20)


def _write_manifest(staging: Path, plan: ImportPlan, show: str, source: str, tracks: list[ImportedTrack]) -> None:
    data: dict[str, Any] = {"id": plan.room_id, "show": slug(show, DEFAULT_SHOW), "title": plan.title}
    if plan.recorded_at is not None:
        data["recorded_at"] = plan.recorded_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if plan.mixed:
        data["recording"] = "mixed"
    if plan.speakers:
        data["speakers"] = [{"id": s.id, "name": s.name} for s in plan.speakers]
    data["tracks"] = [({"speaker": t.speaker} if t.speaker else {}) | {"file": t.file, "start": t.start}
                      | ({"end": t.declared_end} if t.declared_end is not None else {}) for t in tracks]
    data["imported_from"] = source
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=staging)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2)
    os.replace(tmp, staging / MANIFEST_NAME)
