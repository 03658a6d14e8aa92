"""Telling the world a feed changed: Podping (podping.cloud) and WebSub hubs, when configured.

Once per publish (every feed rebuild that wrote a public feed), on a thread of its own so a slow or failing
notifier never holds up the publish: each notifier is tried up to ``PING_ATTEMPTS`` times with a growing pause,
then given up with a warning (the feed is published either way, and apps still poll it). The thread is not a
daemon: a ``roomcast process`` waits for its last ping (at most about half a minute) before it exits.

- Podping: ``GET {podping_url}?url={feed}&reason=update`` with the token as ``Authorization`` (podping.cloud's API).
- WebSub: ``POST {hub}`` with ``hub.mode=publish&hub.url={feed}`` (the W3C WebSub publish ping most hubs take).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

PING_ATTEMPTS = 4
PING_TIMEOUT_S = 5.0
FIRST_PAUSE_S = 1.0


@dataclass(frozen=True)
class Pinger:
    """Where to ping: a Podping endpoint (and its token) and/or a WebSub hub."""

    podping_url: str | None = None
    podping_token: str | None = None
    websub_hub: str | None = None
    first_pause_s: float = FIRST_PAUSE_S

    @property
    def configured(self) -> bool:
        return bool(self.podping_url or self.websub_hub)

    def requests(self, feed_url: str) -> list[urllib.request.Request]:
        out = []
        if self.podping_url:
            query = urllib.parse.urlencode({"url": feed_url, "reason": "update"})
            sep = "&" if "?" in self.podping_url else "?"
            headers = {"User-Agent": "roomcast", **({"Authorization": self.podping_token}
                                                    if self.podping_token else {})}
            out.append(urllib.request.Request(f"{self.podping_url}{sep}{query}", headers=headers))
        if self.websub_hub:
            body = urllib.parse.urlencode({"hub.mode": "publish", "hub.url": feed_url}).encode()
            out.append(urllib.request.Request(self.websub_hub, data=body, method="POST", headers={
                "User-Agent": "roomcast", "Content-Type": "application/x-www-form-urlencoded"}))
        return out


def ping_later(pinger: Pinger, feed_urls: Sequence[str]) -> threading.Thread | None:
    """Start pinging about ``feed_urls`` in the background; returns the thread (None when nothing to do)."""
    if not pinger.configured or not feed_urls:
        return None
    thread = threading.Thread(target=_ping_all, args=(pinger, list(feed_urls)), name="roomcast-feed-ping")
    thread.start()
    return thread


def _ping_all(pinger: Pinger, feed_urls: list[str]) -> None:
    for feed_url in feed_urls:
        for request in pinger.requests(feed_url):
            _send(request, pinger.first_pause_s)


def _send(request: urllib.request.Request, first_pause_s: float) -> bool:
    where = urllib.parse.urlsplit(request.full_url).netloc
    pause = first_pause_s
    for attempt in range(1, PING_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=PING_TIMEOUT_S) as reply:
                log.info("feed ping to %s: HTTP %s", where, reply.status)
                return True
        except (urllib.error.URLError, OSError) as exc:
            log.warning("feed ping to %s failed (attempt %d of %d): %s", where, attempt, PING_ATTEMPTS, exc)
        if attempt < PING_ATTEMPTS:
            time.sleep(pause)
            pause *= 2
    log.warning("feed ping to %s given up; apps will still find the change when they next poll", where)
    return False
