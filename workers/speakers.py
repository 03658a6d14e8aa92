"""Voices in a room's run: prints for the show's voice library from multitrack rooms, speakers found by voice in
mixed ones.

- Every track of a multitrack room leaves a voice print in its track result (:func:`track_voice`); :func:`remember`
  adds it to the show's library (:mod:`storage.voices`) once the episode is published.
- Every part of a mixed recording leaves its voice windows in the store's private work area; :func:`attribute`
  clusters them (:mod:`pipeline.diarize`), names each voice from the library (or from the manifest, or
  "Speaker N"), silences the voices of speakers who declined, and gives every word its speaker.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.analysis import TrackAnalysis
from pipeline.audio import ANALYSIS_RATE, PcmCopy, decode_blocks
from pipeline.diarize import Diarization, DiarizeSettings, Turn, diarize
from pipeline.errors import MediaError
from pipeline.room import Room, Speaker, Track
from pipeline.transcript import Segment, TrackTranscript, Word
from pipeline.vad import BLOCK_S, SpeechRegion, VadSettings, speech_regions_in
from pipeline.voices import PRINT_SPEECH_S, VoiceWindows, embed_file, print_of_file
from storage.objects import ObjectStore
from workers.config import Settings

log = logging.getLogger(__name__)

# Cosine similarity of a voice found in a mixed recording to a library print above which it is that speaker
# (Resemblyzer's scale: the same voice scores about 0.85-0.95 across recordings, distinct voices 0.5-0.75).
MATCH_SIMILARITY = 0.8
# A voice change inside a speech region cuts it for transcription when both turns are at least this long.
MIN_CUT_TURN_S = 1.0


def track_voice(settings: Settings, store: ObjectStore, room: Room, track: Track, analysis: TrackAnalysis,
                audio: PcmCopy | None, windows_key: str) -> dict[str, Any] | None:
    """What a track's run keeps of its voices: a mixed recording's windows (stored at ``windows_key``, room
    clock), or a multitrack speaker's print. ``audio``: the analysis's 16 kHz decode, when it kept one."""
    if not analysis.regions:
        return None
    with tempfile.TemporaryDirectory(prefix="roomcast-voices-") as tmp:
        path = audio.path if audio is not None and audio.path.exists() else _decode(track, Path(tmp), room.id)
        if room.is_mixed:
            windows = embed_file(path, analysis.regions, threads=settings.cpu_threads)
            cuts = speaker_changes(path, windows, analysis.regions, known=show_prints(settings, room))
            windows = windows.shifted(track.start)
            store.put_bytes(windows_key, windows.to_bytes(), content_type="application/octet-stream")
            return {"windows": windows_key, "count": len(windows), "cuts": cuts}
        vector = print_of_file(path, analysis.regions, threads=settings.cpu_threads, cache_dir=settings.model_cache)
    if vector is None:
        return None
    return {"print": [round(float(v), 6) for v in vector], "speech_s": round(min(analysis.speech_s,
                                                                                 PRINT_SPEECH_S), 2)}


def speaker_changes(path: Path, windows: VoiceWindows, regions: Sequence[SpeechRegion], *,
                    known: np.ndarray | None = None) -> list[float]:
    """Where the voice changes inside a speech region of one part of a mixed recording (track seconds), each
    moved to the quietest 20 ms within 0.4 s: the transcription cuts its regions there, as Whisper tends to pass
    over the first voice of a clip in which a second one takes over (tiny.en kept 1 of 18 words of such a turn)."""
    found = diarize(windows, [(r.start, r.end) for r in regions], DiarizeSettings(), known=known,
                    match=MATCH_SIMILARITY)
    audio = np.memmap(path, dtype=np.float32, mode="r") if path.stat().st_size else np.zeros(0, np.float32)
    cuts = []
    for before, after in zip(found.turns, found.turns[1:], strict=False):
        if after.start - before.end < 1e-6 and min(before.duration, after.duration) >= MIN_CUT_TURN_S:
            cuts.append(round(_quietest(audio, before.end), 3))
    return cuts


def _quietest(audio: np.ndarray, at: float, reach_s: float = 0.4, frame_s: float = 0.02) -> float:
    frame = int(frame_s * ANALYSIS_RATE)
    lo, hi = max(0, int((at - reach_s) * ANALYSIS_RATE)), min(audio.size, int((at + reach_s) * ANALYSIS_RATE))
    count = (hi - lo) // frame
    if count < 2:
        return at
    energy = np.mean(np.asarray(audio[lo:lo + count * frame], dtype=np.float64).reshape(count, frame) ** 2, axis=1)
    return (lo + (int(np.argmin(energy)) + 0.5) * frame) / ANALYSIS_RATE


def _decode(track: Track, folder: Path, room_id: str) -> Path:
    copy = PcmCopy(folder / "speech.f32", ANALYSIS_RATE)
    for _ in decode_blocks(track.path, what=f"room {room_id!r}: {track.file}", copy=copy):
        pass
    return copy.path


def remember(settings: Settings, catalog: Any, room: Room, voices: Sequence[dict[str, Any] | None],
             analyses: Sequence[TrackAnalysis]) -> int:
    """Add the prints of a published multitrack room's speakers to its show's library (a speaker who declined is
    kept too, marked so: their voice is then silenced in the show's mixed recordings). Returns how many."""
    from storage.voices import remember_voice

    if room.is_mixed or not settings.voice_library:
        return 0
    by_speaker: dict[str, list[tuple[np.ndarray, float]]] = {}
    for analysis, voice in zip(analyses, voices, strict=True):
        if voice and "print" in voice:
            by_speaker.setdefault(analysis.speaker, []).append((np.asarray(voice["print"], dtype=np.float32),
                                                                float(voice["speech_s"])))
    for speaker_id, print_ in _declined_prints(settings, room, set(by_speaker)).items():
        by_speaker[speaker_id] = [print_]
    for speaker_id, prints in by_speaker.items():
        speaker = room.speaker(speaker_id)
        heard = sum(s for _, s in prints)
        vector = sum((v * s for v, s in prints), np.zeros_like(prints[0][0])) / max(heard, 1e-9)
        remember_voice(catalog, show_id=room.show, speaker_id=speaker.id, name=speaker.name, role=speaker.role,
                       consent=speaker.consent, vector=vector, speech_s=heard, episode_id=room.id)
    return len(by_speaker)


def _declined_prints(settings: Settings, room: Room, known: set[str]) -> dict[str, tuple[np.ndarray, float]]:
    """Prints of the speakers who declined, from their own tracks (which nothing else of the run reads): kept in
    the catalog only, so that the show's mixed recordings can silence them."""
    found: dict[str, tuple[np.ndarray, float]] = {}
    for track in room.tracks:
        speaker = room.speaker(track.speaker)
        if speaker.consent or speaker.id in known or speaker.id in found or not track.path.is_file():
            continue
        with tempfile.TemporaryDirectory(prefix="roomcast-voices-") as tmp:
            copy = PcmCopy(Path(tmp) / "speech.f32", ANALYSIS_RATE)
            try:
                blocks = decode_blocks(track.path, what=f"room {room.id!r}: {track.file}", block_s=BLOCK_S,
                                       copy=copy)
                regions = speech_regions_in(blocks, VadSettings())
            except MediaError as exc:  # the room is published; a print is not worth failing it
                log.warning("room %s: no voice print of %s, who declined: %s", room.id, speaker.id, exc)
                continue
            vector = print_of_file(copy.path, regions, threads=settings.cpu_threads, cache_dir=settings.model_cache)
        if vector is not None:
            found[speaker.id] = (vector, min(sum(r.duration for r in regions), PRINT_SPEECH_S))
    return found


@dataclass(frozen=True)
class Attributed:
    """A mixed room once its voices are known: the room with its speakers, the analyses with declined voices
    muted, the transcripts with every word on its speaker, and the turns (room clock)."""

    room: Room
    analyses: tuple[TrackAnalysis, ...]
    transcripts: tuple[TrackTranscript, ...] | None
    turns: tuple[tuple[str, float, float], ...]
    matched: dict[str, str]  # speaker id -> how it was named ("library", "manifest", "numbered")


def attribute(settings: Settings, store: ObjectStore, catalog: Any, room: Room, analyses: Sequence[TrackAnalysis],
              transcripts: Sequence[TrackTranscript | None], voices: Sequence[dict[str, Any] | None]) -> Attributed:
    from storage.voices import known_voices

    parts = [VoiceWindows.from_bytes(store.get_bytes(v["windows"])) for v in voices if v and v.get("windows")]
    windows = VoiceWindows.concat(parts)
    regions = [(a.start + r.start, a.start + r.end) for a in analyses for r in a.regions]
    library = known_voices(catalog, room.show) if settings.voice_library else []
    found = diarize(windows, regions, DiarizeSettings(), known=_prints(library), match=MATCH_SIMILARITY)
    speakers, matched = name_voices(found, room, library)
    ids = [s.id for s in speakers]
    turns = tuple((ids[t.speaker], t.start, t.end) for t in found.turns)
    declined = {s.id for s in speakers if not s.consent}
    muted = tuple(_muted(a, [t for t in turns if t[0] in declined]) for a in analyses)
    said: tuple[TrackTranscript, ...] | None = None
    if all(t is not None for t in transcripts) and transcripts:
        said = tuple(_attributed(t, found.turns, ids, declined) for t in transcripts if t is not None)
    log.info("room %s: %d voices (%s)%s", room.id, len(speakers),
             ", ".join(f"{s.id}: {matched[s.id]}" for s in speakers),
             f"; {len(declined)} declined, silenced" if declined else "")
    named = replace(room, speakers=tuple(speakers))
    return Attributed(named, muted, said, turns, matched)


def _prints(library: Sequence[Any]) -> np.ndarray | None:
    return np.stack([v.vector for v in library]) if library else None


def show_prints(settings: Settings, room: Room) -> np.ndarray | None:
    """The prints of the voices ``room``'s show knows (None without a library or when it knows none)."""
    if not settings.voice_library:
        return None
    from storage.voices import known_voices
    from workers.context import Context

    return _prints(known_voices(Context.of(settings).catalog, room.show))


def name_voices(found: Diarization, room: Room, library: Sequence[Any]) -> tuple[list[Speaker], dict[str, str]]:
    """A speaker for every voice found: the library's speaker it matches (one voice per speaker, the best pairs
    first), a speaker the manifest lists when exactly one of each is left over, else "Speaker N"."""
    from scipy.optimize import linear_sum_assignment

    names: dict[int, Speaker] = {}
    how: dict[int, str] = {}
    listed = {s.id: s for s in room.speakers}
    if library and found.speakers:
        prints = np.stack([v.vector for v in library])
        similarity = found.centroids @ prints.T
        rows, cols = linear_sum_assignment(-similarity)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            if similarity[r, c] >= MATCH_SIMILARITY:
                known = library[c]
                mention = listed.get(known.speaker_id)
                consent = known.consent and (mention.consent if mention else True)
                names[r] = Speaker(known.speaker_id, mention.name if mention else known.name,
                                   mention.role if mention else known.role, consent)
                how[r] = "library"
    left = [k for k in range(found.speakers) if k not in names]
    unheard = [s for s in room.speakers if s.id not in {n.id for n in names.values()}]
    if len(left) == 1 and len(unheard) == 1:
        names[left[0]], how[left[0]] = unheard[0], "manifest"
        left = []
    taken = {n.id for n in names.values()} | set(listed)
    number = 0
    for k in left:
        number += 1
        while f"speaker-{number}" in taken:
            number += 1
        names[k], how[k] = Speaker(f"speaker-{number}", f"Speaker {number}"), "numbered"
    speakers = [names[k] for k in range(found.speakers)]
    return speakers, {names[k].id: how[k] for k in range(found.speakers)}


def _muted(analysis: TrackAnalysis, turns: Sequence[tuple[str, float, float]]) -> TrackAnalysis:
    spans = [SpeechRegion(max(0.0, s - analysis.start), e - analysis.start) for _, s, e in turns
             if e > analysis.start and s < analysis.start + analysis.duration]
    return replace(analysis, muted=tuple(spans)) if spans else analysis


def _attributed(transcript: TrackTranscript, turns: Sequence[Turn], ids: Sequence[str],
                declined: set[str]) -> TrackTranscript:
    """The transcript with each word on the speaker of the turn holding its middle, segments cut at every change
    of speaker, declined speakers' words left out."""
    starts = np.asarray([t.start for t in turns])
    segments: list[Segment] = []
    for segment in transcript.segments:
        current: list[Word] = []
        for word in segment.words:
            speaker = _speaker_of(word, turns, starts, ids)
            if current and current[-1].speaker != speaker:
                segments.append(Segment(current[0].speaker, tuple(current)))
                current = []
            current.append(replace(word, speaker=speaker))
        if current:
            segments.append(Segment(current[0].speaker, tuple(current)))
    kept = tuple(s for s in segments if s.speaker not in declined)
    return replace(transcript, segments=kept)


def _speaker_of(word: Word, turns: Sequence[Turn], starts: np.ndarray, ids: Sequence[str]) -> str:
    if not turns:
        return ids[0] if ids else "speaker-1"
    middle = (word.start + word.end) / 2
    k = int(np.searchsorted(starts, middle, side="right")) - 1
    if k >= 0 and turns[k].start <= middle <= turns[k].end:
        return ids[turns[k].speaker]
    near = [t for t in (turns[k] if k >= 0 else None, turns[k + 1] if k + 1 < len(turns) else None) if t]
    return ids[min(near, key=lambda t: min(abs(t.start - middle), abs(t.end - middle))).speaker]
