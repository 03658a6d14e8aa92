"""``roomcast doctor``: the store checked from outside, as a podcast app or a web player will use it.

A small probe object is uploaded under ``doctor/``, then fetched over plain HTTP from its public URL, with no
credentials: it must be readable by anyone, answer byte-range requests (206, as Apple requires of media hosts),
carry the content type it was stored with, and allow cross-origin reads (CORS: web players fetch the replay,
transcripts and chapters from another origin, and preflight their Range requests). The probe is removed after.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message

from storage.layout import PROBE_KEY
from storage.objects import ObjectStore

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
