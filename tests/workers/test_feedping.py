"""Podping and WebSub notifications after a feed rebuild, received by a real local HTTP server."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storage.catalog import Catalog
from storage.objects import LocalStore
from workers.config import Settings
from workers.publish import ensure_show, rebuild_feeds


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, str, dict[str, str], bytes, float]] = []
    fail_first = 1
    delay_s = 0.0

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay_s)
        Receiver.received.append((self.command, self.path, dict(self.headers), body, time.monotonic()))
        failing = Receiver.fail_first > 0
        Receiver.fail_first -= 1
        self.send_response(503 if failing else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def receiver() -> Iterator[str]:
    Receiver.received, Receiver.fail_first, Receiver.delay_s = [], 1, 0.0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _rebuild(tmp: Path, **settings: Any) -> float:
    config = Settings(store=str(tmp / "store"), database_url=f"sqlite:///{tmp / 'c.sqlite'}", **settings)
    store = LocalStore(tmp / "store", public_url="https://cdn.example.com/")
    catalog = Catalog(config.database_url)
    try:
        ensure_show(config, store, catalog, "founders-hour")
        started = time.monotonic()
        rebuild_feeds(config, store, catalog, "founders-hour")
        return time.monotonic() - started
    finally:
        catalog.close()


def _wait(count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(Receiver.received) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_podping_once_per_publish_retried_and_not_blocking(receiver: str, tmp_path: Path) -> None:
    Receiver.delay_s = 1.5  # a slow notifier
    took = _rebuild(tmp_path, podping_url=f"{receiver}/", podping_token="secret-token")
    assert took < 1.0  # the publish did not wait for the ping
    _wait(2)
    time.sleep(0.5)
    assert len(Receiver.received) == 2  # one refused (503), retried once, then no more
    for method, path, headers, _, _ in Receiver.received:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
        assert method == "GET" and query["url"] == ["https://cdn.example.com/shows/founders-hour/feed.xml"]
        assert query["reason"] == ["update"] and headers["Authorization"] == "secret-token"


def test_websub_hub_gets_a_publish_ping(receiver: str, tmp_path: Path) -> None:
    Receiver.fail_first = 0
    _rebuild(tmp_path, websub_hub=f"{receiver}/hub")
    _wait(1)
    method, path, headers, body, _ = Receiver.received[0]
    assert (method, path) == ("POST", "/hub")
    assert urllib.parse.parse_qs(body.decode()) == {
        "hub.mode": ["publish"], "hub.url": ["https://cdn.example.com/shows/founders-hour/feed.xml"]}


def test_nothing_is_sent_when_not_configured(receiver: str, tmp_path: Path) -> None:
    _rebuild(tmp_path)
    time.sleep(0.5)
    assert Receiver.received == []
