"""The catalog's tables (SQLAlchemy 2 ORM rows with portable column types) and their conversion into the detached
records of :mod:`storage.records`. Only :mod:`storage` touches these rows; the rest of roomcast sees records.

Datetimes are stored in UTC and returned timezone-aware (:func:`utc_or_none`).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.records import (
    DEFAULT_LOCKED,
    DEFAULT_MAX_ITEMS,
    AssetRecord,
    EpisodeRecord,
    JobRecord,
    PersonRecord,
    ShowRecord,
)


def now() -> datetime:
    return datetime.now(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Show(Base):
    __tablename__ = "shows"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(String(512))
    author: Mapped[str] = mapped_column(String(256))
    owner_name: Mapped[str] = mapped_column(String(256))
    owner_email: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(16), default="en")
    category: Mapped[str] = mapped_column(String(128), default="Technology")
    subcategory: Mapped[str | None] = mapped_column(String(128), nullable=True)
    explicit: Mapped[bool] = mapped_column(Boolean, default=False)
    link: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    artwork_key: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    max_items: Mapped[int] = mapped_column(Integer, default=DEFAULT_MAX_ITEMS)
    private_token: Mapped[str | None] = mapped_column(String(128), nullable=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=DEFAULT_LOCKED)
    podcast_guid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    new_feed_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    live_items: Mapped[str] = mapped_column(Text, default="", server_default="")


class Episode(Base):
    __tablename__ = "episodes"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    show_id: Mapped[str] = mapped_column(String(128), index=True)
    title: Mapped[str] = mapped_column(String(512))
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    guid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    stage: Mapped[str] = mapped_column(String(128), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    recorded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    unpublished: Mapped[bool] = mapped_column(Boolean, default=False)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    input_hash: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now, onupdate=now)
    feed_meta: Mapped[str] = mapped_column(Text, default="", server_default="")
    speakers: Mapped[list[Speaker]] = relationship(cascade="all, delete-orphan", order_by="Speaker.position")
    tracks: Mapped[list[Track]] = relationship(cascade="all, delete-orphan", order_by="Track.position")
    assets: Mapped[list[Asset]] = relationship(cascade="all, delete-orphan", order_by="Asset.name")


class Speaker(Base):
    __tablename__ = "speakers"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    speaker_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32))
    consent: Mapped[bool] = mapped_column(Boolean)


class Track(Base):
    __tablename__ = "tracks"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    speaker_id: Mapped[str] = mapped_column(String(128))
    file: Mapped[str] = mapped_column(String(1024))
    start: Mapped[float] = mapped_column(Float)
    duration: Mapped[float] = mapped_column(Float)


class Asset(Base):
    __tablename__ = "assets"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)  # replays of long rooms can pass 2 GiB
    content_type: Mapped[str] = mapped_column(String(128))
    md5: Mapped[str] = mapped_column(String(64), default="")


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), index=True)
    input_hash: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), default="running")
    stage: Mapped[str] = mapped_column(String(128), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Lease(Base):
    """A stage of a room held by one worker process until ``expires_at`` (renewed while the stage runs); see
    :mod:`storage.leases`."""

    __tablename__ = "leases"
    episode_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    stage: Mapped[str] = mapped_column(String(64), primary_key=True)  # ingest, track-N, finish
    worker: Mapped[str] = mapped_column(String(256))
    token: Mapped[str] = mapped_column(String(32))
    room_ref: Mapped[str] = mapped_column(String(1024))
    task_id: Mapped[str] = mapped_column(String(64), index=True)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    renewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class StageRun(Base):
    """One finished run of a stage of a room (``ingest``, ``track-N``, ``finish``) by one worker process: who ran
    it, when, how much CPU it took and how it ended; see :mod:`storage.stage_runs`."""

    __tablename__ = "stage_runs"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(String(128), index=True)
    stage: Mapped[str] = mapped_column(String(64))
    worker: Mapped[str] = mapped_column(String(256))
    outcome: Mapped[str] = mapped_column(String(16))  # done, failed
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)


class EpisodeBasis(Base):
    """What the first run of an episode kept for editing it later (track analyses, mix plan, word times,
    chapters), as JSON; never published."""

    __tablename__ = "episode_bases"
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True)
    input_hash: Mapped[str] = mapped_column(String(64), default="")
    data: Mapped[str] = mapped_column(Text)
    saved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class EpisodeEdit(Base):
    """One edit of a published episode: who, when, what, and the episode's identity before and after."""

    __tablename__ = "episode_edits"
    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), index=True)
    request: Mapped[str] = mapped_column(Text)
    by: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="applying")
    hash_before: Mapped[str] = mapped_column(String(64))
    hash_after: Mapped[str] = mapped_column(String(64))
    error: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class VoicePrint(Base):
    """What one speaker of a show sounds like (:mod:`storage.voices`): never published, deleted on request."""

    __tablename__ = "voice_prints"
    show_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    speaker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(32), default="speaker")
    consent: Mapped[bool] = mapped_column(Boolean, default=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    speech_s: Mapped[float] = mapped_column(Float, default=0.0)
    episodes: Mapped[int] = mapped_column(Integer, default=0)
    last_episode: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)



def show_record(row: Show) -> ShowRecord:
    names = {f.name for f in fields(ShowRecord)}
    return ShowRecord(**{name: getattr(row, name) for name in names if hasattr(Show, name)})


def job_record(row: Job) -> JobRecord:
    return JobRecord(id=row.id, episode_id=row.episode_id, input_hash=row.input_hash, status=row.status,
                     stage=row.stage, progress=row.progress, error=row.error, started_at=utc_or_none(row.started_at),
                     finished_at=utc_or_none(row.finished_at))


def list_episode(row: Episode, duration_s: float, published_at: datetime | None) -> None:
    """Make an episode row eligible for its show's feeds; its first publication time is kept."""
    row.duration_s, row.unpublished = duration_s, False
    if row.published_at is None:
        row.published_at = utc_or_none(published_at) or now()


def episode_record(row: Episode) -> EpisodeRecord:
    return EpisodeRecord(
        id=row.id, show=row.show_id, title=row.title, description=row.description, visibility=row.visibility,
        guid=row.guid, status=row.status, stage=row.stage, progress=row.progress, error=row.error,
        language=row.language, recorded_at=utc_or_none(row.recorded_at), published_at=utc_or_none(row.published_at),
        duration_s=row.duration_s, feed_meta=row.feed_meta or "", input_hash=row.input_hash or "",
        assets=tuple(AssetRecord(a.name, a.key, a.size, a.content_type, a.md5) for a in row.assets),
        persons=tuple(PersonRecord(p.name, p.role) for p in row.speakers if p.consent),
    )

