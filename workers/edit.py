"""Editing a published episode in place: the same guid, the same object keys, the new bytes.

The first run of a room keeps its *basis* in the catalog (:func:`keep_basis`: the track analyses, the mix plan,
the word times and the chapters; never published). An edit (:mod:`pipeline.edits`) is applied, with every edit
recorded before it, to that basis: only what it touches runs again (a metadata edit encodes nothing, no edit
transcribes), and the result is published through :func:`workers.publish.publish_episode`, which replaces the
episode's objects under their keys and then rebuilds its feeds (and whatever else publishing rebuilds).

Order: the edit is checked (a bad one changes nothing), recorded ``applying``, rendered in a local workspace,
uploaded over the old objects, the catalog corrected, the feeds rebuilt, the edit marked ``done``. A failure
before the uploads leaves the previous version whole; running the same edit again finishes an unfinished one.
Re-processing the room applies its recorded edits (:func:`apply_recorded`), so the edited episode is what every
later run publishes too.
"""

from __future__ import annotations

import getpass
import logging
import shutil
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import formats
from pipeline.analysis import TrackAnalysis
from pipeline.chapters import Chapter
from pipeline.edit_audio import edited_blocks
from pipeline.edits import (
    EditRequest,
    EditState,
    Span,
    edit_chapters,
    edit_transcript,
    merge_spans,
    mute_spans,
    resolve,
    state_hash,
)
from pipeline.errors import InvalidEdit
from pipeline.manifest import Room, load_room
from pipeline.master import Labels, MasterResult, Tags, retag
from pipeline.mix import MixPlan, MixSettings, TrackPlan, plan_mix, predict_loudness
from pipeline.replay import render_replay
from pipeline.transcript import TrackTranscript, Transcript
from pipeline.vad import SpeechRegion
from storage import edit_log
from workers.config import Settings
from workers.progress import notify

if TYPE_CHECKING:
    from storage.catalog import Catalog
    from workers.context import Context, Job
    from workers.render import Rendered

log = logging.getLogger(__name__)

BASIS_VERSION = 1


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def keep_basis(catalog: Catalog, room: Room, job: Job, results: Sequence[tuple[TrackAnalysis,
               TrackTranscript | None]], rendered: Rendered,
               turns: Sequence[tuple[str, float, float]] | None = None) -> None:
    """Keep in the catalog what a run made that edits are computed from (``turns``: a mixed room's speaker
    turns on the room clock, found by voice)."""
    analyses = [a for a, _ in results]
    plan = plan_mix(room, analyses, MixSettings())
    data = {
        "version": BASIS_VERSION, "room_dir": job.room_dir, "input_hash": job.input_hash,
        "language": job.language, "duration": rendered.duration_s, "trim_start": rendered.trim_start_s,
        "plan": {"tracks": [[p.track_index, p.gain_db, p.delay_s] for p in plan.tracks],
                 "trim_start": plan.trim_start, "trim_end": plan.trim_end, "predicted_lufs": plan.predicted_lufs},
        "analyses": [a.to_dict() for a in analyses],
        "transcript": rendered.transcript.to_dict() if rendered.transcript is not None else None,
        "chapters": [[c.start, c.end, c.title, c.speaker] for c in rendered.chapters],
        "speakers": [s.id for s in room.consenting_speakers],
        "names": {s.id: s.name for s in room.consenting_speakers},
        "title": room.title, "description": room.description,
        "turns": [[speaker, start, end] for speaker, start, end in turns or ()],
    }
    edit_log.save_basis(catalog, room.id, job.input_hash, data)


def _state(basis: dict[str, Any], requests: Sequence[EditRequest], what: str) -> EditState:
    return resolve(float(basis["duration"]), basis["speakers"], requests, what)


def _done_requests(catalog: Catalog, episode_id: str) -> tuple[list[EditRequest], str, str]:
    """The episode's finished edits in order, its identity after them, and its room's input hash."""
    basis = edit_log.get_basis(catalog, episode_id)
    digest = basis["input_hash"] if basis else ""
    requests = []
    for record in edit_log.edits(catalog, episode_id):
        if record.status == "done":
            requests.append(EditRequest.from_dict(record.request))
            digest = record.hash_after
    return requests, digest, basis["input_hash"] if basis else ""


