"""Leases: which worker process holds each running stage of a room, and until when.

A stage (``ingest``, ``track-N``, ``finish``) runs only while its worker holds the stage's row in the ``leases``
table; the worker renews it (pushes ``expires_at`` ahead) while the stage runs and deletes it when the stage ends.
A worker that dies stops renewing, so its lease expires within one lease length and any live process can take the
stage over (:meth:`LeaseBook.take_over`) without waiting for the broker to redeliver its message.

Every change is one conditional statement, so of processes racing for a stage exactly one wins, on SQLite and
PostgreSQL alike: a lease is taken by an ``UPDATE ... WHERE expires_at < now`` of an expired row or an ``INSERT``
of a new one (the primary key refuses a second), renewed and released only by the holder of its ``token``.
Times are the workers' clocks: keep the machines' clocks in step (NTP), well within a lease length.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.exc import IntegrityError

from pipeline.errors import StorageError
from storage.catalog import ACTIVE, Catalog, Episode, Job, Lease, now


@dataclass(frozen=True)
class LeaseRecord:
    """One held stage. ``room_ref`` is what ``ingest`` needs to start the room again (``store:inbox/{id}/`` or a
    folder); ``task_id`` the broker's id of the task running the stage."""

    episode_id: str
    stage: str
    worker: str
    token: str
    room_ref: str
    task_id: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime

    def live(self, at: datetime | None = None) -> bool:
        return self.expires_at > (at or now())

    def age_s(self, at: datetime | None = None) -> float:
        """Seconds since the stage was taken."""
        return ((at or now()) - self.acquired_at).total_seconds()

    def silent_s(self, at: datetime | None = None) -> float:
        """Seconds since the holder last renewed the lease."""
        return ((at or now()) - self.renewed_at).total_seconds()


class LeaseBook:
    """The leases of one catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def acquire(self, *, episode_id: str, stage: str, worker: str, room_ref: str, task_id: str,
                duration_s: float) -> LeaseRecord | None:
        """Take the stage for ``duration_s`` seconds: the new lease, or None while another holder's is live."""
        at = now()
        values = {"worker": worker[:256], "token": uuid.uuid4().hex, "room_ref": room_ref, "task_id": task_id[:64],
                  "acquired_at": at, "renewed_at": at, "expires_at": at + timedelta(seconds=duration_s)}
        record = LeaseRecord(episode_id=episode_id, stage=stage, **values)  # type: ignore[arg-type]
        with self.catalog.session() as s:
            taken = s.execute(update(Lease).where(Lease.episode_id == episode_id, Lease.stage == stage,
                                                  Lease.expires_at < at).values(**values))
            if _count(taken) == 1:
                return record
        try:
            with self.catalog.session() as s:
                s.add(Lease(episode_id=episode_id, stage=stage, **values))
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # held: live, or just taken by a faster process
                return None
            raise
        return record

    def renew(self, lease: LeaseRecord, duration_s: float) -> bool:
        """Push the lease's expiry ahead; False when it is no longer ours (it expired and was taken over)."""
        at = now()
        with self.catalog.session() as s:
            done = s.execute(update(Lease).where(*_mine(lease))
                             .values(renewed_at=at, expires_at=at + timedelta(seconds=duration_s)))
            return _count(done) == 1

    def release(self, lease: LeaseRecord) -> None:
        with self.catalog.session() as s:
            s.execute(delete(Lease).where(*_mine(lease)))

    def holder(self, episode_id: str, stage: str) -> LeaseRecord | None:
        with self.catalog.session() as s:
            row = s.get(Lease, (episode_id, stage))
            return _record(row) if row else None

    def leases(self, episode_id: str | None = None) -> list[LeaseRecord]:
        """Every lease (live or expired), of one episode when given, oldest first."""
        with self.catalog.session() as s:
            query = select(Lease).order_by(Lease.acquired_at, Lease.episode_id, Lease.stage)
            if episode_id is not None:
                query = query.where(Lease.episode_id == episode_id)
            return [_record(row) for row in s.scalars(query)]

    def by_task(self, task_id: str) -> LeaseRecord | None:
        with self.catalog.session() as s:
            row = s.scalars(select(Lease).where(Lease.task_id == task_id)).first()
            return _record(row) if row else None

    def expired(self, at: datetime | None = None) -> list[LeaseRecord]:
        with self.catalog.session() as s:
            query = select(Lease).where(Lease.expires_at < (at or now())).order_by(Lease.expires_at)
            return [_record(row) for row in s.scalars(query)]

    def take_over(self, episode_id: str, at: datetime | None = None) -> list[LeaseRecord]:
        """Remove the episode's expired leases and return them; of processes doing this at once, one gets them
        (the others get an empty list), so a lost room is enqueued again once."""
        at = at or now()
        with self.catalog.session() as s:
            rows = [_record(row) for row in s.scalars(
                select(Lease).where(Lease.episode_id == episode_id, Lease.expires_at < at))]
            if not rows:
                return []
            gone = s.execute(delete(Lease).where(Lease.episode_id == episode_id, Lease.expires_at < at,
                                                 Lease.token.in_([r.token for r in rows])))
            return rows if _count(gone) > 0 else []

    def record_lost(self, episode_id: str, message: str) -> bool:
        """Write in the episode's history that its run was lost (``message``) and the room enqueued again: the
        running job is closed as abandoned with it (a job is added when the room had none yet). False when the
        episode is no longer pending or processing (nothing to take over)."""
        with self.catalog.session() as s:
            episode = s.get(Episode, episode_id)
            if episode is None or episode.status not in ACTIVE:
                return False
            closed = s.execute(update(Job).where(Job.episode_id == episode_id, Job.status == "running")
                               .values(status="abandoned", error=message[:20_000], finished_at=now()))
            if _count(closed) == 0:
                s.add(Job(id=uuid.uuid4().hex, episode_id=episode_id, input_hash=episode.input_hash,
                          status="abandoned", stage=episode.stage, error=message[:20_000], started_at=now(),
                          finished_at=now()))
            episode.stage = "requeued after a lost worker"
            return True


def _mine(lease: LeaseRecord) -> tuple[ColumnElement[bool], ...]:
    return Lease.episode_id == lease.episode_id, Lease.stage == lease.stage, Lease.token == lease.token


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _record(row: Lease) -> LeaseRecord:
    return LeaseRecord(episode_id=row.episode_id, stage=row.stage, worker=row.worker, token=row.token,
                       room_ref=row.room_ref, task_id=row.task_id, acquired_at=_utc(row.acquired_at),
                       renewed_at=_utc(row.renewed_at), expires_at=_utc(row.expires_at))
