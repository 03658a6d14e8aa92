"""The per-track stage of a room's run: analyse (VAD, speech loudness), tell voices apart, transcribe one track,
and store its result under a key derived from the room's inputs, so a track already done is never done again."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from pipeline.analysis import TrackAnalysis, analyse_track
from pipeline.audio import ANALYSIS_RATE, PcmCopy
from pipeline.errors import MediaError
from pipeline.manifest import Room, Track, load_room
from pipeline.mix import MixSettings
from pipeline.transcript import TrackTranscript
from storage import layout
from storage.layout import track_voices_key
from workers import stages
from workers.config import Settings
from workers.context import TRANSCRIBING, Context, Job, phases, room_folder, run_settings
from workers.progress import notify

log = logging.getLogger(__name__)


DECODED_PREFIX = "decoded-"
# The replay phase of an in-process run keeps its 16 kHz decodes here for the words phase's transcription, which
# removes each as it is done (and the words phase's finish what is left): the replay's finish leaves them.
SPEECH_PREFIX = "speech-"


def _copies_folder(settings: Settings, job: Job, prefix: str = DECODED_PREFIX) -> Path:
    """Where a room's tracks are kept decoded on this machine (removed by :func:`finish`)."""
    return Path(settings.work_dir) / job.episode_id / f"{prefix}{job.input_hash[:16]}"


def decoded_copy(settings: Settings, job: Job, track_index: int) -> PcmCopy:
    """Where a track's decode at the mixing rate is kept between its analysis and the mix (this machine only;
    the mix reads it only if it exists)."""
    return PcmCopy(_copies_folder(settings, job) / f"track-{track_index}.f32", MixSettings().sample_rate)


def copies_fit(settings: Settings, room: Room, copy: PcmCopy, *beside: PcmCopy) -> bool:
    """Whether decoded copies of the room's tracks at ``copy``'s rate (and at the rates of the copies kept
    ``beside`` it) fit in ``keep_decoded_mb``, and twice over on the disk (making the folder ``copy`` goes in)."""
    needed = sum(t.info.duration for t in room.published_tracks) * sum(c.rate for c in (copy, *beside)) * 4
    copy.path.parent.mkdir(parents=True, exist_ok=True)
    return needed <= settings.keep_decoded_mb * 2**20 and needed * 2 <= shutil.disk_usage(copy.path.parent).free


def speech_copy(settings: Settings, job: Job, track: Track) -> PcmCopy | None:
    """Where the analysis keeps its 16 kHz decode of ``track`` for the transcription that follows it in the same
    task (removed when the task ends), or None when twice its size is not free on the disk."""
    folder = _copies_folder(settings, job)
    copy = PcmCopy(folder / f"track-{track.index}-speech.f32", ANALYSIS_RATE)
    folder.mkdir(parents=True, exist_ok=True)
    return copy if track.info.duration * ANALYSIS_RATE * 4 * 2 <= shutil.disk_usage(folder).free else None


def carried_speech(settings: Settings, job: Job, track_index: int) -> PcmCopy:
    """Where the replay phase of an in-process run keeps a track's 16 kHz decode for the words phase."""
    return PcmCopy(_copies_folder(settings, job, SPEECH_PREFIX) / f"track-{track_index}.f32", ANALYSIS_RATE)