def edit_episode(settings: Settings, episode_id: str, request: EditRequest, *, by: str | None = None) -> dict[
        str, Any]:
    """Apply ``request`` to the published episode ``episode_id`` and publish the result in place."""
    from workers.context import Context

    ctx = Context.of(settings)
    what = f"episode {episode_id!r}"
    episode = ctx.catalog.get_episode(episode_id)
    if episode is None:
        raise InvalidEdit(f"{what} is not in the catalog: check the id (roomcast episode list)")
    if episode.status != "published":
        raise InvalidEdit(f"{what} is {episode.status}, not published: only a published episode can be edited")
    if request.is_empty:
        raise InvalidEdit(f"{what}: the edit changes nothing; give --remove-speaker, --cut, --bleep, --title...")
    basis = edit_log.get_basis(ctx.catalog, episode_id)
    if basis is None:
        raise InvalidEdit(f"{what} was published before roomcast kept what edits need; process its room again "
                          f"(roomcast process ROOM_DIR) and edit it then")
    done, before, _ = _done_requests(ctx.catalog, episode_id)
    state = _state(basis, [*done, request], what)  # checks the edit against the replay as published now
    after = state_hash(before, request)
    pk = edit_log.begin_edit(ctx.catalog, episode_id, request.to_dict(), by or current_user(), before, after)
    try:
        summary = publish_state(settings, ctx, basis, state, audio=any(r.touches_audio for r in [*done, request]),
                                what=what)
    except Exception as exc:
        edit_log.end_edit(ctx.catalog, pk, str(exc) or exc.__class__.__name__)
        raise
    edit_log.end_edit(ctx.catalog, pk)
    log.info("%s: edited (%s) by %s", what, request.describe(), by or current_user())
    return {**summary, "edit": request.describe(), "hash_before": before, "hash_after": after}


def publish_state(settings: Settings, ctx: Context, basis: dict[str, Any], state: EditState, *, audio: bool,
                  what: str) -> dict[str, Any]:
    from workers.context import room_folder
    from workers.publish import publish_episode

    room = load_room(room_folder(settings, basis["room_dir"]), verify_decoding=False)
    workspace = Path(settings.work_dir) / room.id / "edit"
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    try:
        cover = _cover(ctx, room, workspace)
        rendered = render_state(settings, ctx, room, basis, state, workspace, cover=cover, audio=audio)
        episode = publish_episode(settings, ctx.store, ctx.catalog, room, rendered,
                                  before_feeds=corrections(ctx.catalog, room.id, state))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    notify(room.id, "published", 1.0)
    return {"episode": episode.id, "guid": episode.guid, "duration_s": episode.duration_s,
            "chapters": len(rendered.chapters), "assets": [a.key for a in episode.assets],
            "encoded": audio}


def corrections(catalog: Catalog, episode_id: str, state: EditState) -> Callable[[], None]:
    def correct() -> None:
        edit_log.correct_episode(catalog, episode_id, title=state.title, description=state.description,
                                 names=state.names, removed=state.removed)
    return correct


def _cover(ctx: Context, room: Room, workspace: Path) -> Path | None:
    from workers.showcheck import episode_cover

    if (own := episode_cover(room)) is not None:
        return own
    show = ctx.catalog.get_show(room.show)
    if show is None or not show.artwork_key:
        return None
    cover = workspace / f"cover{Path(show.artwork_key).suffix}"
    ctx.store.download(show.artwork_key, cover)
    return cover


