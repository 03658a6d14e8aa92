"""LiveKit Egress output: participant (or track) egress files and the ``EgressInfo`` JSON that the egress webhook
(``egress_ended``) or ``ListEgress`` returns.

Read from each ``EgressInfo`` (protobuf JSON: camelCase names, int64 values as strings; snake_case accepted):
``roomName``, ``participant.identity`` (the request of a participant egress; a track egress's request carries no
identity, so its JSON must hold a ``publisherIdentity``), ``status``/``error``, and each of ``fileResults`` (the
deprecated ``file`` too): ``filename``/``location`` (matched by base name in the input), ``startedAt`` and
``endedAt`` in nanoseconds since the epoch (the egress's own when a file has none). A ``ListEgress`` answer
(``{"items": [...]}``), a list, or one egress per JSON file all work. The room clock starts at the earliest file;
a participant who left and rejoined has one egress (one track) per stay.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from pipeline.importers.archive import SourceFiles
from pipeline.importers.base import (
    DECLARED_END_TOLERANCE_S,
    ImportPlan,
    PlannedSpeaker,
    PlannedTrack,
    check_all_named,
    check_segments,
    find_named,
    from_epoch,
    load_json,
    probe,
    refuse,
    unique_ids,
)

NS = 1e9
FAILED = {"EGRESS_FAILED", "EGRESS_ABORTED", "EGRESS_LIMIT_REACHED", 4, 5, 6}


def get(data: Any, *names: str) -> Any:
    """A protobuf-JSON field by its camelCase or snake_case name."""
    if not isinstance(data, dict):
        return None
    for name in names:
        snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
        for key in (name, snake):
            if data.get(key) not in (None, ""):
                return data[key]
    return None


def _nanos(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _egresses(files: SourceFiles) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name in files.names:
        if PurePosixPath(name).suffix.lower() != ".json":
            continue
        data = load_json(files, name)
        items = data if isinstance(data, list) else get(data, "items") or [data]
        found += [(name, item) for item in items if isinstance(item, dict) and get(item, "egressId")]
    if not found:
        raise refuse(files, ["no EgressInfo JSON found (a file with 'egressId', from the egress webhook or "
                             "ListEgress)"])
    return found


def _identity(name: str, egress: dict[str, Any]) -> str | None:
    request = get(egress, "participant") or {}
    return get(request, "identity") or get(egress, "publisherIdentity", "participantIdentity")


def plan(files: SourceFiles) -> ImportPlan:
    rooms: set[str] = set()
    pending: list[tuple[str, str, int, int | None, str]] = []  # file, identity, start ns, end ns, where
    skipped: list[tuple[str, str]] = []
    missing: list[str] = []
    ignored: set[str] = set()
    for json_name, egress in _egresses(files):
        egress_id = str(get(egress, "egressId"))
        where = f"{json_name} egress {egress_id}"
        rooms.add(str(get(egress, "roomName") or get(get(egress, "participant"), "roomName") or ""))
        results = get(egress, "fileResults") or ([get(egress, "file")] if get(egress, "file") else [])
        if get(egress, "status") in FAILED or get(egress, "error"):
            skipped.append((where, f"the egress ended with status {get(egress, 'status')}: "
                                   f"{get(egress, 'error') or 'no error given'}"))
            for result in results:
                named = get(result, "filename", "location")
                if named:
                    ignored.add(PurePosixPath(str(named)).name)
            continue
        identity = _identity(json_name, egress)
        if not identity:
            raise refuse(files, [f"{where}: names no participant identity (use a participant egress, or add "
                                 "'publisherIdentity')"])
        if not results:
            skipped.append((where, "the egress wrote no file"))
            continue
        for result in results:
            named = get(result, "filename", "location")
            if not named:
                raise refuse(files, [f"{where}: a file result has no filename or location"])
            file = find_named(files, str(named), where, missing)
            start = _nanos(get(result, "startedAt")) or _nanos(get(egress, "startedAt"))
            end = _nanos(get(result, "endedAt")) or _nanos(get(egress, "endedAt"))
            if start is None:
                raise refuse(files, [f"{where}: {named}: no startedAt to place it on the room clock"])
            if file is not None:
                pending.append((file, str(identity), start, end, where))
    if missing:
        raise refuse(files, [f"{m}: named by the egress metadata but not in the input" for m in missing],
                     tuple(missing))
    rooms.discard("")
    if len(rooms) > 1:
        raise refuse(files, [f"the egresses come from {len(rooms)} rooms ({', '.join(sorted(rooms))}); import "
                             "one room at a time"])
    if not pending:
        raise refuse(files, ["no egress left a usable audio file"])
    check_all_named(files, [p[0] for p in pending], ignored_names(files, ignored))
    return _plan(files, pending, next(iter(rooms), files.label), skipped)


def ignored_names(files: SourceFiles, basenames: set[str]) -> list[str]:
    return [n for n in files.names if PurePosixPath(n).name in basenames]


def _plan(files: SourceFiles, pending: list[tuple[str, str, int, int | None, str]], room: str,
          skipped: list[tuple[str, str]]) -> ImportPlan:
    origin = min(p[2] for p in pending)
    ids = unique_ids(p[1] for p in sorted(pending, key=lambda p: p[2]))
    notes: list[str] = []
    tracks: list[PlannedTrack] = []
    durations: dict[str, float] = {}
    for file, identity, start, end, where in pending:
        info = probe(files, file)
        durations[file] = info.duration
        begin = (start - origin) / NS
        declared = (end - origin) / NS if end is not None else None
        if declared is not None and declared >= begin and abs(declared - begin - info.duration) > \
                DECLARED_END_TOLERANCE_S:
            notes.append(f"{file}: the egress ran {declared - begin:.1f} s but the file holds {info.duration:.1f} s "
                         "(audio-only egress may drop silence; the file is placed at its start)")
        tracks.append(PlannedTrack((file,), ids[identity], begin, declared, f"{where}, identity {identity!r}"))
    check_segments(files, tracks, durations)
    speakers = tuple(PlannedSpeaker(sid, identity) for identity, sid in ids.items())
    stamp = from_epoch(origin / NS)
    return ImportPlan(room_id=f"{room}-{stamp:%Y%m%d-%H%M%S}", title=f"{room} ({stamp:%Y-%m-%d %H:%M} UTC)",
                      speakers=speakers, tracks=tuple(tracks), recorded_at=stamp, skipped=tuple(skipped),
                      notes=tuple(notes))
