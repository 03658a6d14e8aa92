"""Agora Cloud Recording in individual mode: per-UID audio as an HLS playlist with its TS slices (or an MP4), the
JSON of the ``stop`` response (``serverResponse.fileList``: ``fileName``, ``trackType``, ``uid``,
``mixedAllUser``, ``isPlayable``, ``sliceStartTime`` in Unix milliseconds), and an optional CSV mapping UIDs to
names (``uid,name``).

Agora names each slice ``<sid>_<cname>__uid_s_<uid>__uid_e_<type>_<utc>.ts``, ``<utc>`` being the slice's start
(``YYYYMMDDhhmmssmmm``, UTC); it starts a new slice when a user comes back after an absence, so a playlist's
slices are grouped into stays: a stay ends at an ``#EXT-X-DISCONTINUITY`` or where the next slice starts later
than the previous one ends. Each stay becomes one track, its slices joined byte for byte (MPEG-TS concatenates).
AAC in MPEG-TS carries no record of the encoder's priming samples (1024 for AAC-LC), which decoders play first:
each stay is placed that much earlier so its first real sample lands on its start.
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from pipeline.errors import InvalidSource
from pipeline.importers.archive import SourceFiles
from pipeline.importers.base import (
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
    slug,
)

SLICE_UTC = re.compile(r"_(\d{17})\.ts$")
AAC_PRIMING_SAMPLES = 1024
AGORA_RATE = 48_000
STAY_GAP_S = 0.5  # a slice starting this much after the previous one ends begins a new stay


def _slice_start(name: str) -> float | None:
    found = SLICE_UTC.search(name)
    if not found:
        return None
    stamp = datetime.strptime(found.group(1), "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)
    return stamp.timestamp()


def _stop_responses(files: SourceFiles) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name in files.names:
        if PurePosixPath(name).suffix.lower() == ".json":
            data = load_json(files, name)
            if isinstance(data, dict) and isinstance(data.get("serverResponse"), dict):
                found.append((name, data))
    if not found:
        raise refuse(files, ["no stop response found (JSON with serverResponse.fileList)"])
    return found


def _names(files: SourceFiles) -> dict[str, str]:
    names: dict[str, str] = {}
    for name in files.names:
        if PurePosixPath(name).suffix.lower() == ".csv":
            with open(files.path(name), newline="", encoding="utf-8-sig") as handle:
                for row in csv.reader(handle):
                    if len(row) >= 2 and row[0].strip().isdigit() and row[1].strip():
                        names[row[0].strip()] = row[1].strip()
    return names


def _playlist(files: SourceFiles, m3u8: str, missing: list[str]) -> list[tuple[list[str], float, float]]:
    """The stays of a playlist: (slice files, start epoch s or nan, summed duration)."""
    stays: list[tuple[list[str], float, float]] = []
    duration, broken = 0.0, True
    for raw in files.path(m3u8).read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",")[0] or 0)
        elif line.startswith("#EXT-X-DISCONTINUITY"):
            broken = True
        elif line and not line.startswith("#"):
            if "/" in line or "\\" in line or ":" in line or line.startswith("."):
                raise refuse(files, [f"{m3u8}: slice {line!r} is not a plain file name beside the playlist"])
            found = find_named(files, line, m3u8, missing)
            if found is None:
                continue
            start = _slice_start(line)
            if stays and not broken:
                files_, begin, length = stays[-1]
                late = start is not None and begin == begin and start - (begin + length) > STAY_GAP_S
                if not late:
                    stays[-1] = (files_ + [found], begin, length + duration)
                    continue
            stays.append(([found], start if start is not None else float("nan"), duration))
            broken = False
    return stays


def plan(files: SourceFiles) -> ImportPlan:
    names = _names(files)
    tracks: list[PlannedTrack] = []
    skipped: list[tuple[str, str]] = []
    missing: list[str] = []
    used: list[str] = []
    lengths: dict[str, float] = {}
    cname = ""
    for json_name, response in _stop_responses(files):
        cname = str(response.get("cname") or cname)
        listing = response["serverResponse"].get("fileList")
        entries = listing if isinstance(listing, list) else [{"fileName": listing}] if listing else []
        for entry in entries:
            tracks += _entry(files, json_name, entry, skipped, missing, used, lengths)
    if missing:
        raise refuse(files, [f"{m}: named by the recording's file list but not in the input" for m in missing],
                     tuple(missing))
    if not tracks:
        raise refuse(files, ["the file list names no audio of any user"])
    check_all_named(files, used, [n for n in files.names if "__uid_e_video" in n])
    return _plan(files, tracks, names, cname, skipped, lengths)


def _entry(files: SourceFiles, json_name: str, entry: dict[str, Any], skipped: list[tuple[str, str]],
           missing: list[str], used: list[str], lengths: dict[str, float]) -> list[PlannedTrack]:
    name = str(entry.get("fileName", ""))
    uid = str(entry.get("uid") or (re.search(r"__uid_s_(\d+)__", name) or [None, ""])[1])
    where = f"{json_name} fileList {name}"
    if entry.get("mixedAllUser") is True:
        skipped.append((where, "a mix of every user (composite mode): import it with --source mixed"))
        return []
    if entry.get("trackType", "audio") == "video":
        skipped.append((where, "a video track"))
        used.append(name)
        return []
    file = find_named(files, name, where, missing)
    if file is None or not uid:
        if file is not None:
            raise refuse(files, [f"{where}: names no uid"])
        return []
    used.append(file)
    announced = float(entry["sliceStartTime"]) / 1000 if entry.get("sliceStartTime") else None
    if not file.lower().endswith(".m3u8"):
        if announced is None:
            raise refuse(files, [f"{where}: no sliceStartTime to place {file} on the room clock"])
        return [PlannedTrack((file,), uid, announced, None, f"{where}, uid {uid}")]
    result = []
    for n, (parts, start, length) in enumerate(_playlist(files, file, missing)):
        used.extend(parts)
        lengths[parts[0]] = length
        if start != start:  # slice names without a time: only the first stay can be placed
            if n or announced is None:
                raise refuse(files, [f"{parts[0]}: its name carries no start time and the file list gives none"])
            start = announced
        result.append(PlannedTrack(tuple(parts), uid, start, None, f"{where}, uid {uid}, stay {n + 1}"))
    return result


def _priming_s(files: SourceFiles, track: PlannedTrack) -> float:
    """How early to place a track so its encoder's priming samples fall before its start."""
    if len(track.parts) == 1 and not track.parts[0].lower().endswith(".ts"):
        probe(files, track.parts[0])
        return 0.0
    try:
        info = probe(files, track.parts[0])
    except InvalidSource:  # a slice of near silence is too short to probe alone: Agora's slices are AAC at 48 kHz
        return AAC_PRIMING_SAMPLES / AGORA_RATE
    return AAC_PRIMING_SAMPLES / (info.sample_rate or AGORA_RATE) if info.codec == "aac" else 0.0


