"""The show's podcast feed: RSS 2.0 with iTunes and Podcasting 2.0 tags, built from catalog records.

The feed only ever points at objects the caller says exist: an episode without a ``replay.mp3`` asset is left out
(with a warning) rather than failing the whole show's feed, so one broken episode never blocks the others. Item guids
come from the catalog and never change across re-publishing. Text is passed through lxml (which escapes it) after
characters XML 1.0 cannot carry at all have been removed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from feedgen.entry import FeedEntry
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from feeds.extras import channel_extras, item_extras, podcast_item_extras, with_prefix
from feeds.feedmeta import EpisodeMeta
from feeds.live import live_elements
from feeds.podcast_ext import COVER_IMAGE, PodcastIndexEntryExtension, PodcastIndexExtension, feed_guid
from feeds.shows import ShowConfig
from pipeline.errors import FeedError
from pipeline.text import clean_xml_text
from storage.layout import episode_prefix as episode_prefix  # re-exported: the keys' home is storage.layout
from storage.layout import feed_key as feed_key
from storage.records import AssetRecord, EpisodeRecord, PersonRecord, ShowRecord

log = logging.getLogger(__name__)

ITUNES_NS = "http://www.itunes.com/dtds/podcast-1.0.dtd"
CONTENT_NS = "http://purl.org/rss/1.0/modules/content/"
DESCRIPTION_MAX_BYTES = 4000  # Apple Podcasts' limit for channel and episode descriptions
REPLAY_ASSET = "replay.mp3"
# Other encodings of the replay, listed as podcast:alternateEnclosure (the type as the Podcasting 2.0 spec's own
# example gives Opus).
ALTERNATE_ASSETS = {"replay.m4a": "audio/mp4", "replay.opus": "audio/opus"}
# Listed in the order apps should prefer them: VTT first (voice spans carry the speaker names).
TRANSCRIPT_ASSETS = {
    "transcript.vtt": ("text/vtt", "captions"),
    "transcript.srt": ("application/x-subrip", "captions"),
    "transcript.json": ("application/json", None),
    "transcript.txt": ("text/plain", None),
}
CHAPTERS_ASSET = "chapters.json"
# Manifest roles mapped onto the Podcasting 2.0 person taxonomy (group "cast").
PERSON_ROLES = {"host": "host", "co-host": "co-host", "cohost": "co-host", "moderator": "co-host"}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


FEED_TTL_MINUTES = 5


def clean_text(text: str) -> str:
    """Text with the characters XML 1.0 forbids removed (control characters, lone surrogates)."""
    return clean_xml_text(text)


def truncate_utf8(text: str, max_bytes: int = DESCRIPTION_MAX_BYTES) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, at a word boundary when one is near, ending in '…'."""
    if len(text.encode("utf-8")) <= max_bytes:
        return text
    room = max_bytes - len("…".encode())
    cut = text.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    space = cut.rfind(" ")
    if space > len(cut) * 0.8:  # a word boundary close to the end reads better than a word cut in half
        cut = cut[:space]
    return cut.rstrip() + "…"


def _description(text: str) -> str:
    return truncate_utf8(clean_text(text).strip())


def _published(episode: EpisodeRecord) -> datetime | None:
    when = episode.published_at or episode.recorded_at
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # the catalog stores UTC; naive values are read as such
    return when


def _itunes_flag(explicit: bool) -> str:
    return "true" if explicit else "false"


class AppleTagsExtension(BaseExtension):
    """The iTunes tags feedgen 1.0 writes in an outdated form: ``itunes:explicit`` as ``true``/``false``
    (feedgen only knows yes/no/clean) and ``itunes:image`` for any URL (feedgen drops those not ending in .jpg)."""

    def __init__(self) -> None:
        self.explicit: bool | None = None
        self.image: str | None = None

    def extend_rss(self, feed: Any) -> Any:
        channel = feed[0]
        if self.image:
            etree.SubElement(channel, f"{{{ITUNES_NS}}}image", href=self.image)
        if self.explicit is not None:
            etree.SubElement(channel, f"{{{ITUNES_NS}}}explicit").text = _itunes_flag(self.explicit)
        return feed


