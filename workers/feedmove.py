"""Moving a show's feed to a new URL without losing its subscribers.

The feed at the old URL stays up, keeps every item, and carries ``itunes:new-feed-url`` naming the new one: Apple
Podcasts and the other apps that read the tag move their subscribers there, and directories update their listing.
The show's ``podcast:guid`` does not change (it is the show's identity, kept in the catalog), so Podcasting 2.0
apps see the same show at its new address. Serve the same feed at the new URL (point ``ROOMCAST_PUBLIC_URL`` or a
CDN at the store). The old feed object also carries the redirect where the host can answer it: on S3 its
``WebsiteRedirectLocation`` (a 301 from the bucket's website endpoint and the CDNs in front of it), on a folder
store a note in its sidecar that ``roomcast serve`` answers with a 301.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from feeds.rss import feed_key
from pipeline.errors import FeedError
from storage.catalog import Catalog
from storage.objects import ObjectStore
from workers.config import Settings
from workers.publish import rebuild_feeds

log = logging.getLogger(__name__)


def check_feed_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        raise FeedError(f"new feed URL {url!r} must be an absolute http(s) URL, e.g. https://example.com/feed.xml")
    return url


def move_feed(settings: Settings, store: ObjectStore, catalog: Catalog, show_id: str, new_url: str) -> list[str]:
    """Record that ``show_id``'s public feed moved to ``new_url`` and rebuild its feeds; returns the keys written."""
    if catalog.get_show(show_id) is None:
        raise FeedError(f"show {show_id!r} is not in the catalog; publish one of its rooms first")
    old_url = store.url(feed_key(show_id))
    if check_feed_url(new_url).rstrip("/") == old_url.rstrip("/"):
        catalog.set_new_feed_url(show_id, None)  # moved back home: the feed stops pointing elsewhere
    else:
        catalog.set_new_feed_url(show_id, new_url)
    log.info("show %s: feed at %s now points subscribers to %s", show_id, old_url, new_url)
    return rebuild_feeds(settings, store, catalog, show_id)


def redirect_note(store: ObjectStore, catalog: Catalog, show_id: str) -> str | None:
    """What to tell the creator when the show's feed moved but its store kept no redirect for the old URL (a
    server that drops ``WebsiteRedirectLocation``); None when it did, or when the feed is home."""
    show = catalog.get_show(show_id)
    info = store.stat(feed_key(show_id))
    if show is None or not show.new_feed_url or info is None or info.redirect == show.new_feed_url:
        return None
    return (f"the store kept no redirect for the old feed: make the web server or CDN in front of it answer "
            f"{store.url(feed_key(show_id))} with a 301 to {show.new_feed_url}")
