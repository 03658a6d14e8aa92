"""A room as roomcast holds it once its manifest is read: speakers, tracks on the room clock, and the identity of
its inputs. :mod:`pipeline.manifest` reads and validates ``room.json`` into these types.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.ffmpeg import AudioInfo, Remembered, file_key

MANIFEST_NAME = "room.json"
VISIBILITIES = ("public", "unlisted", "private")
ROLES = ("host", "cohost", "moderator", "speaker", "guest")
# "multitrack": a file per speaker (the default); "mixed": one recording of the whole room (an X Space, a
# Clubhouse replay, a LinkedIn event), possibly in consecutive parts, whose speakers are found by voice.
RECORDINGS = ("multitrack", "mixed")
MIXED_SPEAKER = "mixed"  # the speaker id of a mixed recording's tracks until diarization names the voices


@dataclass(frozen=True)
class Speaker:
    id: str
    name: str
    role: str = "speaker"
    consent: bool = True


@dataclass(frozen=True)
class Track:
    """One recorded segment of one speaker, placed at ``start`` seconds on the room clock."""

    index: int
    speaker: str
    file: str
    path: Path
    start: float
    info: AudioInfo
    declared_end: float | None = None  # when the platform says the speaker left (optional ``end`` in the manifest)

    @property
    def end(self) -> float:
        return self.start + self.info.duration


@dataclass(frozen=True)
class Room:
    id: str
    show: str
    title: str
    folder: Path
    speakers: tuple[Speaker, ...]
    tracks: tuple[Track, ...]
    description: str = ""
    recorded_at: datetime | None = None
    visibility: str = "public"
    language: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    recording: str = "multitrack"

    @property
    def is_mixed(self) -> bool:
        return self.recording == "mixed"

    def speaker(self, speaker_id: str) -> Speaker:
        for speaker in self.speakers:
            if speaker.id == speaker_id:
                return speaker
        raise KeyError(speaker_id)

    @property
    def consenting_speakers(self) -> tuple[Speaker, ...]:
        """Speakers who agreed to the replay (decided by :func:`pipeline.consent.room_consent`)."""
        from pipeline.consent import room_consent

        return room_consent(self).speakers

    @property
    def published_tracks(self) -> tuple[Track, ...]:
        """Tracks of speakers who agreed to the replay: the only audio and words that are ever published (a mixed
        recording's parts are all used; who declined is silenced inside them once the voices are known).
        Decided by :func:`pipeline.consent.room_consent`."""
        from pipeline.consent import room_consent

        return room_consent(self).tracks

    @property
    def duration(self) -> float:
        return max((t.end for t in self.tracks), default=0.0)

    def speaker_names(self) -> dict[str, str]:
        return {s.id: s.name for s in self.speakers}


# Content hashes of rooms computed in this process, by the file_key of the manifest and of every track.
_DIGESTS: Remembered[tuple[object, ...], str] = Remembered(256)


def _artwork_file(room: Room) -> list[str]:
    """The episode artwork file the manifest's ``feed.image`` names (not a URL), when it is there: a new picture
    makes new inputs."""
    feed = room.extra.get("feed")
    image = feed.get("image") if isinstance(feed, dict) else None
    if not isinstance(image, str) or "://" in image or ".." in image.split("/") or image.startswith("/"):
        return []
    return [image] if (room.folder / image).is_file() else []


def content_hash(room: Room) -> str:
    """SHA-256 of the manifest and of every track (its file name, then its bytes, in track order), then of the
    episode artwork file if the manifest names one: the identity of a room's inputs. Remembered for the process
    while none of the files changes (the command line hashes a room while the rest of roomcast loads)."""
    tracks = sorted(room.tracks, key=lambda t: t.index)
    files = [(t.file, t.path) for t in tracks] + [(name, room.folder / name) for name in _artwork_file(room)]
    keys = (file_key(room.folder / MANIFEST_NAME), *(file_key(path) for _, path in files))
    key = keys if None not in keys else None
    if key is not None and (known := _DIGESTS.get(key)) is not None:
        return known
    digest = hashlib.sha256((room.folder / MANIFEST_NAME).read_bytes())
    for name, path in files:
        digest.update(name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)  # hashlib lets go of the GIL for chunks this size
    if key is not None:
        _DIGESTS.update({key: digest.hexdigest()})
    return digest.hexdigest()
