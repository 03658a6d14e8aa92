"""The ``roomcast`` command line."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from pipeline.devices import DEVICES
from pipeline.errors import InvalidRoom, RoomcastError
from workers.cli_common import StageDisplay, context_of, settings_of
from workers.config import Settings, load_settings
from workers.cost_cli import cost
from workers.episode_cli import edit_options, episode, queue_edit
from workers.feed_cli import doctor, feed, live, serve
from workers.speakers_cli import episode_speakers, speakers

log = logging.getLogger("roomcast")


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if not quiet and verbose:
        level = logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@click.group()
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="TOML configuration file (default: $ROOMCAST_CONFIG).")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final result (for scripts).")
@click.pass_context
def main(ctx: click.Context, config_file: Path | None, verbose: int, quiet: bool) -> None:
    """roomcast: recorded live audio rooms in, podcast replays with transcripts, chapters and feeds out."""
    _setup_logging(verbose, quiet)
    try:
        ctx.obj = {"settings": load_settings(config_file=config_file), "quiet": quiet}
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("room_dir", type=click.Path(path_type=Path, file_okay=False))
@click.pass_context
def validate(ctx: click.Context, room_dir: Path) -> None:
    """Check a room folder; print every problem and exit 1 if there is any."""
    from pipeline.manifest import load_room
    from workers.showcheck import room_feed_meta, show_warnings

    try:
        room = load_room(room_dir)
    except InvalidRoom as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    speech = sum(t.info.duration for t in room.tracks)
    click.echo(f"room {room.id!r} is valid: {len(room.speakers)} speakers, {len(room.tracks)} tracks, "
               f"{room.duration:.1f} s of room, {speech:.1f} s of track audio")
    try:
        room_feed_meta(room)
        warnings = show_warnings(settings_of(ctx), room.show)
    except RoomcastError as exc:
        click.echo(f"roomcast: {exc}", err=True)
        sys.exit(1)
    for warning in warnings:
        click.echo(f"WARNING: {warning}", err=True)


SOURCE_CHOICE = click.Choice(["livekit", "twilio", "agora", "aligned", "mixed"])
DEVICE_CHOICE = click.Choice(DEVICES, case_sensitive=False)


@main.command("import")
@click.argument("source", type=SOURCE_CHOICE)
@click.argument("path", type=click.Path(path_type=Path, exists=True))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Room folder to write (must not exist; default: PATH's name + '-room', beside it).")
@click.option("--show", default=None, help="Show the room belongs to (default: 'rooms').")
@click.option("--title", default=None, help="Episode title (default: from the platform's metadata).")
@click.option("--id", "room_id", default=None, help="Room id (default: from the platform's metadata).")
def import_command(source: str, path: Path, out_dir: Path | None, show: str | None, title: str | None,
                   room_id: str | None) -> None:
    """Make a room folder from SOURCE's recording output at PATH (a folder, ZIP or file); print what was inferred."""
    from pipeline.importers import import_room

    out = out_dir or path.with_name(path.name.removesuffix(".zip") + "-room")
    try:
        report = import_room(source, path, out, show=show, title=title, room_id=room_id)
    except InvalidRoom as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("\n".join(report.lines()))


@main.command()
@click.argument("room_dir", type=click.Path(path_type=Path))
@click.option("--source", type=SOURCE_CHOICE, default=None,
              help="ROOM_DIR is this platform's raw output (folder, ZIP or file), imported first.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Local folder store to publish into (default: $ROOMCAST_STORE or ./roomcast-data/store).")
@click.option("--store", "store", default=None, help="Store: a folder or s3://bucket/prefix.")
@click.option("--model", default=None, help="Whisper model: a size name (tiny.en, base, small...) or a folder.")
@click.option("--no-transcribe", is_flag=True, help="Publish replay, chapters and feed without running Whisper.")
@click.option("--device", type=DEVICE_CHOICE, default=None,
              help="Where Whisper runs: auto (a CUDA GPU when there is one, else the CPU; default), cpu or cuda.")
