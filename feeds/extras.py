"""The feed tags of :mod:`feeds.feedmeta`'s settings: channel tags from the show's shows.toml table, item tags from
the episode's ``feed`` object. Kept apart from :mod:`feeds.rss`, which only calls the three functions here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from feeds.feedmeta import EpisodeMeta
from feeds.podcast_ext import PodcastIndexEntryExtension
from feeds.shows import ShowConfig
from pipeline.errors import FeedError
from storage.records import ShowRecord


def with_prefix(url_for: Callable[[str], str], prefix: str | None) -> Callable[[str], str]:
    """``url_for`` for media (enclosures): behind an analytics prefix when one is set. OP3, Podtrac and the like
    take the media URL without its scheme after their prefix and redirect to it."""
    if not prefix:
        return url_for

    def media_url(key: str) -> str:
        url = url_for(key)
        return prefix.rstrip("/") + "/" + url.partition("://")[2] if "://" in url else prefix + url

    return media_url


def channel_extras(fg: Any, show: ShowRecord, config: ShowConfig) -> None:
    try:
        fg.podcast.itunes_type(config.type)
        if config.copyright:
            fg.rights(config.copyright)
        if config.block:
            fg.podcast.itunes_block(True)
        if config.complete:
            fg.podcast.itunes_complete(True)
        ext = fg.podcastindex
        if config.medium:
            ext.podcast_simple("medium", config.medium)
        if config.license or config.license_url:
            attrs = {"url": config.license_url} if config.license_url else {}
            ext.podcast_simple("license", config.license or "custom", **attrs)
        if config.location:
            attrs = {k: v for k, v in (("geo", config.location_geo), ("osm", config.location_osm)) if v}
            ext.podcast_simple("location", config.location, **attrs)
        if config.funding_url:
            ext.podcast_simple("funding", config.funding_text or "Support the show", url=config.funding_url)
    except ValueError as exc:
        raise FeedError(f"show {show.id!r} has an unusable setting: {exc}; fix it in shows.toml") from exc


def item_extras(entry: Any, meta: EpisodeMeta) -> None:
    """iTunes tags and show notes of one item (feedgen's ``ValueError`` is turned into a FeedError by the caller)."""
    entry.podcast.itunes_episode_type(meta.episode_type)
    if meta.season is not None:
        entry.podcast.itunes_season(meta.season)
    if meta.episode is not None:
        entry.podcast.itunes_episode(meta.episode)
    entry.apple.image = meta.image
    entry.apple.notes_html = meta.show_notes_html


def podcast_item_extras(ext: PodcastIndexEntryExtension, meta: EpisodeMeta) -> None:
    if meta.season is not None:  # named always: the namespace's XSD requires the name its docs call optional
        ext.podcast_simple("season", str(meta.season), name=meta.season_name or f"Season {meta.season}")
    if meta.episode is not None:
        ext.podcast_simple("episode", str(meta.episode))
    for bite in meta.soundbites:
        ext.podcast_simple("soundbite", bite.title or None, startTime=f"{bite.start:.3f}",
                           duration=f"{bite.duration:.3f}")
    for recipient in meta.value:
        ext.podcast_value(recipient.name, recipient.address, recipient.split)
