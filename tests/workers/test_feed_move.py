"""A moved feed's old address redirects to the new one: ``roomcast serve`` answers it with a 301 (folder store),
an S3 store keeps ``WebsiteRedirectLocation`` on the old feed object (moto's S3 server), and a server that drops
the header (SeaweedFS) gets the creator a note saying what to set up instead. The old feed's body still carries
``itunes:new-feed-url`` for the apps that read it rather than follow the redirect (read by podcastparser)."""

from __future__ import annotations

import http.client
import io
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import feedparser
import podcastparser
import pytest

from feeds.rss import feed_key
from pipeline.errors import StorageError
from storage.catalog import Catalog
from storage.objects import LocalStore, ObjectStore, open_store
from storage.s3 import S3Store
from tests.s3servers import MotoServer, WeedServer
from workers.config import Settings
from workers.feedmove import move_feed, redirect_note
from workers.publish import ensure_show, rebuild_feeds

REPO = Path(__file__).resolve().parents[2]
SHOW = "founders-hour"
OLD_BASE = "https://old.example.com/media"
OLD_FEED = f"{OLD_BASE}/shows/{SHOW}/feed.xml"
NEW_FEED = "https://feeds.new-host.example.net/founders-hour.xml"


def settings_for(tmp: Path, store: str) -> Settings:
    return Settings(store=store, database_url=f"sqlite:///{tmp / 'catalog.sqlite'}", work_dir=tmp / "work",
                    cache_dir=tmp / "cache", public_url=OLD_BASE)


def first_feed(settings: Settings, store: ObjectStore) -> None:
    catalog = Catalog(settings.database_url)
    try:
        ensure_show(settings, store, catalog, SHOW)
        rebuild_feeds(settings, store, catalog, SHOW)
    finally:
        catalog.close()


def move(settings: Settings, store: ObjectStore, url: str) -> str | None:
    """Move the show's feed to ``url``; returns the note the CLI would print."""
    catalog = Catalog(settings.database_url)
    try:
        move_feed(settings, store, catalog, SHOW, url)
        return redirect_note(store, catalog, SHOW)
    finally:
        catalog.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def request(base: str, method: str, path: str) -> http.client.HTTPResponse:
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    connection.request(method, path)
    reply = connection.getresponse()
    reply.read()
    connection.close()
    return reply


def cli_env(tmp: Path, public_url: str) -> dict[str, str]:
    env = {**os.environ, "ROOMCAST_STORE": str(tmp / "store"), "ROOMCAST_PUBLIC_URL": public_url,
           "ROOMCAST_DATABASE_URL": f"sqlite:///{tmp / 'catalog.sqlite'}",
           "ROOMCAST_WORK_DIR": str(tmp / "work"), "ROOMCAST_CACHE_DIR": str(tmp / "cache")}
    env.pop("ROOMCAST_SHOWS", None)
    return env


