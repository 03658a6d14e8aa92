"""The first and last stages of processing one room, ingest and finish, as plain functions over settings, job
descriptions and storage keys (the stage between them, once per track, is :mod:`workers.track`).

Celery tasks (:mod:`workers.tasks`) are thin wrappers around these, so the in-process run and the distributed
run execute the same code. Stages are idempotent: every track result is stored under a key derived from the
content hash of the room's inputs, and a stage whose result already exists returns it without redoing the work.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.analysis import TrackAnalysis
from pipeline.consent import room_consent
from pipeline.errors import InvalidRoom, RoomcastError, StorageError
from pipeline.manifest import Room, content_hash, load_room
from pipeline.transcript import TrackTranscript
from storage.layout import work_prefix
from storage.records import ShowRecord, SpeakerRecord, TrackRecord
from workers import stages
from workers.config import Settings
from workers.context import TRANSCRIBING, Context, Job, room_folder, run_settings
from workers.inbox import is_store_ref
from workers.progress import notify
from workers.track import DECODED_PREFIX, SPEECH_PREFIX, decoded_copy, stored_results, transcribed_on

if TYPE_CHECKING:
    from storage.catalog import Catalog

log = logging.getLogger(__name__)



def load_checked(settings: Settings, room_ref: str | Path) -> tuple[Room, str]:
    """The validated room and its input hash; an invalid room is recorded as failed (its problems in ``status``)
    and raised, never retried."""
    try:
        room = load_room(room_folder(settings, room_ref))
    except InvalidRoom as exc:
        Context.of(settings).catalog.set_failed(exc.room, str(exc))
        raise
    return room, content_hash(room)


def ingest(settings: Settings, room_dir: str | Path) -> Job:
    """Validate the room, record it in the catalog, and settle its language. Invalid rooms fail here, at once."""
    room, digest = load_checked(settings, room_dir)
    return start_job(settings, room, digest, room_dir)


def ingest_once(settings: Settings, room_ref: str) -> Job | None:
    """:func:`ingest` for queued rooms: None when the room was already published from the same inputs (a
    duplicate or redelivered message), so nothing is done twice."""
    room, digest = load_checked(settings, room_ref)
    if published_from(Context.of(settings).catalog, room.id, digest):
        log.info("room %s: already published from these inputs; only its show's feeds are rebuilt", room.id)
        _finish_feeds(settings, room.show)
        return None
    return start_job(settings, room, digest, room_ref)


def published_from(catalog: Catalog, episode_id: str, digest: str) -> bool:
    episode = catalog.get_episode(episode_id)
    return episode is not None and episode.status == "published" and \
        catalog.finished_job(episode_id, digest) is not None


def start_job(settings: Settings, room: Room, digest: str, room_ref: str | Path) -> Job:
    record_job(settings, room, digest)
    return new_job(settings, room, digest, room_ref)


def record_job(settings: Settings, room: Room, digest: str) -> None:
    """Record the room in the catalog as an episode being analysed."""
    ctx = Context.of(settings)
    record_room(ctx.catalog, room, digest)
    ctx.catalog.set_stage(room.id, "analysing", 0.0)
    notify(room.id, "analysing")


def new_job(settings: Settings, room: Room, digest: str, room_ref: str | Path) -> Job:
    """The job of a validated room, its language settled (detected from the tracks when the manifest gives none
    and the room is transcribed). Touches no catalog: :func:`record_job` records it."""
    language = room.language
    if language is None and settings.transcribe:
        from workers.transcription import detect_room_language

        language = detect_room_language(settings, room)
    tracks = tuple(t.index for t in room_consent(room).tracks)
    # A room in the store keeps its reference, so workers on other machines make their own copy of it.
    ref = str(room_ref) if is_store_ref(str(room_ref)) else str(room.folder)
    return Job(room.id, ref, digest, language, tracks)


def set_speakers(catalog: Catalog, room: Room) -> None:
    """The speakers a mixed room's voices turned out to be, in place of those its manifest listed."""
    consent = room_consent(room)
    catalog.set_speakers(room.id, [SpeakerRecord(s.id, s.name, s.role, consent.allows(s.id)) for s in room.speakers])


def record_room(catalog: Catalog, room: Room, digest: str) -> None:
    consent = room_consent(room)
    catalog.upsert_episode(
        episode_id=room.id, show_id=room.show, title=room.title, description=room.description,
        visibility=room.visibility, language=room.language, recorded_at=room.recorded_at, input_hash=digest,
        speakers=[SpeakerRecord(s.id, s.name, s.role, consent.allows(s.id)) for s in room.speakers],
        tracks=[TrackRecord(t.speaker, t.file, t.start, t.info.duration) for t in room.tracks],
    )


