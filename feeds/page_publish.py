"""Publishing episode and show pages into a store, beside the objects they show.

Keys (the same on a folder and on S3)::

    shows/{show}/index.html                                   the public show page
    shows/{show}/static/player-{hash}.js, player-{hash}.css   what every page of the show loads
    shows/{show}/episodes/{episode}/index.html                the episode page
    shows/{show}/episodes/{episode}/word-times.json           word times for the page's highlighting
    shows/{show}/private/{token}/index.html                   the private show page (private episodes only)

An episode page lives in the folder of its episode's assets (under the private token for private rooms), so it
follows the room when its visibility changes. Every object a page loads is stored before the page, and pages are
stored before the feeds that link to them (see :mod:`workers.publish`).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence

from feeds.page_data import PageChapter, PageTranscript, read_chapters, read_words, word_times_json
from feeds.pages import EpisodePageInput, render_episode_page, render_show_page, static_files
from pipeline.errors import FeedError
from storage.layout import PAGE_NAME, feed_key, show_page_key, static_key
from storage.objects import ObjectStore
from storage.records import EpisodeRecord, ShowRecord

log = logging.getLogger(__name__)

WORD_TIMES_NAME = "word-times.json"
HTML_TYPE = "text/html; charset=utf-8"
PAGE_CACHE = "public, max-age=300"
STATIC_CACHE = "public, max-age=31536000, immutable"  # static names change with their content
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def episode_folder(episode: EpisodeRecord) -> str:
    """The key prefix (ending in ``/``) where the episode's assets are stored."""
    asset = episode.asset("replay.mp3") or (episode.assets[0] if episode.assets else None)
    if asset is None:
        raise FeedError(f"episode {episode.id!r} has no published objects; process its room first")
    return posixpath.dirname(asset.key) + "/"


def episode_page_key(episode: EpisodeRecord) -> str:
    return episode_folder(episode) + PAGE_NAME


def publish_static(store: ObjectStore, show_id: str) -> dict[str, str]:
    """Store the pages' script and stylesheet for ``show_id`` (unchanged files are not uploaded again);
    returns their keys by file name."""
    keys = {}
    for item in static_files():
        key = static_key(show_id, item.published_name)
        store.put_bytes(key, item.data, content_type=STATIC_TYPES[posixpath.splitext(item.name)[1]],
                        cache_control=STATIC_CACHE)
        keys[item.name] = key
    return keys


def publish_episode_page(store: ObjectStore, show: ShowRecord, episode: EpisodeRecord,
                         static_keys: dict[str, str] | None = None) -> str:
    """Build the episode page from its published transcript and chapters, store its word times and then the
    page; returns the page's key."""
    static_keys = static_keys or publish_static(store, show.id)
    folder = episode_folder(episode)
    private_token = _private_token(folder)
    transcript = _transcript(store, episode)
    times_key = None
    if transcript is not None and transcript.turns:
        times_key = folder + WORD_TIMES_NAME
        store.put_bytes(times_key, word_times_json(transcript), content_type="application/json",
                        cache_control=PAGE_CACHE)
    page = EpisodePageInput(
        show=show, episode=episode, page_key=folder + PAGE_NAME,
        show_page_key=show_page_key(show.id, private_token), feed_key=feed_key(show.id, private_token),
        static_keys=static_keys, url_for=store.url, transcript=transcript, chapters=_chapters(store, episode),
        word_times_key=times_key, listed=episode.visibility == "public")
    key = folder + PAGE_NAME
    store.put_bytes(key, render_episode_page(page).encode(), content_type=HTML_TYPE, cache_control=PAGE_CACHE)
    log.info("episode %s: page stored at %s", episode.id, key)
    return key


def publish_show_page(store: ObjectStore, show: ShowRecord, episodes: Sequence[EpisodeRecord],
                      private_token: str | None = None, static_keys: dict[str, str] | None = None) -> str:
    """Store the show page listing ``episodes`` (the ones of its feed); returns its key."""
    static_keys = static_keys or publish_static(store, show.id)
    key = show_page_key(show.id, private_token)
    html = render_show_page(show, episodes, page_key=key, feed_key=feed_key(show.id, private_token),
                            static_keys=static_keys, url_for=store.url, episode_page_key=episode_page_key,
                            private=private_token is not None)
    store.put_bytes(key, html.encode(), content_type=HTML_TYPE, cache_control=PAGE_CACHE)
    return key


def remove_episode_page(store: ObjectStore, episode: EpisodeRecord) -> int:
    """Delete the episode's page objects; returns how many there were."""
    folder = episode_folder(episode)
    removed = 0
    for name in (PAGE_NAME, WORD_TIMES_NAME):
        if store.exists(folder + name):
            store.delete(folder + name)
            removed += 1
    return removed


def _private_token(folder: str) -> str | None:
    parts = folder.split("/")
    return parts[3] if len(parts) > 4 and parts[2] == "private" else None


def _transcript(store: ObjectStore, episode: EpisodeRecord) -> PageTranscript | None:
    asset = episode.asset("words.json")
    if asset is None:
        return None
    return read_words(store.get_bytes(asset.key), f"episode {episode.id!r}: {asset.key}")


def _chapters(store: ObjectStore, episode: EpisodeRecord) -> tuple[PageChapter, ...]:
    asset = episode.asset("chapters.json")
    if asset is None:
        return ()
    return read_chapters(store.get_bytes(asset.key), f"episode {episode.id!r}: {asset.key}")