class AppleTagsEntryExtension(BaseEntryExtension):
    """Item tags feedgen writes in an outdated form or not at all: ``itunes:explicit``, ``itunes:image`` for any
    URL, and ``content:encoded`` (show notes as HTML) whether or not a description is set."""

    def __init__(self) -> None:
        self.explicit: bool | None = None
        self.image: str | None = None
        self.notes_html: str = ""

    def extend_ns(self) -> dict[str, str]:
        return {"content": CONTENT_NS}

    def extend_rss(self, entry: Any) -> Any:
        if self.explicit is not None:
            etree.SubElement(entry, f"{{{ITUNES_NS}}}explicit").text = _itunes_flag(self.explicit)
        if self.image:
            etree.SubElement(entry, f"{{{ITUNES_NS}}}image", href=self.image)
        if self.notes_html:
            etree.SubElement(entry, f"{{{CONTENT_NS}}}encoded").text = etree.CDATA(self.notes_html)
        return entry


def build_feed(show: ShowRecord, episodes: Sequence[EpisodeRecord], *, feed_url: str, url_for: Callable[[str], str],
               artwork_url: str | None, generated_at: datetime | None = None, podcast_guid: str | None = None,
               new_feed_url: str | None = None, config: ShowConfig | None = None, show_page_url: str | None = None,
               page_url_for: Callable[[EpisodeRecord], str | None] | None = None) -> bytes:
    """The feed XML (UTF-8 bytes) of ``show`` listing ``episodes``, newest first, at most ``show.max_items``.

    ``url_for(key)`` gives the public URL of an object key; ``feed_url`` is where this feed will be served (its
    ``atom:link rel=self``). ``podcast_guid`` is the show's identity for life (the catalog's, which survives a change
    of public URL); only without one is it derived from ``feed_url``. ``new_feed_url`` (``itunes:new-feed-url``)
    tells apps the feed moved there. ``config`` (the show's shows.toml table) adds what hosts let a show set
    (copyright, itunes:block/complete/type, podcast:medium/license/location/funding, an analytics prefix).
    ``show_page_url`` is the channel's ``<link>`` (unless ``shows.toml`` sets ``link``) and ``page_url_for(episode)``
    each item's.
    """
    fg = _channel(show, feed_url=feed_url, artwork_url=artwork_url, generated_at=generated_at or datetime.now(UTC),
                  show_page_url=show_page_url)
    _identity(fg, show, podcast_guid=podcast_guid or feed_guid(feed_url), new_feed_url=new_feed_url)
    fg.podcastindex.podcast_elements(live_elements(show.id, show.live_items))
    channel_extras(fg, show, config or ShowConfig(id=show.id, title=show.title))
    media_url = with_prefix(url_for, config.analytics_prefix if config else None)
    items = [e for e in episodes if _has_replay(show, e)]
    items.sort(key=lambda e: (_published(e) or _EPOCH, e.id), reverse=True)
    # feedgen prepends each entry it is given, so adding oldest first leaves the newest on top.
    for episode in reversed(items[: max(show.max_items, 0)]):
        _add_item(fg, show, episode, url_for, media_url, page_url_for(episode) if page_url_for else None)
    try:
        return fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    except ValueError as exc:
        raise FeedError(f"feed of show {show.id!r} could not be written: {exc}; check shows.toml") from exc


def _has_replay(show: ShowRecord, episode: EpisodeRecord) -> bool:
    if episode.asset(REPLAY_ASSET) is None:
        log.warning("show %s: episode %s has no %s asset; left out of the feed", show.id, episode.id, REPLAY_ASSET)
        return False
    return True


def _channel(show: ShowRecord, *, feed_url: str, artwork_url: str | None, generated_at: datetime,
             show_page_url: str | None = None) -> FeedGenerator:
    fg = FeedGenerator()
    fg.load_extension("podcast")  # feedgen's iTunes tags
    fg.register_extension("podcastindex", PodcastIndexExtension, PodcastIndexEntryExtension)
    fg.register_extension("apple", AppleTagsExtension, AppleTagsEntryExtension)
    title = clean_text(show.title).strip() or show.id
    link = show.link or show_page_url or feed_url
    try:
        fg.title(title)
        # feedgen takes the RSS <link> from the last link given, so the self link must come first.
        fg.link(href=feed_url, rel="self", type="application/rss+xml")
        fg.link(href=link, rel="alternate")
        fg.description(_description(show.description) or title)
        fg.language(show.language)
        fg.generator(*_generator())
        fg.lastBuildDate(generated_at if generated_at.tzinfo else generated_at.replace(tzinfo=UTC))
        fg.ttl(FEED_TTL_MINUTES)  # as long as the store lets caches keep the feed and its (editable) files
        if artwork_url:
            fg.image(url=artwork_url, title=title, link=link)
            fg.apple.image = artwork_url
            fg.podcastindex.podcast_simple("image", None, href=artwork_url, **COVER_IMAGE)
        fg.apple.explicit = show.explicit
        fg.podcast.itunes_author(clean_text(show.author))
        fg.podcast.itunes_owner(name=clean_text(show.owner_name or show.author), email=show.owner_email)
        category = {"cat": show.category, **({"sub": show.subcategory} if show.subcategory else {})}
        fg.podcast.itunes_category(category)
        fg.podcastindex.podcast_locked(show.locked, owner=show.owner_email)
    except ValueError as exc:
        raise FeedError(f"show {show.id!r} has an unusable setting: {exc}; fix it in shows.toml") from exc
    return fg


