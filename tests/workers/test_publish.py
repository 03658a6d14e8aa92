"""Publishing to a real S3-compatible server: feed contents over HTTP, re-publishing, visibility, and a server
stopped in the middle of a publish (the old feed stays valid; a re-run completes with one item per episode)."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import feedparser
import pytest
from lxml import etree

from pipeline.errors import StorageError
from storage.catalog import Catalog
from storage.objects import ObjectInfo
from storage.s3 import S3Store
from tests.roomgen import manifest, write_manifest
from tests.s3servers import WeedServer
from workers.config import Settings
from workers.context import Context
from workers.runner import process_room

pytestmark = [pytest.mark.s3, pytest.mark.slow]
NS = {"itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd", "podcast": "https://podcastindex.org/namespace/1.0"}


def settings_for(tmp: Path, store: str) -> Settings:
    return Settings(store=store, database_url=f"sqlite:///{tmp / 'catalog.sqlite'}", work_dir=tmp / "work",
                    cache_dir=tmp / "cache", transcribe=False, min_chapter_s=10.0)


def variant(room: Path, tmp: Path, **changes: Any) -> Path:
    """A copy of ``room`` with manifest fields changed (id, visibility, title...)."""
    copy = tmp / changes.get("id", room.name)
    shutil.copytree(room, copy)
    data = manifest(copy)
    data.update(changes)
    write_manifest(copy, data)
    return copy


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url) as reply:
        return reply.read()


def test_publish_republish_and_visibility(short_room: Path, bucket: str, s3_server: WeedServer, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"s3://{bucket}/podcasts")
    first = process_room(settings, variant(short_room, tmp_path, id="ep-one"), processes=2)
    store = Context.of(settings).store
    feed_url = store.url("shows/founders-hour/feed.xml")
    feed = feedparser.parse(fetch(feed_url))
    assert not feed.bozo and [e.title for e in feed.entries] == [manifest(short_room)["title"]]
    enclosure = feed.entries[0].enclosures[0]
    replay = fetch(enclosure.href)
    assert len(replay) == int(enclosure.length) and replay[:3] in (b"ID3", b"\xff\xfb")
    guid = feed.entries[0].id

    # The same room again: same guid, one item, nothing uploaded twice.
    uploads: list[ObjectInfo] = []
    original = S3Store.put_file

    def counting(self: S3Store, key: str, path: Path, **kw: Any) -> ObjectInfo:
        info = original(self, key, path, **kw)
        uploads.append(info)
        return info

    S3Store.put_file = counting  # type: ignore[method-assign]
    try:
        process_room(settings, variant(short_room, tmp_path / "again", id="ep-one"), processes=2)
    finally:
        S3Store.put_file = original  # type: ignore[method-assign]
    feed = feedparser.parse(fetch(feed_url))
    assert [e.id for e in feed.entries] == [guid]
    assert uploads and not any(u.uploaded for u in uploads), [u.key for u in uploads if u.uploaded]
    assert first["assets"] == [u.key for u in sorted(uploads, key=lambda u: u.key)]

    # Private: only in the private feed, its objects only under the private path. Unlisted: in no feed.
    process_room(settings, variant(short_room, tmp_path, id="ep-private", visibility="private"), processes=2)
    process_room(settings, variant(short_room, tmp_path, id="ep-unlisted", visibility="unlisted"), processes=2)
    public = fetch(feed_url).decode()
    assert "ep-private" not in public and "ep-unlisted" not in public
    assert len(feedparser.parse(public).entries) == 1
    token = Context.of(settings).catalog.get_show("founders-hour").private_token
    assert token and len(token) >= 22  # >= 128 bits, URL-safe base64
    private = feedparser.parse(fetch(store.url(f"shows/founders-hour/private/{token}/feed.xml")))
    assert len(private.entries) == 1
    assert f"/private/{token}/episodes/ep-private/" in private.entries[0].enclosures[0].href
    keys = [o.key for o in store.list("shows/founders-hour/")]
    assert not [k for k in keys if "ep-private" in k and "/private/" not in k]
    assert [k for k in keys if "/episodes/ep-unlisted/replay.mp3" in k]


def test_feed_tags_over_http(short_room: Path, bucket: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, f"s3://{bucket}")
    process_room(settings, variant(short_room, tmp_path, id="ep-tags"), processes=2)
    store = Context.of(settings).store
    body = fetch(store.url("shows/founders-hour/feed.xml"))
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    channel = root.find("channel")
    for path in ("title", "description", "language", "itunes:image", "itunes:category", "itunes:explicit",
                 "itunes:author", "itunes:owner/itunes:email", "podcast:guid", "podcast:locked"):
        assert channel.find(path, NS) is not None, path
    item = channel.find("item")
    for path in ("title", "guid", "pubDate", "enclosure", "itunes:duration", "itunes:episodeType",
                 "podcast:chapters"):
        assert item.find(path, NS) is not None, path
    for node in item.findall("podcast:person", NS):
        assert node.text != "Dave Novák"
    image = channel.find("itunes:image", NS).get("href")
    assert fetch(image)[:3] == b"\xff\xd8\xff"  # the generated JPEG cover is really there
    for asset in [item.find("enclosure").get("url"), item.find("podcast:chapters", NS).get("url")]:
        assert fetch(asset)


class StopsMidPublish(S3Store):
    """A real S3 store whose server is stopped right after the first episode asset is uploaded."""

    server: WeedServer

    def put_file(self, key: str, path: Path, **kw: Any) -> ObjectInfo:
        info = super().put_file(key, path, **kw)
        if "/episodes/" in key and self.server.process is not None:
            self.server.stop()
        return info


def test_server_stopped_mid_publish_keeps_old_feed_and_rerun_completes(short_room: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stays down past the last retry of the finish (no retries here, so the test does not wait out
    the backoff): the room fails, the feed is the one before, and a run once the server is back publishes it."""
    import os

    import workers.stages

    server = WeedServer(tmp_path / "weed")
    server.start()
    saved = {key: os.environ.get(key) for key in server.env}
    try:
        server.create_bucket("rc-crash")
        os.environ.update(server.env)
        settings = settings_for(tmp_path, "s3://rc-crash")
        process_room(settings, variant(short_room, tmp_path, id="ep-before"), processes=2)
        store = Context.of(settings).store
        feed_before = store.get_bytes("shows/founders-hour/feed.xml")

        crashing = settings_for(tmp_path / "x", "s3://rc-crash").replace(database_url=settings.database_url)
        context = Context(crashing)
        context.store = StopsMidPublish("rc-crash", "")
        context.store.server = server
        normal = Context.of(settings)
        Context._cache[Context.key(crashing)] = context  # the same store and catalog, reached through the stub
        room = variant(short_room, tmp_path, id="ep-during", title="During the outage")
        monkeypatch.setattr(workers.stages, "RETRY", workers.stages.RetryPolicy(max_retries=0))
        try:
            with pytest.raises(StorageError):
                process_room(crashing, room, processes=2)
        finally:
            Context._cache[Context.key(settings)] = normal
            monkeypatch.undo()

        server.start()
        deadline = time.monotonic() + 60
        while True:  # the restarted server may answer 5xx for a moment
            try:
                assert store.get_bytes("shows/founders-hour/feed.xml") == feed_before
                break
            except StorageError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert len(feedparser.parse(feed_before).entries) == 1
        status = Context.of(settings).catalog.get_episode("ep-during")
        assert status is not None and status.status == "failed" and "rc-crash" in status.error

        process_room(settings, room, processes=2)
        feed = feedparser.parse(store.get_bytes("shows/founders-hour/feed.xml"))
        assert sorted(e.title for e in feed.entries) == sorted([manifest(short_room)["title"], "During the outage"])
        for entry in feed.entries:
            assert store.stat(entry.enclosures[0].href.split("/rc-crash/", 1)[1]) is not None
        keys = [o.key for o in store.list("shows/founders-hour/episodes/ep-during/")]
        assert len(keys) == len(set(keys)) and json.loads(store.get_bytes(
            "shows/founders-hour/episodes/ep-during/chapters.json"))["version"] == "1.2.0"
    finally:
        server.stop()
        for key, value in saved.items():  # the session's S3 server is the one other tests expect
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_gpodder_downloads_the_episode_from_s3_byte_for_byte(short_room: Path, bucket: str, tmp_path: Path) -> None:
    """Debian's gPodder subscribes to the published feed over HTTP and downloads the replay from the S3 server."""
    import os
    import subprocess

    settings = settings_for(tmp_path, f"s3://{bucket}")
    process_room(settings, variant(short_room, tmp_path, id="ep-gpodder"), processes=2)
    store = Context.of(settings).store
    env = {**os.environ, "GPODDER_HOME": str(tmp_path / "gpodder"), "GPODDER_DOWNLOAD_DIR": str(tmp_path / "dl")}

    def gpo(*args: str) -> str:
        done = subprocess.run(["gpo", *args], env=env, capture_output=True, text=True, timeout=180, check=True)
        return done.stdout + done.stderr

    assert "Successfully added" in gpo("subscribe", store.url("shows/founders-hour/feed.xml"))
    assert manifest(short_room)["title"] in gpo("episodes")
    gpo("download")
    downloaded = [p.read_bytes() for p in (tmp_path / "dl").rglob("*") if p.is_file() and p.suffix == ".mp3"]
    assert downloaded == [store.get_bytes("shows/founders-hour/episodes/ep-gpodder/replay.mp3")]


