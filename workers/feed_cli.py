"""``roomcast feed``, ``live``, ``doctor`` and ``serve``: the operator's commands for a show's feeds and the store
they are read from."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pipeline.errors import RoomcastError
from workers.cli_common import context_of, settings_of


@click.group()
def feed() -> None:
    """Feed commands."""


@feed.command("rebuild")
@click.argument("show")
@click.pass_context
def feed_rebuild(ctx: click.Context, show: str) -> None:
    """Rebuild SHOW's feeds, its show pages and every episode page from the catalog."""
    from workers.publish import rebuild_feeds

    context = context_of(ctx)
    try:
        keys = rebuild_feeds(settings_of(ctx), context.store, context.catalog, show, all_pages=True)
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
    for key in keys:
        click.echo(context.store.url(key))


@feed.command("move")
@click.argument("show")
@click.argument("new_url")
@click.pass_context
def feed_move(ctx: click.Context, show: str, new_url: str) -> None:
    """Tell SHOW's subscribers its feed now lives at NEW_URL (itunes:new-feed-url in the old feed, which
    redirects there where the store can say so)."""
    from workers.feedmove import move_feed, redirect_note

    context = context_of(ctx)
    try:
        keys = move_feed(settings_of(ctx), context.store, context.catalog, show, new_url)
        note = redirect_note(context.store, context.catalog, show)
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
    for key in keys:
        click.echo(context.store.url(key))
    if note:
        click.echo(f"note: {note}", err=True)


@click.group()
def live() -> None:
    """Rooms announced before they happen (podcast:liveItem)."""


@live.command("announce")
@click.argument("show")
@click.argument("room_id")
@click.option("--title", required=True)
@click.option("--start", "start", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z"]), required=True,
              help="When the room starts, e.g. 2026-12-05T18:00:00+0000.")
@click.option("--end", "end", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z"]), default=None)
@click.option("--stream", "stream_url", required=True, help="URL of the live audio stream.")
@click.option("--status", type=click.Choice(["pending", "live", "ended"]), default="pending")
@click.option("--link", default=None, help="Web page where the room can be joined.")
@click.pass_context
def live_announce(ctx: click.Context, show: str, room_id: str, title: str, start: Any, end: Any, stream_url: str,
                  status: str, link: str | None) -> None:
    """Announce ROOM_ID in SHOW's feed; publishing the room's replay later replaces the announcement."""
    from workers.live import announce

    context = context_of(ctx)
    try:
        keys = announce(settings_of(ctx), context.store, context.catalog, show, room_id, title=title, start=start,
                        stream_url=stream_url, status=status, end=end, link=link)
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
    for key in keys:
        click.echo(context.store.url(key))


@click.command()
@click.pass_context
def doctor(ctx: click.Context) -> None:
    """Check the store from outside over HTTP: public read, range requests, content types, CORS, and that the
    old address of every moved feed redirects to its new one."""
    from workers.doctor import check_moved_feeds, check_store

    context = context_of(ctx)
    try:
        checks = check_store(context.store) + check_moved_feeds(context.store, context.catalog.moved_shows())
    except RoomcastError as exc:
        raise click.ClickException(str(exc)) from exc
    for check in checks:
        click.echo(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
    if not all(c.ok for c in checks):
        sys.exit(1)
@click.command()
@click.argument("folder", required=False, type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.pass_context
def serve(ctx: click.Context, folder: Path | None, port: int) -> None:
    """Serve a folder store (default: $ROOMCAST_STORE) on localhost, to look at its pages and feeds."""
    from storage.layout import show_page_key
    from workers.serve import make_server

    root = folder or Path(settings_of(ctx).store)
    if str(root).startswith("s3://") or not root.is_dir():
        raise click.ClickException(f"{root} is not a folder store; give the folder to serve")
    try:
        server = make_server(root, port=port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on 127.0.0.1:{port}: {exc}") from exc
    host, bound = str(server.server_address[0]), int(server.server_address[1])
    click.echo(f"serving {root.resolve()} at http://{host}:{bound}/ (Ctrl-C stops)")
    shows = sorted(p.name for p in (root / "shows").iterdir() if (p / "index.html").is_file()) \
        if (root / "shows").is_dir() else []
    for show in shows:
        click.echo(f"  http://{host}:{bound}/{show_page_key(show)}")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
