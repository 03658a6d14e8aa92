"""The room manifest (``room.json``): every validation rule (the model it builds is :mod:`pipeline.room`).

:func:`load_room` reads and checks a room folder and returns a :class:`Room`, or raises :class:`InvalidRoom`
listing every problem at once, each naming the room and the file concerned.
"""

from __future__ import annotations

import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidRoom, MediaError
from pipeline.ffmpeg import AudioInfo, Remembered, check_decodes, file_key, probe_audio
from pipeline.room import (
    MANIFEST_NAME,
    MIXED_SPEAKER,
    RECORDINGS,
    ROLES,
    VISIBILITIES,
    Room,
    Speaker,
    Track,
    content_hash,
)
from pipeline.text import LANGUAGE_TAG, XML_ILLEGAL

# The room's types are defined in pipeline.room; their old home keeps them importable.
__all__ = ["MANIFEST_NAME", "MIXED_SPEAKER", "RECORDINGS", "ROLES", "VISIBILITIES", "Room", "Speaker", "Track",
           "content_hash", "load_room", "validate_room"]

SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_TITLE = 512
MAX_DESCRIPTION = 4000
# A speaker's consecutive tracks may overlap by this much (rejoin jitter) before it counts as a problem.
SEGMENT_OVERLAP_TOLERANCE_S = 0.5
PROBE_WORKERS = 4  # probes wait on ffprobe/ffmpeg processes, not on Python

# Files whose start and end were test-decoded in this process, by file_key: unchanged since, they are not decoded
# again when the room is loaded again (the command line validates a room while the rest of roomcast loads).
_VERIFIED: Remembered[tuple[str, int, int, int], bool] = Remembered(4096)


class _Problems:
    """Collects problems; each one names the room and the file."""

    def __init__(self, room_label: str) -> None:
        self.room_label = room_label
        self.items: list[str] = []

    def add(self, file: str, message: str) -> None:
        self.items.append(f"{self.room_label}: {file}: {message}")


def load_room(folder: Path | str, *, probe: bool = True, verify_decoding: bool = True) -> Room:
    """Read and validate the room in ``folder``. Raise :class:`InvalidRoom` listing every problem.

    ``verify_decoding=False`` skips test-decoding the start and end of every track (ffprobe still runs): for
    stages that reload a room that was already validated, so each stage does not re-check every track."""
    folder = Path(folder)
    label = f"room {folder.name!r}"
    problems = _Problems(label)
    manifest_path = folder / MANIFEST_NAME
    data = _read_manifest(folder, manifest_path, problems)
    if data is None:
        raise InvalidRoom(folder.name, problems.items)
    # An id that is not a valid slug must not name the room in errors (it may end up in paths and job records).
    declared = data.get("id")
    room_id = declared if isinstance(declared, str) and SLUG.match(declared) and ".." not in declared else folder.name
    problems.room_label = f"room {room_id!r}"
    room = _build_room(folder, data, problems, probe=probe, verify=verify_decoding)
    if problems.items or room is None:
        raise InvalidRoom(str(room_id), problems.items)
    return room


def validate_room(folder: Path | str) -> list[str]:
    """Every problem of the room in ``folder``; an empty list means the room is valid."""
    try:
        load_room(folder)
    except InvalidRoom as exc:
        return list(exc.problems)
    return []


