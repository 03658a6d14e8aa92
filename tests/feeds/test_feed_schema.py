"""Every ``podcast:`` tag roomcast emits, checked against the Podcasting 2.0 namespace itself: validated by the
namespace's XSD where it declares the tag, and against the tags its documentation lists (name, parent, attributes,
required attributes) for all of them. Schema and names are vendored from the namespace's repository (CC0): see
tests/data/podcast-namespace/README.md."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from feeds.feedmeta import EpisodeMeta, episode_meta
from feeds.live import dump, live_item
from feeds.podcast_ext import PODCAST_NS
from feeds.rss import build_feed
from feeds.shows import show_config
from pipeline.errors import FeedError
from storage.records import PersonRecord
from tests.feeds.test_feed import CDN, FEED_URL, make_episode, make_show, url_for
from tests.feeds.test_feed_extras import FEED, SPEAKERS, TOML

DATA = Path(__file__).resolve().parents[1] / "data" / "podcast-namespace"
XS = "{http://www.w3.org/2001/XMLSchema}"
# What a full-featured roomcast feed carries: the test fails if one of them goes missing, so it never passes empty.
EMITTED = {"guid", "image", "locked", "medium", "license", "location", "funding", "liveItem", "contentLink", "person",
           "transcript", "chapters", "alternateEnclosure", "source", "season", "episode", "value", "valueRecipient",
           "soundbite"}


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> etree._Element:
    """A feed with every tag roomcast can emit: shows.toml settings, the manifest's feed object, transcripts,
    chapters and an Opus alternative, and an announced live room."""
    folder = tmp_path_factory.mktemp("schema")
    (folder / "shows.toml").write_text(TOML, encoding="utf-8")
    live = live_item(room_id="next-room", title="Live: next room", start=datetime(2026, 12, 5, 18, tzinfo=UTC),
                     end=datetime(2026, 12, 5, 19, tzinfo=UTC), stream_url="https://live.example.com/room.mp3",
                     status="live", link="https://example.com/join")
    episode = replace(make_episode(1, "First room", day=2,
                                   persons=(PersonRecord("Alice Martin", "host"), PersonRecord("Bob Okafor"))),
                      feed_meta=episode_meta(FEED, SPEAKERS, where="room ep1").to_json())
    body = build_feed(make_show(live_items=dump([live])), [episode], feed_url=FEED_URL, url_for=url_for,
                      artwork_url=CDN + "art.jpg", config=show_config("x", folder / "shows.toml"))
    return etree.fromstring(body)


def podcast_elements(root: etree._Element) -> list[etree._Element]:
    return [e for e in root.iter() if isinstance(e.tag, str) and e.tag.startswith(f"{{{PODCAST_NS}}}")]


def local(element: etree._Element) -> str:
    return etree.QName(element).localname


def schema_tags() -> set[str]:
    """The tags the XSD declares at its top level (those the wrapper lets stand on their own)."""
    return {str(e.get("name")) for e in etree.parse(str(DATA / "podcast.xsd")).getroot().iter(f"{XS}element")
            if e.getparent() is not None and e.getparent().tag == f"{XS}schema"}


def schema_errors(elements: list[etree._Element]) -> list[str]:
    """Each element validated alone inside the namespace's test wrapper (the schema has no root of its own)."""
    schema = etree.XMLSchema(etree.parse(str(DATA / "podcast-wrapper.xsd")))
    errors = []
    for element in elements:
        wrapper = etree.Element(f"{{{PODCAST_NS}}}test-wrapper", nsmap={"podcast": PODCAST_NS})
        wrapper.append(copy.deepcopy(element))
        if not schema.validate(etree.ElementTree(wrapper)):
            errors += [f"{etree.tostring(element).decode()[:120]}: {e.message}" for e in schema.error_log]
    return errors


