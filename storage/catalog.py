"""The catalog: shows, episodes, their speakers, tracks and published assets, and processing jobs.

SQLAlchemy 2 ORM over SQLite (default) or PostgreSQL; the tables are in :mod:`storage.catalog_schema`, kept up to
date by the Alembic migrations in :mod:`storage.migrations` (``upgrade head`` when a catalog is opened).
Methods return the detached records of :mod:`storage.records`, never ORM objects. Datetimes are stored in UTC and
returned timezone-aware. Database errors become :class:`StorageError`; ``transient`` is set for the ones a retry
may fix (a lost connection, a locked SQLite file, a pool timeout).

Each run over an episode is a job: :meth:`Catalog.upsert_episode` (the ingest of a room) opens one,
:meth:`~Catalog.set_stage` moves it on, :meth:`~Catalog.set_failed` and :meth:`~Catalog.mark_published` close it.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.errors import StorageError
from storage.catalog_schema import (
    Asset,
    Base,
    Episode,
    EpisodeBasis,
    EpisodeEdit,
    Job,
    Lease,
    Show,
    Speaker,
    StageRun,
    Track,
    VoicePrint,
    episode_record,
    job_record,
    list_episode,
    now,
    show_record,
)
from storage.catalog_schema import utc_or_none as _utc
from storage.migrations import migrate
from storage.records import (
    DEFAULT_MAX_ITEMS,
    AssetRecord,
    EpisodeRecord,
    JobRecord,
    ShowRecord,
    SpeakerRecord,
    TrackRecord,
)

# The tables are re-exported here: storage modules beside the catalog reach them through it.
__all__ = ["ACTIVE", "GUID_NAMESPACE", "TRANSIENT_DB_ERRORS", "VISIBILITIES", "Asset", "Base", "Catalog", "Episode",
           "EpisodeBasis", "EpisodeEdit", "Job", "Lease", "Show", "Speaker", "StageRun", "Track", "VoicePrint", "now"]

log = logging.getLogger(__name__)

GUID_NAMESPACE = uuid.UUID("5d1c0e3a-1f0b-4e55-9a39-2d0a9b6c7e11")  # roomcast's namespace for episode guids
VISIBILITIES = ("public", "unlisted", "private")
TRANSIENT_DB_ERRORS = (OperationalError, DisconnectionError, InterfaceError, PoolTimeoutError)
ACTIVE = ("pending", "processing")


class Catalog:
    """Access to the catalog database at ``url`` (any SQLAlchemy URL); tables are created when missing."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.engine = create_engine(url, **_engine_options(url))
            self.name = self.engine.url.render_as_string(hide_password=True)
            if self.engine.dialect.name == "sqlite":
                event.listen(self.engine, "connect", _sqlite_pragmas)
            migrate(self.engine, Base.metadata)
        except (SQLAlchemyError, OSError, ValueError) as exc:
            raise StorageError(f"catalog {url.split('@')[-1]}: cannot open it: {exc}; check ROOMCAST_DATABASE_URL",
                               transient=isinstance(exc, TRANSIENT_DB_ERRORS)) from exc
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        session = self.sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            transient = isinstance(exc, TRANSIENT_DB_ERRORS)
            hint = "; retry later" if transient else ""
            raise StorageError(f"catalog {self.name}: {exc.__class__.__name__}: {exc}{hint}",
                               transient=transient) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    # shows
    def upsert_show(self, record: ShowRecord) -> ShowRecord:
        """Create or update a show; its private feed token, once made, is kept, and so are its ``podcast:guid``
        and the URL its feed moved to unless ``record`` sets them (the guid pinned in shows.toml)."""
        with self.session() as s:
            row = s.get(Show, record.id)
            values = {f.name: getattr(record, f.name) for f in fields(ShowRecord) if hasattr(Show, f.name)}
            if row is None:
                row = Show(**values)
                s.add(row)
            else:
                values.pop("private_token", None)
                values.pop("live_items", None)
                for kept in ("podcast_guid", "new_feed_url"):
                    if values.get(kept) is None:
                        values.pop(kept, None)
                for key, value in values.items():
                    setattr(row, key, value)
            s.flush()
            return show_record(row)

    def get_show(self, show_id: str) -> ShowRecord | None:
        with self.session() as s:
            row = s.get(Show, show_id)
            return show_record(row) if row else None

    def pin_show_guid(self, show_id: str, guid: str) -> str:
        """The show's ``podcast:guid``: the one it has, else ``guid``, kept from now on."""
        with self.session() as s:
            row = s.get(Show, show_id, with_for_update=True)
            if row is None:
                raise StorageError(f"catalog {self.name}: show {show_id!r} does not exist; publish to it first")
            if not row.podcast_guid:
                row.podcast_guid = guid
            return row.podcast_guid

    def set_new_feed_url(self, show_id: str, url: str | None) -> ShowRecord:
        """Record that the show's feed moved to ``url`` (None: it did not, or it moved back)."""
        with self.session() as s:
            row = s.get(Show, show_id, with_for_update=True)
            if row is None:
                raise StorageError(f"catalog {self.name}: show {show_id!r} does not exist; publish to it first")
            row.new_feed_url = url
            s.flush()
            return show_record(row)

    def moved_shows(self) -> list[ShowRecord]:
        """Shows whose feed moved elsewhere (``roomcast feed move``), by id."""
        with self.session() as s:
            rows = s.scalars(select(Show).where(Show.new_feed_url.is_not(None)).order_by(Show.id))
            return [show_record(row) for row in rows]

    def set_live_items(self, show_id: str, live_items: str) -> None:
        """Replace the show's rooms announced live (JSON, see :mod:`feeds.live`)."""
        with self.session() as s:
            row = s.get(Show, show_id, with_for_update=True)
            if row is None:
                raise StorageError(f"catalog {self.name}: show {show_id!r} does not exist; publish to it first")
            row.live_items = live_items

    def ensure_private_token(self, show_id: str) -> str:
        """The show's private feed token (256 random bits), made on first use and kept."""
        with self.session() as s:
            row = s.get(Show, show_id, with_for_update=True)
            if row is None:
                raise StorageError(f"catalog {self.name}: show {show_id!r} does not exist; publish to it or add "
                                   f"it to shows.toml first")
            if not row.private_token:
                row.private_token = secrets.token_urlsafe(32)
            return row.private_token

    # episodes
    def upsert_episode(self, *, episode_id: str, show_id: str, title: str, description: str, visibility: str,
                       language: str | None, recorded_at: datetime | None, speakers: Sequence[SpeakerRecord],
                       tracks: Sequence[TrackRecord], input_hash: str = "") -> EpisodeRecord:
        """Create or update an episode from its room and open a job for this run (a running job left by an
        earlier run is marked abandoned). The guid is set once and never changes."""
        if visibility not in VISIBILITIES:
            raise StorageError(f"catalog {self.name}: episode {episode_id!r} has visibility {visibility!r}; "
                               f"use one of {', '.join(VISIBILITIES)}")
        with self.session() as s:
            row = s.get(Episode, episode_id)
            if row is None:
                row = Episode(id=episode_id, show_id=show_id, guid="")
                s.add(row)
            if not row.guid:
                row.guid = str(uuid.uuid5(GUID_NAMESPACE, f"{show_id}/{episode_id}"))
            row.show_id, row.title, row.description = show_id, title, description
            row.visibility, row.language, row.recorded_at = visibility, language, _utc(recorded_at)
            row.status, row.stage, row.progress, row.error = "processing", "queued", 0.0, ""
            row.input_hash = input_hash or row.input_hash
            row.speakers = [Speaker(position=n, speaker_id=p.id, name=p.name, role=p.role, consent=p.consent)
                            for n, p in enumerate(speakers)]
            row.tracks = [Track(position=n, speaker_id=t.speaker, file=t.file, start=t.start, duration=t.duration)
                          for n, t in enumerate(tracks)]
            s.flush()
            self._close_jobs(s, episode_id, "abandoned", "replaced by a newer run")
            s.add(Job(id=uuid.uuid4().hex, episode_id=episode_id, input_hash=row.input_hash, stage="queued",
                      started_at=now()))
            return episode_record(row)

    def set_speakers(self, episode_id: str, speakers: Sequence[SpeakerRecord]) -> None:
        """Replace an episode's speakers (a mixed recording's, once its voices are known)."""
        with self.session() as s:
            row = s.get(Episode, episode_id)
            if row is None:
                raise StorageError(f"catalog {self.name}: no episode {episode_id!r}")
            row.speakers = [Speaker(position=n, speaker_id=p.id, name=p.name, role=p.role, consent=p.consent)
                            for n, p in enumerate(speakers)]

    def speakers(self, episode_id: str) -> list[SpeakerRecord]:
        """An episode's speakers, in the manifest's order (a mixed recording's as its voices were found)."""
        with self.session() as s:
            row = s.get(Episode, episode_id)
            return [] if row is None else [SpeakerRecord(p.speaker_id, p.name, p.role, p.consent)
                                           for p in row.speakers]

    def set_stage(self, episode_id: str, stage: str, progress: float | None = None) -> None:
        """Move an episode and its running job to ``stage`` (``progress`` from 0 to 1 within the stage)."""
        values: dict[str, object] = {"stage": stage}
        if progress is not None:
            values["progress"] = min(max(progress, 0.0), 1.0)
        with self.session() as s:
            s.execute(update(Episode).where(Episode.id == episode_id).values(**values))
            s.execute(update(Job).where(Job.episode_id == episode_id, Job.status == "running").values(**values))

    def set_failed(self, episode_id: str, error: str, *, still_published: bool = False) -> None:
        """Mark the latest run of an episode failed; rooms that never made it into the catalog get a row too.
        ``still_published``: what the run published already stays published (replay first: the replay is out,
        its transcripts failed), the error recorded beside it."""
        with self.session() as s:
            row = s.get(Episode, episode_id)
            if row is None:
                row = Episode(id=episode_id, show_id="", title=episode_id, guid="", visibility="unlisted")
                s.add(row)
            keep = still_published and row.status == "published"
            row.status, row.error = "published" if keep else "failed", error[:20_000]
            if keep:
                row.stage = "published without transcripts: see the error"
            s.flush()
            self._close_jobs(s, episode_id, "failed", error[:20_000])

    def record_assets(self, episode_id: str, assets: Sequence[AssetRecord]) -> None:
        """Replace the episode's set of published objects."""
        with self.session() as s:
            row = self._episode_row(s, episode_id)
            row.assets = [Asset(name=a.name, key=a.key, size=a.size, content_type=a.content_type, md5=a.md5)
                          for a in assets]

    def set_feed_meta(self, episode_id: str, feed_meta: str) -> None:
        """Keep what the episode's feed item says beyond the basics (JSON, see :mod:`feeds.feedmeta`)."""
        with self.session() as s:
            self._episode_row(s, episode_id).feed_meta = feed_meta

    def mark_listed(self, episode_id: str, duration_s: float, published_at: datetime | None = None) -> None:
        """Let the show's feeds list the episode (its objects are stored); the first ``published_at`` is kept.
        Its status becomes ``published`` only with :meth:`mark_published`, once the feeds are rebuilt, so a
        published episode is always in its feed."""
        with self.session() as s:
            row = self._episode_row(s, episode_id)
            row.stage = "updating feeds"
            list_episode(row, duration_s, published_at)

    def mark_published(self, episode_id: str, duration_s: float, published_at: datetime | None = None) -> None:
        """Mark the episode published and its run done; the first ``published_at`` is kept on re-publishing."""
        with self.session() as s:
            row = self._episode_row(s, episode_id)
            row.status, row.stage, row.progress, row.error = "published", "published", 1.0, ""
            list_episode(row, duration_s, published_at)
            self._close_jobs(s, episode_id, "done", "")

    def mark_replay_published(self, episode_id: str, duration_s: float, next_stage: str) -> None:
        """Mark the episode published while its run goes on (replay first: its transcripts follow): listeners get
        it now; its run stays open, at ``next_stage``, until :meth:`mark_published` closes it."""
        with self.session() as s:
            row = self._episode_row(s, episode_id)
            row.status, row.stage, row.progress, row.error = "published", next_stage, 0.0, ""
            list_episode(row, duration_s, None)
            s.execute(update(Job).where(Job.episode_id == episode_id, Job.status == "running")
                      .values(stage=next_stage, progress=0.0))

    def mark_unpublished(self, episode_id: str) -> None:
        with self.session() as s:
            row = self._episode_row(s, episode_id)
            row.status, row.unpublished = "unpublished", True

    def get_episode(self, episode_id: str) -> EpisodeRecord | None:
        with self.session() as s:
            row = s.get(Episode, episode_id)
            return episode_record(row) if row else None

    def list_episodes(self, show: str | None = None) -> list[EpisodeRecord]:
        """Episodes, most recently changed first; of one show when ``show`` is given."""
        with self.session() as s:
            query = select(Episode).order_by(Episode.updated_at.desc(), Episode.id)
            if show:
                query = query.where(Episode.show_id == show)
            return [episode_record(row) for row in s.scalars(query)]

    def feed_episodes(self, show_id: str, visibility: str) -> list[EpisodeRecord]:
        """Published episodes of a show with ``visibility``, newest first (by recording time, else publication
        time), capped by the show's ``max_items``."""
        with self.session() as s:
            show = s.get(Show, show_id)
            newest_first = func.coalesce(Episode.recorded_at, Episode.published_at).desc()
            query = (select(Episode)
                     .where(Episode.show_id == show_id, Episode.visibility == visibility,
                            Episode.published_at.is_not(None), Episode.unpublished.is_(False))
                     .order_by(newest_first, Episode.published_at.desc(), Episode.id)
                     .limit(show.max_items if show else DEFAULT_MAX_ITEMS))
            return [episode_record(row) for row in s.scalars(query)]

    def claim_submission(self, *, episode_id: str, show_id: str, title: str, visibility: str,
                         input_hash: str) -> str | None:
        """Record a submitted room as ``pending`` unless the same inputs are already pending, processing or
        published; then return that status (the submission is a duplicate), else None (the caller enqueues it)."""
        if visibility not in VISIBILITIES:
            raise StorageError(f"catalog {self.name}: episode {episode_id!r} has visibility {visibility!r}; "
                               f"use one of {', '.join(VISIBILITIES)}")
        try:
            with self.session() as s:
                row = s.get(Episode, episode_id, with_for_update=True)
                if row is not None and row.input_hash == input_hash and (
                        row.status in ACTIVE or (row.status == "published" and not row.unpublished)):
                    return row.status
                if row is None:
                    row = Episode(id=episode_id, show_id=show_id, title=title, visibility=visibility,
                                  guid=str(uuid.uuid5(GUID_NAMESPACE, f"{show_id}/{episode_id}")))
                    s.add(row)
                row.status, row.stage, row.progress, row.error = "pending", "submitted", 0.0, ""
                row.input_hash = input_hash
                return None
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # a concurrent submission inserted it first
                return "pending"
            raise

    def stale_episodes(self, older_than_s: float) -> list[EpisodeRecord]:
        """Episodes pending or processing whose row has not changed for ``older_than_s`` seconds: their messages
        may have been lost (a broker restarted without persistence), so they can be enqueued again."""
        cutoff = now() - timedelta(seconds=older_than_s)
        with self.session() as s:
            query = select(Episode).where(Episode.status.in_(ACTIVE), Episode.updated_at < cutoff)
            return [episode_record(row) for row in s.scalars(query.order_by(Episode.updated_at))]

    def touch(self, episode_id: str) -> None:
        """Mark an episode's row as changed now (it was just enqueued again)."""
        with self.session() as s:
            s.execute(update(Episode).where(Episode.id == episode_id).values(updated_at=now()))

    @contextmanager
    def show_lock(self, show_id: str) -> Iterator[None]:
        """Hold the show's row until the block ends, so feed rebuilds of one show run one at a time.

        PostgreSQL: ``SELECT ... FOR UPDATE`` on the show row. SQLite has no row locks: a no-op UPDATE of the row
        takes the database's write lock instead. Either way the database releases the lock when the holder's
        connection dies, so a worker killed mid-rebuild never blocks the show."""
        with self.session() as s:
            if self.engine.dialect.name == "sqlite":
                s.execute(update(Show).where(Show.id == show_id).values(max_items=Show.max_items))
            else:
                s.execute(select(Show.id).where(Show.id == show_id).with_for_update())
            yield

    # jobs
    def jobs(self, episode_id: str) -> list[JobRecord]:
        """The runs of an episode, newest first."""
        with self.session() as s:
            query = select(Job).where(Job.episode_id == episode_id).order_by(Job.started_at.desc(), Job.id)
            return [job_record(row) for row in s.scalars(query)]

    def finished_job(self, episode_id: str, input_hash: str) -> JobRecord | None:
        """The latest run that completed over exactly these inputs, if any: a new run over them can be skipped."""
        with self.session() as s:
            query = (select(Job).where(Job.episode_id == episode_id, Job.input_hash == input_hash,
                                       Job.status == "done").order_by(Job.finished_at.desc()).limit(1))
            row = s.scalars(query).first()
            return job_record(row) if row else None

    @staticmethod
    def _close_jobs(s: Session, episode_id: str, status: str, error: str) -> None:
        s.execute(update(Job).where(Job.episode_id == episode_id, Job.status == "running")
                  .values(status=status, error=error, finished_at=now()))

    def _episode_row(self, s: Session, episode_id: str) -> Episode:
        row = s.get(Episode, episode_id)
        if row is None:
            raise StorageError(f"catalog {self.name}: episode {episode_id!r} does not exist; process its room first")
        return row


def _engine_options(url: str) -> dict[str, Any]:
    if not url.startswith("sqlite"):
        return {"pool_pre_ping": True}
    path = url.partition(":///")[2].split("?")[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # A busy SQLite file waits for the other writer instead of failing at once (workers share the file).
    return {"connect_args": {"timeout": 30}}


def _sqlite_pragmas(connection: object, _record: object) -> None:
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
