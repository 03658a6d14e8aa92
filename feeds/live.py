"""``podcast:liveItem``: a room announced before it happens (pending), while it runs (live), until its replay is
published, when the live item leaves the feed and the replay item, with the same guid, takes its place.

Live items are kept per show in the catalog (JSON on the show's row) and written in the channel, before the items.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from lxml import etree

from feeds.feedmeta import http_url
from feeds.podcast_ext import PODCAST_NS
from pipeline.errors import FeedError

LIVE_STATUSES = ("pending", "live", "ended")
# The catalog's namespace for episode guids (storage.catalog.GUID_NAMESPACE): the replay keeps the live item's guid.
EPISODE_GUID_NAMESPACE = uuid.UUID("5d1c0e3a-1f0b-4e55-9a39-2d0a9b6c7e11")


@dataclass(frozen=True)
class LiveItem:
    id: str
    title: str
    start: str  # ISO 8601 with a time zone
    stream_url: str
    status: str = "pending"
    end: str | None = None
    stream_type: str = "audio/mpeg"
    link: str | None = None  # where to listen live (podcast:contentLink)


def live_item(*, room_id: str, title: str, start: datetime, stream_url: str, status: str = "pending",
              end: datetime | None = None, link: str | None = None) -> LiveItem:
    if status not in LIVE_STATUSES:
        raise FeedError(f"live item {room_id!r}: status {status!r} must be one of {', '.join(LIVE_STATUSES)}")
    if start.tzinfo is None or (end is not None and end.tzinfo is None):
        raise FeedError(f"live item {room_id!r}: start and end need a time zone, e.g. 2026-12-05T18:00:00Z")
    if end is not None and end <= start:
        raise FeedError(f"live item {room_id!r}: end must come after start")
    return LiveItem(room_id, title.strip() or room_id, start.isoformat(), http_url(stream_url, "stream URL"), status,
                    end.isoformat() if end else None, link=http_url(link, "link") if link else None)


def dump(items: list[LiveItem]) -> str:
    return json.dumps([asdict(i) for i in items], ensure_ascii=False) if items else ""


def load(text: str) -> list[LiveItem]:
    return [LiveItem(**data) for data in json.loads(text)] if text else []


def episode_guid(show_id: str, room_id: str) -> str:
    """The guid the catalog gives the room's replay (so apps see the live item become the episode)."""
    return str(uuid.uuid5(EPISODE_GUID_NAMESPACE, f"{show_id}/{room_id}"))


def live_elements(show_id: str, live_items: str) -> list[Any]:
    """The ``podcast:liveItem`` elements of a show's live items (the catalog's JSON)."""
    elements = []
    for item in load(live_items):
        element = etree.Element(f"{{{PODCAST_NS}}}liveItem", status=item.status, start=item.start)
        if item.end:
            element.attrib["end"] = item.end
        etree.SubElement(element, "title").text = item.title
        etree.SubElement(element, "guid", isPermaLink="false").text = episode_guid(show_id, item.id)
        etree.SubElement(element, "pubDate").text = format_datetime(datetime.fromisoformat(item.start))
        etree.SubElement(element, "enclosure", url=item.stream_url, type=item.stream_type, length="0")
        if item.link:
            etree.SubElement(element, f"{{{PODCAST_NS}}}contentLink", href=item.link).text = "Listen live"
        elements.append(element)
    return elements
