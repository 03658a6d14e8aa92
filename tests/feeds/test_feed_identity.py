"""A show's identity across URL changes and moves, its artwork URL, and the warning for an unconfigured owner,
read back by podcast parsers (feedparser, gPodder's podcastparser) from feeds published to a real folder store."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import feedparser
import podcastparser
import pytest
from lxml import etree
from PIL import Image

from feeds.podcast_ext import feed_guid
from feeds.rss import feed_key
from storage.catalog import Catalog
from storage.objects import LocalStore
from workers.config import Settings
from workers.feedmove import move_feed
from workers.publish import ensure_show, rebuild_feeds

NS = {"itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd", "podcast": "https://podcastindex.org/namespace/1.0"}
PINNED = "917393e3-1b1e-5cef-ace4-edaa54e1f810"


def settings_for(tmp: Path, shows: Path | None = None) -> Settings:
    return Settings(store=str(tmp / "store"), database_url=f"sqlite:///{tmp / 'catalog.sqlite'}",
                    work_dir=tmp / "work", cache_dir=tmp / "cache", shows_config=shows)


def publish_feed(settings: Settings, public_url: str, show: str = "founders-hour") -> tuple[bytes, LocalStore]:
    store = LocalStore(Path(settings.store), public_url=public_url)
    catalog = Catalog(settings.database_url)
    try:
        ensure_show(settings, store, catalog, show)
        rebuild_feeds(settings, store, catalog, show)
    finally:
        catalog.close()
    return store.get_bytes(feed_key(show)), store


def guid_of(feed: bytes) -> str:
    found = etree.fromstring(feed).xpath("/rss/channel/podcast:guid/text()", namespaces=NS)
    assert len(found) == 1
    return str(found[0])


def test_podcast_guid_survives_a_new_public_url(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    first, _ = publish_feed(settings, "https://old.example.com/media/")
    second, _ = publish_feed(settings, "https://cdn.example.org/")
    assert guid_of(first) == feed_guid("https://old.example.com/media/shows/founders-hour/feed.xml")
    assert guid_of(second) == guid_of(first)
    parsed = feedparser.parse(second)
    assert parsed.bozo == 0
    self_links = [link.href for link in parsed.feed.links if link.get("rel") == "self"]
    assert self_links == ["https://cdn.example.org/shows/founders-hour/feed.xml"]  # self link moved


def test_podcast_guid_pinned_in_shows_toml(tmp_path: Path) -> None:
    shows = tmp_path / "shows.toml"
    shows.write_text(f'[shows.founders-hour]\nauthor = "Alice"\nemail = "a@example.com"\nguid = "{PINNED}"\n')
    feed, _ = publish_feed(settings_for(tmp_path, shows), "https://example.com/")
    assert guid_of(feed) == PINNED
    shows.write_text('[shows.founders-hour]\nguid = "not-a-uuid"\n')
    with pytest.raises(Exception, match="not a UUID"):
        publish_feed(settings_for(tmp_path, shows), "https://example.com/")


def test_feed_move_publishes_new_feed_url_and_keeps_the_guid(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    before, store = publish_feed(settings, "https://old.example.com/")
    catalog = Catalog(settings.database_url)
    try:
        move_feed(settings, store, catalog, "founders-hour", "https://new.example.net/founders/feed.xml")
    finally:
        catalog.close()
    moved = store.get_bytes(feed_key("founders-hour"))
    gpodder = podcastparser.parse("https://old.example.com/shows/founders-hour/feed.xml", io.BytesIO(moved))
    assert gpodder["new_url"] == "https://new.example.net/founders/feed.xml"
    assert guid_of(moved) == guid_of(before)
    # a later rebuild (a new episode) keeps pointing subscribers at the new home
    again, _ = publish_feed(settings, "https://old.example.com/")
    assert podcastparser.parse("x", io.BytesIO(again))["new_url"] == "https://new.example.net/founders/feed.xml"
    catalog = Catalog(settings.database_url)
    try:
        with pytest.raises(Exception, match="absolute http"):
            move_feed(settings, store, catalog, "founders-hour", "ftp://nowhere")
    finally:
        catalog.close()


def test_a_replaced_cover_gets_a_new_url(tmp_path: Path) -> None:
    art = tmp_path / "cover.jpg"
    shows = tmp_path / "shows.toml"
    shows.write_text(f'[shows.founders-hour]\nauthor = "A"\nemail = "a@example.com"\nartwork = "{art}"\n')
    Image.new("RGB", (1400, 1400), (20, 60, 90)).save(art, format="JPEG")
    first, store = publish_feed(settings_for(tmp_path, shows), "https://example.com/")
    Image.new("RGB", (1400, 1400), (140, 30, 30)).save(art, format="JPEG")
    second, _ = publish_feed(settings_for(tmp_path, shows), "https://example.com/")
    old, new = (feedparser.parse(f).feed.image.href for f in (first, second))
    assert old != new
    for url in (old, new):  # both stored: an app holding the old feed still finds its cover
        assert store.exists(url.removeprefix("https://example.com/"))
    third, _ = publish_feed(settings_for(tmp_path, shows), "https://example.com/")
    assert feedparser.parse(third).feed.image.href == new  # unchanged cover, unchanged URL


def _validate(room: Path, tmp: Path, shows: Path | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROOMCAST_DATABASE_URL": f"sqlite:///{tmp / 'c.sqlite'}"}
    env.pop("ROOMCAST_SHOWS", None)
    if shows is not None:
        env["ROOMCAST_SHOWS"] = str(shows)
    return subprocess.run([sys.executable, "-m", "workers.cli", "validate", str(room)], capture_output=True,
                          text=True, env=env, cwd=tmp, timeout=120)


def test_validate_warns_loudly_about_a_placeholder_owner(short_room: Path, tmp_path: Path) -> None:
    bare = _validate(short_room, tmp_path, None)
    assert bare.returncode == 0, bare.stderr
    assert "WARNING" in bare.stderr and "podcasts@example.invalid" in bare.stderr
    shows = tmp_path / "shows.toml"
    show = str(__import__("json").loads((short_room / "room.json").read_text())["show"])
    shows.write_text(f'[shows.{show}]\nauthor = "Alice"\nemail = "alice@example.com"\n')
    configured = _validate(short_room, tmp_path, shows)
    assert configured.returncode == 0 and "WARNING" not in configured.stderr, configured.stderr


def test_private_feed_guid_is_stable_and_distinct(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    _, store = publish_feed(settings, "https://a.example.com/")
    catalog = Catalog(settings.database_url)
    try:
        token = catalog.ensure_private_token("founders-hour")
        rebuild_feeds(settings, store, catalog, "founders-hour")
        public = guid_of(store.get_bytes(feed_key("founders-hour")))
        private = guid_of(store.get_bytes(feed_key("founders-hour", token)))
    finally:
        catalog.close()
    assert private != public and uuid.UUID(private) == uuid.uuid5(uuid.UUID(public), "private")
