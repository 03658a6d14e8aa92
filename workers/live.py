"""Announcing a room before it happens (``roomcast live announce``) and turning it into its replay when published."""

from __future__ import annotations

from datetime import datetime

from feeds.live import LiveItem, dump, live_item, load
from storage.catalog import Catalog
from storage.objects import ObjectStore
from workers.config import Settings
from workers.publish import ensure_show, rebuild_feeds


def announce(settings: Settings, store: ObjectStore, catalog: Catalog, show_id: str, room_id: str, *, title: str,
             start: datetime, stream_url: str, status: str = "pending", end: datetime | None = None,
             link: str | None = None) -> list[str]:
    """Add or update the show's live item for ``room_id`` and rebuild its feeds; returns the keys written."""
    item = live_item(room_id=room_id, title=title, start=start, stream_url=stream_url, status=status, end=end,
                     link=link)
    show = catalog.get_show(show_id) or ensure_show(settings, store, catalog, show_id)
    items: list[LiveItem] = [i for i in load(show.live_items) if i.id != room_id] + [item]
    catalog.set_live_items(show_id, dump(items))
    return rebuild_feeds(settings, store, catalog, show_id)
