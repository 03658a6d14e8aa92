"""Object store details beyond the shared contract of ``test_stores.py``: how errors are classified, how integrity
is checked, how a folder keeps its metadata honest, and the URLs each store hands out."""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from boto3.exceptions import S3UploadFailedError
from botocore import UNSIGNED
from botocore.config import Config

from pipeline.errors import StorageError
from storage.objects import ASSET_CACHE_CONTROL, LocalStore, ObjectStore, open_store
from storage.s3 import S3Store
from tests.s3servers import WeedServer


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    yield open_store(f"s3://{request.getfixturevalue('bucket')}/objects")


def test_missing_objects_are_permanent_errors_naming_the_key(store: ObjectStore, tmp_path: Path) -> None:
    for action in (lambda: store.get_bytes("shows/a/missing.mp3"),
                   lambda: store.download("shows/a/missing.mp3", tmp_path / "out.mp3")):
        with pytest.raises(StorageError, match="missing.mp3") as caught:
            action()
        assert not caught.value.transient
    assert store.stat("shows/a/missing.mp3") is None and not store.exists("shows/a/missing.mp3")
    assert store.delete_prefix("shows/none/") == 0
    store.delete("shows/a/missing.mp3")  # deleting what is not there is not an error


def test_listing_is_relative_to_the_store_and_bounded_by_the_prefix(store: ObjectStore) -> None:
    for key in ("shows/a/feed.xml", "shows/ab/feed.xml", "shows/a/episodes/e/chapters.json"):
        store.put_bytes(key, key.encode())
    listed = {info.key: info for info in store.list("shows/a/")}
    assert sorted(listed) == ["shows/a/episodes/e/chapters.json", "shows/a/feed.xml"]
    assert listed["shows/a/feed.xml"].md5 == hashlib.md5(b"shows/a/feed.xml").hexdigest()
    assert listed["shows/a/episodes/e/chapters.json"].content_type == "application/json+chapters"
    assert sorted(i.key for i in store.list("shows/a")) == sorted([*listed, "shows/ab/feed.xml"])
    assert len(list(store.list())) == 3