def documented_errors(elements: list[etree._Element], tags: dict[str, Any]) -> list[str]:
    """What the namespace's documentation does not allow: an unknown tag, a tag under a parent it does not list,
    an attribute it does not define, a required attribute missing."""
    errors = []
    for element in elements:
        name, parent = local(element), element.getparent()
        spec = tags.get(name)
        if spec is None:
            errors.append(f"podcast:{name} is not a documented tag")
            continue
        where = "" if parent is None else local(parent) if parent.tag in ("channel", "item") \
            else f"podcast:{local(parent)}"
        allowed = set(spec["parents"])
        if "item" in allowed:
            allowed.add("podcast:liveItem")  # a live item takes every child an item takes (live-item.md)
        if where not in allowed:
            errors.append(f"podcast:{name} under {where}; documented parents: {sorted(allowed)}")
        attributes = spec["attributes"]
        errors += [f"podcast:{name} has undocumented attribute {a!r}" for a in element.attrib if a not in attributes]
        errors += [f"podcast:{name} lacks required attribute {a!r}" for a, need in attributes.items()
                   if need == "required" and a not in element.attrib]
    return errors


def test_feed_carries_every_tag_roomcast_emits(feed: etree._Element) -> None:
    assert EMITTED <= {local(e) for e in podcast_elements(feed)}


def test_tags_the_xsd_declares_validate_against_it(feed: etree._Element) -> None:
    declared = schema_tags()
    checked = [e for e in podcast_elements(feed) if local(e) in declared and local(e) != "valueRecipient"]
    assert {"transcript", "chapters", "soundbite", "person", "season", "episode", "value", "funding", "location",
            "locked"} <= {local(e) for e in checked}
    assert schema_errors(checked) == []


def test_every_podcast_tag_and_attribute_is_documented(feed: etree._Element) -> None:
    tags = json.loads((DATA / "tags.json").read_text(encoding="utf-8"))
    assert documented_errors(podcast_elements(feed), tags) == []


def test_the_checks_catch_what_the_namespace_refuses(feed: etree._Element) -> None:
    tags = json.loads((DATA / "tags.json").read_text(encoding="utf-8"))
    transcript = copy.deepcopy(next(e for e in podcast_elements(feed) if local(e) == "transcript"))
    del transcript.attrib["type"]
    transcript.set("speaker", "Alice")
    item = etree.SubElement(etree.Element("channel"), "item")
    item.append(transcript)
    guid = etree.SubElement(item, f"{{{PODCAST_NS}}}guid")  # a channel-only tag inside an item
    bogus = etree.SubElement(item, f"{{{PODCAST_NS}}}episodes")
    found = documented_errors([transcript, guid, bogus], tags)
    assert found == ["podcast:transcript has undocumented attribute 'speaker'",
                     "podcast:transcript lacks required attribute 'type'",
                     "podcast:guid under item; documented parents: ['channel']",
                     "podcast:episodes is not a documented tag"]
    assert len(schema_errors([transcript])) >= 1


def test_season_is_named_for_the_schema(feed: etree._Element) -> None:
    season = next(e for e in podcast_elements(feed) if local(e) == "season")
    assert (season.text, season.get("name")) == ("2", "Season 2")  # the XSD requires a name: a default one
    named = episode_meta({"season": 3, "season_name": "Live from Berlin"}, {}, where="room r")
    assert EpisodeMeta.from_json(named.to_json()).season_name == "Live from Berlin"
    with pytest.raises(FeedError, match="128"):
        episode_meta({"season": 3, "season_name": "x" * 129}, {}, where="room r")


def test_cover_art_as_podcast_image(feed: etree._Element) -> None:
    images = {local(e.getparent()): dict(e.attrib) for e in podcast_elements(feed) if local(e) == "image"}
    cover = {"purpose": "artwork", "aspect-ratio": "1/1"}
    assert images == {"channel": {"href": CDN + "art.jpg", **cover},
                      "item": {"href": "https://img.example.com/ep14.png", **cover}}
