"""What hosted podcast platforms let a creator set beyond roomcast's basics, with defaults that leave it out.

Per episode, from the room manifest's optional ``feed`` object (kept in the catalog as JSON)::

    "feed": {
      "season": 2, "episode": 14, "episode_type": "full",          # full | trailer | bonus
      "season_name": "Live from Berlin",                           # podcast:season name (default "Season 2")
      "image": "https://example.com/ep14.jpg",                     # per-episode artwork: a URL, or a file
                                                                   # in the room folder ("art/ep14.jpg")
      "show_notes": "Links: <a href=\"https://example.com\">our site</a>",  # links kept, the rest escaped
      "people": {"u1": {"img": "https://...", "href": "https://..."}},      # keyed by speaker id
      "value": {"u1": {"address": "03ae...", "split": 60}},                 # lightning keysend splits
      "soundbites": [{"start": 61.5, "duration": 30, "title": "Why latency matters"}]
    }

Per show, from ``shows.toml`` (see :mod:`feeds.shows`): ``copyright``, ``block``, ``complete``, ``medium``,
``license``, ``location``, ``funding_url`` / ``funding_text``, ``analytics_prefix`` and ``type``.
Values are checked when read; a bad one is a :class:`FeedError` naming where it came from.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import FeedError

EPISODE_TYPES = ("full", "trailer", "bonus")
MEDIUMS = ("podcast", "music", "video", "film", "audiobook", "newsletter", "blog")
SHOW_TYPES = ("episodic", "serial")
SOUNDBITE_MIN_S, SOUNDBITE_MAX_S = 15.0, 120.0
SEASON_NAME_MAX = 128


def http_url(value: Any, where: str) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc \
            or any(c.isspace() for c in value):
        raise FeedError(f"{where}: {value!r} must be an absolute http(s) URL")
    return value


@dataclass(frozen=True)
class Soundbite:
    start: float
    duration: float
    title: str = ""


@dataclass(frozen=True)
class ValueRecipient:
    name: str
    address: str
    split: int


@dataclass(frozen=True)
class EpisodeMeta:
    season: int | None = None
    episode: int | None = None
    episode_type: str = "full"
    image: str | None = None
    show_notes_html: str = ""
    people: dict[str, dict[str, str]] = field(default_factory=dict)  # speaker name -> {"img", "href"}
    value: tuple[ValueRecipient, ...] = ()
    soundbites: tuple[Soundbite, ...] = ()
    season_name: str = ""  # the podcast:season name; empty: "Season N"
    image_file: str = ""  # per-episode artwork in the room folder (published beside the replay, named by hash)

    def to_json(self) -> str:
        return json.dumps({
            "season": self.season, "season_name": self.season_name, "image_file": self.image_file,
            "episode": self.episode,
            "episode_type": self.episode_type, "image": self.image, "show_notes_html": self.show_notes_html,
            "people": self.people,
            "value": [[v.name, v.address, v.split] for v in self.value],
            "soundbites": [[s.start, s.duration, s.title] for s in self.soundbites],
        }, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EpisodeMeta:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(season=data["season"], episode=data["episode"], episode_type=data["episode_type"],
                   season_name=data.get("season_name", ""), image_file=data.get("image_file", ""), image=data["image"],
                   show_notes_html=data["show_notes_html"], people=data["people"],
                   value=tuple(ValueRecipient(*v) for v in data["value"]),
                   soundbites=tuple(Soundbite(*s) for s in data["soundbites"]))


def episode_meta(feed: Any, speaker_names: dict[str, str], *, where: str) -> EpisodeMeta:
    """The manifest's ``feed`` object checked; ``speaker_names`` holds only consenting speakers (id -> name), so a
    declined speaker's picture, link or wallet never reaches the feed."""
    if feed is None:
        return EpisodeMeta()
    if not isinstance(feed, dict):
        raise FeedError(f"{where}: 'feed' must be an object")
    known = {"season", "season_name", "episode", "episode_type", "image", "show_notes", "people", "value", "soundbites"}
    unknown = sorted(set(feed) - known)
    if unknown:
        raise FeedError(f"{where}: feed has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    episode_type = feed.get("episode_type", "full")
    image = feed.get("image")
    if episode_type not in EPISODE_TYPES:
        raise FeedError(f"{where}: feed.episode_type {episode_type!r} must be one of {', '.join(EPISODE_TYPES)}")
    return EpisodeMeta(
        season=_count(feed.get("season"), f"{where}: feed.season"),
        season_name=_season_name(feed.get("season_name", ""), f"{where}: feed.season_name"),
        episode=_count(feed.get("episode"), f"{where}: feed.episode"),
        episode_type=episode_type,
        image=http_url(image, f"{where}: feed.image") if _is_url(image) else None,
        image_file=_room_file(image, f"{where}: feed.image") if image is not None and not _is_url(image) else "",
        show_notes_html=show_notes_html(_string(feed.get("show_notes", ""), f"{where}: feed.show_notes")),
        people=_people(feed.get("people", {}), speaker_names, where),
        value=_value(feed.get("value", {}), speaker_names, where),
        soundbites=_soundbites(feed.get("soundbites", []), where),
    )


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise FeedError(f"{where} must be a whole number from 1, got {value!r}")
    return value


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and "://" in value


def _room_file(value: Any, where: str) -> str:
    """A file path relative to the room folder that stays inside it (as track files do)."""
    parts = value.replace("\\", "/").split("/") if isinstance(value, str) else []
    if not parts or value.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise FeedError(f"{where}: {value!r} must be an http(s) URL or a file path inside the room folder")
    return "/".join(parts)


def _season_name(value: Any, where: str) -> str:
    name = _string(value, where).strip()
    if len(name) > SEASON_NAME_MAX:
        raise FeedError(f"{where} is {len(name)} characters; the namespace allows {SEASON_NAME_MAX}")
    return name


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise FeedError(f"{where} must be a string")
    return value


def _by_speaker(value: Any, speaker_names: dict[str, str], where: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise FeedError(f"{where} must map speaker ids to objects")
    return {speaker_names[k]: v for k, v in value.items() if k in speaker_names}


def _people(value: Any, speaker_names: dict[str, str], where: str) -> dict[str, dict[str, str]]:
    people = {}
    for name, item in _by_speaker(value, speaker_names, f"{where}: feed.people").items():
        unknown = set(item) - {"img", "href"}
        if unknown:
            raise FeedError(f"{where}: feed.people of {name!r}: unknown key(s) {', '.join(sorted(unknown))}")
        people[name] = {k: http_url(v, f"{where}: feed.people {name!r} {k}") for k, v in item.items()}
    return people


def _value(value: Any, speaker_names: dict[str, str], where: str) -> tuple[ValueRecipient, ...]:
    recipients = []
    for name, item in _by_speaker(value, speaker_names, f"{where}: feed.value").items():
        address, split = item.get("address"), item.get("split", 1)
        if not isinstance(address, str) or not re.fullmatch(r"[0-9a-fA-F]{66}", address):
            raise FeedError(f"{where}: feed.value of {name!r}: address must be a 66-hex-digit lightning node key")
        if isinstance(split, bool) or not isinstance(split, int) or split < 1:
            raise FeedError(f"{where}: feed.value of {name!r}: split must be a whole number from 1")
        recipients.append(ValueRecipient(name, address, split))
    return tuple(recipients)


def _soundbites(value: Any, where: str) -> tuple[Soundbite, ...]:
    if not isinstance(value, list):
        raise FeedError(f"{where}: feed.soundbites must be a list")
    bites = []
    for n, item in enumerate(value):
        at = f"{where}: feed.soundbites[{n}]"
        if not isinstance(item, dict):
            raise FeedError(f"{at} must be an object with start and duration")
        start, duration = item.get("start"), item.get("duration")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (start, duration)):
            raise FeedError(f"{at}: start and duration must be numbers of seconds")
        assert isinstance(start, int | float) and isinstance(duration, int | float)
        if start < 0 or not SOUNDBITE_MIN_S <= duration <= SOUNDBITE_MAX_S:
            raise FeedError(f"{at}: start must be >= 0 and duration {SOUNDBITE_MIN_S:.0f}-{SOUNDBITE_MAX_S:.0f} s")
        bites.append(Soundbite(float(start), float(duration), _string(item.get("title", ""), f"{at}: title")))
    return tuple(bites)


class _LinksOnly(HTMLParser):
    """Rebuilds HTML keeping only ``<a href="http(s)://...">`` (its text escaped); every other tag is shown as
    the text it was written as, so nothing but a link can ever render."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open_links = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href") or ""
        if tag == "a" and urlsplit(href).scheme in ("http", "https") and not any(c.isspace() for c in href):
            self.out.append(f'<a href="{escape(href, quote=True)}" rel="nofollow">')
            self.open_links += 1
        else:
            self.out.append(escape(self.get_starttag_text() or f"<{tag}>"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.open_links:
            self.out.append("</a>")
            self.open_links -= 1
        else:
            self.out.append(escape(f"</{tag}>"))

    def handle_data(self, data: str) -> None:
        self.out.append(escape(data))

    def close(self) -> None:
        super().close()
        self.out.append("</a>" * self.open_links)


def show_notes_html(text: str) -> str:
    """Show notes as safe HTML: ``<a href>`` links kept, everything else escaped, blank lines as paragraphs."""
    if not text.strip():
        return ""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        parser = _LinksOnly()
        parser.feed(block)
        parser.close()
        paragraphs.append("<p>" + "".join(parser.out).replace("\n", "<br>") + "</p>")
    return "".join(paragraphs)