def render_state(settings: Settings, ctx: Context, room: Room, basis: dict[str, Any], state: EditState,
                 workspace: Path, *, cover: Path | None, audio: bool,
                 replays: dict[str, Path] | None = None) -> Rendered:
    """The episode's files after the edits of ``state``: the replay mixed again from the tracks (``audio``) or
    the published one kept, and every text made from the kept words."""
    from workers.render import Rendered, write_atomic

    first = Transcript.from_dict(basis["transcript"]) if basis.get("transcript") else None
    names = {k: v for k, v in {**basis["names"], **state.names}.items() if k not in state.removed}
    transcript, tones = edit_transcript(first, state) if first is not None else (None, merge_spans(state.bleep_spans))
    chapters = edit_chapters([Chapter(float(a), float(b), str(t), str(s)) for a, b, t, s in basis["chapters"]],
                             state, transcript, names)
    title = state.title if state.title is not None else basis["title"]
    tags = _tags(settings, ctx.catalog, room, basis, state, names, title)
    files: dict[str, Path] = {}
    master = MasterResult((), 0.0, 0.0, 0)
    if audio:
        notify(room.id, "mixing and encoding", 0.0)
        master = _render_audio(settings, room, basis, state, workspace, first, tones, chapters, tags, cover)
        files.update({f"replay.{f.format}": f.path for f in master.files})
    else:
        files.update(_retagged(ctx, room, workspace, Labels.written(workspace, tags, chapters, cover), replays))
    files["chapters.json"] = write_atomic(workspace / "chapters.json", formats.chapters_json(chapters))
    if transcript is not None:
        files["transcript.json"] = write_atomic(workspace / "transcript.json", formats.podcast_json(transcript))
        files["transcript.vtt"] = write_atomic(workspace / "transcript.vtt", formats.webvtt(transcript))
        files["transcript.srt"] = write_atomic(workspace / "transcript.srt", formats.srt(transcript))
        files["transcript.txt"] = write_atomic(workspace / "transcript.txt",
                                               formats.plain_text(transcript, title=title))
        files["words.json"] = write_atomic(workspace / "words.json", formats.words_json(transcript))
    return Rendered(files, round(state.current_duration, 3), float(basis["trim_start"]), chapters, transcript,
                    master)


def _tags(settings: Settings, catalog: Catalog, room: Room, basis: dict[str, Any], state: EditState,
          names: dict[str, str], title: str) -> Tags:
    """The replay's tags after the edits: its album is its show's title, as the first run gave it."""
    from workers.render import show_title

    return Tags(title=title, artist=", ".join(names.values()), album=show_title(settings, catalog, room.show),
                date=room.recorded_at.strftime("%Y-%m-%d") if room.recorded_at else "",
                comment=state.description if state.description is not None else room.description,
                language=basis.get("language") or room.language or "")


def _retagged(ctx: Context, room: Room, workspace: Path, labels: Labels,
              replays: dict[str, Path] | None) -> dict[str, Path]:
    """The replays as published (or as this run made them: ``replays``) with the edited tags and chapters, by a
    stream copy: a metadata edit encodes nothing, and the files' own titles and chapters agree with the feed's."""
    if replays is None:
        episode = ctx.catalog.get_episode(room.id)
        assert episode is not None
        replays = {}
        for asset in episode.assets:
            if asset.name.startswith("replay."):
                replays[asset.name] = workspace / f"published-{asset.name}"
                ctx.store.download(asset.key, replays[asset.name])
    files = {}
    for name, published in replays.items():
        files[name] = workspace / name
        retag(published, labels, files[name], Path(name).suffix[1:], what=f"episode {room.id!r}")
    return files


def _render_audio(settings: Settings, room: Room, basis: dict[str, Any], state: EditState, workspace: Path,
                  first: Transcript | None, tones: Sequence[Span], chapters: Sequence[Chapter],
                  tags: Tags, cover: Path | None) -> MasterResult:
    """The replay mixed again with the first run's decisions (its gains, delays and window, so its clock holds),
    removed speakers' tracks left out, then cut, bleeped and muted, mastered and encoded."""
    from workers.render import master_settings

    mix_settings = MixSettings()
    analyses = [_silenced(TrackAnalysis.from_dict(a), basis.get("turns") or (), state.removed)
                for a in basis["analyses"]]
    by_index = {a.track_index: a for a in analyses}
    kept = [TrackPlan(int(i), float(g), float(d)) for i, g, d in basis["plan"]["tracks"]
            if by_index[int(i)].speaker not in state.removed]
    window = MixPlan(tuple(kept), float(basis["plan"]["trim_start"]), float(basis["plan"]["trim_end"]))
    used = [by_index[p.track_index] for p in kept]
    plan = MixPlan(window.tracks, window.trim_start, window.trim_end,
                   round(predict_loudness(used, window, mix_settings), 2))
    shift = window.trim_start
    own = {s: [Span(a.start - shift, a.start + a.duration - shift) for a in analyses if a.speaker == s]
           for s in state.removed}
    mutes = mute_spans(first.words if first is not None else (), state.removed, own)
    _plan, master = render_replay(
        room, analyses, workspace, tags=tags, chapters=chapters, cover=cover, plan=plan,
        settings=master_settings(settings, room.show),
        transform=lambda blocks: edited_blocks(blocks, mix_settings.sample_rate, state, tones=tones, mutes=mutes))
    return master


