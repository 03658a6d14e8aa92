"""Publishing order: every asset first, then the catalog, then the show's feeds, uploaded last.

A crash or a storage failure at any point leaves the previous feed in place and valid: the feed is rebuilt from the
catalog only after the episode's objects are all stored, and every object an item points at is checked to exist
before the feed is written. Re-running a room re-uses its guid and its keys, so nothing is duplicated.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from feeds.artwork import check_artwork, default_artwork
from feeds.feedmeta import EpisodeMeta, Soundbite
from feeds.live import dump as live_items_dump
from feeds.live import load as live_items_load
from feeds.page_publish import (
    episode_page_key,
    publish_episode_page,
    publish_show_page,
    publish_static,
    remove_episode_page,
)
from feeds.podcast_ext import feed_guid
from feeds.rss import build_feed
from feeds.shows import ShowConfig, show_config, show_record
from pipeline.errors import FeedError
from pipeline.room import Room
from pipeline.soundbites import pick_soundbites
from storage import layout
from storage.catalog import Catalog
from storage.layout import episode_prefix, feed_key
from storage.objects import ObjectStore, content_type_for
from storage.records import EPISODE_ARTWORK_PREFIX, AssetRecord, EpisodeRecord, ShowRecord
from workers.config import Settings
from workers.feedping import Pinger, ping_later
from workers.pauses import pause
from workers.render import Rendered
from workers.showcheck import episode_artwork, room_feed_meta

log = logging.getLogger(__name__)

FEED_CACHE = "public, max-age=300"


def artwork_key(show_id: str, data: bytes, suffix: str = ".jpg") -> str:
    """The artwork's key, named after its content: apps cache covers by URL, so a new cover gets a new one."""
    return layout.artwork_key(show_id, hashlib.sha256(data).hexdigest()[:16], suffix)


def episode_artwork_name(path: Path) -> str:
    """The episode artwork's name beside the replay, after its content (a new picture gets a new URL)."""
    suffix = path.suffix.lower().replace(".jpeg", ".jpg")
    return f"{EPISODE_ARTWORK_PREFIX}{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}{suffix}"


def ensure_show(settings: Settings, store: ObjectStore, catalog: Catalog, show_id: str,
                fallback_title: str | None = None) -> ShowRecord:
    """The show's record with its artwork stored: configured artwork (checked), else a generated cover. A show
    new to the catalog gets its ``podcast:guid`` here (the one pinned in shows.toml, else the one of its feed's URL
    today), kept for life whatever the public URL becomes."""
    record = show_record(show_id, settings.shows_config, fallback_title=fallback_title)
    configured = Path(record.artwork_path) if record.artwork_path else None
    if configured is not None:
        check_artwork(configured)
        data = configured.read_bytes()
        key = artwork_key(show_id, data, configured.suffix.lower().replace(".jpeg", ".jpg"))
    else:
        data = default_artwork(record)
        key = artwork_key(show_id, data)
    if not store.exists(key):
        store.put_bytes(key, data, content_type=content_type_for(key))
    show = catalog.upsert_show(replace(record, artwork_key=key))
    guid = catalog.pin_show_guid(show_id, feed_guid(store.url(feed_key(show_id))))
    return replace(show, podcast_guid=guid)


def publish_episode(settings: Settings, store: ObjectStore, catalog: Catalog, room: Room,
                    rendered: Rendered, *, before_feeds: Callable[[], None] | None = None,
                    then: str | None = None) -> EpisodeRecord:
    """Store the episode's files under its keys (replacing what was there), then list it and rebuild its
    show's feeds. ``before_feeds``: catalog corrections to make once the files are stored (an edit's).
    ``then``: the run goes on at this stage (replay first: the replay is out, its transcripts follow)."""
    show = catalog.get_show(room.show) or ensure_show(settings, store, catalog, room.show)
    token = catalog.ensure_private_token(show.id) if room.visibility == "private" else None
    prefix = episode_prefix(show.id, room.id, token)
    assets = []
    meta = with_soundbites(room_feed_meta(room), rendered)
    files = dict(rendered.files)
    if (art := episode_artwork(room, meta)) is not None:
        files[episode_artwork_name(art)] = art
    for name, path in sorted(files.items()):
        info = store.put_file(prefix + name, path)
        assets.append(AssetRecord(name=name, key=info.key, size=info.size, content_type=info.content_type,
                                  md5=info.md5))
    catalog.record_assets(room.id, assets)
    catalog.set_feed_meta(room.id, meta.to_json())
    if before_feeds is not None:
        before_feeds()
    catalog.mark_listed(room.id, rendered.duration_s)
    _remove_other_copies(store, catalog, show, room, prefix)
    _end_live_item(catalog, show.id, room.id)
    listed = catalog.get_episode(room.id)
    assert listed is not None
    publish_episode_page(store, show, listed)  # before the feeds and the show page that link to it
    pause(settings, "before-feed", room.id)  # test hook (Settings.test_pause): a no-op unless a test sets it
    rebuild_feeds(settings, store, catalog, show.id)
    if then is not None:  # only now: whoever sees "published" finds it in the feed
        catalog.mark_replay_published(room.id, rendered.duration_s, then)
    else:
        catalog.mark_published(room.id, rendered.duration_s)
    episode = catalog.get_episode(room.id)
    assert episode is not None
    return episode


