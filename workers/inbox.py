"""Rooms as objects: the store's inbox (``inbox/{room_id}/``) that ``roomcast submit`` fills so workers need no
shared disk, the local copy a worker makes of a room before processing it, and the completeness check that
``roomcast scan`` applies to an inbox of room folders (a local folder or an ``s3://`` prefix).

A room held in a store is named by a *store reference*, ``store:{prefix}`` (e.g. ``store:inbox/room-1/``); it
travels in job descriptions in place of a local folder, and every worker turns it into a folder of its own with
:func:`materialize`.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import StorageError
from pipeline.manifest import MANIFEST_NAME, Room
from storage.layout import INBOX_PREFIX as INBOX_PREFIX
from storage.layout import inbox_prefix
from storage.objects import ObjectInfo, ObjectStore, check_key
from workers.showcheck import room_feed_meta

log = logging.getLogger(__name__)

STORE_REF = "store:"
CACHE_INDEX = ".roomcast-objects.json"  # in a materialized folder: the object versions its files came from


def is_store_ref(ref: str) -> bool:
    return ref.startswith(STORE_REF)


def store_ref(prefix: str) -> str:
    return STORE_REF + prefix


def upload_room(store: ObjectStore, room: Room) -> str:
    """Copy a validated room's tracks (and its episode artwork), then its manifest, to ``inbox/{room_id}/``;
    return its store reference. Unchanged objects are not uploaded again. The manifest goes last: a room whose
    manifest is in the inbox is whole."""
    prefix = inbox_prefix(room.id)
    for track in room.tracks:
        store.put_file(prefix + track.file, track.path)
    artwork = room_feed_meta(room).image_file  # the episode's own cover travels with the room
    if artwork:
        store.put_file(prefix + artwork, room.folder / artwork)
    store.put_file(prefix + MANIFEST_NAME, room.folder / MANIFEST_NAME)
    return store_ref(prefix)


def materialize(store: ObjectStore, prefix: str, cache_root: Path) -> Path:
    """A local folder holding every object under ``prefix`` (a room), downloaded once and reused while the
    objects are unchanged; every file's size is checked against the store's. Safe for several processes at once
    (each file is written to a temporary name, then renamed)."""
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    objects = {info.key[len(prefix):]: info for info in store.list(prefix)}
    if MANIFEST_NAME not in objects:
        raise StorageError(f"store {store.describe()}: no {prefix}{MANIFEST_NAME}; the room is not (or no longer) "
                           f"in the store: submit it again")
    folder = cache_root / check_key(prefix.rstrip("/"))
    folder.mkdir(parents=True, exist_ok=True)
    index = _read_index(folder)
    fetched = 0
    for name, info in objects.items():
        target = folder / check_key(name)
        if index.get(name) == [info.size, info.md5] and _size(target) == info.size:
            continue
        _download(store, info, target)
        fetched += 1
    for name, info in objects.items():
        size = _size(folder / name)
        if size != info.size:
            raise StorageError(f"store {store.describe()}: {info.key} arrived with {size} of {info.size} bytes in "
                               f"{folder}; retry", transient=True)
    if fetched:
        _write_index(folder, {name: [info.size, info.md5] for name, info in objects.items()})
        log.info("room %s: %d object(s) downloaded to %s", prefix, fetched, folder)
    return folder


def _download(store: ObjectStore, info: ObjectInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=target.parent)
    os.close(fd)
    try:
        store.download(info.key, Path(tmp))
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _read_index(folder: Path) -> dict[str, list[object]]:
    try:
        data = json.loads((folder / CACHE_INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_index(folder: Path, index: dict[str, list[object]]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(index, handle)
    os.replace(tmp, folder / CACHE_INDEX)


@dataclass(frozen=True)
class Candidate:
    """A room folder found in an inbox: ``missing`` lists what keeps it from being complete (empty: complete)."""

    name: str
    location: str  # a local folder, or the room's prefix in the inbox store
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


def _missing_tracks(manifest: bytes, size_of: dict[str, int]) -> tuple[str, ...]:
    """What a room still lacks, judged from its manifest and the sizes of the files present (a track that is
    absent or empty is still being uploaded)."""
    try:
        data = json.loads(manifest)
        files = [str(track["file"]) for track in data["tracks"]]
    except (ValueError, KeyError, TypeError):
        return (f"{MANIFEST_NAME} (not readable yet)",)
    return tuple(f for f in files if size_of.get(posixpath.normpath(f), 0) <= 0)


def local_candidates(inbox: Path) -> Iterator[Candidate]:
    """Room folders directly under ``inbox``, each with what it still lacks."""
    for folder in sorted(p for p in Path(inbox).iterdir() if p.is_dir() and not p.name.startswith(".")):
        manifest = folder / MANIFEST_NAME
        if not manifest.is_file():
            yield Candidate(folder.name, str(folder), (MANIFEST_NAME,))
            continue
        sizes = {p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
        yield Candidate(folder.name, str(folder), _missing_tracks(manifest.read_bytes(), sizes))


def store_candidates(store: ObjectStore) -> Iterator[Candidate]:
    """Room folders at the top of a store (an ``s3://bucket/prefix`` inbox), each with what it still lacks."""
    rooms: dict[str, dict[str, int]] = {}
    for info in store.list(""):
        name, sep, rest = info.key.partition("/")
        if sep:
            rooms.setdefault(name, {})[rest] = info.size
    for name, sizes in sorted(rooms.items()):
        if MANIFEST_NAME not in sizes:
            yield Candidate(name, f"{name}/", (MANIFEST_NAME,))
            continue
        yield Candidate(name, f"{name}/", _missing_tracks(store.get_bytes(f"{name}/{MANIFEST_NAME}"), sizes))