@click.option("--replay-first", is_flag=True, default=None,
              help="Publish the replay and its feed item as soon as it is mixed; the transcripts follow.")
@click.option("--min-chapter", "min_chapter_s", type=float, default=None, help="Shortest chapter, in seconds.")
@click.option("--public-url", default=None, help="Base URL of published objects (default: $ROOMCAST_PUBLIC_URL).")
@click.option("-j", "--processes", type=click.IntRange(min=1), default=None,
              help="Tracks analysed and transcribed at once (default: one per CPU core).")
@click.option("-q", "--quiet", is_flag=True, help="No progress display; only errors and the final JSON summary.")
@click.pass_context
def process(ctx: click.Context, room_dir: Path, source: str | None, out_dir: Path | None, store: str | None,
            model: str | None, no_transcribe: bool, min_chapter_s: float | None, public_url: str | None,
            processes: int | None, quiet: bool, device: str | None, replay_first: bool | None) -> None:
    """Process ROOM_DIR in this process: validate, analyse, transcribe, mix, master, publish."""
    if source is not None:
        room_dir = _imported(ctx, source, room_dir)
    # The room is validated (ffprobe and test decodes) and hashed while the rest of roomcast is imported; the run
    # then finds its tracks probed, checked and hashed, unless they changed meanwhile, and reports what was wrong.
    early = threading.Thread(target=_validate_quietly, args=(room_dir,), daemon=True)
    early.start()
    from workers import runlog
    from workers.progress import listening
    from workers.runner import process_room

    runlog.bill_start_to_ingest()  # this process runs one room: what its start took is the room's to pay
    if out_dir is not None and store is not None:
        raise click.UsageError("give --out or --store, not both")
    settings = settings_of(ctx).replace(
        store=str(out_dir) if out_dir is not None else store, model=model, min_chapter_s=min_chapter_s,
        public_url=public_url, transcribe=False if no_transcribe else None, device=device,
        replay_first=replay_first or None,
    )
    _check_device(settings)
    started = time.monotonic()
    early.join()
    try:
        with listening(StageDisplay(quiet or ctx.obj["quiet"])):
            summary = process_room(settings, room_dir, processes=processes)
    except InvalidRoom as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except RoomcastError as exc:
        click.echo(f"roomcast: {exc}", err=True)
        sys.exit(2)
    summary["elapsed_s"] = round(time.monotonic() - started, 1)
    summary["store"] = settings.store
    click.echo(json.dumps(summary, indent=2))


def _check_device(settings: Settings) -> None:
    """A GPU asked for where there is none is refused here, before any work (``auto`` never fails)."""
    if settings.transcribe and settings.device != "auto":
        from pipeline.devices import choose_device

        try:
            choose_device(settings.device)
        except RoomcastError as exc:
            raise click.UsageError(str(exc)) from exc


def _imported(ctx: click.Context, source: str, path: Path) -> Path:
    """The room folder imported from ``path`` (a ``source`` platform's output); exit 1 when it cannot be."""
    from workers.sources import imported

    try:
        return imported(settings_of(ctx), source, path)
    except InvalidRoom as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def _validate_quietly(room_dir: Path) -> None:
    """Load (validate) and hash the room, leaving every problem to the run that follows."""
    from pipeline.manifest import content_hash, load_room

    try:
        content_hash(load_room(room_dir))
    except Exception:  # noqa: BLE001 - the run loads the room again and reports what is wrong
        pass


@main.command()
@click.argument("room_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--source", type=SOURCE_CHOICE, default=None,
              help="Each ROOM_DIR is this platform's raw output (folder, ZIP or file), imported first.")
@click.option("--edit", "edit_episode", default=None, metavar="EPISODE_ID",
              help="Queue an edit of this published episode instead of rooms (with the edit options below).")
