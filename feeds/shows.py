"""Show configuration from an optional ``shows.toml`` (the artwork it names is checked by :mod:`feeds.artwork`).

``shows.toml`` holds one table per show; every key is optional and a show without a table gets defaults::

    [shows.founders-hour]
    title = "Founders Hour"
    author = "Alice Martin"
    owner = "Alice Martin"           # itunes:owner name (defaults to author)
    email = "alice@example.com"      # itunes:owner email and podcast:locked owner
    description = "Weekly live conversations about shipping audio products."
    language = "en"
    category = "Technology"          # an Apple Podcasts category; subcategory must belong to it
    subcategory = ""
    explicit = false
    artwork = "art/founders-hour.jpg"  # relative to this file; square JPEG/PNG, RGB, 1400-3000 px
    link = "https://example.com/founders-hour"
    max_items = 300
    locked = true                    # defaults to true once a real email is set
    guid = "917393e3-1b1e-5cef-ace4-edaa54e1f810"  # podcast:guid; fixed at the first publish when absent
    copyright = "© 2026 Founders Media"
    type = "episodic"                # itunes:type: episodic (newest first) or serial (in order)
    block = false                    # itunes:block: keep the show out of Apple Podcasts' directory
    complete = false                 # itunes:complete: no more episodes will come
    medium = "podcast"               # podcast:medium
    license = "CC-BY-4.0"            # podcast:license (an SPDX identifier), license_url for any other
    license_url = ""
    location = "Berlin, Germany"     # podcast:location, with location_geo = "geo:52.52,13.40" and location_osm
    location_geo = ""
    location_osm = ""
    funding_url = "https://example.com/support"   # podcast:funding
    funding_text = "Support the show"
    analytics_prefix = "https://op3.dev/e/"       # put before every enclosure URL (OP3, Podtrac, Chartable...)

Other top-level tables (roomcast's own settings may share the file) are ignored.
"""

from __future__ import annotations

import logging
import re
import tomllib
import uuid
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from feeds.feedmeta import MEDIUMS, SHOW_TYPES, http_url
from pipeline.errors import FeedError
from pipeline.text import LANGUAGE_TAG
from storage.records import DEFAULT_LOCKED, DEFAULT_MAX_ITEMS, ShowRecord

log = logging.getLogger(__name__)

DEFAULT_AUTHOR = "roomcast"
# .invalid can never resolve (RFC 2606): a feed carrying it is visibly unconfigured, and no mail goes astray.
PLACEHOLDER_EMAIL = "podcasts@example.invalid"
DEFAULT_LANGUAGE = "en"
DEFAULT_CATEGORY = "Technology"