def test_a_folder_leaves_no_temporary_files_and_hides_its_metadata(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    for n in range(3):
        store.put_bytes("shows/a/episodes/e/transcript.txt", f"version {n}".encode())
    names = sorted(p.relative_to(tmp_path / "store").as_posix() for p in (tmp_path / "store").rglob("*")
                   if p.is_file())
    assert names == [".roomcast-meta/shows/a/episodes/e/transcript.txt.json", "shows/a/episodes/e/transcript.txt"]
    assert [i.key for i in store.list()] == ["shows/a/episodes/e/transcript.txt"]
    with pytest.raises(StorageError, match="reserved"):
        store.put_bytes(".roomcast-meta/x.json", b"{}")


def test_a_folder_publishes_files_a_web_server_can_read(tmp_path: Path) -> None:
    """Objects get the permissions of any new file (umask), not the private mode of a temporary file."""
    import os
    import stat

    store = LocalStore(tmp_path / "store")
    store.put_bytes("shows/a/feed.xml", b"<rss/>")
    source = tmp_path / "replay.mp3"
    source.write_bytes(b"ID3")
    store.put_file("shows/a/episodes/e/replay.mp3", source)
    mask = os.umask(0)
    os.umask(mask)
    for key in ("shows/a/feed.xml", "shows/a/episodes/e/replay.mp3"):
        mode = stat.S_IMODE((tmp_path / "store" / key).stat().st_mode)
        assert mode == 0o666 & ~mask, oct(mode)


def test_a_folder_notices_an_object_replaced_behind_its_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.put_bytes("e/replay.mp3", b"A" * 1000)
    path = tmp_path / "store" / "e" / "replay.mp3"
    path.write_bytes(b"B" * 1000)  # same size: only the modification time gives it away
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert store.stat("e/replay.mp3").md5 == hashlib.md5(b"B" * 1000).hexdigest()
    assert store.put_bytes("e/replay.mp3", b"A" * 1000).uploaded  # so the original goes back in
    assert path.read_bytes() == b"A" * 1000


def test_folder_urls(tmp_path: Path) -> None:
    plain = LocalStore(tmp_path / "store")
    assert plain.url("shows/a/feed.xml") == (tmp_path / "store" / "shows/a/feed.xml").resolve().as_uri()
    public = LocalStore(tmp_path / "store", public_url="https://cdn.example.com/pod/")
    assert public.url("shows/a/episodes/e 1/replay.mp3") == "https://cdn.example.com/pod/shows/a/episodes/e%201/replay.mp3"


@pytest.mark.s3
def test_single_part_uploads_have_an_etag_equal_to_the_md5(bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "replay.m4a"
    source.write_bytes(os.urandom(300_000))
    info = open_store(f"s3://{bucket}/p").put_file("e/replay.m4a", source)
    digest = hashlib.md5(source.read_bytes()).hexdigest()
    head = boto3.client("s3").head_object(Bucket=bucket, Key="p/e/replay.m4a")
    assert head["ETag"].strip('"') == digest == head["Metadata"]["md5"] == info.md5
    assert head["ContentType"] == "audio/mp4" and head["CacheControl"] == ASSET_CACHE_CONTROL


@pytest.mark.s3
def test_s3_url_without_public_url_points_at_the_endpoint(bucket: str, s3_server: WeedServer) -> None:
    store = open_store(f"s3://{bucket}/p")
    store.put_bytes("shows/a/feed.xml", b"<rss/>")
    assert store.url("shows/a/feed.xml") == f"{s3_server.endpoint}/{bucket}/p/shows/a/feed.xml"
    with urllib.request.urlopen(store.url("shows/a/feed.xml")) as reply:  # anonymous read, as a podcast app does
        assert reply.read() == b"<rss/>"


@pytest.mark.s3
def test_a_missing_bucket_is_a_permanent_error(s3_server: WeedServer) -> None:
    # Reads only: SeaweedFS creates a missing bucket on the first write of an admin identity (AWS would refuse).
    store = open_store("s3://rc-no-such-bucket/x")
    for action in (lambda: store.get_bytes("e/replay.mp3"), lambda: list(store.list("e/"))):
        with pytest.raises(StorageError, match="s3://rc-no-such-bucket/x: .*NoSuchBucket") as caught:
            action()
        assert not caught.value.transient, caught.value


@pytest.mark.s3
def test_refused_requests_are_permanent_errors(bucket: str, s3_server: WeedServer, tmp_path: Path) -> None:
    source = tmp_path / "replay.mp3"
    source.write_bytes(b"ID3" + bytes(100))
    wrong_secret = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1",
                                aws_access_key_id=s3_server.env["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key="wrong-secret")
    with pytest.raises(StorageError, match="cannot inspect e/replay.mp3: 403") as caught:
        S3Store(bucket, "x", client=wrong_secret).put_file("e/replay.mp3", source)
    assert not caught.value.transient
    # Anonymous callers may read (so HEAD answers) but not write: the upload itself is refused, and boto3
    # reports that through its own S3UploadFailedError.
    anonymous = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1",
                             config=Config(signature_version=UNSIGNED))
    with pytest.raises(StorageError, match="cannot upload e/replay.mp3") as caught:
        S3Store(bucket, "x", client=anonymous).put_file("e/replay.mp3", source)
    assert not caught.value.transient and isinstance(caught.value.__cause__, S3UploadFailedError)


def test_an_unreachable_endpoint_is_a_transient_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="k", aws_secret_access_key="s")
    store = S3Store("bucket", "x", client=client, multipart_threshold=5 * 1024 * 1024)
    source = tmp_path / "replay.mp3"
    source.write_bytes(bytes(1000))
    for name, action in {"put_file": lambda: store.put_file("e/replay.mp3", source),
                         "get_bytes": lambda: store.get_bytes("e/replay.mp3"),
                         "list": lambda: list(store.list("e/"))}.items():
        with pytest.raises(StorageError, match="s3://bucket/x") as caught:
            action()
        assert caught.value.transient, name