def test_episode_links_are_presigned_and_download(short_room: Path, bucket: str, s3_server: WeedServer,
                                                  tmp_path: Path) -> None:
    """`roomcast episode links` on an S3 store gives expiring links that download the objects byte for byte."""
    import os
    import subprocess
    import sys

    settings = settings_for(tmp_path, f"s3://{bucket}")
    process_room(settings, variant(short_room, tmp_path, id="ep-links", visibility="private"), processes=2)
    env = {**os.environ, **s3_server.env, "ROOMCAST_STORE": settings.store,
           "ROOMCAST_DATABASE_URL": settings.database_url}
    done = subprocess.run([sys.executable, "-m", "workers.cli", "episode", "links", "ep-links", "--expires", "600"],
                          capture_output=True, text=True, env=env, timeout=120, check=True)
    links = dict(line.split(None, 1) for line in done.stdout.strip().splitlines())
    assert {"replay.mp3", "replay.m4a", "chapters.json"} <= set(links)
    store = Context.of(settings).store
    episode = Context.of(settings).catalog.get_episode("ep-links")
    assert episode is not None
    for asset in episode.assets:
        url = links[asset.name].strip()
        assert "Expires=600" in url or "X-Amz-Expires=600" in url
        assert fetch(url) == store.get_bytes(asset.key)


def test_an_episode_is_published_only_once_its_feed_lists_it(short_room: Path, bucket: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever sees the status ``published`` (``roomcast status``, a batch job waiting on rooms) finds the episode
    in the feed already: the real catalog is watched as the status is set, and the feed read from the server."""
    settings = settings_for(tmp_path, f"s3://{bucket}/podcasts")
    seen: list[list[str]] = []
    original = Catalog.mark_published

    def watched(self: Catalog, episode_id: str, duration_s: float, published_at: Any = None) -> None:
        store = Context.of(settings).store
        feed = feedparser.parse(fetch(store.url("shows/founders-hour/feed.xml")))
        seen.append([e.id for e in feed.entries if episode_id in e.enclosures[0].href])
        original(self, episode_id, duration_s, published_at)

    monkeypatch.setattr(Catalog, "mark_published", watched)
    process_room(settings, variant(short_room, tmp_path, id="ep-ordered"), processes=2)
    assert len(seen) == 1 and len(seen[0]) == 1, seen
    assert Context.of(settings).catalog.get_episode("ep-ordered").status == "published"
