"""The record of which worker process ran each stage of a room, kept after the stage's lease is gone.

Every run writes one row per stage it ran (``ingest``, ``track-N``, ``finish``): a Celery worker under the stage's
lease, an in-process run (``roomcast process``) for its own stages (:mod:`workers.runlog`). Each row holds the
worker's name (its host name and process id, as on its lease, or marked "in-process"), when it started and ended,
the CPU seconds it took (the worker process and the ffmpeg processes it waited for) and whether it ended ``done``
or ``failed``. Operators read it to see how a room's tracks spread over the workers and what each stage costs
(docs/deployment.md sizes a fleet from it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from storage.catalog import Catalog, Episode, StageRun
from storage.records import StageRunRecord


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
            return [_record(r) for r in rows]

    def finished_since(self, since: datetime | None = None) -> list[StageRunRecord]:
        """Every episode's stage runs that finished at or after ``since`` (all of them without), oldest first."""
        with self.catalog.session() as s:
            query = select(StageRun).order_by(StageRun.finished_at, StageRun.pk)
            if since is not None:
                query = query.where(StageRun.finished_at >= since)
            return [_record(r) for r in s.scalars(query)]

    def room_lengths(self, since: datetime | None = None) -> dict[str, float]:
        """The length in seconds of each room in the catalog with a stage run that finished at or after ``since``
        (all of them without), in one query."""
        ran = select(StageRun.episode_id)
        if since is not None:
            ran = ran.where(StageRun.finished_at >= since)
        with self.catalog.session() as s:
            rows = s.execute(select(Episode.id, Episode.duration_s).where(Episode.id.in_(ran.distinct())))
            return {episode_id: float(duration or 0.0) for episode_id, duration in rows}


def _record(row: StageRun) -> StageRunRecord:
    return StageRunRecord(row.episode_id, row.stage, row.worker, row.outcome, _utc(row.started_at),
                          _utc(row.finished_at), row.cpu_s)


POINTS = ("ingest", "track", "finish")


def stage_point(stage: str) -> str:
    """The kind of a stage run: ``track-3`` and ``track-3-replay`` are ``track`` runs, ``finish-replay`` a
    ``finish``."""
    return stage.split("-")[0]


@dataclass(frozen=True)
class StageCost:
    """What the runs of one kind of stage took: how many, how many of them failed, their CPU seconds."""

    point: str
    runs: int
    failed: int
    cpu_s: float


@dataclass(frozen=True)
class CostReport:
    """The CPU that stage runs took, against the length of the rooms they were for. ``room_s`` sums the rooms of
    known length (``unknown``: rooms the catalog gives no length, left out of it); a room run again (an edit, a
    retry, a second phase) counts once in ``room_s`` and every time in the CPU, which is what an operator pays."""

    stages: tuple[StageCost, ...]
    rooms: int
    unknown: int
    room_s: float
    first: datetime
    last: datetime

    @property
    def cpu_s(self) -> float:
        return sum(stage.cpu_s for stage in self.stages)

    def core_hours_per_room_hour(self) -> float | None:
        """CPU core-hours per hour of room (None without a room of known length)."""
        return self.cpu_s / self.room_s if self.room_s > 0 else None


def cost_report(runs: Sequence[StageRunRecord], durations: Mapping[str, float]) -> CostReport:
    """The cost of ``runs`` (at least one); ``durations``: each room's length in seconds, by episode id (0 or
    missing: unknown)."""
    if not runs:
        raise ValueError("no stage runs to cost")
    by_point: dict[str, list[StageRunRecord]] = {}
    for run in runs:
        by_point.setdefault(stage_point(run.stage), []).append(run)
    order = [p for p in POINTS if p in by_point] + sorted(p for p in by_point if p not in POINTS)
    stages = tuple(StageCost(point, len(by_point[point]), sum(r.outcome != "done" for r in by_point[point]),
                             round(sum(r.cpu_s for r in by_point[point]), 3)) for point in order)
    rooms = sorted({run.episode_id for run in runs})
    lengths = [float(durations.get(room) or 0.0) for room in rooms]
    return CostReport(stages, len(rooms), sum(length <= 0 for length in lengths),
                      sum(length for length in lengths if length > 0),
                      min(r.started_at for r in runs), max(r.finished_at for r in runs))


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
