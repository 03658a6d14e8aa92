"""What hosted platforms let a creator set (shows.toml and the manifest's ``feed`` object), read back from the
feed by feedparser, gPodder's podcastparser, lxml and (when installed) podcast-partytime."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import feedparser
import podcastparser
import pytest
from lxml import etree

from feeds.feedmeta import EpisodeMeta, episode_meta, show_notes_html
from feeds.rss import build_feed
from feeds.shows import show_config
from pipeline.errors import FeedError
from tests.feeds.test_feed import CDN, FEED_URL, NS, make_episode, make_show, url_for

NS = {**NS, "content": "http://purl.org/rss/1.0/modules/content/"}
NODE = "03ae9f91a0cb8ff43840e3c322c4c61f019d8c1c3cea15a25cfc425ac605e61a4a"
SPEAKERS = {"u1": "Alice Martin", "u2": "Bob Okafor"}  # u3 declined: not here
FEED = {
    "season": 2, "episode": 14, "episode_type": "bonus", "image": "https://img.example.com/ep14.png",
    "show_notes": 'See <a href="https://example.com/notes?a=1&b=2">the notes</a> & <b>bold</b> '
                  '<script>alert(1)</script> <a href="javascript:alert(1)">bad</a>\n\nSecond paragraph.',
    "people": {"u1": {"img": "https://img.example.com/alice.jpg", "href": "https://alice.example.com"},
               "u3": {"href": "https://declined.example.com"}},
    "value": {"u1": {"address": NODE, "split": 60}, "u2": {"address": NODE.replace("a", "b"), "split": 40},
              "u3": {"address": NODE, "split": 99}},
    "soundbites": [{"start": 61.5, "duration": 30, "title": "Why latency matters"}],
}
TOML = """
[shows.x]
author = "Alice Martin"
email = "alice@example.com"
copyright = "© 2026 Founders Media"
type = "serial"
complete = true
block = true
medium = "podcast"
license = "CC-BY-4.0"
location = "Berlin, Germany"
location_geo = "geo:52.52,13.40"
funding_url = "https://example.com/support"
funding_text = "Support the show"
analytics_prefix = "https://op3.dev/e/"
"""


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("extras")
    (folder / "shows.toml").write_text(TOML, encoding="utf-8")
    config = show_config("x", folder / "shows.toml")
    meta = episode_meta(FEED, SPEAKERS, where="room ep1")
    from storage.records import PersonRecord

    episode = replace(make_episode(1, "First room", day=2,
                                   persons=(PersonRecord("Alice Martin", "host"), PersonRecord("Bob Okafor"))),
                      feed_meta=meta.to_json())
    return build_feed(make_show(), [episode], feed_url=FEED_URL, url_for=url_for, artwork_url=CDN + "art.jpg",
                      config=config)


def test_feedparser_reads_the_itunes_and_content_tags(feed: bytes) -> None:
    parsed = feedparser.parse(feed)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.feed.rights == "© 2026 Founders Media"
    assert parsed.feed.itunes_block == 1 and parsed.feed.itunes_complete == "yes"
    entry = parsed.entries[0]
    assert (entry.itunes_season, entry.itunes_episode, entry.itunes_episodetype) == ("2", "14", "bonus")
    assert entry.image.href == "https://img.example.com/ep14.png"
    notes = entry.content[0].value
    assert '<a href="https://example.com/notes?a=1&amp;b=2" rel="nofollow">the notes</a>' in notes
    assert "&lt;b&gt;bold&lt;/b&gt;" in notes and "<script" not in notes and "href=\"javascript" not in notes
    assert notes.count("<p>") == 2
    # the enclosure goes through the analytics prefix, without its scheme
    assert entry.enclosures[0].href == "https://op3.dev/e/cdn.example.com/media/shows/x/episodes/ep1/replay.mp3"


def test_podcastparser_reads_what_gpodder_shows(feed: bytes) -> None:
    parsed = podcastparser.parse(FEED_URL, io.BytesIO(feed))
    episode = parsed["episodes"][0]
    assert episode["enclosures"][0]["url"].startswith("https://op3.dev/e/cdn.example.com/")
    assert episode["episode_art_url"] == "https://img.example.com/ep14.png"
    assert "the notes" in episode["description_html"]
    assert episode["number"] == 14 and episode["type"] == "bonus"


def test_podcast_namespace_tags(feed: bytes) -> None:
    root = etree.fromstring(feed)
    channel = root.find("channel")
    assert channel.findtext("itunes:type", namespaces=NS) == "serial"
    assert channel.findtext("podcast:medium", namespaces=NS) == "podcast"
    assert channel.findtext("podcast:license", namespaces=NS) == "CC-BY-4.0"
    location = channel.find("podcast:location", namespaces=NS)
    assert (location.text, location.get("geo")) == ("Berlin, Germany", "geo:52.52,13.40")
    funding = channel.find("podcast:funding", namespaces=NS)
    assert (funding.text, funding.get("url")) == ("Support the show", "https://example.com/support")
    item = channel.find("item")
    assert item.findtext("podcast:season", namespaces=NS) == "2"
    assert item.findtext("podcast:episode", namespaces=NS) == "14"
    alice = item.find("podcast:person", namespaces=NS)
    assert (alice.get("img"), alice.get("href")) == ("https://img.example.com/alice.jpg", "https://alice.example.com")
    assert b"declined.example.com" not in feed
    value = item.find("podcast:value", namespaces=NS)
    assert (value.get("type"), value.get("method")) == ("lightning", "keysend")
    splits = [(r.get("name"), r.get("split")) for r in value.findall("podcast:valueRecipient", namespaces=NS)]
    assert splits == [("Alice Martin", "60"), ("Bob Okafor", "40")]  # the declined speaker gets nothing
    bite = item.find("podcast:soundbite", namespaces=NS)
    assert (bite.get("startTime"), bite.get("duration"), bite.text) == ("61.500", "30.000", "Why latency matters")


# podcast-partytime comes from npm: scripts/install.sh installs it with `npm install --prefix .node`.
PARTYTIME = Path(__file__).resolve().parents[2] / ".node" / "node_modules" / "podcast-partytime"


def test_partytime_reads_every_podcast_tag(feed: bytes, tmp_path: Path) -> None:
    assert shutil.which("node") and PARTYTIME.is_dir(), (
        f"podcast-partytime is missing at {PARTYTIME}: run `npm install --prefix .node podcast-partytime`")
    (tmp_path / "feed.xml").write_bytes(feed)
    script = ("const {parseFeed} = require(process.argv[1]); const fs = require('fs');"
              "console.log(JSON.stringify(parseFeed(fs.readFileSync(process.argv[2], 'utf8'))))")
    out = subprocess.run(["node", "-e", script, str(PARTYTIME), str(tmp_path / "feed.xml")], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    parsed = json.loads(out)
    assert parsed["guid"] and parsed["medium"] == "podcast"
    assert parsed["license"]["identifier"] == "CC-BY-4.0"
    assert parsed["podcastFunding"][0]["url"] == "https://example.com/support"
    assert parsed["locked"] is True
    item = parsed["items"][0]
    assert item["podcastSeason"]["number"] == 2 and item["podcastEpisode"]["number"] == 14
    assert {p["name"] for p in item["podcastPeople"]} == {"Alice Martin", "Bob Okafor"}
    assert [s["duration"] for s in item["podcastSoundbites"]] == [30]
    assert [r["split"] for r in item["value"]["recipients"]] == [60, 40]
    # partytime names SubRip by its other MIME type
    assert {t["type"] for t in item["podcastTranscripts"]} >= {"text/vtt", "application/srt", "application/json"}
    assert item["podcastChapters"]["url"].endswith("chapters.json")
    assert {a["type"] for a in item["alternativeEnclosures"]} == {"audio/mp4", "audio/opus"}


def test_bad_feed_settings_are_named() -> None:
    with pytest.raises(FeedError, match="episode_type"):
        episode_meta({"episode_type": "special"}, SPEAKERS, where="room r")
    with pytest.raises(FeedError, match="duration"):
        episode_meta({"soundbites": [{"start": 1, "duration": 5}]}, SPEAKERS, where="room r")
    with pytest.raises(FeedError, match="lightning"):
        episode_meta({"value": {"u1": {"address": "nope"}}}, SPEAKERS, where="room r")
    assert EpisodeMeta.from_json(EpisodeMeta().to_json()) == EpisodeMeta()
    assert show_notes_html("a <i>b</i>") == "<p>a &lt;i&gt;b&lt;/i&gt;</p>"


@pytest.mark.slow
def test_manifest_feed_object_reaches_the_published_feed(short_room: Path, tmp_path: Path) -> None:
    """Through the real CLI: ``roomcast validate`` refuses a bad ``feed`` object, naming the room and the file;
    a good one ends up in the published feed as feedparser reads it."""
    import os
    import sys

    from tests.roomgen import manifest, write_manifest

    room = tmp_path / short_room.name
    shutil.copytree(short_room, room)
    data = manifest(room)
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{tmp_path / 'c.sqlite'}",
               ROOMCAST_WORK_DIR=str(tmp_path / "work"), ROOMCAST_STORE=str(tmp_path / "store"))
    env.pop("ROOMCAST_SHOWS", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True,
                              env=env, timeout=600)

    write_manifest(room, {**data, "feed": {"episode_type": "special"}})
    bad = cli("validate", str(room))
    assert bad.returncode == 1 and "episode_type" in bad.stderr and "room.json" in bad.stderr
    write_manifest(room, {**data, "feed": {"season": 3, "episode": 7, "episode_type": "trailer",
                                           "show_notes": 'Read <a href="https://example.com/x">this</a>.'}})
    done = cli("process", str(room), "--no-transcribe", "-q")
    assert done.returncode == 0, done.stderr
    entry = feedparser.parse((tmp_path / "store" / "shows" / data["show"] / "feed.xml").read_bytes()).entries[0]
    assert (entry.itunes_season, entry.itunes_episode, entry.itunes_episodetype) == ("3", "7", "trailer")
    assert '<a href="https://example.com/x" rel="nofollow">this</a>' in entry.content[0].value