def process_track(settings: Settings, job: Job, track_index: int, *, keep_decoded: bool = False,
                  report: bool = True) -> str:
    """Analyse (VAD + speech loudness) and transcribe one track; return the storage key of its result.
    ``keep_decoded``: the mix will run on this machine (an in-process run), so the analysis keeps the track
    decoded at the mixing rate for it, when the room's copies fit (:func:`copies_fit`). ``report``: record in the
    catalog how many of the room's tracks are done, or that the room failed on this track (an in-process run
    reports from its own thread instead, :func:`report_tracks`, as the episode may still be being recorded).
    In the ``words`` phase the track's analysis and voices are those the ``replay`` phase stored, when stored;
    in-process (``keep_decoded``) the replay phase also keeps the track's 16 kHz decode for it, when the room's
    decodes fit (:func:`copies_fit`), so the words phase transcribes without decoding the track again."""
    carry = keep_decoded and job.phase == stages.REPLAY and stages.WORDS in phases(settings)
    settings = run_settings(settings, job)
    ctx = Context.of(settings)
    key = track_result_key(settings, job, track_index)
    if ctx.store.exists(key):
        log.info("room %s: track %d already done (%s)", job.episode_id, track_index, key)
        return key
    earlier = layout.track_result_key(job.episode_id, job.input_hash, track_index, transcribed=False)
    heard = json.loads(ctx.store.get_bytes(earlier)) if job.phase == stages.WORDS and ctx.store.exists(earlier) \
        else None
    room = load_room(room_folder(settings, job.room_dir), verify_decoding=False)  # validated by ingest
    track = next(t for t in room.tracks if t.index == track_index)
    what = f"room {room.id!r}: {track.file}"
    copy = decoded_copy(settings, job, track_index) if keep_decoded else None
    if copy is not None and not copies_fit(settings, room, copy):
        copy = None
    voiced = room.is_mixed or settings.voice_library  # voices are told apart, or kept in the show's library
    carried = carried_speech(settings, job, track_index)
    beside = () if copy is None else (copy,)  # the mix's decode, kept too
    carry = carry and copies_fit(settings, room, carried, *beside)
    speech: PcmCopy | None
    if carry or (heard is not None and carried.path.exists()):
        speech = carried  # kept for the words phase; or the replay phase's, read by the transcription, then removed
    else:
        speech = speech_copy(settings, job, track) if (settings.transcribe or voiced) and heard is None else None
    try:
        if heard is not None:
            analysis = TrackAnalysis.from_dict(heard["analysis"])
            result: dict[str, Any] = {"analysis": heard["analysis"], "transcript": None, "voice": heard.get("voice")}
        else:
            analysis = analyse_track(track, what=what, copy=copy, keep=speech)
            result = {"analysis": analysis.to_dict(), "transcript": None, "voice": None}
        if voiced and heard is None:
            from workers.speakers import track_voice

            notify(job.episode_id, f"listening to the voices of {track.file}")
            result["voice"] = track_voice(settings, ctx.store, room, track, analysis, speech,
                                          track_voices_key(job.episode_id, job.input_hash, track_index))
        if settings.transcribe:
            from workers.transcription import runs_on, transcribe

            notify(job.episode_id, f"transcribing {track.file}")
            audio = speech if speech is not None and speech.path.exists() else None
            cuts = (result["voice"] or {}).get("cuts", ())
            result["transcript"] = transcribe(settings, room, track, analysis, job.language, audio=audio,
                                              cuts=cuts).to_dict()
            result["transcribed_on"] = runs_on(settings)
    except MediaError as exc:
        if report:  # the track cannot be worked on, however often it is tried: its room has failed
            ctx.catalog.set_failed(job.episode_id, str(exc), still_published=job.phase == stages.WORDS)
        raise
    finally:
        if speech is not None and not carry:
            speech.path.unlink(missing_ok=True)
    ctx.store.put_bytes(key, json.dumps(result).encode(), content_type="application/json")
    notify(job.episode_id, f"track {track.file} done")
    if report:
        report_tracks(settings, job, sum(1 for i in job.tracks if ctx.store.exists(track_result_key(settings, job, i))))
    return key


def track_stage(settings: Settings, job: Job) -> str:
    """What the tracks of ``job`` are going through, as ``roomcast status`` says it."""
    if job.phase == stages.WORDS:
        return TRANSCRIBING
    return "analysing and transcribing tracks" if run_settings(settings, job).transcribe else "analysing tracks"


def report_tracks(settings: Settings, job: Job, done: int) -> None:
    Context.of(settings).catalog.set_stage(job.episode_id, track_stage(settings, job),
                                           done / max(1, len(job.tracks)))


def track_result_key(settings: Settings, job: Job, track_index: int) -> str:
    return layout.track_result_key(job.episode_id, job.input_hash, track_index,
                                   transcribed=run_settings(settings, job).transcribe)


def load_track_voices(settings: Settings, keys: list[str]) -> list[tuple[TrackAnalysis, TrackTranscript | None,
                                                                          dict[str, Any] | None]]:
    """Every track's analysis, transcript and what it kept of its voices (:mod:`workers.speakers`)."""
    return stored_results([json.loads(Context.of(settings).store.get_bytes(key)) for key in keys])


def stored_results(stored: list[dict[str, Any]]) -> list[tuple[TrackAnalysis, TrackTranscript | None,
                                                                dict[str, Any] | None]]:
    results = []
    for data in stored:
        transcript = TrackTranscript.from_dict(data["transcript"]) if data["transcript"] else None
        results.append((TrackAnalysis.from_dict(data["analysis"]), transcript, data.get("voice")))
    return results


def transcribed_on(stored: list[dict[str, Any]]) -> list[str]:
    """Where the room's tracks were transcribed ("cpu/int8", "cuda/float16"; empty without transcription)."""
    return sorted({str(data["transcribed_on"]) for data in stored if data.get("transcribed_on")})
