"""Plain, detached records that the catalog returns and the feed builder reads.

They carry no SQLAlchemy state, so they can cross process boundaries and be used after the session closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

EPISODE_STATUSES = ("pending", "processing", "published", "failed", "unpublished")
# A show's defaults, for every place a show is made (shows.toml, the catalog, records built by hand):
# the newest episodes its feed lists, and whether the feed carries podcast:locked "yes". A feed is locked only
# when the show names a real owner address (feeds.shows): locked to nobody, nobody could unlock it.
DEFAULT_MAX_ITEMS = 300
DEFAULT_LOCKED = False


EPISODE_ARTWORK_PREFIX = "artwork-"  # an episode's own cover beside its replay: artwork-{hash}.jpg

@dataclass(frozen=True)
class AssetRecord:
    """One published object of an episode. ``name`` is the file name in the storage layout (``replay.mp3``,
    ``transcript.vtt``, ``chapters.json``...); ``key`` is the full object key."""

    name: str
    key: str
    size: int
    content_type: str
    md5: str = ""


@dataclass(frozen=True)
class PersonRecord:
    """A consenting speaker as listed in the feed (``podcast:person``)."""

    name: str
    role: str = "guest"


@dataclass(frozen=True)
class ShowRecord:
    """A show as the feed lists it. ``artwork_path`` is the local image file configured in ``shows.toml`` (None:
    a generated cover); ``artwork_key`` is the published object."""

    id: str
    title: str
    author: str
    owner_name: str
    owner_email: str
    description: str
    language: str = "en"
    category: str = "Technology"
    subcategory: str | None = None
    explicit: bool = False
    link: str | None = None
    artwork_key: str | None = None
    max_items: int = DEFAULT_MAX_ITEMS
    private_token: str | None = None
    locked: bool = DEFAULT_LOCKED
    artwork_path: str | None = None
    # The show's identity for life (podcast:guid), fixed when the show is first published or pinned in shows.toml.
    podcast_guid: str | None = None
    new_feed_url: str | None = None  # where the feed moved to (itunes:new-feed-url)
    live_items: str = ""  # rooms announced live (JSON, feeds.live)


@dataclass(frozen=True)
class EpisodeRecord:
    id: str
    show: str
    title: str
    description: str
    visibility: str
    guid: str
    status: str = "pending"
    stage: str = ""
    progress: float = 0.0
    error: str = ""
    language: str | None = None
    recorded_at: datetime | None = None
    published_at: datetime | None = None
    duration_s: float = 0.0
    assets: tuple[AssetRecord, ...] = field(default_factory=tuple)
    persons: tuple[PersonRecord, ...] = field(default_factory=tuple)
    feed_meta: str = ""  # JSON of the manifest's "feed" object as checked at publish (feeds.feedmeta)
    input_hash: str = ""  # the content hash of the inputs of its latest run

    def asset(self, name: str) -> AssetRecord | None:
        return next((a for a in self.assets if a.name == name), None)

    def artwork(self) -> AssetRecord | None:
        """The episode's own cover, when it has one (``artwork-{hash}.jpg`` beside the replay)."""
        return next((a for a in self.assets if a.name.startswith(EPISODE_ARTWORK_PREFIX)), None)


@dataclass(frozen=True)
class SpeakerRecord:
    """A speaker of an episode as the manifest declares them."""

    id: str
    name: str
    role: str = "speaker"
    consent: bool = True


@dataclass(frozen=True)
class TrackRecord:
    speaker: str
    file: str
    start: float
    duration: float


JOB_STATUSES = ("running", "done", "failed", "abandoned")


@dataclass(frozen=True)
class JobRecord:
    """One processing run of an episode. ``input_hash`` identifies the inputs (manifest and track files), so a run
    over inputs already processed can be recognised; ``abandoned`` runs were replaced by a newer one."""

    id: str
    episode_id: str
    input_hash: str
    status: str = "running"
    stage: str = ""
    progress: float = 0.0
    error: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class StageRunRecord:
    """One run of a stage of a room by one worker process (:mod:`storage.stage_runs`)."""

    episode_id: str
    stage: str
    worker: str
    outcome: str
    started_at: datetime
    finished_at: datetime
    cpu_s: float

    @property
    def wall_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()
