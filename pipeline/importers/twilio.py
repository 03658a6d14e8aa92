"""Twilio Video track recordings: one ``.mka`` per audio track (its media, downloaded as ``{RecordingSid}.mka`` or
under the name of its ``media_external_location``) and the Recording resources that describe them (the list
response ``{"recordings": [...]}``, a list, or one resource per JSON file), with the room's Participant resources
(``{"participants": [...]}``) for names.

Twilio documents a recording's ``offset`` as the milliseconds between a point common to all rooms and the start of
the track's source, and the ``.mka``'s container start time (what ffprobe calls ``start_time``) as the track's
start within that: a track starts at ``offset / 1000 + start_time`` on a clock common to the room, and the room
clock starts at the earliest track. ``grouping_sids`` gives each recording's ``participant_sid`` and ``room_sid``.
A participant's ``identity`` is the application's name for its user, unique in the room at any one time: a user
who left and rejoined comes back as a new participant (a new SID) with the same identity, so tracks are grouped
into speakers by identity. Without participant resources the participant SID stands in for the name. Video and
data tracks are skipped.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from pipeline.importers.archive import SourceFiles
from pipeline.importers.base import (
    ImportPlan,
    PlannedSpeaker,
    PlannedTrack,
    check_all_named,
    check_segments,
    find_named,
    load_json,
    probe,
    refuse,
    unique_ids,
)
from pipeline.importers.livekit import ignored_names


def _resources(files: SourceFiles) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, dict[str, Any]],
                                             dict[str, dict[str, Any]]]:
    recordings: list[tuple[str, dict[str, Any]]] = []
    participants: dict[str, dict[str, Any]] = {}
    rooms: dict[str, dict[str, Any]] = {}
    for name in files.names:
        if PurePosixPath(name).suffix.lower() != ".json":
            continue
        data = load_json(files, name)
        items: list[Any] = data if isinstance(data, list) else [data]
        if isinstance(data, dict):
            items = data.get("recordings") or data.get("participants") or data.get("rooms") or [data]
        for item in items:
            sid = str(item.get("sid", "")) if isinstance(item, dict) else ""
            if sid.startswith("RT"):
                recordings.append((name, item))
            elif sid.startswith("PA"):
                participants[sid] = item
            elif sid.startswith("RM"):
                rooms[sid] = item
    if not recordings:
        raise refuse(files, ["no Recording resources found (JSON objects whose sid starts with 'RT')"])
    return recordings, participants, rooms


def _offset_ms(value: Any, where: str, files: SourceFiles) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise refuse(files, [f"{where}: offset {value!r} is not a number of milliseconds"]) from exc


def plan(files: SourceFiles) -> ImportPlan:
    recordings, participants, rooms = _resources(files)
    skipped: list[tuple[str, str]] = []
    missing: list[str] = []
    ignored: set[str] = set()
    found: list[tuple[str, str, float, str]] = []  # file, identity, absolute start s, where
    room_sids: set[str] = set()
    for json_name, rec in recordings:
        sid = str(rec["sid"])
        where = f"{json_name} recording {sid}"
        named = str(rec.get("media_external_location") or f"{sid}.{rec.get('container_format') or 'mka'}")
        if rec.get("type", "audio") != "audio":
            skipped.append((where, f"a {rec.get('type')} track ({rec.get('track_name', '')}): only audio is used"))
            ignored.add(PurePosixPath(named).name)
            continue
        if rec.get("status") in ("failed", "deleted"):
            skipped.append((where, f"the recording is {rec.get('status')}"))
            ignored.add(PurePosixPath(named).name)
            continue
        groups = rec.get("grouping_sids") or {}
        participant = str(groups.get("participant_sid") or "")
        if groups.get("room_sid"):
            room_sids.add(str(groups["room_sid"]))
        if not participant:
            raise refuse(files, [f"{where}: grouping_sids names no participant_sid"])
        identity = str(participants.get(participant, {}).get("identity") or participant)
        file = find_named(files, named, where, missing)
        if file is not None:
            start_time = probe(files, file).start_time
            found.append((file, identity, _offset_ms(rec.get("offset"), where, files) / 1000 + start_time,
                          f"{where} ({rec.get('track_name', '?')}), participant {participant}"))
    if missing:
        raise refuse(files, [f"{m}: named by a Recording resource but not in the input" for m in missing],
                     tuple(missing))
    if len(room_sids) > 1:
        raise refuse(files, [f"the recordings come from {len(room_sids)} rooms ({', '.join(sorted(room_sids))}); "
                             "import one room at a time"])
    if not found:
        raise refuse(files, ["no audio recording to import"])
    check_all_named(files, [f[0] for f in found], ignored_names(files, ignored))
    room_sid = next(iter(room_sids), "")
    return _plan(files, found, rooms.get(room_sid, {}), room_sid, skipped, participants)


def _plan(files: SourceFiles, found: list[tuple[str, str, float, str]], room: dict[str, Any], room_sid: str,
          skipped: list[tuple[str, str]], participants: dict[str, dict[str, Any]]) -> ImportPlan:
    origin = min(f[2] for f in found)
    ids = unique_ids(f[1] for f in sorted(found, key=lambda f: f[2]))
    tracks = tuple(PlannedTrack((file, ), ids[identity], start - origin, None, where)
                   for file, identity, start, where in found)
    check_segments(files, tracks, {t.parts[0]: probe(files, t.parts[0]).duration for t in tracks})
    notes = [] if participants else ["no Participant resources: speakers are named by their participant SIDs"]
    name = str(room.get("unique_name") or room_sid or files.label)
    return ImportPlan(room_id=name, title=name, speakers=tuple(PlannedSpeaker(i, n) for n, i in ids.items()),
                      tracks=tracks, skipped=tuple(skipped), notes=tuple(notes))