@edit_options
@click.pass_context
def submit(ctx: click.Context, room_dirs: tuple[Path, ...], source: str | None, edit_episode: str | None,
           **options: Any) -> None:
    """Validate each ROOM_DIR, upload it to the store's inbox and queue it for the workers (once per content)."""
    from workers.distributed import submit_room
    from workers.sources import imported

    if edit_episode is not None:
        if room_dirs:
            raise click.UsageError("give rooms or --edit EPISODE_ID, not both")
        queue_edit(ctx, edit_episode, options)
        return
    if not room_dirs:
        raise click.UsageError("give at least one ROOM_DIR (or --edit EPISODE_ID)")
    failed = False
    for room_dir in room_dirs:
        try:
            folder = imported(settings_of(ctx), source, room_dir) if source else room_dir
            click.echo(str(submit_room(settings_of(ctx), folder)))
        except InvalidRoom as exc:
            click.echo(str(exc), err=True)
            failed = True
        except RoomcastError as exc:
            raise click.ClickException(str(exc)) from exc
    if failed:
        sys.exit(1)


@main.command()
@click.argument("inbox")
@click.option("--requeue-after", "requeue_after_s", type=float, default=None,
              help="Also enqueue again episodes with no progress for this many seconds (lost messages).")
@click.option("--source", type=SOURCE_CHOICE, default=None,
              help="INBOX holds this platform's raw outputs (one folder, ZIP or file per room), imported first.")
@click.pass_context
def scan(ctx: click.Context, inbox: str, requeue_after_s: float | None, source: str | None) -> None:
    """Submit the complete rooms in INBOX (a folder of room folders or s3://bucket/prefix) not processed yet."""
    from workers.distributed import requeue_stale
    from workers.distributed import scan as scan_inbox
    from workers.leases import take_over_expired
    from workers.sources import scan_sources

    try:
        found = scan_sources(settings_of(ctx), inbox, source) if source else scan_inbox(settings_of(ctx), inbox)
        for result in found:
            click.echo(str(result))
        for line in take_over_expired(settings_of(ctx), by="roomcast scan"):
            click.echo(line)
        for episode_id in requeue_stale(settings_of(ctx), requeue_after_s) if requeue_after_s else []:
            click.echo(f"{episode_id}: enqueued again")
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tasks run at once (one process each; each loads its own Whisper model).")
@click.option("-Q", "--queues", default="roomcast,transcribe", show_default=True,
              help="Queues to take work from: 'transcribe' for track analysis and transcription only.")
@click.option("-n", "--hostname", default=None, help="Worker name (default: celery@HOST).")
@click.option("--transcribe/--no-transcribe", default=None, envvar="ROOMCAST_TRANSCRIBE",
              help="Run Whisper on tracks (default on; $ROOMCAST_TRANSCRIBE=0 turns it off).")
@click.option("--device", type=DEVICE_CHOICE, default=None,
              help="Where Whisper runs: auto (a CUDA GPU when there is one, else the CPU; default), cpu or cuda.")
@click.option("--replay-first/--no-replay-first", default=True, envvar="ROOMCAST_REPLAY_FIRST", show_default=True,
              help="Publish each replay and its feed item as soon as it is mixed, its transcripts in a second "
                   "publish of the same episode.")
@click.option("--visibility-timeout", "visibility_timeout_s", type=float, default=None,
              envvar="ROOMCAST_VISIBILITY_TIMEOUT",
              help="Seconds before a task taken by a worker that died is delivered again (default 7 h; must "
                   "exceed the longest task).")
@click.pass_context
def worker(ctx: click.Context, concurrency: int, queues: str, hostname: str | None, transcribe: bool | None,
           visibility_timeout_s: float | None, device: str | None, replay_first: bool) -> None:
    """Run a Celery worker on $ROOMCAST_BROKER_URL for queued rooms."""
    from workers.distributed import run_worker

    settings = settings_of(ctx).replace(transcribe=transcribe, device=device, replay_first=replay_first)
    _check_device(settings)
    run_worker(settings, concurrency=concurrency, queues=tuple(q.strip() for q in queues.split(",") if q.strip()),
               hostname=hostname, visibility_timeout_s=visibility_timeout_s,
               loglevel="WARNING" if ctx.obj["quiet"] else "INFO")