def _read_manifest(folder: Path, path: Path, problems: _Problems) -> dict[str, Any] | None:
    if not folder.is_dir():
        problems.add(str(folder), "the room folder does not exist or is not a folder")
        return None
    if not path.is_file():
        problems.add(MANIFEST_NAME, "the manifest is missing; every room folder needs a room.json")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        problems.add(MANIFEST_NAME, f"the manifest is not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    except json.JSONDecodeError as exc:
        problems.add(MANIFEST_NAME, f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
        return None
    if not isinstance(data, dict):
        problems.add(MANIFEST_NAME, "the manifest must be a JSON object")
        return None
    return data


def _text(data: dict[str, Any], key: str, problems: _Problems, where: str, *, required: bool,
          limit: int = MAX_TITLE) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            problems.add(MANIFEST_NAME, f"{where}missing required field {key!r}")
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(MANIFEST_NAME, f"{where}field {key!r} must be a non-empty string")
        return None
    if XML_ILLEGAL.search(value):
        problems.add(MANIFEST_NAME, f"{where}field {key!r} contains control characters that no feed can carry")
        return None
    if len(value) > limit:
        problems.add(MANIFEST_NAME, f"{where}field {key!r} is longer than {limit} characters")
        return None
    return value.strip()


def _slug(data: dict[str, Any], key: str, problems: _Problems, where: str = "") -> str | None:
    value = _text(data, key, problems, where, required=True)
    if value is not None and (not SLUG.match(value) or ".." in value):
        problems.add(MANIFEST_NAME, f"{where}{key} {value!r} must be 1-128 letters, digits, '.', '_' or '-' "
                     "(it becomes part of storage paths)")
        return None
    return value


def _build_room(folder: Path, data: dict[str, Any], problems: _Problems, *, probe: bool,
                verify: bool = True) -> Room | None:
    room_id = _slug(data, "id", problems)
    show = _slug(data, "show", problems)
    title = _text(data, "title", problems, "", required=True)
    description = _text(data, "description", problems, "", required=False, limit=MAX_DESCRIPTION) or ""
    visibility = data.get("visibility", "public")
    if visibility not in VISIBILITIES:
        problems.add(MANIFEST_NAME, f"unsupported visibility {visibility!r} (use one of {', '.join(VISIBILITIES)})")
    language = data.get("language")
    if language is not None and (not isinstance(language, str) or not LANGUAGE_TAG.match(language)):
        problems.add(MANIFEST_NAME, f"language {language!r} is not a language code such as 'en' or 'pt-BR'")
        language = None
    recorded_at = _recorded_at(data.get("recorded_at"), problems)
    recording = data.get("recording", "multitrack")
    if recording not in RECORDINGS:
        problems.add(MANIFEST_NAME, f"recording {recording!r} is not one of {', '.join(RECORDINGS)} ('mixed': one "
                     "recording of the whole room, its tracks without 'speaker', its speakers found by voice)")
        recording = "multitrack"
    mixed = recording == "mixed"
    speakers = _speakers(data.get("speakers"), problems, optional=mixed)
    tracks = _tracks(folder, data.get("tracks"), {s.id for s in speakers}, problems, probe=probe, verify=verify,
                     mixed=mixed)
    consenting = {s.id for s in speakers if s.consent}
    if not mixed and speakers and tracks and not any(t.speaker in consenting for t in tracks):
        problems.add(MANIFEST_NAME, "no track belongs to a speaker who consented: there is nothing to publish")
    _check_segments(tracks, problems)
    if problems.items or room_id is None or show is None or title is None:
        return None
    known = {"id", "show", "title", "description", "recorded_at", "visibility", "language", "speakers", "tracks",
             "recording"}
    return Room(
        id=room_id, show=show, title=title, folder=folder.resolve(), speakers=tuple(speakers),
        tracks=tuple(tracks), description=description, recorded_at=recorded_at, visibility=str(visibility),
        language=language, extra={k: v for k, v in data.items() if k not in known}, recording=str(recording),
    )


def _recorded_at(value: Any, problems: _Problems) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(MANIFEST_NAME, "recorded_at must be an ISO 8601 date-time string")
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        problems.add(MANIFEST_NAME, f"recorded_at {value!r} is not an ISO 8601 date-time")
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _speakers(value: Any, problems: _Problems, *, optional: bool = False) -> list[Speaker]:
    """The speakers; a mixed recording may list who was there (names, roles, consent) or no one."""
    if value is None:
        if not optional:
            problems.add(MANIFEST_NAME, "missing required field 'speakers'")
        return []
    if optional and value == []:
        return []
    if not isinstance(value, list) or not value:
        problems.add(MANIFEST_NAME, "'speakers' must be a non-empty list")
        return []
    speakers: list[Speaker] = []
    seen: set[str] = set()
    for n, item in enumerate(value):
        where = f"speakers[{n}]: "
        if not isinstance(item, dict):
            problems.add(MANIFEST_NAME, f"{where}must be an object")
            continue
        speaker_id = _text(item, "id", problems, where, required=True, limit=128)
        name = _text(item, "name", problems, where, required=True, limit=200)
        role = item.get("role", "speaker")
        if role not in ROLES:
            problems.add(MANIFEST_NAME, f"{where}unknown role {role!r} (use one of {', '.join(ROLES)})")
        consent = item.get("consent", True)
        if not isinstance(consent, bool):
            problems.add(MANIFEST_NAME, f"{where}consent must be true or false")
        if speaker_id is None or name is None:
            continue
        if speaker_id in seen:
            problems.add(MANIFEST_NAME, f"{where}duplicate speaker id {speaker_id!r}")
            continue
        seen.add(speaker_id)
        speakers.append(Speaker(id=speaker_id, name=name, role=str(role), consent=consent is not False))
    return speakers


def _tracks(folder: Path, value: Any, speaker_ids: set[str], problems: _Problems, *, probe: bool,
            verify: bool = True, mixed: bool = False) -> list[Track]:
    if value is None:
        problems.add(MANIFEST_NAME, "missing required field 'tracks'")
        return []
    if not isinstance(value, list) or not value:
        problems.add(MANIFEST_NAME, "'tracks' must be a non-empty list")
        return []
    tracks: list[Track] = []
    found: list[tuple[int, str, str, Path, float, float | None, bool]] = []
    for n, item in enumerate(value):
        where = f"tracks[{n}]: "
        if not isinstance(item, dict):
            problems.add(MANIFEST_NAME, f"{where}must be an object")
            continue
        speaker = item.get("speaker")
        file = item.get("file")
        start = item.get("start")
        ok = True
        if mixed:
            if speaker is not None:
                problems.add(MANIFEST_NAME, f"{where}{file!r} names speaker {speaker!r}, but a mixed "
                             "recording's tracks name no 'speaker' (its speakers are found by voice); give one "
                             "file per speaker without \"recording\": \"mixed\" instead")
                ok = False
            speaker = MIXED_SPEAKER
        elif speaker is None:
            problems.add(MANIFEST_NAME, f"{where}missing required field 'speaker'")
            ok = False
        elif speaker not in speaker_ids:
            problems.add(MANIFEST_NAME, f"{where}unknown speaker id {speaker!r} (not in 'speakers')")
            ok = False
        if start is None:
            problems.add(MANIFEST_NAME, f"{where}missing required field 'start'")
            ok = False
        elif isinstance(start, bool) or not isinstance(start, int | float) or not math.isfinite(start):
            problems.add(MANIFEST_NAME, f"{where}start {start!r} must be a finite number of seconds")
            ok = False
        elif start < 0:
            problems.add(MANIFEST_NAME, f"{where}start {start!r} is negative; offsets count from the room's start")
            ok = False
        end = item.get("end")
        if end is not None and (isinstance(end, bool) or not isinstance(end, int | float) or not math.isfinite(end)
                                or (ok and start is not None and end <= start)):
            problems.add(MANIFEST_NAME, f"{where}end {end!r} must be a finite number of seconds after start")
            ok = False
        if not isinstance(file, str) or not file:
            problems.add(MANIFEST_NAME, f"{where}missing required field 'file'")
            continue
        path = _inside(folder, file, problems)
        if path is None:
            continue
        begin = float(start) if ok and start is not None else 0.0  # a bad start or end was reported above
        found.append((n, str(speaker), file, path, begin, float(end) if ok and end is not None else None, ok))
    # Probing is ffprobe and ffmpeg processes: run side by side, problems reported in manifest order.
    outcomes: list[tuple[AudioInfo | None, _Problems]] = []
    if probe and found:
        with ThreadPoolExecutor(max_workers=min(PROBE_WORKERS, len(found))) as pool:
            outcomes = list(pool.map(lambda f: _probe_alone(f[3], f[2], problems.room_label, verify), found))
    for (n, speaker_id, file, path, begin, declared_end, ok), (info, found_problems) in zip(found, outcomes,
                                                                                           strict=False):
        problems.items += found_problems.items
        if ok and info is not None:
            tracks.append(Track(index=n, speaker=speaker_id, file=file, path=path, start=begin, info=info,
                                declared_end=declared_end))
    return tracks


def _probe_alone(path: Path, file: str, room_label: str, verify: bool) -> tuple[AudioInfo | None, _Problems]:
    own = _Problems(room_label)
    return _probe(path, file, own, verify=verify), own


def _inside(folder: Path, file: str, problems: _Problems) -> Path | None:
    """Resolve ``file`` inside the room folder, refusing anything that escapes it."""
    relative = Path(file)
    if relative.is_absolute() or file.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", file):
        problems.add(file, "absolute paths are not allowed; track paths are relative to the room folder")
        return None
    if ".." in relative.parts or "\\" in file:
        problems.add(file, "the path leaves the room folder ('..' is not allowed)")
        return None
    root = folder.resolve()
    candidate = folder / relative
    if not candidate.exists() and not candidate.is_symlink():
        problems.add(file, "the track file is missing")
        return None
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        problems.add(file, "the path is a symbolic link pointing outside the room folder")
        return None
    if not resolved.is_file():
        problems.add(file, "the track path is not a regular file")
        return None
    if resolved.stat().st_size == 0:
        problems.add(file, "the track file is empty (0 bytes)")
        return None
    return resolved


def _probe(path: Path, file: str, problems: _Problems, *, verify: bool = True) -> AudioInfo | None:
    what = f"{problems.room_label}: {file}"
    try:
        info = probe_audio(path, what=what)
        key = file_key(path) if verify else None
        if verify and (key is None or not _VERIFIED.get(key)):
            check_decodes(path, what=what, duration=info.duration)
            if key is not None:
                _VERIFIED.update({key: True})
    except MediaError as exc:
        detail = exc.stderr_tail.strip().splitlines()[-1] if exc.stderr_tail.strip() else ""
        detail = re.sub(r"\[(\w+) @ 0x[0-9a-f]+\] ", r"\1: ", detail)  # same message on every run
        message = exc.message.split(": ", 2)[-1]
        problems.add(file, f"not decodable audio: {message}" + (f" ({detail})" if detail else ""))
        return None
    return info


def _check_segments(tracks: list[Track], problems: _Problems) -> None:
    """One speaker's segments must not overlap: a person cannot be in the room twice."""
    by_speaker: dict[str, list[Track]] = {}
    for track in tracks:
        by_speaker.setdefault(track.speaker, []).append(track)
    for speaker, segments in by_speaker.items():
        segments.sort(key=lambda t: t.start)
        for before, after in zip(segments, segments[1:], strict=False):
            if after.start < before.end - SEGMENT_OVERLAP_TOLERANCE_S:
                problems.add(after.file, f"speaker {speaker!r}: this segment starts at {after.start:.2f} s, "
                             f"before their previous segment {before.file!r} ends at {before.end:.2f} s")
