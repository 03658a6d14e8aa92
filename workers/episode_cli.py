"""``roomcast episode``: what creators do with published episodes (list, unpublish, edit, history, links), and the
options of an edit, which ``roomcast submit --edit`` shares."""

from __future__ import annotations

import json
from typing import Any

import click

from pipeline.errors import RoomcastError
from workers.cli_common import StageDisplay, context_of, settings_of


def edit_options(command: Any) -> Any:
    """The options of an edit (``roomcast episode edit``, ``roomcast submit --edit``)."""
    for option in reversed([
        click.option("--remove-speaker", "remove_speakers", multiple=True, metavar="SPEAKER",
                     help="Take a speaker out of the audio, every transcript, the chapters and the feed."),
        click.option("--cut", "cuts", multiple=True, metavar="START-END",
                     help="Remove a span (seconds or h:mm:ss on the published replay's clock); repeatable."),
        click.option("--bleep", "bleep_words", multiple=True, metavar="WORD",
                     help="Replace every occurrence of a word by a tone and [bleep]; repeatable."),
        click.option("--bleep-at", "bleep_spans", multiple=True, metavar="START-END",
                     help="Replace a span by a tone; repeatable."),
        click.option("--title", default=None, help="Correct the episode's title."),
        click.option("--description", default=None, help="Correct the episode's description."),
        click.option("--speaker-name", "speaker_names", multiple=True, metavar="SPEAKER=NAME",
                     help="Correct a speaker's name."),
        click.option("--by", default=None, help="Who makes the edit, for the audit trail (default: the OS user)."),
    ]):
        command = option(command)
    return command


def edit_request(options: dict[str, Any]) -> Any:
    from pipeline.edits import EditRequest, parse_span

    names = []
    for pair in options["speaker_names"]:
        speaker, sep, name = pair.partition("=")
        if not sep or not speaker or not name.strip():
            raise click.UsageError(f"--speaker-name {pair!r}: write SPEAKER=NAME")
        names.append((speaker, name.strip()))
    try:
        return EditRequest(tuple(options["remove_speakers"]), tuple(parse_span(c) for c in options["cuts"]),
                           tuple(options["bleep_words"]), tuple(parse_span(c) for c in options["bleep_spans"]),
                           options["title"], options["description"], tuple(names))
    except RoomcastError as exc:
        raise click.UsageError(str(exc)) from exc


def queue_edit(ctx: click.Context, episode_id: str, options: dict[str, Any]) -> None:
    from workers.edit import enqueue_edit

    try:
        task = enqueue_edit(settings_of(ctx), episode_id, edit_request(options), by=options["by"])
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{episode_id}: edit queued (task {task}); roomcast episode history {episode_id} follows it")


@click.group()
def episode() -> None:
    """Creator commands for published episodes."""


@episode.command("list")
@click.option("--show", default=None)
@click.pass_context
def episode_list(ctx: click.Context, show: str | None) -> None:
    """Episodes in the catalog."""
    for e in context_of(ctx).catalog.list_episodes(show):
        click.echo(f"{e.id:40} {e.show:20} {e.visibility:9} {e.status:12} {e.duration_s:8.1f}s  {e.title}")


@episode.command("unpublish")
@click.argument("episode_id")
@click.pass_context
def episode_unpublish(ctx: click.Context, episode_id: str) -> None:
    """Take an episode out of every feed and remove its objects."""
    from workers.publish import unpublish

    context = context_of(ctx)
    try:
        removed = unpublish(settings_of(ctx), context.store, context.catalog, episode_id)
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"episode {episode_id!r} unpublished; {removed} object(s) removed")


@episode.command("edit")
@click.argument("episode_id")
@edit_options
@click.option("--queue", is_flag=True, help="Run the edit on a worker ($ROOMCAST_BROKER_URL) instead of here.")
@click.pass_context
def episode_edit(ctx: click.Context, episode_id: str, queue: bool, **options: Any) -> None:
    """Edit a published episode in place: same guid, same files, new bytes; recorded in its history."""
    if queue:
        queue_edit(ctx, episode_id, options)
        return
    from workers.edit import edit_episode
    from workers.progress import listening

    request = edit_request(options)
    try:
        with listening(StageDisplay(ctx.obj["quiet"])):
            summary = edit_episode(settings_of(ctx), episode_id, request, by=options["by"])
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(summary, indent=2))


@episode.command("history")
@click.argument("episode_id")
@click.pass_context
def episode_history(ctx: click.Context, episode_id: str) -> None:
    """The edits of an episode, oldest first: when, who, what, and its identity before and after."""
    from workers.edit import history_lines

    context = context_of(ctx)
    if context.catalog.get_episode(episode_id) is None:
        raise click.ClickException(f"no episode {episode_id!r} in the catalog")
    lines = history_lines(context.catalog, episode_id)
    for line in lines or [f"{episode_id}: no edits"]:
        click.echo(line)


@episode.command("links")
@click.argument("episode_id")
@click.option("--expires", type=int, default=24 * 3600, show_default=True, help="Seconds the links stay valid.")
@click.pass_context
def episode_links(ctx: click.Context, episode_id: str, expires: int) -> None:
    """Expiring download links (presigned, S3 stores) for the replay and transcripts."""
    context = context_of(ctx)
    record = context.catalog.get_episode(episode_id)
    if record is None:
        raise click.ClickException(f"no episode {episode_id!r} in the catalog")
    try:
        for asset in record.assets:
            click.echo(f"{asset.name:18} {context.store.presign(asset.key, expires)}")
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
