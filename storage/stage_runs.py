"""The record of which worker process ran each stage of a room, kept after the stage's lease is gone.

A distributed run writes one row per stage it ran (``ingest``, ``track-N``, ``finish``): the worker's name (its
host name and process id, as on its lease), when it started and ended, the CPU seconds it took (the worker process
and the ffmpeg processes it waited for) and whether it ended ``done`` or ``failed``. Operators read it to see how
a room's tracks spread over the workers and what each stage costs (docs/deployment.md sizes a fleet from it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from storage.catalog import Catalog, StageRun


@dataclass(frozen=True)
class StageRunRecord:
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


class StageLog:
    """The stage runs of one catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def record(self, run: StageRunRecord) -> None:
        with self.catalog.session() as s:
            s.add(StageRun(episode_id=run.episode_id, stage=run.stage, worker=run.worker[:256], outcome=run.outcome,
                           started_at=run.started_at, finished_at=run.finished_at, cpu_s=run.cpu_s))

    def runs(self, episode_id: str) -> list[StageRunRecord]:
        """The episode's stage runs, in the order they started."""
        with self.catalog.session() as s:
            rows = s.scalars(select(StageRun).where(StageRun.episode_id == episode_id)
                             .order_by(StageRun.started_at, StageRun.pk))
            return [StageRunRecord(r.episode_id, r.stage, r.worker, r.outcome, _utc(r.started_at),
                                   _utc(r.finished_at), r.cpu_s) for r in rows]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