@contextmanager
def serving(store: Path) -> Iterator[str]:
    """``roomcast serve`` on ``store`` on a free port; yields its base URL."""
    store.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "workers.cli", "serve", str(store), "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        assert server.stdout is not None
        yield server.stdout.readline().split(" at ")[1].split(" ")[0]
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A folder store with the show's feed, served by ``roomcast serve``; yields its base URL and the environment
    for more ``roomcast`` commands on the same store and catalog."""
    first_feed(settings_for(tmp_path, str(tmp_path / "store")), LocalStore(tmp_path / "store", public_url=OLD_BASE))
    with serving(tmp_path / "store") as base:
        yield base, cli_env(tmp_path, OLD_BASE)


def test_serve_answers_a_moved_feed_with_a_301(served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, env = served
    feed_path = f"/shows/{SHOW}/feed.xml"
    assert request(base, "GET", feed_path).status == 200  # before the move: the feed itself
    moved = cli(env, "feed", "move", SHOW, NEW_FEED)
    assert moved.returncode == 0, moved.stderr
    assert "note:" not in moved.stderr  # a folder store keeps the redirect
    for method in ("GET", "HEAD"):
        reply = request(base, method, feed_path)
        assert (reply.status, reply.getheader("Location")) == (301, NEW_FEED)
    # an app that reads the old file itself (no redirect) still learns the new address
    old_body = (tmp_path / "store" / "shows" / SHOW / "feed.xml").read_bytes()
    assert podcastparser.parse(OLD_FEED, io.BytesIO(old_body))["new_url"] == NEW_FEED
    art = feedparser.parse(old_body).feed.image.href.removeprefix(OLD_BASE)
    assert request(base, "GET", art).status == 200  # only the feed redirects, not the show's other files
    with urllib.request.urlopen(base.rstrip("/") + feed_path.replace("feed.xml", "index.html"), timeout=10) as page:
        assert page.status == 200
    home = cli(env, "feed", "move", SHOW, OLD_FEED)  # moved back: the old address is the feed again
    assert home.returncode == 0, home.stderr
    with urllib.request.urlopen(base.rstrip("/") + feed_path, timeout=10) as reply:
        back = reply.read()
    assert reply.status == 200 and podcastparser.parse(OLD_FEED, io.BytesIO(back)).get("new_url") is None


def test_doctor_checks_the_old_feed_redirects(tmp_path: Path) -> None:
    with serving(tmp_path / "store") as base:
        public = base.rstrip("/")
        store = LocalStore(tmp_path / "store", public_url=public)
        first_feed(settings_for(tmp_path, str(tmp_path / "store")), store)
        env = cli_env(tmp_path, public)
        assert cli(env, "feed", "move", SHOW, NEW_FEED).returncode == 0
        line = next(x for x in cli(env, "doctor").stdout.splitlines() if f"moved feed {SHOW}" in x)
        assert line.startswith("ok ") and "HTTP 301" in line and NEW_FEED in line
        store.put_bytes(feed_key(SHOW), store.get_bytes(feed_key(SHOW)))  # the redirect lost (a host without it)
        broken = cli(env, "doctor")
        line = next(x for x in broken.stdout.splitlines() if f"moved feed {SHOW}" in x)
        assert broken.returncode == 1 and line.startswith("FAIL") and "HTTP 200" in line and "301" in line


def test_folder_store_keeps_clears_and_checks_redirects(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("shows/a/feed.xml", b"<rss/>", redirect=NEW_FEED)
    info = store.stat("shows/a/feed.xml")
    assert info is not None and info.redirect == NEW_FEED == store.redirect("shows/a/feed.xml")
    again = store.put_bytes("shows/a/feed.xml", b"<rss/>")  # same body, no redirect: stored again without it
    assert again.uploaded and store.redirect("shows/a/feed.xml") is None
    store.put_bytes("shows/a/other.xml", b"<rss/>", redirect="/shows/a/feed.xml")
    assert store.redirect("shows/a/other.xml") == "/shows/a/feed.xml"
    (tmp_path / "store" / "shows" / "a" / "other.xml").write_bytes(b"<rss>replaced by hand</rss>")
    assert store.redirect("shows/a/other.xml") is None  # a file replaced by hand no longer redirects
    with pytest.raises(StorageError, match="absolute http"):
        store.put_bytes("shows/a/feed.xml", b"<rss/>", redirect="ftp://elsewhere/feed.xml")


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.s3
def test_s3_feed_object_redirects_after_a_move(moto: MotoServer, tmp_path: Path) -> None:
    client = moto.client()
    bucket = f"rc-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    store = S3Store(bucket, "media", public_url=OLD_BASE, client=client)
    settings = settings_for(tmp_path, f"s3://{bucket}/media")
    first_feed(settings, store)
    key = f"media/{feed_key(SHOW)}"
    assert "WebsiteRedirectLocation" not in client.head_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
    assert move(settings, store, NEW_FEED) is None  # kept: no note for the creator
    first_feed(settings, store)  # a later rebuild (a new episode) keeps the redirect
    head = client.head_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
    assert head["WebsiteRedirectLocation"] == NEW_FEED
    # the REST endpoint still serves the body, which names the new address
    with urllib.request.urlopen(store.presign(feed_key(SHOW)), timeout=10) as reply:
        assert reply.headers["x-amz-website-redirect-location"] == NEW_FEED
        body = reply.read()
    assert podcastparser.parse(OLD_FEED, io.BytesIO(body))["new_url"] == NEW_FEED
    assert move(settings, store, OLD_FEED) is None  # home again: the redirect goes with the tag
    assert "WebsiteRedirectLocation" not in client.head_object(Bucket=bucket, Key=key)  # type: ignore[attr-defined]
    assert podcastparser.parse(OLD_FEED, io.BytesIO(store.get_bytes(feed_key(SHOW)))).get("new_url") is None


@pytest.mark.s3
def test_a_server_that_drops_redirects_gets_the_creator_a_note(s3_server: WeedServer, bucket: str,
                                                               tmp_path: Path) -> None:
    store = open_store(f"s3://{bucket}/media", public_url=OLD_BASE)
    settings = settings_for(tmp_path, f"s3://{bucket}/media")
    first_feed(settings, store)
    note = move(settings, store, NEW_FEED)
    assert note is not None and OLD_FEED in note and NEW_FEED in note and "301" in note
    assert podcastparser.parse(OLD_FEED, io.BytesIO(store.get_bytes(feed_key(SHOW))))["new_url"] == NEW_FEED


def test_no_redirect_loop_once_the_public_url_is_the_new_home(tmp_path: Path) -> None:
    """The store itself moved (a new ROOMCAST_PUBLIC_URL at the new address): the feed stops redirecting."""
    settings = settings_for(tmp_path, str(tmp_path / "store"))
    old = LocalStore(tmp_path / "store", public_url=OLD_BASE)
    first_feed(settings, old)
    new_home = f"https://new.example.net/shows/{SHOW}/feed.xml"
    assert move(settings, old, new_home) is None
    assert old.redirect(feed_key(SHOW)) == new_home
    moved = LocalStore(tmp_path / "store", public_url="https://new.example.net")
    first_feed(replace(settings, public_url="https://new.example.net"), moved)
    assert moved.redirect(feed_key(SHOW)) is None
    assert podcastparser.parse(new_home, io.BytesIO(moved.get_bytes(feed_key(SHOW)))).get("new_url") is None
