"""Per-speaker files that all start at the room's start: Craig's Discord multitrack downloads (``N-name.flac``
with an optional ``info.txt``), Zoom's "separate audio file for each participant" (``audioAliceMartin12345.m4a``),
Riverside and Zencastr exports (one file per guest, named after them).

Every file is placed at 0 s with its own leading silence kept: the platform already aligned the files to the room,
so 0 is exact by construction, while cutting the silence would mean guessing where a quiet speaker's first sound
begins (a threshold that breath or line noise defeats) for nothing: the mix skips dead air and the transcriber
reads only speech. A speaker's absence is silence in their file, so there is one track per speaker; two files of
one speaker overlap and are refused.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import PurePosixPath

from pipeline.importers.archive import SourceFiles
from pipeline.importers.base import (
    AUDIO_SUFFIXES,
    ImportPlan,
    PlannedSpeaker,
    PlannedTrack,
    check_segments,
    probe,
    refuse,
    unique_ids,
)

CRAIG = re.compile(r"^(\d+)-(.+)$")
ZOOM = re.compile(r"^audio([A-Za-z][A-Za-z_-]*?)\d{5,}$")
PLATFORM_WORDS = re.compile(r"\b(riverside|zencastr|zoom|craig|raw|audio|track|recording)\b", re.IGNORECASE)


def speaker_name(stem: str) -> tuple[int | None, str]:
    """The Craig track number (if any) and the display name a file's stem implies."""
    craig = CRAIG.match(stem)
    if craig:
        return int(craig.group(1)), craig.group(2).split("#")[0].strip() or stem
    zoom = ZOOM.match(stem)
    if zoom:
        return None, re.sub(r"(?<=[a-z])(?=[A-Z])", " ", zoom.group(1)).replace("_", " ").strip()
    words = re.sub(r"[_\-\s]+", " ", PLATFORM_WORDS.sub(" ", re.sub(r"\d{4,}", " ", stem))).strip()
    words = words or stem
    return None, words.title() if words.islower() else words


def _craig_info(files: SourceFiles) -> tuple[dict[int, str], datetime | None]:
    """Names by track number, and the start time, from Craig's ``info.txt``."""
    names: dict[int, str] = {}
    started = None
    info = next((n for n in files.names if PurePosixPath(n).name.lower() == "info.txt"), None)
    if info is None:
        return names, None
    in_tracks, number = False, 0
    for line in files.path(info).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.lower().startswith("start time:"):
            try:
                started = datetime.fromisoformat(line.split(":", 1)[1].strip().replace("Z", "+00:00"))
            except ValueError:
                started = None
        elif line.strip().lower() == "tracks:":
            in_tracks = True
        elif in_tracks and line[:1] in ("\t", " ") and line.strip():
            number += 1
            names[number] = re.sub(r"\s*\(\d+\)\s*$", "", line.strip()).split("#")[0].strip()
        elif in_tracks and line.strip():
            in_tracks = False
    if started is not None and started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return names, started


def plan(files: SourceFiles) -> ImportPlan:
    media = [n for n in files.names if PurePosixPath(n).suffix.lower() in AUDIO_SUFFIXES]
    if not media:
        raise refuse(files, ["no audio files found"])
    craig_names, started = _craig_info(files)
    named: list[tuple[str, str]] = []
    for file in media:
        number, name = speaker_name(PurePosixPath(file).stem)
        named.append((file, craig_names.get(number, name) if number is not None else name))
    ids = unique_ids(name for _, name in named)
    tracks = tuple(PlannedTrack((file,), ids[name], 0.0, None, f"file name {PurePosixPath(file).name!r}")
                   for file, name in named)
    durations = {t.parts[0]: probe(files, t.parts[0]).duration for t in tracks}
    check_segments(files, tracks, durations)
    spread = max(durations.values()) - min(durations.values())
    notes = [f"the files' lengths differ by {spread:.1f} s (each is placed at 0 s)"] if spread > 2.0 else []
    title = files.label.rsplit(".", 1)[0] if files.label.lower().endswith(".zip") else files.label
    return ImportPlan(room_id=title, title=title, speakers=tuple(PlannedSpeaker(i, n) for n, i in ids.items()),
                      tracks=tracks, recorded_at=started, notes=tuple(notes))
