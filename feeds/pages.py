"""Episode and show pages: HTML rendered with Jinja2 templates from catalog records and published objects.

Every text from a manifest reaches the HTML through Jinja2's autoescaping (and JSON-LD through :func:`script_json`,
which escapes ``<``, ``>`` and ``&``), so titles and names are always shown as text. Links between published
objects are relative to the page, so the same pages work from a folder (``roomcast serve``), an S3 bucket or a CDN;
absolute URLs are only used where a reader outside the page needs one (OpenGraph, JSON-LD, the feed's address)
and only when the store has an http(s) public URL. Pages load nothing but the script and stylesheet published
beside them, under a Content-Security-Policy that allows nothing else.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from feeds.page_data import PageChapter, PageTranscript
from storage.records import EpisodeRecord, PersonRecord, ShowRecord

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'")
STATIC_FILES = ("player.js", "player.css")
LANE_COLOURS = 6  # lane-0 .. lane-5 in player.css
AUDIO_TYPES = {"replay.mp3": "audio/mpeg", "replay.m4a": "audio/mp4"}
DOWNLOADS = (("replay.mp3", "MP3 audio"), ("replay.m4a", "M4A audio"), ("transcript.vtt", "WebVTT captions"),
             ("transcript.srt", "SRT captions"), ("transcript.txt", "Transcript (text)"),
             ("transcript.json", "Transcript (Podcasting 2.0 JSON)"), ("words.json", "Word timings (JSON)"),
             ("chapters.json", "Chapters (JSON)"))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROLE_NAMES = {"host": "Host", "cohost": "Co-host", "co-host": "Co-host", "moderator": "Moderator",
              "speaker": "Speaker", "guest": "Guest"}


@dataclass(frozen=True)
class StaticFile:
    """A file the pages load, published under a name that changes with its content (cached for good)."""

    name: str
    published_name: str
    data: bytes


@dataclass(frozen=True)
class EpisodePageInput:
    """Everything an episode page is made of. ``page_key`` is where the page is stored; ``url_for(key)`` gives a
    published object's public URL."""

    show: ShowRecord
    episode: EpisodeRecord
    page_key: str
    show_page_key: str
    feed_key: str
    static_keys: dict[str, str]
    url_for: Callable[[str], str]
    transcript: PageTranscript | None
    chapters: tuple[PageChapter, ...]
    word_times_key: str | None
    listed: bool


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("feeds", "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["clock"] = clock
    env.filters["human_duration"] = human_duration
    env.filters["size"] = human_size
    return env


@lru_cache(maxsize=1)
def static_files() -> tuple[StaticFile, ...]:
    files = []
    for name in STATIC_FILES:
        data = resources.files("feeds").joinpath("static", name).read_bytes()
        stem, suffix = posixpath.splitext(name)
        files.append(StaticFile(name, f"{stem}-{hashlib.sha256(data).hexdigest()[:12]}{suffix}", data))
    return tuple(files)


def clock(seconds: float) -> str:
    """``12:34`` or ``1:02:03``."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def human_duration(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} bytes"


def iso_duration(seconds: float) -> str:
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"PT{hours}H{minutes}M{secs}S"


def script_json(value: Any) -> str:
    """JSON safe to place inside a ``<script>`` data block: nothing in it can close the element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def relative(from_key: str, to_key: str) -> str:
    """The link from the page stored at ``from_key`` to the object ``to_key``."""
    return quote(posixpath.relpath(to_key, posixpath.dirname(from_key) or "."))


def absolute(url_for: Callable[[str], str], key: str) -> str | None:
    """A published object's public URL, when it is one a browser elsewhere can fetch."""
    url = url_for(key)
    return url if url.startswith(("http://", "https://")) else None


def role_name(person: PersonRecord) -> str:
    return ROLE_NAMES.get(person.role.strip().lower(), person.role.strip().title() or "Speaker")


def _when(episode: EpisodeRecord) -> datetime | None:
    return episode.recorded_at or episode.published_at


def _date(episode: EpisodeRecord) -> dict[str, str] | None:
    when = _when(episode)
    return {"iso": when.date().isoformat(), "text": f"{when.day} {when:%B %Y}"} if when else None


def _lanes(transcript: PageTranscript | None, duration: float) -> dict[str, Any]:
    width = max(1, math.ceil(duration * 10))  # one unit of the drawing per tenth of a second
    lanes = []
    for n, lane in enumerate(transcript.lanes if transcript else ()):
        rects = [(round(start * 10), max(1, round((end - start) * 10))) for start, end in lane.spans]
        share = lane.spoken_s / duration if duration > 0 else 0.0
        lanes.append({"speaker": lane.speaker, "name": lane.name, "colour": n % LANE_COLOURS, "rects": rects,
                      "share": f"{share:.0%}"})
    return {"width": width, "lanes": lanes}


def _json_ld(data: EpisodePageInput, artwork: str | None) -> str:
    show, episode, url_for = data.show, data.episode, data.url_for
    replay = episode.asset("replay.mp3")
    item: dict[str, Any] = {
        "@context": "https://schema.org", "@type": "PodcastEpisode", "name": episode.title or episode.id,
        "description": episode.description, "timeRequired": iso_duration(episode.duration_s),
        "inLanguage": episode.language or show.language,
        "url": absolute(url_for, data.page_key) or relative(data.page_key, data.page_key),
        "partOfSeries": {"@type": "PodcastSeries", "name": show.title,
                         "url": absolute(url_for, data.show_page_key) or relative(data.page_key, data.show_page_key),
                         "webFeed": absolute(url_for, data.feed_key) or relative(data.page_key, data.feed_key)},
        "actor": [{"@type": "Person", "name": p.name} for p in episode.persons],
    }
    when = _when(episode)
    if when:
        item["datePublished"] = when.date().isoformat()
    if artwork:
        item["image"] = artwork
    if replay:
        item["associatedMedia"] = {"@type": "MediaObject", "encodingFormat": "audio/mpeg",
                                   "contentUrl": absolute(url_for, replay.key) or relative(data.page_key, replay.key),
                                   "contentSize": str(replay.size), "duration": iso_duration(episode.duration_s)}
    return script_json(item)


def render_episode_page(data: EpisodePageInput) -> str:
    """The episode page's HTML."""
    show, episode, here = data.show, data.episode, data.page_key

    def link(key: str) -> str:
        return relative(here, key)

    own = episode.artwork()
    artwork_key = own.key if own is not None else show.artwork_key
    artwork = absolute(data.url_for, artwork_key) if artwork_key else None
    vtt = episode.asset("transcript.vtt")
    context = {
        "csp": CSP, "lang": episode.language or show.language, "noindex": not data.listed,
        "title": episode.title or episode.id, "description": episode.description, "show": show,
        "date": _date(episode), "duration": episode.duration_s,
        "css": link(data.static_keys["player.css"]), "js": link(data.static_keys["player.js"]),
        "artwork": link(artwork_key) if artwork_key else None, "show_page": link(data.show_page_key),
        "speakers": [{"name": p.name, "role": role_name(p)} for p in episode.persons],
        "sources": [{"href": link(a.key), "type": mime} for name, mime in AUDIO_TYPES.items()
                    if (a := episode.asset(name)) is not None],
        "captions": link(vtt.key) if vtt else None,
        "chapters": data.chapters, "transcript": data.transcript,
        "timeline": _lanes(data.transcript, episode.duration_s),
        "word_times": (f"{link(data.word_times_key)}?v={_word_times_version(data)}"
                       if data.word_times_key and data.transcript else None),
        "downloads": [{"label": label, "href": link(a.key), "size": a.size} for name, label in DOWNLOADS
                      if (a := episode.asset(name)) is not None],
        "feed": {"href": link(data.feed_key), "url": absolute(data.url_for, data.feed_key)},
        "og": {"url": absolute(data.url_for, here), "image": artwork,
               "audio": absolute(data.url_for, a.key) if (a := episode.asset("replay.mp3")) else None},
        "json_ld": _json_ld(data, artwork),
    }
    return _environment().get_template("episode.html").render(context)


def _word_times_version(data: EpisodePageInput) -> str:
    words = data.episode.asset("words.json")
    return (words.md5 or str(words.size))[:12] if words else "0"


def render_show_page(show: ShowRecord, episodes: Sequence[EpisodeRecord], *, page_key: str, feed_key: str,
                     static_keys: dict[str, str], url_for: Callable[[str], str],
                     episode_page_key: Callable[[EpisodeRecord], str], private: bool) -> str:
    """The show page's HTML: ``episodes`` (already filtered to this page's visibility) newest first."""
    ordered = sorted(episodes, key=lambda e: (_when(e) or _EPOCH, e.id),
                     reverse=True)
    feed_url = absolute(url_for, feed_key)
    context = {
        "csp": CSP, "lang": show.language, "noindex": private, "show": show,
        "css": relative(page_key, static_keys["player.css"]),
        "artwork": relative(page_key, show.artwork_key) if show.artwork_key else None,
        "og": {"url": absolute(url_for, page_key),
               "image": absolute(url_for, show.artwork_key) if show.artwork_key else None},
        "episodes": [{"title": e.title or e.id, "href": relative(page_key, episode_page_key(e)), "date": _date(e),
                      "duration": e.duration_s, "speakers": [p.name for p in e.persons],
                      "description": e.description} for e in ordered],
        "feed": {"href": relative(page_key, feed_key), "url": feed_url},
        "subscribe": subscribe_links(feed_url) if feed_url else [],
    }
    return _environment().get_template("show.html").render(context)


def subscribe_links(feed_url: str) -> list[dict[str, str]]:
    """Links that open the feed in the common podcast apps (their documented URL schemes)."""
    bare = feed_url.split("://", 1)[1]
    encoded = quote(feed_url, safe="")
    return [
        {"app": "Apple Podcasts", "href": f"podcast://{bare}"},
        {"app": "Overcast", "href": f"overcast://x-callback-url/add?url={encoded}"},
        {"app": "Pocket Casts", "href": f"pktc://subscribe/{bare}"},
        {"app": "Podcast Addict", "href": f"podcastaddict://{bare}"},
        {"app": "AntennaPod", "href": f"antennapod-subscribe://{bare}"},
        {"app": "Castro", "href": f"castros://subscribe/{bare}"},
    ]
