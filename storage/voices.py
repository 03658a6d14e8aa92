"""A show's voice library: one print per speaker, from the rooms where they were heard alone on their own track.

Prints live in the catalog only (never in an object a URL can reach). A mixed recording of the show names the
voices it recognises from here, and silences a speaker whose latest word was that they do not consent. A speaker's
print follows their voice over episodes (the mean of every print, weighted by the speech it was taken from, old
prints counting for at most :data:`MEMORY_S`); :func:`forget_voice` deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import delete, select

from storage.catalog import Catalog, VoicePrint, _utc, now

MEMORY_S = 600.0


@dataclass(frozen=True)
class KnownVoice:
    show_id: str
    speaker_id: str
    name: str
    role: str
    consent: bool
    vector: np.ndarray
    speech_s: float
    episodes: int
    last_episode: str
    updated_at: datetime | None


def known_voices(catalog: Catalog, show_id: str) -> list[KnownVoice]:
    with catalog.session() as s:
        rows = s.scalars(select(VoicePrint).where(VoicePrint.show_id == show_id).order_by(VoicePrint.speaker_id))
        return [_record(r) for r in rows]


def remember_voice(catalog: Catalog, *, show_id: str, speaker_id: str, name: str, role: str, consent: bool,
                   vector: np.ndarray, speech_s: float, episode_id: str) -> KnownVoice:
    """Add what ``episode_id`` heard of a speaker to their print (a run of the same episode again replaces its
    own contribution rather than counting twice); their name, role and consent become this room's."""
    fresh = np.asarray(vector, dtype=np.float32)
    with catalog.session() as s:
        row = s.get(VoicePrint, (show_id, speaker_id))
        if row is None:
            row = VoicePrint(show_id=show_id, speaker_id=speaker_id, episodes=0, speech_s=0.0)
            s.add(row)
            merged, heard, episodes = fresh, speech_s, 1
        elif row.last_episode == episode_id:
            merged, heard, episodes = fresh if row.episodes <= 1 else _mean(row, fresh, speech_s), \
                max(row.speech_s, speech_s), row.episodes
        else:
            merged, heard, episodes = _mean(row, fresh, speech_s), row.speech_s + speech_s, row.episodes + 1
        norm = float(np.linalg.norm(merged)) or 1.0
        row.vector = (merged / norm).astype(np.float32).tobytes()
        row.name, row.role, row.consent = name, role, consent
        row.speech_s, row.episodes, row.last_episode, row.updated_at = heard, episodes, episode_id, now()
        s.flush()
        return _record(row)


def forget_voice(catalog: Catalog, show_id: str, speaker_id: str) -> bool:
    """Delete a speaker's print (the row itself, not a flag); False when the show had none for them."""
    with catalog.session() as s:
        done = s.execute(delete(VoicePrint).where(VoicePrint.show_id == show_id,
                                                  VoicePrint.speaker_id == speaker_id))
        return bool(getattr(done, "rowcount", 0))


def _mean(row: VoicePrint, fresh: np.ndarray, speech_s: float) -> np.ndarray:
    old = np.frombuffer(row.vector, dtype=np.float32)
    weight = min(row.speech_s, MEMORY_S)
    return np.asarray((old * weight + fresh * speech_s) / max(weight + speech_s, 1e-9), dtype=np.float32)


def _record(row: VoicePrint) -> KnownVoice:
    return KnownVoice(row.show_id, row.speaker_id, row.name, row.role, bool(row.consent),
                      np.frombuffer(row.vector, dtype=np.float32).copy(), float(row.speech_s), int(row.episodes),
                      row.last_episode, _utc(row.updated_at))