@main.command()
@click.argument("inbox")
@click.option("--interval", "interval_s", type=float, default=None,
              help="Seconds between scans (default: the scan_interval_s setting, 300).")
@click.option("--requeue-after", "requeue_after_s", type=float, default=None,
              help="Enqueue again episodes with no progress for this many seconds.")
@click.pass_context
def beat(ctx: click.Context, inbox: str, interval_s: float | None, requeue_after_s: float | None) -> None:
    """Run Celery beat: scan INBOX periodically (the scan itself runs on a worker)."""
    from workers.distributed import run_beat

    settings = settings_of(ctx)
    run_beat(settings, inbox, interval_s=interval_s or settings.scan_interval_s, requeue_after_s=requeue_after_s)


@main.command()
@click.argument("name", required=False)
@click.pass_context
def models(ctx: click.Context, name: str | None) -> None:
    """List the Whisper models roomcast can resolve, or show what NAME resolves to."""
    from pipeline.models import available_models, resolve_model

    settings = settings_of(ctx)
    try:
        if name:
            ref = resolve_model(name, cache_dir=settings.model_cache)
            click.echo(f"{name} -> {ref.path or ref.name} ({ref.source})")
            return
        for ref in available_models(settings.model_cache):
            click.echo(f"{ref.name:12} {ref.source:40} {ref.path or ''}")
        ref = resolve_model(settings.model, cache_dir=settings.model_cache)
        click.echo(f"default model {settings.model!r} -> {ref.path or ref.name} ({ref.source})")
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.argument("episode_id", required=False)
@click.option("--stuck", is_flag=True, help="Only rooms pending or processing that no live worker holds (exit 1 "
                                            "when there is any).")
@click.pass_context
def status(ctx: click.Context, episode_id: str | None, stuck: bool) -> None:
    """Each episode's stage, progress, the workers holding it and its last error (or one episode's, with its
    history)."""
    from storage.leases import LeaseBook
    from workers.leases import describe_leases, stuck_rooms

    catalog = context_of(ctx).catalog
    if stuck:
        rooms = stuck_rooms(settings_of(ctx))
        for room in rooms:
            click.echo(f"{room.episode.id:40} {room.episode.status:12} {room.reason}")
        if not rooms:
            click.echo("no stuck rooms")
        sys.exit(1 if rooms else 0)
    episodes = [catalog.get_episode(episode_id)] if episode_id else catalog.list_episodes()
    if episode_id and episodes[0] is None:
        raise click.ClickException(f"no episode {episode_id!r} in the catalog")
    held: dict[str, list[Any]] = {}
    for lease in LeaseBook(catalog).leases(episode_id):
        held.setdefault(lease.episode_id, []).append(lease)
    for e in episodes:
        line = f"{e.id:40} {e.status:12} {e.stage:24} {e.progress:4.0%}"
        line += f"  held: {describe_leases(held[e.id])}" if e.id in held else ""
        click.echo(line + (f"  error: {e.error.splitlines()[0]}" if e.error else ""))
    for job in catalog.jobs(episode_id) if episode_id else []:
        when = f"{job.started_at:%Y-%m-%d %H:%M:%S}" if job.started_at else "?"
        click.echo(f"  {when} UTC  {job.status:9} {job.stage}" + (f"  {job.error}" if job.error else ""))
    if episode_id:
        from storage.stage_runs import StageLog

        for run in StageLog(catalog).runs(episode_id):  # which worker ran each stage, and what it took
            click.echo(f"  {run.started_at:%Y-%m-%d %H:%M:%S} UTC  {run.stage:18} {run.outcome:7} "
                       f"{run.wall_s:8.1f} s wall {run.cpu_s:8.1f} s CPU  {run.worker}")


# the commands of their own modules
main.add_command(episode)
main.add_command(cost)
main.add_command(feed)
main.add_command(live)
main.add_command(doctor)
main.add_command(serve)
main.add_command(speakers)
episode.add_command(episode_speakers)

if __name__ == "__main__":
    main()
