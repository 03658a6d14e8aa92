"""What a creator should hear about a show's configuration before its feed goes public."""

from __future__ import annotations

from pathlib import Path

from feeds.artwork import check_artwork
from feeds.feedmeta import EpisodeMeta, episode_meta
from feeds.shows import placeholder_warning, show_config
from pipeline.consent import room_consent
from pipeline.errors import FeedError
from pipeline.room import Room
from workers.config import Settings


def show_warnings(settings: Settings, show_id: str) -> list[str]:
    """Problems that do not stop a publish but that directories will see: a show with no owner configured is
    published (a first run needs no shows.toml), with placeholders as author and owner, and said so loudly."""
    config = show_config(show_id, settings.shows_config)
    return [placeholder_warning(show_id, settings.shows_config)] if config.placeholder_owner else []


def room_feed_meta(room: Room) -> EpisodeMeta:
    """The room manifest's ``feed`` object, checked (only consenting speakers' links and wallets are kept)."""
    names = room_consent(room).names
    meta = episode_meta(room.extra.get("feed"), names, where=f"room {room.id!r}: {room.folder / 'room.json'}")
    episode_artwork(room, meta)
    return meta


def episode_cover(room: Room) -> Path | None:
    """The picture the replay files carry: the episode's own artwork when its manifest names a file."""
    return episode_artwork(room, room_feed_meta(room))


def episode_artwork(room: Room, meta: EpisodeMeta) -> Path | None:
    """The episode's own artwork file in the room folder, checked as show artwork is (None: it names none)."""
    if not meta.image_file:
        return None
    path = room.folder / meta.image_file
    if not path.is_file():
        raise FeedError(f"room {room.id!r}: feed.image {meta.image_file!r} is not a file in {room.folder}")
    check_artwork(path)
    return path