def _end_live_item(catalog: Catalog, show_id: str, room_id: str) -> None:
    """The room's live item leaves the feed as its replay (same guid) enters it."""
    show = catalog.get_show(show_id)
    if show is not None and show.live_items:
        items = live_items_load(show.live_items)
        kept = [i for i in items if i.id != room_id]
        if len(kept) != len(items):
            catalog.set_live_items(show_id, live_items_dump(kept))


def with_soundbites(meta: EpisodeMeta, rendered: Rendered) -> EpisodeMeta:
    """The manifest's soundbites, else the most engaged stretch of the transcript (none without one)."""
    if meta.soundbites or rendered.transcript is None:
        return meta
    bites = pick_soundbites(rendered.transcript)
    return replace(meta, soundbites=tuple(Soundbite(b.start, b.duration) for b in bites))


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


def rebuild_feeds(settings: Settings, store: ObjectStore, catalog: Catalog, show_id: str, *,
                  all_pages: bool = False) -> list[str]:
    """Rebuild the show's public feed and, when it has one, its private feed, each after its show page. Returns
    the feeds' keys. Episode pages missing from the store are built; ``all_pages`` rebuilds every one (unlisted
    episodes' too).

    Runs under the show's lock in the catalog and reads the catalog inside it: of episodes of one show finishing
    together, the last to rebuild sees every one published before it, so no item is ever lost to a race.
    """
    config = show_config(show_id, settings.shows_config)
    with catalog.show_lock(show_id):
        written = _rebuild_feeds(store, catalog, show_id, config, all_pages)
    public = [store.url(key) for key in written if key == feed_key(show_id)]
    ping_later(Pinger(settings.podping_url, settings.podping_token, settings.websub_hub), public)
    return written


def _rebuild_feeds(store: ObjectStore, catalog: Catalog, show_id: str, config: ShowConfig,
                   all_pages: bool = False) -> list[str]:
    show = catalog.get_show(show_id)
    if show is None:
        raise FeedError(f"show {show_id!r} is not in the catalog; process one of its rooms first")
    static = publish_static(store, show.id)
    if all_pages:
        for episode in catalog.feed_episodes(show.id, "unlisted"):
            if _all_objects_exist(store, episode):
                _episode_page(store, show, episode, static, rebuild=True)
    written = []
    for visibility, token in (("public", None), ("private", show.private_token)):
        if visibility == "private" and not token:
            continue
        episodes = [e for e in catalog.feed_episodes(show.id, visibility) if _all_objects_exist(store, e)]
        paged = [e for e in episodes if _episode_page(store, show, e, static, rebuild=all_pages)]
        show_page = publish_show_page(store, show, paged, token, static)
        key = feed_key(show.id, token)
        page_urls = {e.id: store.url(episode_page_key(e)) for e in paged}
        identity = _identity(store, catalog, show, token)
        body = build_feed(show, episodes, feed_url=store.url(key), url_for=store.url,
                          artwork_url=store.url(show.artwork_key) if show.artwork_key else None,
                          generated_at=datetime.now(UTC), config=config, show_page_url=store.url(show_page),
                          page_url_for=lambda e, urls=page_urls: urls.get(e.id),  # type: ignore[misc]
                          **identity)
        # A moved feed keeps its body (for apps that read itunes:new-feed-url) and redirects where the host can.
        store.put_bytes(key, body, content_type="application/rss+xml; charset=utf-8", cache_control=FEED_CACHE,
                        redirect=identity["new_feed_url"])
        written.append(key)
        log.info("show %s: %s feed rebuilt with %d item(s) at %s", show.id, visibility, len(episodes), key)
    return written


def _identity(store: ObjectStore, catalog: Catalog, show: ShowRecord, token: str | None) -> dict[str, str | None]:
    """The feed's ``podcast:guid`` (the show's, from the catalog; a show catalogued before guids were kept gets the
    one of its public feed's URL now) and where it moved to. A private feed has its own guid, derived from the
    show's, so it too survives a change of URL; a moved show's private feed stays where it is. A move to the
    feed's own URL (the public URL changed to the new home since) is no move: no tag, no redirect loop."""
    here = store.url(feed_key(show.id))
    guid = show.podcast_guid or catalog.pin_show_guid(show.id, feed_guid(here))
    if token is not None:
        return {"podcast_guid": str(uuid.uuid5(uuid.UUID(guid), "private")), "new_feed_url": None}
    moved = show.new_feed_url if show.new_feed_url and show.new_feed_url.rstrip("/") != here.rstrip("/") else None
    return {"podcast_guid": guid, "new_feed_url": moved}


def _episode_page(store: ObjectStore, show: ShowRecord, episode: EpisodeRecord, static: dict[str, str], *,
                  rebuild: bool) -> bool:
    """Make sure the episode's page is stored (built when missing, or always with ``rebuild``); False when it
    cannot be built (its transcript or chapters are unreadable), which leaves it out of the show page only."""
    if not rebuild and store.exists(episode_page_key(episode)):
        return True
    try:
        publish_episode_page(store, show, episode, static)
    except FeedError as exc:
        log.warning("show %s: no page for episode %s: %s", show.id, episode.id, exc)
        return False
    return True


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
    removed = remove_episode_page(store, episode) if episode.assets else 0
    for asset in episode.assets:
        if store.exists(asset.key):
            store.delete(asset.key)
            removed += 1
    return removed
