"""The podcast feed, read back tag by tag with lxml and by two real podcast parsers (feedparser, gPodder's)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import feedparser
import podcastparser
import pytest
from lxml import etree

from feeds.podcast_ext import PodcastIndexEntryExtension, feed_guid
from feeds.rss import build_feed, episode_prefix, feed_key, truncate_utf8
from pipeline.errors import FeedError
from storage.records import AssetRecord, EpisodeRecord, PersonRecord, ShowRecord

NS = {
    "itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd",
    "podcast": "https://podcastindex.org/namespace/1.0",
    "atom": "http://www.w3.org/2005/Atom",
}
FEED_URL = "https://example.com/shows/x/feed.xml"
CDN = "https://cdn.example.com/media/"
ART = CDN + "shows/x/artwork.jpg"
HOSTILE = "Q&A <live> \"quoted\" 'single' — Chloé 🎙️"
GENERATED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
ALL_ASSETS = ("replay.mp3", "replay.m4a", "replay.opus",
              "transcript.vtt", "transcript.srt", "transcript.json", "transcript.txt",
              "chapters.json")


def url_for(key: str) -> str:
    return CDN + key


def make_show(**changes: Any) -> ShowRecord:
    show = ShowRecord(id="x", title="Founders & <Friends>", author="Alice Martin", owner_name="Alice Martin",
                      owner_email="alice@example.com", description="Live rooms about shipping audio products.",
                      language="en", category="Technology", subcategory=None, explicit=False,
                      link="https://example.com/x", locked=True)
    return replace(show, **changes)


def make_episode(n: int, title: str, *, day: int, assets: tuple[str, ...] = ALL_ASSETS, duration_s: float = 1234.6,
                 persons: tuple[PersonRecord, ...] = ()) -> EpisodeRecord:
    prefix = episode_prefix("x", f"ep{n}")
    return EpisodeRecord(
        id=f"ep{n}", show="x", title=title, description=f"Episode {n}: notes & <links>.", visibility="public",
        guid=f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'ep{n}')}", status="published", language="en",
        recorded_at=datetime(2026, 11, day, 18, 0, tzinfo=UTC), published_at=datetime(2026, 11, day, 20, 0, tzinfo=UTC),
        duration_s=duration_s,
        assets=tuple(AssetRecord(name, prefix + name, 1_000_000 * n + len(name), "application/octet-stream")
                     for name in assets),
        persons=persons)


@pytest.fixture(scope="module")
def episodes() -> list[EpisodeRecord]:
    people = (PersonRecord("Alice Martin", "host"), PersonRecord("Bob Okafor", "speaker"),
              PersonRecord("Chloé Dubois", "moderator"))
    return [
        make_episode(1, "First room", day=2, persons=people[:2]),
        make_episode(3, HOSTILE, day=23, duration_s=3599.5, persons=people),
        make_episode(2, "Second room", day=9, assets=("replay.mp3",), duration_s=61.2),
    ]


@pytest.fixture(scope="module")
def feed_bytes(episodes: list[EpisodeRecord]) -> bytes:
    return build_feed(make_show(subcategory=None, category="Business"), episodes, feed_url=FEED_URL, url_for=url_for,
                      artwork_url=ART, generated_at=GENERATED)


def parse(xml: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(xml, parser)


def one(node: etree._Element, path: str) -> etree._Element:
    found = node.xpath(path, namespaces=NS)
    assert len(found) == 1, f"{path}: {len(found)} matches"
    return found[0]


def test_channel_tags(feed_bytes: bytes) -> None:
    channel = one(parse(feed_bytes), "/rss[@version='2.0']/channel")
    assert one(channel, "title").text == "Founders & <Friends>"
    assert one(channel, "link").text == "https://example.com/x"
    assert one(channel, "description").text == "Live rooms about shipping audio products."
    assert one(channel, "language").text == "en"
    assert one(channel, "itunes:image").get("href") == ART
    assert one(channel, "itunes:category").get("text") == "Business"
    assert one(channel, "itunes:explicit").text == "false"
    assert one(channel, "itunes:author").text == "Alice Martin"
    assert one(channel, "itunes:owner/itunes:name").text == "Alice Martin"
    assert one(channel, "itunes:owner/itunes:email").text == "alice@example.com"
    assert one(channel, "itunes:type").text == "episodic"
    self_link = one(channel, "atom:link[@rel='self']")
    assert self_link.get("href") == FEED_URL and self_link.get("type") == "application/rss+xml"
    locked = one(channel, "podcast:locked")
    assert (locked.text, locked.get("owner")) == ("yes", "alice@example.com")
    assert one(channel, "generator").text.startswith("roomcast")
    assert parsedate_to_datetime(one(channel, "lastBuildDate").text) == GENERATED
    assert one(channel, "image/url").text == ART


def test_podcast_guid_is_uuid5_of_the_feed_url_without_scheme(feed_bytes: bytes) -> None:
    namespace = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")
    expected = str(uuid.uuid5(namespace, "example.com/shows/x/feed.xml"))
    assert one(parse(feed_bytes), "/rss/channel/podcast:guid").text == expected
    # The vectors published with the Podcasting 2.0 namespace.
    assert feed_guid("https://mp3s.nashownotes.com/pc20rss.xml") == "917393e3-1b1e-5cef-ace4-edaa54e1f810"
    assert feed_guid("podnews.net/rss////") == "9b024349-ccf0-5f69-a609-6b82873eab3c"
    assert feed_guid("https://podnews.net/rss/") == "9b024349-ccf0-5f69-a609-6b82873eab3c"


def test_items_newest_first_with_enclosure_duration_and_guid(feed_bytes: bytes,
                                                             episodes: list[EpisodeRecord]) -> None:
    items = parse(feed_bytes).xpath("/rss/channel/item")
    by_id = {e.id: e for e in episodes}
    expected = [by_id["ep3"], by_id["ep2"], by_id["ep1"]]
    assert [one(i, "title").text for i in items] == [e.title for e in expected]
    for item, episode in zip(items, expected, strict=True):
        guid = one(item, "guid")
        assert (guid.text, guid.get("isPermaLink")) == (episode.guid, "false")
        assert parsedate_to_datetime(one(item, "pubDate").text) == episode.published_at
        enclosure = one(item, "enclosure")
        replay = episode.asset("replay.mp3")
        assert replay is not None
        assert enclosure.get("url") == CDN + f"shows/x/episodes/{episode.id}/replay.mp3"
        assert enclosure.get("length") == str(replay.size)
        assert enclosure.get("type") == "audio/mpeg"
        assert one(item, "itunes:duration").text == str(round(episode.duration_s))
        assert one(item, "itunes:episodeType").text == "full"
        assert one(item, "itunes:explicit").text == "false"
        assert one(item, "description").text == episode.description
    assert [one(i, "itunes:duration").text for i in items] == ["3600", "61", "1235"]


def test_item_podcast_namespace_tags(feed_bytes: bytes) -> None:
    item = one(parse(feed_bytes), "/rss/channel/item[guid][1]")
    base = CDN + "shows/x/episodes/ep3/"
    transcripts = {t.get("type"): t for t in item.xpath("podcast:transcript", namespaces=NS)}
    assert set(transcripts) == {"text/vtt", "application/x-subrip", "application/json", "text/plain"}
    assert transcripts["text/vtt"].get("url") == base + "transcript.vtt"
    assert transcripts["text/vtt"].get("rel") == "captions"
    assert transcripts["application/x-subrip"].get("rel") == "captions"
    assert transcripts["application/json"].get("rel") is None
    assert {t.get("language") for t in transcripts.values()} == {"en"}
    chapters = one(item, "podcast:chapters")
    assert (chapters.get("url"), chapters.get("type")) == (base + "chapters.json", "application/json+chapters")
    persons = [(p.text, p.get("role")) for p in item.xpath("podcast:person", namespaces=NS)]
    assert persons == [("Alice Martin", "host"), ("Bob Okafor", "guest"), ("Chloé Dubois", "co-host")]
    alternates = {a.get("type"): a for a in item.xpath("podcast:alternateEnclosure", namespaces=NS)}
    assert set(alternates) == {"audio/mp4", "audio/opus"}
    for mime, name in (("audio/mp4", "replay.m4a"), ("audio/opus", "replay.opus")):
        assert alternates[mime].get("length") == str(3_000_000 + len(name))
        assert one(alternates[mime], "podcast:source").get("uri") == base + name
        assert int(alternates[mime].get("bitrate")) == round((3_000_000 + len(name)) * 8 / 3599.5)


def test_item_without_optional_assets_has_no_links_to_them(feed_bytes: bytes) -> None:
    item = one(parse(feed_bytes), "/rss/channel/item[title='Second room']")
    for tag in ("podcast:transcript", "podcast:chapters", "podcast:alternateEnclosure", "podcast:person"):
        assert item.xpath(tag, namespaces=NS) == []


def test_hostile_text_is_escaped_and_survives_exactly(feed_bytes: bytes) -> None:
    assert b"<live>" not in feed_bytes and b"Q&amp;A &lt;live&gt;" in feed_bytes
    assert one(parse(feed_bytes), "/rss/channel/item[1]/title").text == HOSTILE
    parsed = feedparser.parse(feed_bytes)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.entries[0].title == HOSTILE
    gpodder = podcastparser.parse(FEED_URL, io.BytesIO(feed_bytes))
    assert HOSTILE in [e["title"] for e in gpodder["episodes"]]
    assert gpodder["title"] == "Founders & <Friends>"


def test_feedparser_reads_items(feed_bytes: bytes, episodes: list[EpisodeRecord]) -> None:
    parsed = feedparser.parse(feed_bytes)
    assert parsed.version == "rss20"
    assert parsed.feed.title == "Founders & <Friends>"
    assert parsed.feed.image.href == ART
    by_id = {e.id: e for e in episodes}
    assert [e.id for e in parsed.entries] == [by_id[n].guid for n in ("ep3", "ep2", "ep1")]
    newest = parsed.entries[0]
    assert newest.enclosures[0].href == CDN + "shows/x/episodes/ep3/replay.mp3"
    assert newest.enclosures[0].length == str(3_000_000 + len("replay.mp3"))
    assert newest.enclosures[0].type == "audio/mpeg"
    assert newest.itunes_duration == "3600"
    assert [e.published_parsed[:3] for e in parsed.entries] == [(2026, 11, 23), (2026, 11, 9), (2026, 11, 2)]


def test_gpodder_parser_reads_items(feed_bytes: bytes, episodes: list[EpisodeRecord]) -> None:
    parsed = podcastparser.parse(FEED_URL, io.BytesIO(feed_bytes))
    assert parsed["cover_url"] == ART
    by_guid = {e["guid"]: e for e in parsed["episodes"]}
    assert set(by_guid) == {e.guid for e in episodes}
    for episode in episodes:
        item = by_guid[episode.guid]
        replay = episode.asset("replay.mp3")
        assert replay is not None
        assert item["title"] == episode.title
        assert item["total_time"] == round(episode.duration_s)
        assert item["published"] == int(episode.published_at.timestamp())
        (enclosure,) = item["enclosures"]
        assert enclosure == {"url": CDN + replay.key, "file_size": replay.size, "mime_type": "audio/mpeg"}
    assert [e["published"] for e in parsed["episodes"]] == sorted((e["published"] for e in parsed["episodes"]),
                                                                  reverse=True)


def test_episode_without_replay_is_left_out(episodes: list[EpisodeRecord], caplog: pytest.LogCaptureFixture) -> None:
    broken = make_episode(4, "Never finished", day=28, assets=("transcript.vtt", "replay.m4a"))
    with caplog.at_level(logging.WARNING, logger="feeds.rss"):
        xml = build_feed(make_show(), [*episodes, broken], feed_url=FEED_URL, url_for=url_for, artwork_url=ART,
                         generated_at=GENERATED)
    root = parse(xml)
    assert len(root.xpath("/rss/channel/item")) == 3
    assert b"Never finished" not in xml and b"ep4" not in xml
    assert any("ep4" in r.getMessage() and "replay.mp3" in r.getMessage() for r in caplog.records)


def test_empty_show_still_builds_a_valid_feed() -> None:
    xml = build_feed(make_show(description=""), [], feed_url=FEED_URL, url_for=url_for, artwork_url=None,
                     generated_at=GENERATED)
    channel = one(parse(xml), "/rss/channel")
    assert channel.xpath("item") == [] and channel.xpath("itunes:image", namespaces=NS) == []
    assert one(channel, "description").text == "Founders & <Friends>"  # RSS requires a description
    assert feedparser.parse(xml).bozo == 0


def test_max_items_keeps_the_newest(episodes: list[EpisodeRecord]) -> None:
    xml = build_feed(make_show(max_items=2), episodes, feed_url=FEED_URL, url_for=url_for, artwork_url=ART,
                     generated_at=GENERATED)
    assert [t.text for t in parse(xml).xpath("/rss/channel/item/title")] == [HOSTILE, "Second room"]


def test_rebuild_is_byte_identical(episodes: list[EpisodeRecord], feed_bytes: bytes) -> None:
    again = build_feed(make_show(category="Business"), list(reversed(episodes)), feed_url=FEED_URL, url_for=url_for,
                       artwork_url=ART, generated_at=GENERATED)
    assert again == feed_bytes


def test_explicit_locked_category_and_subcategory() -> None:
    show = make_show(explicit=True, locked=False, category="News", subcategory="Tech News")
    xml = build_feed(show, [make_episode(1, "One", day=1)], feed_url=FEED_URL, url_for=url_for, artwork_url=ART,
                     generated_at=GENERATED)
    channel = one(parse(xml), "/rss/channel")
    assert one(channel, "itunes:explicit").text == "true"
    assert one(channel, "item/itunes:explicit").text == "true"
    assert one(channel, "podcast:locked").text == "no"
    assert one(channel, "itunes:category[@text='News']/itunes:category").get("text") == "Tech News"


def test_control_characters_are_stripped_and_long_descriptions_truncated() -> None:
    long_text = "Chloé parle de l’audio. " * 400  # about 10 kB, multi-byte characters
    show = make_show(title="Bell\x07 and null\x00 show", description=long_text)
    episode = replace(make_episode(1, "Tab\tand\x1bescape", day=1), description=long_text)
    xml = build_feed(show, [episode], feed_url=FEED_URL, url_for=url_for, artwork_url=ART, generated_at=GENERATED)
    channel = one(parse(xml), "/rss/channel")
    assert one(channel, "title").text == "Bell and null show"
    assert one(channel, "item/title").text == "Tab\tandescape"
    for description in (one(channel, "description").text, one(channel, "item/description").text):
        assert len(description.encode("utf-8")) <= 4000
        assert description.endswith("…") and long_text.startswith(description[:-1])
        assert description[-2] != " "
    assert truncate_utf8("é" * 3000, 4000) == "é" * 1998 + "…"


def test_naive_dates_are_read_as_utc() -> None:
    episode = replace(make_episode(1, "One", day=1), published_at=None, recorded_at=datetime(2026, 5, 4, 3, 2, 1))
    xml = build_feed(make_show(), [episode], feed_url=FEED_URL, url_for=url_for, artwork_url=ART,
                     generated_at=GENERATED)
    pub = parsedate_to_datetime(one(parse(xml), "/rss/channel/item/pubDate").text)
    assert pub == datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)


def test_feeds_rss_keeps_the_storage_layout_names() -> None:
    assert feed_key("founders-hour") == "shows/founders-hour/feed.xml"
    assert feed_key("founders-hour", "t0k3n") == "shows/founders-hour/private/t0k3n/feed.xml"
    assert episode_prefix("founders-hour", "ep-1") == "shows/founders-hour/episodes/ep-1/"
    assert episode_prefix("founders-hour", "ep-1", "t0k3n") == "shows/founders-hour/private/t0k3n/episodes/ep-1/"
    for bad in ("", "..", "a/b", "a\\b"):
        with pytest.raises(FeedError):
            feed_key(bad)
        with pytest.raises(FeedError):
            episode_prefix("x", bad)
        with pytest.raises(FeedError):
            feed_key("x", bad)


def test_extension_checks_values_when_set() -> None:
    ext = PodcastIndexEntryExtension()
    with pytest.raises(ValueError, match="type"):
        ext.podcast_transcript("https://e.x/t.doc", "application/msword")
    with pytest.raises(ValueError, match="URL"):
        ext.podcast_chapters("not a url")
    with pytest.raises(ValueError, match="source uri"):
        ext.podcast_alternate_enclosure("audio/mp4")
    assert ext.podcast_transcript() == [] and ext.podcast_chapters() is None


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def web_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a folder laid out like the object store."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_gpodder_subscribes_and_downloads_the_enclosure(tmp_path: Path, web_root: tuple[Path, str]) -> None:
    root, base = web_root
    replay_key = episode_prefix("x", "ep1") + "replay.mp3"
    replay = root / replay_key
    replay.parent.mkdir(parents=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", "-c:a", "libmp3lame", "-b:a", "64k", str(replay)],
                   check=True, timeout=60)
    episode = replace(make_episode(1, HOSTILE, day=1, assets=()), duration_s=1.0,
                      assets=(AssetRecord("replay.mp3", replay_key, replay.stat().st_size, "audio/mpeg"),))
    feed_url = base + feed_key("x")
    (root / feed_key("x")).write_bytes(build_feed(make_show(), [episode], feed_url=feed_url,
                                                  url_for=lambda key: base + key, artwork_url=None))
    env = {**os.environ, "GPODDER_HOME": str(tmp_path / "gpodder"), "GPODDER_DOWNLOAD_DIR": str(tmp_path / "dl")}

    def gpo(*args: str) -> str:
        done = subprocess.run(["gpo", *args], env=env, capture_output=True, text=True, timeout=120, check=True)
        return done.stdout + done.stderr

    assert "Successfully added" in gpo("subscribe", feed_url)
    assert HOSTILE in gpo("episodes")
    gpo("download")
    downloaded = [p for p in (tmp_path / "dl").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in downloaded] == [replay.read_bytes()]
