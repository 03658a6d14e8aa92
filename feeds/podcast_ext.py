"""A feedgen extension for the Podcasting 2.0 namespace (``podcast:``, https://podcastindex.org/namespace/1.0).

feedgen's own ``podcast`` extension writes the iTunes tags; this one adds the Podcasting 2.0 tags roomcast uses:
``podcast:guid`` and ``podcast:locked`` on the channel; ``podcast:transcript``, ``podcast:chapters``,
``podcast:person`` and ``podcast:alternateEnclosure`` (with ``podcast:source``) on items. It follows feedgen's
``ext/base.py`` interface: values are checked when set (``ValueError``, as feedgen's own setters do) and written in
``extend_rss``. Register it under an attribute name other than ``podcast`` (taken by the iTunes extension)::

    fg.register_extension("podcastindex", PodcastIndexExtension, PodcastIndexEntryExtension)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from lxml import etree

PODCAST_NS = "https://podcastindex.org/namespace/1.0"
# The namespace the Podcasting 2.0 spec fixes for podcast:guid.
PODCAST_GUID_NAMESPACE = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")

TRANSCRIPT_TYPES = ("text/vtt", "application/x-subrip", "application/json", "text/html", "text/plain",
                    "application/srt")
CHAPTERS_TYPE = "application/json+chapters"


def feed_guid(feed_url: str) -> str:
    """The ``podcast:guid`` of a feed: UUIDv5 of its URL with the scheme and trailing slashes removed."""
    _, sep, rest = feed_url.partition("://")
    return str(uuid.uuid5(PODCAST_GUID_NAMESPACE, (rest if sep else feed_url).rstrip("/")))


def _tag(name: str) -> str:
    return f"{{{PODCAST_NS}}}{name}"


def _require_url(value: str, what: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{what} must be a URL without spaces, got {value!r}")
    return value


@dataclass(frozen=True)
class Transcript:
    url: str
    type: str
    language: str | None = None
    rel: str | None = None


@dataclass(frozen=True)
class Person:
    name: str
    role: str = "host"
    group: str | None = None
    img: str | None = None
    href: str | None = None


@dataclass(frozen=True)
class AlternateEnclosure:
    type: str
    uri: str
    length: int | None = None
    bitrate: float | None = None
    title: str | None = None
    default: bool = False


@dataclass(frozen=True)
class Simple:
    """A tag with text and attributes only (``podcast:medium``, ``podcast:license``, ``podcast:soundbite``...)."""

    name: str
    text: str | None
    attrs: tuple[tuple[str, str], ...] = ()


SIMPLE_TAGS = ("medium", "license", "location", "funding", "soundbite", "season", "episode", "image")
# podcast:image of square cover art (show or episode), as apps read it: the show's or episode's artwork, 1:1.
COVER_IMAGE = {"purpose": "artwork", "aspect-ratio": "1/1"}


def _simple(parent: Any, tag: Simple) -> None:
    element = etree.SubElement(parent, _tag(tag.name), dict(tag.attrs))
    if tag.text is not None:
        element.text = tag.text


def _checked_simple(name: str, text: str | None, attrs: dict[str, str]) -> Simple:
    if name not in SIMPLE_TAGS:
        raise ValueError(f"podcast:{name} is not one of {SIMPLE_TAGS}")
    return Simple(name, text, tuple(sorted(attrs.items())))


class PodcastIndexExtension(BaseExtension):
    """Channel-level Podcasting 2.0 tags."""

    def __init__(self) -> None:
        self.__guid: str | None = None
        self.__locked: tuple[bool, str | None] | None = None
        self.__simple: list[Simple] = []
        self.__elements: list[Any] = []

    def extend_ns(self) -> dict[str, str]:
        return {"podcast": PODCAST_NS}

    def extend_rss(self, feed: Any) -> Any:
        channel = feed[0]
        if self.__guid:
            etree.SubElement(channel, _tag("guid")).text = self.__guid
        if self.__locked is not None:
            locked, owner = self.__locked
            element = etree.SubElement(channel, _tag("locked"))
            if owner:
                element.attrib["owner"] = owner
            element.text = "yes" if locked else "no"
        for tag in self.__simple:
            _simple(channel, tag)
        channel.extend(self.__elements)  # extensions run before feedgen adds the items: these come first
        return feed

    def podcast_elements(self, elements: list[Any]) -> list[Any]:
        """Add ready-made ``podcast:`` elements with children of their own (``podcast:liveItem``)."""
        self.__elements.extend(elements)
        return list(self.__elements)

    def podcast_simple(self, name: str, text: str | None = None, /, **attrs: str) -> list[Simple]:
        """Add a text-and-attributes tag (``medium``, ``license``, ``location``, ``funding``)."""
        self.__simple.append(_checked_simple(name, text, attrs))
        return list(self.__simple)

    def podcast_guid(self, guid: str | None = None) -> str | None:
        """Get or set the feed's globally unique id (a UUID, normally :func:`feed_guid` of the feed URL)."""
        if guid is not None:
            try:
                self.__guid = str(uuid.UUID(guid))
            except ValueError as exc:
                raise ValueError(f"podcast:guid must be a UUID, got {guid!r}") from exc
        return self.__guid

    def podcast_locked(self, locked: bool | None = None, owner: str | None = None) -> tuple[bool, str | None] | None:
        """Get or set whether other platforms may import the feed; ``owner`` is the email that can unlock it."""
        if locked is not None:
            self.__locked = (bool(locked), owner or None)
        return self.__locked


