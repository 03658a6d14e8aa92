"""The object store contract, run against a local folder and against a real S3-compatible server over HTTP."""

from __future__ import annotations

import hashlib
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import boto3
import pytest

from pipeline.errors import StorageError
from storage.objects import ASSET_CACHE_CONTROL, FEED_CACHE_CONTROL, LocalStore, ObjectStore, open_store
from storage.s3 import S3Store
from tests.s3servers import WeedServer

T = TypeVar("T")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    bucket = request.getfixturevalue("bucket")
    yield open_store(f"s3://{bucket}/prefix/x")


def test_put_stat_get_list_delete(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "replay.mp3"
    source.write_bytes(b"ID3" + os.urandom(5000))
    info = store.put_file("shows/a/episodes/e1/replay.mp3", source)
    assert info.uploaded and info.size == 5003 and info.md5 == hashlib.md5(source.read_bytes()).hexdigest()
    assert info.content_type == "audio/mpeg"
    store.put_bytes("shows/a/feed.xml", "<rss>é</rss>".encode())
    store.put_bytes("shows/b/feed.xml", b"<rss/>")
    assert store.stat("shows/a/episodes/e1/replay.mp3") == info.__class__(info.key, info.size, info.md5,
                                                                            info.content_type)
    assert store.get_bytes("shows/a/feed.xml").decode() == "<rss>é</rss>"
    assert sorted(i.key for i in store.list("shows/a/")) == ["shows/a/episodes/e1/replay.mp3", "shows/a/feed.xml"]
    store.download("shows/a/episodes/e1/replay.mp3", tmp_path / "copy.mp3")
    assert (tmp_path / "copy.mp3").read_bytes() == source.read_bytes()
    assert store.delete_prefix("shows/a/") == 2
    assert not store.exists("shows/a/feed.xml") and store.exists("shows/b/feed.xml")
    assert store.stat("shows/a/feed.xml") is None


def test_unchanged_objects_are_not_uploaded_again(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "t.vtt"
    source.write_text("WEBVTT\n")
    assert store.put_file("e/transcript.vtt", source).uploaded
    assert not store.put_file("e/transcript.vtt", source).uploaded
    source.write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n")
    assert store.put_file("e/transcript.vtt", source).uploaded


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../../b", "a//b", "a/./b", ""])
def test_keys_cannot_escape(store: ObjectStore, key: str) -> None:
    with pytest.raises(StorageError, match="invalid object key"):
        store.put_bytes(key, b"x")


@pytest.mark.s3
def test_content_types_cache_control_and_public_reads_over_http(bucket: str, s3_server: WeedServer,
                                                                 tmp_path: Path) -> None:
    store = open_store(f"s3://{bucket}/pub", public_url=f"{s3_server.endpoint}/{bucket}/pub")
    expected = {
        "e/replay.mp3": "audio/mpeg", "e/replay.m4a": "audio/mp4", "e/transcript.vtt": "text/vtt; charset=utf-8",
        "e/transcript.srt": "application/x-subrip", "e/transcript.json": "application/json",
        "e/chapters.json": "application/json+chapters", "feed.xml": "application/rss+xml; charset=utf-8",
    }
    for key in expected:
        store.put_bytes(key, f"body of {key}".encode())
    for key, kind in expected.items():
        with urllib.request.urlopen(urllib.request.Request(store.url(key), method="HEAD")) as reply:
            assert reply.headers["Content-Type"] == kind
            cache = reply.headers["Cache-Control"]
            assert cache == (FEED_CACHE_CONTROL if key.endswith(".xml") else ASSET_CACHE_CONTROL)
        with urllib.request.urlopen(store.url(key)) as reply:
            assert reply.read() == f"body of {key}".encode()


@pytest.mark.s3
def test_multipart_upload_is_verified(bucket: str, tmp_path: Path) -> None:
    store = S3Store(bucket, "big", multipart_threshold=5 * 1024 * 1024)
    source = tmp_path / "replay.mp3"
    source.write_bytes(os.urandom(12 * 1024 * 1024 + 17))
    info = store.put_file("replay.mp3", source)
    assert info.uploaded and info.size == source.stat().st_size
    head = boto3.client("s3").head_object(Bucket=bucket, Key="big/replay.mp3")
    assert "-" in head["ETag"], "expected a multipart ETag"
    assert head["Metadata"]["md5"] == hashlib.md5(source.read_bytes()).hexdigest()
    assert not store.put_file("replay.mp3", source).uploaded  # unchanged content is recognised after multipart too


@pytest.mark.s3
def test_presigned_links_download_byte_for_byte(bucket: str, s3_server: WeedServer, tmp_path: Path) -> None:
    store = open_store(f"s3://{bucket}")
    data = os.urandom(70_000)
    store.put_bytes("private/t/episodes/e/replay.mp3", data)
    link = store.presign("private/t/episodes/e/replay.mp3", 600)
    assert "Signature" in link or "X-Amz-Signature" in link
    with urllib.request.urlopen(link) as reply:
        assert reply.read() == data


def test_presign_on_a_folder_says_it_needs_s3(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="need an S3 store"):
        LocalStore(tmp_path).presign("x")


@pytest.mark.s3
def test_a_stopped_server_gives_transient_errors(tmp_path: Path) -> None:
    server = WeedServer(tmp_path / "weed")
    server.start()
    try:
        server.create_bucket("rc-stopped")
        client = boto3.client("s3", endpoint_url=server.endpoint, region_name="us-east-1",
                              aws_access_key_id=server.env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=server.env["AWS_SECRET_ACCESS_KEY"])
        store = S3Store("rc-stopped", "", client=client)
        store.put_bytes("a.txt", b"before")
        server.stop()
        with pytest.raises(StorageError) as caught:
            store.put_bytes("b.txt", b"during")
        assert caught.value.transient and "b.txt" in str(caught.value)
        server.start()
        assert _retry_transient(lambda: store.get_bytes("a.txt")) == b"before"  # kept across the restart
    finally:
        server.stop()


def _retry_transient(action: Callable[[], T], timeout: float = 60.0) -> T:
    """What a worker does with a transient storage error: try again, for a while."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except StorageError as exc:
            if not exc.transient or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(StorageError, match="unsupported scheme"):
        open_store("gs://bucket/x")
    with pytest.raises(StorageError, match="no bucket"):
        open_store("s3:///x")
