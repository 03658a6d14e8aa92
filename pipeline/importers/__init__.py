"""Room sources: what recording platforms leave after a room, turned into a room folder (``room.json`` and its
tracks) without anyone writing a manifest. One module per platform; :mod:`pipeline.importers.base` holds the
plan, the checks, the report and the writer, :mod:`pipeline.importers.archive` the safe reading of the input."""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import InvalidSource
from pipeline.importers import agora, aligned, livekit, mixed, twilio
from pipeline.importers.archive import ArchiveLimits
from pipeline.importers.base import ImportReport, Planner
from pipeline.importers.base import import_room as _import_room

SOURCES: dict[str, Planner] = {
    "livekit": livekit.plan,
    "twilio": twilio.plan,
    "agora": agora.plan,
    "aligned": aligned.plan,
    "mixed": mixed.plan,
}


def import_room(source: str, path: Path, out: Path, *, show: str | None = None, title: str | None = None,
                room_id: str | None = None, limits: ArchiveLimits = ArchiveLimits()) -> ImportReport:
    """Import the output of ``source`` at ``path`` (folder, ZIP or file) as the room folder ``out``."""
    if source not in SOURCES:
        raise InvalidSource(Path(path).name, [f"unknown source {source!r} (use one of {', '.join(SOURCES)})"])
    return _import_room(source, SOURCES[source], path, out, show=show, title=title, room_id=room_id,
                        limits=limits)


__all__ = ["SOURCES", "ArchiveLimits", "ImportReport", "import_room"]