def _silenced(analysis: TrackAnalysis, turns: Sequence[Sequence[Any]], removed: Collection[str]) -> TrackAnalysis:
    """``analysis`` with the turns of removed speakers silenced (a mixed room: their voice is on a track shared
    with others, so their whole turns are muted, as a declined voice's are on the first run; where another voice
    speaks over them, it is muted with them)."""
    end = analysis.start + analysis.duration
    spans = [SpeechRegion(max(0.0, float(a) - analysis.start), min(float(b), end) - analysis.start)
             for speaker, a, b in turns if speaker in removed and float(b) > analysis.start and float(a) < end]
    return replace(analysis, muted=(*analysis.muted, *spans)) if spans else analysis


def apply_recorded(settings: Settings, ctx: Context, room: Room, rendered: Rendered, workspace: Path,
                   cover: Path | None) -> tuple[Rendered, Callable[[], None] | None]:
    """A run's rendering with the episode's recorded edits applied (the run's own when it has none), and the
    catalog corrections to make before its feeds are rebuilt."""
    requests, _, _ = _done_requests(ctx.catalog, room.id)
    basis = edit_log.get_basis(ctx.catalog, room.id)
    if not requests or basis is None:
        return rendered, None
    state = _state(basis, requests, f"episode {room.id!r}")
    log.info("episode %s: applying its %d recorded edit(s)", room.id, len(requests))
    edited = workspace / "edited"
    edited.mkdir(exist_ok=True)
    again = render_state(settings, ctx, room, basis, state, edited, cover=cover,
                         audio=any(r.touches_audio for r in requests),
                         replays={k: v for k, v in rendered.files.items() if k.startswith("replay.")})
    return again, corrections(ctx.catalog, room.id, state)


def history_lines(catalog: Catalog, episode_id: str) -> list[str]:
    lines = []
    for record in edit_log.edits(catalog, episode_id):
        when = record.requested_at.strftime("%Y-%m-%d %H:%M:%S UTC") if record.requested_at else "?"
        request = EditRequest.from_dict(record.request).describe()
        line = (f"#{record.number} {when} by {record.by} [{record.status}] {request}  "
                f"({record.hash_before[:12]} -> {record.hash_after[:12]})")
        lines.append(line + (f"  error: {record.error.splitlines()[0]}" if record.error else ""))
    return lines


def check_edit(settings: Settings, episode_id: str, request: EditRequest) -> None:
    """Refuse, before it is queued, an edit that cannot apply (the worker checks it again)."""
    from workers.context import Context

    catalog = Context.of(settings).catalog
    what = f"episode {episode_id!r}"
    episode = catalog.get_episode(episode_id)
    basis = edit_log.get_basis(catalog, episode_id)
    if episode is None or episode.status != "published" or basis is None:
        raise InvalidEdit(f"{what} is not a published episode that can be edited (roomcast episode list)")
    if request.is_empty:
        raise InvalidEdit(f"{what}: the edit changes nothing")
    done, _, _ = _done_requests(catalog, episode_id)
    _state(basis, [*done, request], what)


def enqueue_edit(settings: Settings, episode_id: str, request: EditRequest, *, by: str | None = None) -> str:
    """Check the edit, then send it to the workers; returns the task id (``roomcast episode history`` follows it)."""
    from workers import tasks

    check_edit(settings, episode_id, request)
    tasks.configure(settings)
    with tasks.app.connection_for_write(settings.broker_url) as connection:
        result = tasks.edit_task.apply_async(args=(episode_id, request.to_dict(), by or current_user()),
                                             connection=connection, ignore_result=True)
    return str(result.id)