class PodcastIndexEntryExtension(BaseEntryExtension):
    """Item-level Podcasting 2.0 tags."""

    def __init__(self) -> None:
        self.__transcripts: list[Transcript] = []
        self.__chapters: str | None = None
        self.__persons: list[Person] = []
        self.__alternates: list[AlternateEnclosure] = []
        self.__simple: list[Simple] = []
        self.__value: list[tuple[str, str, int]] = []

    def extend_ns(self) -> dict[str, str]:
        return {"podcast": PODCAST_NS}

    def extend_rss(self, entry: Any) -> Any:
        for t in self.__transcripts:
            element = etree.SubElement(entry, _tag("transcript"), url=t.url, type=t.type)
            if t.language:
                element.attrib["language"] = t.language
            if t.rel:
                element.attrib["rel"] = t.rel
        if self.__chapters:
            etree.SubElement(entry, _tag("chapters"), url=self.__chapters, type=CHAPTERS_TYPE)
        for p in self.__persons:
            element = etree.SubElement(entry, _tag("person"), role=p.role)
            for name in ("group", "img", "href"):
                if getattr(p, name):
                    element.attrib[name] = getattr(p, name)
            element.text = p.name
        for a in self.__alternates:
            self._alternate_element(entry, a)
        for tag in self.__simple:
            _simple(entry, tag)
        if self.__value:
            value = etree.SubElement(entry, _tag("value"), type="lightning", method="keysend")
            for name, address, split in self.__value:
                etree.SubElement(value, _tag("valueRecipient"), name=name, type="node", address=address,
                                 split=str(split))
        return entry

    def podcast_simple(self, name: str, text: str | None = None, /, **attrs: str) -> list[Simple]:
        """Add a text-and-attributes tag (``soundbite``...)."""
        self.__simple.append(_checked_simple(name, text, attrs))
        return list(self.__simple)

    def podcast_value(self, name: str, address: str, split: int) -> list[tuple[str, str, int]]:
        """Add a lightning keysend recipient (``podcast:valueRecipient``) of the episode's ``podcast:value``."""
        if split < 1:
            raise ValueError(f"podcast:valueRecipient split must be >= 1, got {split}")
        self.__value.append((name, address, split))
        return list(self.__value)

    @staticmethod
    def _alternate_element(entry: Any, alt: AlternateEnclosure) -> None:
        element = etree.SubElement(entry, _tag("alternateEnclosure"), type=alt.type)
        if alt.length is not None:
            element.attrib["length"] = str(alt.length)
        if alt.bitrate is not None:
            element.attrib["bitrate"] = f"{alt.bitrate:.0f}"
        if alt.title:
            element.attrib["title"] = alt.title
        if alt.default:
            element.attrib["default"] = "true"
        etree.SubElement(element, _tag("source"), uri=alt.uri)

    def podcast_transcript(self, url: str | None = None, type: str | None = None, language: str | None = None,
                           rel: str | None = None) -> list[Transcript]:
        """Add a transcript link (call once per format); returns every transcript added so far."""
        if url is not None:
            if type not in TRANSCRIPT_TYPES:
                raise ValueError(f"podcast:transcript type must be one of {TRANSCRIPT_TYPES}, got {type!r}")
            if rel not in (None, "captions"):
                raise ValueError(f"podcast:transcript rel may only be 'captions', got {rel!r}")
            self.__transcripts.append(Transcript(_require_url(url, "podcast:transcript url"), type, language, rel))
        return list(self.__transcripts)

    def podcast_chapters(self, url: str | None = None) -> str | None:
        """Get or set the URL of the episode's JSON chapters file."""
        if url is not None:
            self.__chapters = _require_url(url, "podcast:chapters url")
        return self.__chapters

    def podcast_person(self, name: str | None = None, role: str = "host", group: str | None = None,
                       img: str | None = None, href: str | None = None) -> list[Person]:
        """Add a person who took part in the episode; returns every person added so far."""
        if name is not None:
            if not name.strip():
                raise ValueError("podcast:person needs a name")
            self.__persons.append(Person(name, role.lower(), group, img, href))
        return list(self.__persons)

    def podcast_alternate_enclosure(self, type: str | None = None, uri: str | None = None, length: int | None = None,
                                    bitrate: float | None = None, title: str | None = None,
                                    default: bool = False) -> list[AlternateEnclosure]:
        """Add another encoding of the episode's media with one ``podcast:source``; returns all added so far."""
        if type is not None:
            if uri is None:
                raise ValueError("podcast:alternateEnclosure needs a source uri")
            if length is not None and length < 0:
                raise ValueError(f"podcast:alternateEnclosure length must be >= 0, got {length}")
            alt = AlternateEnclosure(type, _require_url(uri, "podcast:source uri"), length, bitrate, title, default)
            self.__alternates.append(alt)
        return list(self.__alternates)
