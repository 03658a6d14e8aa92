"""``roomcast doctor``: the store checked from outside, as a podcast app or a web player will use it.

A small probe object is uploaded under ``doctor/``, then fetched over plain HTTP from its public URL, with no
credentials: it must be readable by anyone, answer byte-range requests (206, as Apple requires of media hosts),
carry the content type it was stored with, and allow cross-origin reads (CORS: web players fetch the replay,
transcripts and chapters from another origin, and preflight their Range requests). The probe is removed after.
A show whose feed moved (``roomcast feed move``) must answer its old feed URL with a permanent redirect there.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message

from storage.layout import PROBE_KEY, feed_key
from storage.objects import ObjectStore
from storage.records import ShowRecord

log = logging.getLogger(__name__)

PROBE_TYPE = "audio/mpeg"
PROBE_BYTES = bytes(range(256)) * 16
PLAYER_ORIGIN = "https://player.example.org"
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, method=method, headers={"User-Agent": "roomcast-doctor", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the redirect itself is what is checked


def check_moved_feeds(store: ObjectStore, moved: list[ShowRecord]) -> list[Check]:
    """For each moved show: its old feed URL answers 301 (or 308) with the new URL as Location."""
    checks = []
    opener = urllib.request.build_opener(_NoRedirects)
    for show in moved:
        old = store.url(feed_key(show.id))
        request = urllib.request.Request(old, headers={"User-Agent": "roomcast-doctor"})
        try:
            with opener.open(request, timeout=TIMEOUT_S) as reply:
                status, location = reply.status, reply.headers.get("Location")
        except urllib.error.HTTPError as exc:
            status, location = exc.code, exc.headers.get("Location")
        except (urllib.error.URLError, OSError) as exc:
            checks.append(Check(f"moved feed {show.id}", False, f"{old} cannot be reached: {exc}"))
            continue
        ok = status in (301, 308) and location == show.new_feed_url
        checks.append(Check(f"moved feed {show.id}", ok, f"GET {old}: HTTP {status}, Location {location!r}" + (
            "" if ok else f"; make it answer 301 with Location {show.new_feed_url} (docs/deployment.md)")))
    return checks


def check_store(store: ObjectStore) -> list[Check]:
    """Every check, passed or not (an unreachable URL fails them all, with the reason)."""
    store.put_bytes(PROBE_KEY, PROBE_BYTES, content_type=PROBE_TYPE)
    url = store.url(PROBE_KEY)
    try:
        return _checks(url)
    except (urllib.error.URLError, OSError) as exc:
        return [Check("public read", False, f"{url} cannot be reached: {exc}; check ROOMCAST_PUBLIC_URL")]
    finally:
        store.delete(PROBE_KEY)


def _checks(url: str) -> list[Check]:
    status, headers, body = _fetch(url)
    checks = [Check("public read", status == 200 and body == PROBE_BYTES,
                    f"GET {url} without credentials: HTTP {status}, {len(body)} bytes"
                    + ("" if status == 200 else "; make shows/ publicly readable (bucket policy or CDN)"))]
    kind = headers.get("Content-Type", "")
    checks.append(Check("content type", kind.split(";")[0].strip() == PROBE_TYPE,
                        f"Content-Type {kind!r} (stored as {PROBE_TYPE!r})"))
    status, headers, body = _fetch(url, headers={"Range": "bytes=100-199"})
    checks.append(Check("range requests", status == 206 and body == PROBE_BYTES[100:200],
                        f"Range bytes=100-199: HTTP {status}, {len(body)} bytes, "
                        f"Content-Range {headers.get('Content-Range')!r}"))
    status, headers, _ = _fetch(url, headers={"Origin": PLAYER_ORIGIN})
    allowed = headers.get("Access-Control-Allow-Origin")
    checks.append(Check("CORS read", allowed in ("*", PLAYER_ORIGIN),
                        f"GET with Origin {PLAYER_ORIGIN}: Access-Control-Allow-Origin {allowed!r}"
                        + ("" if allowed else "; add the CORS rule of docs/deployment.md to the bucket")))
    status, headers, _ = _fetch(url, method="OPTIONS", headers={
        "Origin": PLAYER_ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "range"})
    methods = headers.get("Access-Control-Allow-Methods", "")
    allowed = headers.get("Access-Control-Allow-Origin")
    checks.append(Check("CORS preflight", status in (200, 204) and allowed in ("*", PLAYER_ORIGIN)
                        and ("GET" in methods.upper() or methods == "*"),
                        f"OPTIONS (GET, Range): HTTP {status}, Allow-Origin {allowed!r}, Allow-Methods {methods!r}"))
    return checks