# Apple Podcasts categories and their subcategories.
APPLE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "Arts": ("Books", "Design", "Fashion & Beauty", "Food", "Performing Arts", "Visual Arts"),
    "Business": ("Careers", "Entrepreneurship", "Investing", "Management", "Marketing", "Non-Profit"),
    "Comedy": ("Comedy Interviews", "Improv", "Stand-Up"),
    "Education": ("Courses", "How To", "Language Learning", "Self-Improvement"),
    "Fiction": ("Comedy Fiction", "Drama", "Science Fiction"),
    "Government": (),
    "History": (),
    "Health & Fitness": ("Alternative Health", "Fitness", "Medicine", "Mental Health", "Nutrition", "Sexuality"),
    "Kids & Family": ("Education for Kids", "Parenting", "Pets & Animals", "Stories for Kids"),
    "Leisure": ("Animation & Manga", "Automotive", "Aviation", "Crafts", "Games", "Hobbies", "Home & Garden",
                "Video Games"),
    "Music": ("Music Commentary", "Music History", "Music Interviews"),
    "News": ("Business News", "Daily News", "Entertainment News", "News Commentary", "Politics", "Sports News",
             "Tech News"),
    "Religion & Spirituality": ("Buddhism", "Christianity", "Hinduism", "Islam", "Judaism", "Religion",
                                "Spirituality"),
    "Science": ("Astronomy", "Chemistry", "Earth Sciences", "Life Sciences", "Mathematics", "Natural Sciences",
                "Nature", "Physics", "Social Sciences"),
    "Society & Culture": ("Documentary", "Personal Journals", "Philosophy", "Places & Travel", "Relationships"),
    "Sports": ("Baseball", "Basketball", "Cricket", "Fantasy Sports", "Football", "Golf", "Hockey", "Rugby",
               "Running", "Soccer", "Swimming", "Tennis", "Volleyball", "Wilderness", "Wrestling"),
    "Technology": (),
    "True Crime": (),
    "TV & Film": ("After Shows", "Film History", "Film Interviews", "Film Reviews", "TV Reviews"),
}

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class ShowConfig:
    """One show's settings, defaults filled in. ``artwork`` is an absolute path or None (a generated cover)."""

    id: str
    title: str
    author: str = DEFAULT_AUTHOR
    owner: str = DEFAULT_AUTHOR
    email: str = PLACEHOLDER_EMAIL
    description: str = ""
    language: str = DEFAULT_LANGUAGE
    category: str = DEFAULT_CATEGORY
    subcategory: str | None = None
    explicit: bool = False
    artwork: Path | None = None
    link: str | None = None
    max_items: int = DEFAULT_MAX_ITEMS
    locked: bool = DEFAULT_LOCKED
    # How the show's replays are encoded (None: the roomcast settings' defaults).
    channels: int | None = None
    mp3_kbps: int | None = None
    aac_kbps: int | None = None
    opus: bool = False
    guid: str | None = None
    # What hosted platforms also let a show set (all left out of the feed by default).
    copyright: str | None = None
    type: str = "episodic"
    block: bool = False
    complete: bool = False
    medium: str | None = None
    license: str | None = None
    license_url: str | None = None
    location: str | None = None
    location_geo: str | None = None
    location_osm: str | None = None
    funding_url: str | None = None
    funding_text: str | None = None
    analytics_prefix: str | None = None

    def to_record(self) -> ShowRecord:
        return ShowRecord(id=self.id, title=self.title, author=self.author, owner_name=self.owner,
                          owner_email=self.email, description=self.description, language=self.language,
                          category=self.category, subcategory=self.subcategory, explicit=self.explicit,
                          link=self.link, max_items=self.max_items, locked=self.locked,
                          artwork_path=str(self.artwork) if self.artwork else None, podcast_guid=self.guid)

    @property
    def placeholder_owner(self) -> bool:
        """True when no owner email is configured: the feed would name a placeholder as its owner."""
        return self.email == PLACEHOLDER_EMAIL


_STRING_KEYS = ("title", "author", "owner", "email", "description", "language", "category", "subcategory",
                "artwork", "link", "guid", "copyright", "type", "medium", "license", "license_url", "location",
                "location_geo", "location_osm", "funding_url", "funding_text", "analytics_prefix")
_BOOL_KEYS = ("explicit", "locked", "opus", "block", "complete")
_INT_KEYS = {"max_items": (1, 100_000), "channels": (1, 2), "mp3_kbps": (32, 320), "aac_kbps": (32, 320)}
_KNOWN_KEYS = {f.name for f in fields(ShowConfig)} - {"id"}


def title_from_id(show_id: str) -> str:
    """A readable title from a show id: ``founders-hour`` -> ``Founders Hour``."""
    words = re.split(r"[-_.\s]+", show_id.strip())
    return " ".join(w[:1].upper() + w[1:] for w in words if w) or show_id


