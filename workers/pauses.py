"""A test hook, never for production: ``test_pause`` (``ROOMCAST_TEST_PAUSE="point:seconds,..."``) makes a worker
sleep at a named point of a room's processing (``point@room_id:seconds``: of that room only), so the recovery
tests can stop a worker exactly there.

Points: ``ingest``, ``track``, ``finish`` (each just after its stage's lease is taken) and ``before-feed`` (in
publishing, after every asset is uploaded and the episode listed in the catalog, before the feed is rebuilt).
"""

from __future__ import annotations

import logging
import time

from workers.config import Settings

log = logging.getLogger(__name__)


def pause(settings: Settings, point: str, room_id: str) -> None:
    """Sleep at ``point`` of room ``room_id`` when ``test_pause`` names it; a no-op otherwise."""
    for item in filter(None, (part.strip() for part in settings.test_pause.split(","))):
        where, _, seconds = item.partition(":")
        name, _, room = where.partition("@")
        if name == point and room in ("", room_id):
            log.warning("test hook: pausing %s s at %s of room %s", seconds, point, room_id)
            time.sleep(float(seconds or 0))