def _plan(files: SourceFiles, found: list[PlannedTrack], names: dict[str, str], cname: str,
          skipped: list[tuple[str, str]], lengths: dict[str, float]) -> ImportPlan:
    shifted = [(track, track.start - _priming_s(files, track)) for track in found]
    origin = min(start for _, start in shifted)
    uids = sorted({t.speaker or "" for t in found}, key=lambda u: min(s for t, s in shifted if t.speaker == u))
    ids: dict[str, str] = {}
    for uid in uids:
        base = slug(names.get(uid, f"user-{uid}"), f"user-{uid}")
        ids[uid] = base if base not in ids.values() else f"{base}-{uid}"
    tracks = tuple(PlannedTrack(t.parts, ids[t.speaker or ""], start - origin, None, t.source)
                   for t, start in shifted)
    durations = {t.parts[0]: lengths.get(t.parts[0]) or probe(files, t.parts[0]).duration for t in tracks}
    check_segments(files, tracks, durations)
    notes = [f"uid {u} has no name in a CSV: named 'User {u}'" for u in uids if u not in names]
    stamp = from_epoch(min(t.start for t in found))
    return ImportPlan(room_id=f"{cname or files.label}-{stamp:%Y%m%d-%H%M%S}",
                      title=f"{cname or files.label} ({stamp:%Y-%m-%d %H:%M} UTC)",
                      speakers=tuple(PlannedSpeaker(ids[u], names.get(u, f"User {u}")) for u in uids),
                      tracks=tracks, recorded_at=stamp, skipped=tuple(skipped), notes=tuple(notes))
