"""Publishing order: every asset first, then the catalog, then the show's feeds, uploaded last.

A crash or a storage failure at any point leaves the previous feed in place and valid: the feed is rebuilt from the
catalog only after the episode's objects are all stored, and every object an item points at is checked to exist
before the feed is written. Re-running a room re-uses its guid and its keys, so nothing is duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from feeds.rss import build_feed, episode_prefix, feed_key
from feeds.shows import check_artwork, default_artwork, show_record
from pipeline.errors import FeedError
from pipeline.manifest import Room
from storage.catalog import Catalog
from storage.objects import ObjectStore
from storage.records import AssetRecord, EpisodeRecord, ShowRecord
from workers.config import Settings
from workers.render import Rendered

log = logging.getLogger(__name__)

FEED_CACHE = "public, max-age=300"


def artwork_key(show_id: str, suffix: str = ".jpg") -> str:
    return f"shows/{show_id}/artwork{suffix}"


def ensure_show(settings: Settings, store: ObjectStore, catalog: Catalog, show_id: str,
                fallback_title: str | None = None) -> ShowRecord:
    """The show's record with its artwork stored: configured artwork (checked), else a generated cover."""
    record = show_record(show_id, settings.shows_config, fallback_title=fallback_title)
    configured = Path(record.artwork_path) if record.artwork_path else None
    if configured is not None:
        check_artwork(configured)
        key = artwork_key(show_id, configured.suffix.lower().replace(".jpeg", ".jpg"))
        store.put_file(key, configured)
    else:
        key = artwork_key(show_id)
        if not store.exists(key):
            store.put_bytes(key, default_artwork(record), content_type="image/jpeg")
    return catalog.upsert_show(replace(record, artwork_key=key))


def publish_episode(settings: Settings, store: ObjectStore, catalog: Catalog, room: Room,
                    rendered: Rendered, *, before_feeds: Callable[[], None] | None = None) -> EpisodeRecord:
    """Store the episode's files under its keys (replacing what was there), then list it and rebuild its
    show's feeds. ``before_feeds``: catalog corrections to make once the files are stored (an edit's)."""
    show = catalog.get_show(room.show) or ensure_show(settings, store, catalog, room.show)
    token = catalog.ensure_private_token(show.id) if room.visibility == "private" else None
    prefix = episode_prefix(show.id, room.id, token)
    assets = []
    for name, path in sorted(rendered.files.items()):
        info = store.put_file(prefix + name, path)
        assets.append(AssetRecord(name=name, key=info.key, size=info.size, content_type=info.content_type,
                                  md5=info.md5))
    catalog.record_assets(room.id, assets)
    if before_feeds is not None:
        before_feeds()
    catalog.mark_listed(room.id, rendered.duration_s)
    _remove_other_copies(store, catalog, show, room, prefix)
    rebuild_feeds(settings, store, catalog, show.id)
    catalog.mark_published(room.id, rendered.duration_s)  # only now: whoever sees "published" finds it in the feed
    episode = catalog.get_episode(room.id)
    assert episode is not None
    return episode


def _remove_other_copies(store: ObjectStore, catalog: Catalog, show: ShowRecord, room: Room, kept: str) -> None:
    """When a room changes visibility, its objects under the other path (public or private) are removed."""
    others = [episode_prefix(show.id, room.id, None)]
    current = catalog.get_show(show.id)
    token = current.private_token if current else None
    if token:
        others.append(episode_prefix(show.id, room.id, token))
    for prefix in others:
        if prefix != kept:
            store.delete_prefix(prefix)


def rebuild_feeds(settings: Settings, store: ObjectStore, catalog: Catalog, show_id: str) -> list[str]:
    """Rebuild the show's public feed and, when it has one, its private feed. Returns the keys written.

    Runs under the show's lock in the catalog and reads the catalog inside it: of episodes of one show finishing
    together, the last to rebuild sees every one published before it, so no item is ever lost to a race.
    """
    with catalog.show_lock(show_id):
        return _rebuild_feeds(store, catalog, show_id)


def _rebuild_feeds(store: ObjectStore, catalog: Catalog, show_id: str) -> list[str]:
    show = catalog.get_show(show_id)
    if show is None:
        raise FeedError(f"show {show_id!r} is not in the catalog; process one of its rooms first")
    written = []
    for visibility, token in (("public", None), ("private", show.private_token)):
        if visibility == "private" and not token:
            continue
        episodes = [e for e in catalog.feed_episodes(show.id, visibility) if _all_objects_exist(store, e)]
        key = feed_key(show.id, token)
        body = build_feed(show, episodes, feed_url=store.url(key), url_for=store.url,
                          artwork_url=store.url(show.artwork_key) if show.artwork_key else None,
                          generated_at=datetime.now(UTC))
        store.put_bytes(key, body, content_type="application/rss+xml; charset=utf-8", cache_control=FEED_CACHE)
        written.append(key)
        log.info("show %s: %s feed rebuilt with %d item(s) at %s", show.id, visibility, len(episodes), key)
    return written


def _all_objects_exist(store: ObjectStore, episode: EpisodeRecord) -> bool:
    for asset in episode.assets:
        info = store.stat(asset.key)
        if info is None or info.size != asset.size:
            log.warning("episode %s: %s is missing or changed in the store; left out of the feed",
                        episode.id, asset.key)
            return False
    return bool(episode.assets)


def unpublish(settings: Settings, store: ObjectStore, catalog: Catalog, episode_id: str) -> int:
    """Take an episode out of every feed (feeds rebuilt first), then remove its objects. Returns objects removed."""
    episode = catalog.get_episode(episode_id)
    if episode is None:
        raise FeedError(f"no episode {episode_id!r} in the catalog")
    catalog.mark_unpublished(episode_id)
    rebuild_feeds(settings, store, catalog, episode.show)
    removed = 0
    for asset in episode.assets:
        if store.exists(asset.key):
            store.delete(asset.key)
            removed += 1
    return removed
