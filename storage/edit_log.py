"""The catalog's record of edits: each episode's basis (what its first run kept for editing), the audit trail
of its edits, and the corrections an edit makes to the episode's rows (title, names, speakers removed).

An edit is recorded ``applying`` before anything is published and marked ``done`` once its feed lists it; an
edit left ``applying`` or ``failed`` (the store went away) is finished by running the same edit again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from storage.catalog import Catalog, EpisodeBasis, EpisodeEdit, Speaker, _utc, now

EDIT_STATUSES = ("applying", "done", "failed")


@dataclass(frozen=True)
class EditRecord:
    """One edit as the audit trail holds it; ``request`` is the edit's operations as JSON-able data."""

    number: int
    episode_id: str
    request: dict[str, Any]
    by: str
    status: str
    hash_before: str
    hash_after: str
    requested_at: datetime | None
    finished_at: datetime | None
    error: str = ""


def save_basis(catalog: Catalog, episode_id: str, input_hash: str, data: Mapping[str, Any]) -> None:
    with catalog.session() as s:
        row = s.get(EpisodeBasis, episode_id)
        if row is None:
            row = EpisodeBasis(episode_id=episode_id)
            s.add(row)
        row.input_hash, row.data, row.saved_at = input_hash, json.dumps(data, separators=(",", ":")), now()


def get_basis(catalog: Catalog, episode_id: str) -> dict[str, Any] | None:
    with catalog.session() as s:
        row = s.get(EpisodeBasis, episode_id)
        return json.loads(row.data) if row is not None else None


def edits(catalog: Catalog, episode_id: str) -> list[EditRecord]:
    """Every edit of the episode, oldest first."""
    with catalog.session() as s:
        rows = s.scalars(select(EpisodeEdit).where(EpisodeEdit.episode_id == episode_id)
                         .order_by(EpisodeEdit.pk)).all()
        return [_record(n, r) for n, r in enumerate(rows, 1)]


def begin_edit(catalog: Catalog, episode_id: str, request: Mapping[str, Any], by: str, hash_before: str,
               hash_after: str) -> int:
    """Record an edit as applying (or take up the same edit left unfinished); returns its row's key."""
    with catalog.session() as s:
        unfinished = s.scalars(select(EpisodeEdit).where(
            EpisodeEdit.episode_id == episode_id, EpisodeEdit.status != "done",
            EpisodeEdit.hash_after == hash_after)).first()
        if unfinished is not None:
            unfinished.status, unfinished.error, unfinished.by = "applying", "", by
            return unfinished.pk
        row = EpisodeEdit(episode_id=episode_id, request=json.dumps(dict(request), sort_keys=True), by=by,
                          status="applying", hash_before=hash_before, hash_after=hash_after, error="",
                          requested_at=now())
        s.add(row)
        s.flush()
        return row.pk


def end_edit(catalog: Catalog, pk: int, error: str | None = None) -> None:
    with catalog.session() as s:
        row = s.get(EpisodeEdit, pk)
        if row is not None:
            row.status, row.error = ("failed", error[:20_000]) if error else ("done", "")
            row.finished_at = now()


def correct_episode(catalog: Catalog, episode_id: str, *, title: str | None, description: str | None,
                    names: Mapping[str, str], removed: set[str] | frozenset[str]) -> None:
    """Apply an edit's metadata to the episode's rows: its title and description, its speakers' names, and
    removed speakers marked as not consenting (so no feed lists them)."""
    with catalog.session() as s:
        row = catalog._episode_row(s, episode_id)
        if title is not None:
            row.title = title
        if description is not None:
            row.description = description
        for speaker in s.scalars(select(Speaker).where(Speaker.episode_id == episode_id)).all():
            if speaker.speaker_id in names:
                speaker.name = names[speaker.speaker_id]
            if speaker.speaker_id in removed:
                speaker.consent = False


def _record(number: int, row: EpisodeEdit) -> EditRecord:
    return EditRecord(number, row.episode_id, json.loads(row.request), row.by, row.status, row.hash_before,
                      row.hash_after, _utc(row.requested_at), _utc(row.finished_at), row.error)
