"""The catalog: shows, episodes, their speakers, tracks and published assets, and processing jobs.

SQLAlchemy 2 ORM over SQLite (default) or PostgreSQL. Methods return the detached records of
:mod:`storage.records`, never ORM objects. Datetimes are stored in UTC.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Integer, String, Text, create_engine, event, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from pipeline.errors import StorageError
from storage.records import AssetRecord, EpisodeRecord, PersonRecord, ShowRecord, SpeakerRecord, TrackRecord

log = logging.getLogger(__name__)

GUID_NAMESPACE = uuid.UUID("5d1c0e3a-1f0b-4e55-9a39-2d0a9b6c7e11")  # roomcast's namespace for episode guids


def now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
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
    max_items: Mapped[int] = mapped_column(Integer, default=300)
    private_token: Mapped[str | None] = mapped_column(String(128), nullable=True)
    locked: Mapped[bool] = mapped_column(Boolean, default=True)


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
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(128))
    md5: Mapped[str] = mapped_column(String(64), default="")


class Catalog:
    """Access to the catalog database at ``url`` (any SQLAlchemy URL); tables are created when missing."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
                from pathlib import Path

                Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
            connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
            self.engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
            if url.startswith("sqlite"):
                event.listen(self.engine, "connect", _sqlite_pragmas)
            Base.metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog {url}: cannot open: {exc}", transient=True) from exc
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self.sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise StorageError(f"catalog: {exc.__class__.__name__}: {exc}", transient=True) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # shows
    def upsert_show(self, record: ShowRecord) -> ShowRecord:
        with self.session() as s:
            row = s.get(Show, record.id)
            values = {f.name: getattr(record, f.name) for f in fields(ShowRecord) if hasattr(Show, f.name)}
            if row is None:
                row = Show(**values)
                s.add(row)
            else:
                values.pop("private_token", None)  # the token is made once and kept
                for key, value in values.items():
                    setattr(row, key, value)
            s.flush()
            return _show(row)

    def get_show(self, show_id: str) -> ShowRecord | None:
        with self.session() as s:
            row = s.get(Show, show_id)
            return _show(row) if row else None

    def ensure_private_token(self, show_id: str) -> str:
        """The show's private feed token (256 random bits), made on first use and kept."""
        with self.session() as s:
            row = s.get(Show, show_id, with_for_update=True)
            if row is None:
                raise StorageError(f"catalog: show {show_id!r} does not exist")
            if not row.private_token:
                row.private_token = secrets.token_urlsafe(32)
            return row.private_token

    # episodes
    def upsert_episode(self, *, episode_id: str, show_id: str, title: str, description: str, visibility: str,
                       language: str | None, recorded_at: datetime | None, speakers: Sequence[SpeakerRecord],
                       tracks: Sequence[TrackRecord], input_hash: str = "") -> EpisodeRecord:
        """Create or update an episode from its room; the guid is set once and never changes."""
        with self.session() as s:
            row = s.get(Episode, episode_id)
            if row is None:
                row = Episode(id=episode_id, show_id=show_id, guid="")
                s.add(row)
            if not row.guid:
                row.guid = str(uuid.uuid5(GUID_NAMESPACE, f"{show_id}/{episode_id}"))
            row.show_id, row.title, row.description = show_id, title, description
            row.visibility, row.language, row.recorded_at = visibility, language, _utc(recorded_at)
            row.status, row.error, row.input_hash = "processing", "", input_hash or row.input_hash
            row.speakers = [Speaker(position=n, speaker_id=p.id, name=p.name, role=p.role, consent=p.consent)
                            for n, p in enumerate(speakers)]
            row.tracks = [Track(position=n, speaker_id=t.speaker, file=t.file, start=t.start, duration=t.duration)
                          for n, t in enumerate(tracks)]
            s.flush()
            return _episode(row)

    def set_stage(self, episode_id: str, stage: str, progress: float | None = None) -> None:
        with self.session() as s:
            row = s.get(Episode, episode_id)
            if row is not None:
                row.stage = stage
                if progress is not None:
                    row.progress = progress

    def record_failure(self, episode_id: str, error: str) -> None:
        """Mark the latest run of an episode failed; rooms that never made it into the catalog get a row too."""
        with self.session() as s:
            row = s.get(Episode, episode_id)
            if row is None:
                row = Episode(id=episode_id, show_id="", title=episode_id, guid="", visibility="unlisted")
                s.add(row)
            row.status, row.error = "failed", error[:20_000]

    def record_assets(self, episode_id: str, assets: Sequence[AssetRecord]) -> None:
        with self.session() as s:
            row = self._episode_row(s, episode_id)
            row.assets = [Asset(name=a.name, key=a.key, size=a.size, content_type=a.content_type, md5=a.md5)
                          for a in assets]

    def mark_published(self, episode_id: str, duration_s: float, published_at: datetime | None = None) -> None:
        with self.session() as s:
            row = self._episode_row(s, episode_id)
            row.status, row.stage, row.progress, row.error = "published", "published", 1.0, ""
            row.duration_s, row.unpublished = duration_s, False
            if row.published_at is None:
                row.published_at = _utc(published_at) or now()

    def mark_unpublished(self, episode_id: str) -> None:
        with self.session() as s:
            row = self._episode_row(s, episode_id)
            row.status, row.unpublished = "unpublished", True

    def get_episode(self, episode_id: str) -> EpisodeRecord | None:
        with self.session() as s:
            row = s.get(Episode, episode_id)
            return _episode(row) if row else None

    def list_episodes(self, show: str | None = None) -> list[EpisodeRecord]:
        with self.session() as s:
            query = select(Episode).order_by(Episode.updated_at.desc())
            if show:
                query = query.where(Episode.show_id == show)
            return [_episode(row) for row in s.scalars(query)]

    def feed_episodes(self, show_id: str, visibility: str) -> list[EpisodeRecord]:
        """Published episodes of a show with ``visibility``, newest first, capped by the show's max_items."""
        with self.session() as s:
            show = s.get(Show, show_id)
            cap = show.max_items if show else 300
            query = (select(Episode).where(Episode.show_id == show_id, Episode.visibility == visibility,
                                           Episode.published_at.is_not(None), Episode.unpublished.is_(False)))
            rows = [_episode(row) for row in s.scalars(query)]
        rows.sort(key=lambda e: e.recorded_at or e.published_at or now(), reverse=True)
        return rows[:cap]

    @staticmethod
    def _episode_row(s: Session, episode_id: str) -> Episode:
        row = s.get(Episode, episode_id)
        if row is None:
            raise StorageError(f"catalog: episode {episode_id!r} does not exist")
        return row


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _show(row: Show) -> ShowRecord:
    names = {f.name for f in fields(ShowRecord)}
    return ShowRecord(**{name: getattr(row, name) for name in names if hasattr(Show, name)})


def _episode(row: Episode) -> EpisodeRecord:
    return EpisodeRecord(
        id=row.id, show=row.show_id, title=row.title, description=row.description, visibility=row.visibility,
        guid=row.guid, status=row.status, stage=row.stage, progress=row.progress, error=row.error,
        language=row.language, recorded_at=_utc(row.recorded_at), published_at=_utc(row.published_at),
        duration_s=row.duration_s,
        assets=tuple(AssetRecord(a.name, a.key, a.size, a.content_type, a.md5) for a in row.assets),
        persons=tuple(PersonRecord(p.name, p.role) for p in row.speakers if p.consent),
    )