def load_shows(config_path: Path | None) -> dict[str, dict[str, Any]]:
    """The raw ``[shows.<id>]`` tables of ``config_path`` (empty when there is no file)."""
    if config_path is None:
        return {}
    try:
        with open(config_path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise FeedError(f"show configuration {config_path} does not exist; create it or leave it unset") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FeedError(f"show configuration {config_path} cannot be read: {exc}; fix the TOML syntax") from exc
    shows = data.get("shows", {})
    if not isinstance(shows, dict) or not all(isinstance(t, dict) for t in shows.values()):
        raise FeedError(f"{config_path}: 'shows' must hold one [shows.<id>] table per show")
    return shows


def show_config(show_id: str, config_path: Path | None, *, fallback_title: str | None = None) -> ShowConfig:
    """The configuration of ``show_id``: its table in ``config_path`` when there is one, defaults otherwise.

    A title comes from the table, else ``fallback_title`` (e.g. the first room's title), else the id.
    """
    table = load_shows(config_path).get(show_id, {})
    where = f"{config_path} [shows.{show_id}]"
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        known = ", ".join(sorted(_KNOWN_KEYS))
        raise FeedError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys are {known}")
    values = _typed_values(table, where)
    if "artwork" in values:
        art = Path(values["artwork"]).expanduser()
        values["artwork"] = art if art.is_absolute() or config_path is None else config_path.parent / art
    title = values.pop("title", None) or (fallback_title or "").strip() or title_from_id(show_id)
    values.setdefault("owner", values.get("author", DEFAULT_AUTHOR))
    values.setdefault("description", f"Replays of {title}, recorded live.")
    # Locking a feed to the placeholder address would leave nobody able to unlock it.
    values.setdefault("locked", values.get("email", PLACEHOLDER_EMAIL) != PLACEHOLDER_EMAIL)
    config = ShowConfig(id=show_id, title=title, **values)
    _check_values(config, where)
    return config


def show_record(show_id: str, config_path: Path | None, *, fallback_title: str | None = None) -> ShowRecord:
    """The catalog record of ``show_id`` built from ``shows.toml`` (or defaults); see :func:`show_config`."""
    config = show_config(show_id, config_path, fallback_title=fallback_title)
    if config.placeholder_owner:
        log.warning(placeholder_warning(show_id, config_path))
    return config.to_record()


def placeholder_warning(show_id: str, config_path: Path | None) -> str:
    """What to tell a creator whose show has no owner configured (its public feed would carry placeholders)."""
    where = f"[shows.{show_id}] in {config_path}" if config_path else f"a shows.toml with [shows.{show_id}]"
    return (f"show {show_id!r} has no owner configured: its feed names {DEFAULT_AUTHOR!r} <{PLACEHOLDER_EMAIL}> as "
            f"author and owner, which podcast directories reject or show as is; set author and email in {where} "
            f"(ROOMCAST_SHOWS)")


def _typed_values(table: dict[str, Any], where: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key in _STRING_KEYS:
            if not isinstance(value, str):
                raise FeedError(f"{where}: {key} must be a string, got {value!r}")
            if value.strip():  # an empty string means "use the default"
                values[key] = value.strip()
        elif key in _BOOL_KEYS:
            if not isinstance(value, bool):
                raise FeedError(f"{where}: {key} must be true or false, got {value!r}")
            values[key] = value
        elif key in _INT_KEYS:
            low, high = _INT_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise FeedError(f"{where}: {key} must be an integer from {low} to {high}, got {value!r}")
            values[key] = value
    return values


def _check_values(config: ShowConfig, where: str) -> None:
    if config.category not in APPLE_CATEGORIES:
        raise FeedError(f"{where}: category {config.category!r} is not an Apple Podcasts category; "
                        f"use one of {', '.join(APPLE_CATEGORIES)}")
    if config.subcategory and config.subcategory not in APPLE_CATEGORIES[config.category]:
        allowed = ", ".join(APPLE_CATEGORIES[config.category]) or "none"
        raise FeedError(f"{where}: subcategory {config.subcategory!r} does not belong to {config.category!r} "
                        f"(allowed: {allowed})")
    if not LANGUAGE_TAG.match(config.language):
        raise FeedError(f"{where}: language {config.language!r} is not a language tag such as 'en' or 'pt-BR'")
    if not _EMAIL.match(config.email):
        raise FeedError(f"{where}: email {config.email!r} is not an email address")
    if config.link is not None and not config.link.startswith(("http://", "https://")):
        raise FeedError(f"{where}: link {config.link!r} must be an http(s) URL")
    _check_channel_values(config, where)
    if config.guid is not None:
        try:
            uuid.UUID(config.guid)
        except ValueError as exc:
            raise FeedError(f"{where}: guid {config.guid!r} is not a UUID such as "
                            f"917393e3-1b1e-5cef-ace4-edaa54e1f810") from exc


def _check_channel_values(config: ShowConfig, where: str) -> None:
    if config.type not in SHOW_TYPES:
        raise FeedError(f"{where}: type {config.type!r} must be one of {', '.join(SHOW_TYPES)}")
    if config.medium is not None and config.medium not in MEDIUMS:
        raise FeedError(f"{where}: medium {config.medium!r} must be one of {', '.join(MEDIUMS)}")
    for key in ("license_url", "funding_url", "analytics_prefix"):
        if getattr(config, key) is not None:
            http_url(getattr(config, key), f"{where}: {key}")
    if config.funding_text is not None and config.funding_url is None:
        raise FeedError(f"{where}: funding_text needs a funding_url")
    if config.location_geo is not None and not config.location_geo.startswith("geo:"):
        raise FeedError(f"{where}: location_geo {config.location_geo!r} must be a geo: URI such as geo:52.52,13.40")