def load_finish_modules() -> None:
    """Import what :func:`finish` needs (rendering, publishing, feeds, images: about 0.5 s of a 10-minute room's
    run), so that a caller with time on its hands (waiting on the tracks) spares the finish that wait."""
    import workers.publish  # noqa: F401
    import workers.render  # noqa: F401


def prepare_show(settings: Settings, show_id: str) -> ShowRecord:
    """The show's catalog record, with its artwork stored (generated on the show's first episode)."""
    from workers.publish import ensure_show

    ctx = Context.of(settings)
    return ensure_show(settings, ctx.store, ctx.catalog, show_id)


def finish(settings: Settings, job: Job, result_keys: list[str], *, final_attempt: bool = True,
           show: ShowRecord | None = None) -> dict[str, Any]:
    """Mix, master, write transcripts and chapters, publish. Returns a summary of the published episode.
    A transient storage error fails the episode only on the ``final_attempt`` (a task retries the others).
    ``show``: the room's show, prepared already (:func:`prepare_show`, while the tracks were analysed).
    The ``replay`` phase publishes the replay and leaves the run open for the ``words`` phase, which publishes the
    episode again with its transcripts, re-tagging the replays published by the first rather than mixing again."""
    from feeds.rss import feed_key
    from workers.edit import apply_recorded, keep_basis
    from workers.publish import ensure_show, publish_episode
    from workers.render import render_room
    from workers.showcheck import episode_cover, show_warnings

    settings = run_settings(settings, job)
    ctx = Context.of(settings)
    if published_from(ctx.catalog, job.episode_id, job.input_hash):
        return already_published(settings, job)  # a redelivered finish whose first run had completed
    first = job.phase == stages.REPLAY
    if first and replay_out(ctx.catalog, job.episode_id, job.input_hash):
        return already_published(settings, job)  # a redelivered first finish: the words phase follows it
    room = load_room(room_folder(settings, job.room_dir), verify_decoding=False)  # validated by ingest
    workspace = Path(settings.work_dir) / job.episode_id / job.input_hash[:16]
    if workspace.exists():
        shutil.rmtree(workspace)  # a half-written workspace from a crashed run is never trusted
    workspace.mkdir(parents=True)
    try:
        if show is None or show.id != room.show:
            show = ensure_show(settings, ctx.store, ctx.catalog, room.show)
        cover = episode_cover(room)  # the episode's own artwork, else the show's
        if cover is None and show.artwork_key:
            cover = workspace / f"cover{Path(show.artwork_key).suffix}"
            ctx.store.download(show.artwork_key, cover)
        missing = [key for key in result_keys if not ctx.store.exists(key)]
        if missing:  # a track redelivered after its first run had counted: wait for it rather than fail the room
            raise StorageError(f"room {room.id!r}: track results {', '.join(missing)} are not stored yet; retrying",
                               transient=True)
        stored = [json.loads(ctx.store.get_bytes(key)) for key in result_keys]
        heard = stored_results(stored)
        results = [(analysis, transcript) for analysis, transcript, _ in heard]
        turns = None
        if room.is_mixed:  # who spoke when, found by voice: the room gets its speakers, every word its speaker
            from workers.speakers import attribute

            notify(room.id, "telling the voices apart")
            found = attribute(settings, ctx.store, ctx.catalog, room, [a for a, _ in results],
                              [t for _, t in results], [v for _, _, v in heard])
            room, turns = found.room, found.turns
            said: Sequence[TrackTranscript | None] = found.transcripts if found.transcripts is not None \
                else [None] * len(results)
            results = list(zip(found.analyses, said, strict=True))
            set_speakers(ctx.catalog, room)
        copies = {i: decoded_copy(settings, job, i) for i in job.tracks}
        replays = published_replays(ctx, job, workspace) if job.phase == stages.WORDS else None
        rendered = render_room(settings, ctx.catalog, room, results, workspace, language=job.language, cover=cover,
                               copies=copies, turns=turns, replays=replays)
        keep_basis(ctx.catalog, room, job, results, rendered, turns)  # what later edits are computed from
        rendered, corrections = apply_recorded(settings, ctx, room, rendered, workspace, cover)
        if settings.voice_library and not room.is_mixed:  # the show's voice library learns from the room
            remember_voices(settings, ctx.catalog, room, [v for _, _, v in heard], [a for a, _ in results])
        episode = publish_episode(settings, ctx.store, ctx.catalog, room, rendered, before_feeds=corrections,
                                  then=TRANSCRIBING if first else None)
    except Exception as exc:
        if isinstance(exc, StorageError) and exc.transient and not final_attempt:  # the task retries: not over
            ctx.catalog.set_stage(room.id, f"retrying: {exc}"[:128])
        else:
            ctx.catalog.set_failed(room.id, str(exc), still_published=job.phase == stages.WORDS)
        raise
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
        discard_work(settings, job)  # the words phase re-tags the published replays: it mixes nothing
    if not first:  # the words phase reuses the replay phase's analyses
        ctx.store.delete_prefix(work_prefix(job.episode_id))
    notify(room.id, "replay published; transcribing" if first else "published", 1.0)
    return {"episode": episode.id, "status": episode.status, "duration_s": episode.duration_s,
            "trim_start_s": rendered.trim_start_s, "chapters": len(rendered.chapters),
            "warnings": [w for analysis, _ in results for w in analysis.warnings] + show_warnings(settings, room.show),
            "words": len(rendered.transcript.words) if rendered.transcript else 0,
            "transcribed_on": transcribed_on(stored),
            "encoding_passes": rendered.master.passes, "encoding_notes": list(rendered.master.notes),
            "assets": [a.key for a in episode.assets], "feed": ctx.store.url(feed_key(room.show))}