def _identity(fg: FeedGenerator, show: ShowRecord, *, podcast_guid: str, new_feed_url: str | None) -> None:
    try:
        fg.podcastindex.podcast_guid(podcast_guid)
        if new_feed_url:
            fg.podcast.itunes_new_feed_url(new_feed_url)
    except ValueError as exc:
        raise FeedError(f"show {show.id!r}: {exc}; fix its guid in shows.toml or its new feed URL") from exc


def _generator() -> tuple[str, str | None]:
    try:
        return "roomcast", metadata.version("roomcast")
    except metadata.PackageNotFoundError:
        return "roomcast", None


def _add_item(fg: FeedGenerator, show: ShowRecord, episode: EpisodeRecord, url_for: Callable[[str], str],
              media_url: Callable[[str], str], page_url: str | None = None) -> None:
    replay = episode.asset(REPLAY_ASSET)
    assert replay is not None  # filtered by _has_replay
    entry: FeedEntry = fg.add_entry()
    try:
        entry.title(clean_text(episode.title).strip() or episode.id)
        description = _description(episode.description)
        if description:
            entry.description(description)
        entry.guid(episode.guid, permalink=False)
        if page_url:
            entry.link(href=page_url)
        published = _published(episode)
        if published is not None:
            entry.pubDate(published)
        entry.enclosure(media_url(replay.key), str(replay.size), "audio/mpeg")
        entry.podcast.itunes_duration(str(round(episode.duration_s)))
        entry.apple.explicit = show.explicit
        meta = EpisodeMeta.from_json(episode.feed_meta)
        item_extras(entry, meta)
        own = episode.artwork()
        image = meta.image or (url_for(own.key) if own is not None else None)
        if image:
            entry.apple.image = image
            entry.podcastindex.podcast_simple("image", None, href=image, **COVER_IMAGE)
        _add_podcast_tags(entry.podcastindex, show, episode, url_for, media_url, meta)
    except ValueError as exc:
        raise FeedError(f"episode {episode.id!r} of show {show.id!r} cannot be listed: {exc}") from exc


def _add_podcast_tags(ext: PodcastIndexEntryExtension, show: ShowRecord, episode: EpisodeRecord,
                      url_for: Callable[[str], str], media_url: Callable[[str], str], meta: EpisodeMeta) -> None:
    language = episode.language or show.language
    for name, (mime, rel) in TRANSCRIPT_ASSETS.items():
        asset = episode.asset(name)
        if asset is not None:
            ext.podcast_transcript(url_for(asset.key), mime, language=language, rel=rel)
    chapters = episode.asset(CHAPTERS_ASSET)
    if chapters is not None:
        ext.podcast_chapters(url_for(chapters.key))
    for person in episode.persons:
        name = clean_text(person.name).strip()
        if name:
            links = meta.people.get(person.name, {})
            ext.podcast_person(name, role=person_role(person), img=links.get("img"), href=links.get("href"))
    for name, mime in ALTERNATE_ASSETS.items():
        asset = episode.asset(name)
        if asset is not None:
            ext.podcast_alternate_enclosure(mime, media_url(asset.key), length=asset.size,
                                            bitrate=_bitrate(asset, episode.duration_s))
    podcast_item_extras(ext, meta)


def person_role(person: PersonRecord) -> str:
    """The Podcasting 2.0 role of a room speaker: hosts stay hosts, moderators co-host, everyone else is a guest."""
    return PERSON_ROLES.get(person.role.strip().lower(), "guest")


def _bitrate(asset: AssetRecord, duration_s: float) -> float | None:
    return asset.size * 8 / duration_s if duration_s > 0 else None
