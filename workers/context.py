"""What every stage of a room's run is handed and opens: the :class:`Job` (where the room's inputs and results
are, as plain strings that travel in a Celery message) and the :class:`Context` (this process's store and catalog).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.objects import ObjectStore, open_store
from workers import stages
from workers.config import Settings
from workers.inbox import STORE_REF, is_store_ref, materialize

if TYPE_CHECKING:
    from storage.catalog import Catalog

# What ``roomcast status`` says of a room whose replay is out and whose tracks are being transcribed.
TRANSCRIBING = "replay published; transcribing tracks"


@dataclass(frozen=True)
class Job:
    """What every stage needs to find a room's inputs and results; plain strings so it travels as JSON."""

    episode_id: str
    room_dir: str
    input_hash: str
    language: str | None
    tracks: tuple[int, ...]
    phase: str = stages.FULL  # which run of the tracks and the finish this is (:data:`workers.stages.PHASES`)

    def to_dict(self) -> dict[str, Any]:
        return {"episode_id": self.episode_id, "room_dir": self.room_dir, "input_hash": self.input_hash,
                "language": self.language, "tracks": list(self.tracks), "phase": self.phase}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(str(data["episode_id"]), str(data["room_dir"]), str(data["input_hash"]), data.get("language"),
                   tuple(int(i) for i in data["tracks"]), str(data.get("phase") or stages.FULL))

    def in_phase(self, phase: str) -> Job:
        return replace(self, phase=phase)


def phases(settings: Settings) -> tuple[str, ...]:
    """The phases a room runs in with ``settings`` (replay first, or one full run)."""
    return stages.phases(transcribe=settings.transcribe, replay_first=settings.replay_first)


def run_settings(settings: Settings, job: Job) -> Settings:
    """The settings of ``job``'s phase: the replay phase transcribes nothing."""
    return settings if stages.transcribes(job.phase) or not settings.transcribe else settings.replace(transcribe=False)


class Context:
    """Opened resources for one process: the store, and the catalog (opened when first used: SQLAlchemy and the
    migrations take about half a second, which a run spends while its tracks are analysed), once per settings."""

    _cache: dict[tuple[str, str | None, str], Context] = {}
    _lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: ObjectStore = open_store(settings.store, public_url=settings.public_url)
        self._catalog: Catalog | None = None
        self._catalog_lock = threading.Lock()

    @property
    def catalog(self) -> Catalog:
        with self._catalog_lock:
            if self._catalog is None:
                from storage.catalog import Catalog

                self._catalog = Catalog(self.settings.database_url)
            return self._catalog

    @classmethod
    def forget_inherited(cls) -> None:
        """In a process just forked from one that had opened resources: leave the parent's database connections to
        it (SQLAlchemy's way for a child process) and open new ones when needed."""
        with cls._lock:
            for context in cls._cache.values():
                if context._catalog is not None:
                    context._catalog.engine.dispose(close=False)
            cls._cache.clear()

    @staticmethod
    def key(settings: Settings) -> tuple[str, str | None, str]:
        """What a context depends on: settings differing in nothing else share one."""
        return settings.store, settings.public_url, settings.database_url

    @classmethod
    def of(cls, settings: Settings) -> Context:
        """The context of ``settings``' store and catalog."""
        key = cls.key(settings)
        with cls._lock:
            if key not in cls._cache:
                cls._cache[key] = cls(settings)
            return cls._cache[key]


def room_folder(settings: Settings, room_ref: str | Path) -> Path:
    """The local folder of a room: the folder itself, or this machine's copy of a room held in the store
    (``store:inbox/{id}/``), downloaded into the cache once."""
    ref = str(room_ref)
    if not is_store_ref(ref):
        return Path(ref)
    return materialize(Context.of(settings).store, ref[len(STORE_REF):], Path(settings.cache_dir) / "rooms")