def fail_room(settings: Settings, job: Job, error: str) -> None:
    """Record ``job``'s room failed (unless a stage recorded it already); in the words phase its published replay
    stays published, the error beside it."""
    catalog = Context.of(settings).catalog
    episode = catalog.get_episode(job.episode_id)
    if episode is not None and episode.status != "failed":
        catalog.set_failed(job.episode_id, error, still_published=job.phase == stages.WORDS)


def replay_out(catalog: Catalog, episode_id: str, digest: str) -> bool:
    """Whether the replay phase of a run over these inputs has published the episode."""
    episode = catalog.get_episode(episode_id)
    return episode is not None and episode.status == "published" and episode.input_hash == digest


def published_replays(ctx: Context, job: Job, folder: Path) -> dict[str, Path] | None:
    """The replays the replay phase of ``job``'s run published, downloaded into ``folder`` (None when the
    episode holds none of these inputs: the words phase then mixes them itself)."""
    episode = ctx.catalog.get_episode(job.episode_id)
    if episode is None or not replay_out(ctx.catalog, job.episode_id, job.input_hash):
        return None
    replays = {a.name: a for a in episode.assets if a.name.startswith("replay.")}
    if not replays:
        return None
    files = {}
    for name, asset in sorted(replays.items()):
        files[name] = folder / f"published-{name}"
        ctx.store.download(asset.key, files[name])
    return files


def remember_voices(settings: Settings, catalog: Catalog, room: Room, voices: list[dict[str, Any] | None],
                    analyses: list[TrackAnalysis]) -> None:
    """Add the room's voice prints to its show's library (a run of the room again replaces its own share); a
    failure there is logged and the room goes on to publish: the show's next room adds its prints again."""
    from workers.speakers import remember

    try:
        remember(settings, catalog, room, voices, analyses)
    except (RoomcastError, OSError) as exc:
        log.warning("room %s: the show's voice library was not updated: %s", room.id, exc)


def discard_work(settings: Settings, job: Job) -> None:
    """Remove what this machine kept of the room's tracks for its mix (decoded copies, of any inputs), and, but
    for the replay phase (whose words phase reads them), their 16 kHz decodes kept for the transcription."""
    prefixes = (DECODED_PREFIX,) if job.phase == stages.REPLAY else (DECODED_PREFIX, SPEECH_PREFIX)
    for prefix in prefixes:
        for copies_folder in (Path(settings.work_dir) / job.episode_id).glob(f"{prefix}*"):
            shutil.rmtree(copies_folder, ignore_errors=True)


def _finish_feeds(settings: Settings, show_id: str) -> None:
    """A run may have died between marking its episode published and uploading the feed: rebuilding (idempotent,
    from the catalog) is what finishes it."""
    from workers.publish import rebuild_feeds

    ctx = Context.of(settings)
    rebuild_feeds(settings, ctx.store, ctx.catalog, show_id)


def already_published(settings: Settings, job: Job) -> dict[str, Any]:
    from feeds.rss import feed_key

    ctx = Context.of(settings)
    episode = ctx.catalog.get_episode(job.episode_id)
    assert episode is not None
    _finish_feeds(settings, episode.show)
    return {"episode": episode.id, "status": episode.status, "duration_s": episode.duration_s,
            "assets": [a.key for a in episode.assets], "feed": ctx.store.url(feed_key(episode.show))}
