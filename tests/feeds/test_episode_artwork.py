"""An episode's own cover, a file in the room folder: checked like show artwork, published beside the replay
under a name holding a hash of its content (a new picture gets a new URL, as apps cache covers by URL), listed
as the item's ``itunes:image`` (read by feedparser and gPodder's podcastparser), embedded as the replay's front
cover (read by mutagen) and removed with the episode."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import feedparser
import lxml.html
import podcastparser
import pytest
from lxml import etree
from mutagen.id3 import ID3
from PIL import Image

from pipeline.errors import FeedError
from pipeline.manifest import load_room
from storage.catalog import Catalog
from storage.objects import LocalStore
from tests.roomgen import manifest, write_manifest
from workers.config import Settings
from workers.inbox import STORE_REF, materialize, upload_room
from workers.publish import unpublish
from workers.runner import process_room
from workers.showcheck import room_feed_meta

PUBLIC = "https://cdn.example.com/media"
NS = {"podcast": "https://podcastindex.org/namespace/1.0"}


def with_artwork(room: Path, target: Path, colour: tuple[int, int, int], size: tuple[int, int] = (1400, 1400),
                 **feed: Any) -> Path:
    if not target.exists():
        shutil.copytree(room, target)
    (target / "art").mkdir(exist_ok=True)
    Image.new("RGB", size, colour).save(target / "art" / "episode.jpg", format="JPEG")
    data = manifest(target)
    data["feed"] = {"image": "art/episode.jpg", **feed}
    write_manifest(target, data)
    return target


def item_image(store: LocalStore, show: str) -> str:
    feed = store.get_bytes(f"shows/{show}/feed.xml")
    href = str(feedparser.parse(feed).entries[0].image.href)
    podcast_image = etree.fromstring(feed).xpath("/rss/channel/item/podcast:image/@href", namespaces=NS)
    assert podcast_image == [href]
    assert podcastparser.parse(PUBLIC, io.BytesIO(feed))["episodes"][0]["episode_art_url"] == href
    return href


@pytest.mark.slow
def test_episode_artwork_file_is_published_by_content(short_room: Path, tmp_path: Path) -> None:
    settings = Settings(store=str(tmp_path / "store"), public_url=PUBLIC, transcribe=False, min_chapter_s=10.0,
                        database_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}", work_dir=tmp_path / "work",
                        cache_dir=tmp_path / "cache")
    store = LocalStore(tmp_path / "store", public_url=PUBLIC)
    room = with_artwork(short_room, tmp_path / "room", (200, 40, 40))
    data = manifest(room)
    process_room(settings, room, processes=1)
    first = item_image(store, data["show"])
    key = first.removeprefix(PUBLIC + "/")
    assert key.startswith(f"shows/{data['show']}/episodes/{data['id']}/artwork-") and key.endswith(".jpg")
    assert store.get_bytes(key) == (room / "art" / "episode.jpg").read_bytes()
    show_cover = feedparser.parse(store.get_bytes(f"shows/{data['show']}/feed.xml")).feed.image.href
    assert show_cover != first  # the show keeps its own cover
    page = lxml.html.fromstring(store.get_bytes(f"shows/{data['show']}/episodes/{data['id']}/index.html"))
    assert page.xpath("//meta[@property='og:image']/@content") == [first]  # the page shows the episode's cover
    assert page.xpath("//header//img/@src") == [first.rsplit("/", 1)[1]]
    replay = ID3(tmp_path / "store" / "shows" / data["show"] / "episodes" / data["id"] / "replay.mp3")
    cover = replay.getall("APIC")
    assert [(c.type, c.data) for c in cover] == [(3, (room / "art" / "episode.jpg").read_bytes())]

    with_artwork(short_room, room, (40, 40, 200))  # a new picture: a new URL
    process_room(settings, room, processes=1)
    second = item_image(store, data["show"])
    assert second != first and store.get_bytes(second.removeprefix(PUBLIC + "/")) \
        == (room / "art" / "episode.jpg").read_bytes()

    catalog = Catalog(settings.database_url)
    try:
        unpublish(settings, store, catalog, data["id"])
    finally:
        catalog.close()
    assert not store.exists(second.removeprefix(PUBLIC + "/"))


def test_episode_artwork_is_checked_like_show_artwork(short_room: Path, tmp_path: Path) -> None:
    good = with_artwork(short_room, tmp_path / "good", (10, 120, 60))
    assert room_feed_meta(load_room(good, verify_decoding=False)).image_file == "art/episode.jpg"
    wide = with_artwork(short_room, tmp_path / "wide", (10, 120, 60), size=(1600, 1400))
    with pytest.raises(FeedError, match="not square"):
        room_feed_meta(load_room(wide, verify_decoding=False))
    data = manifest(good)
    for bad in ("../outside.jpg", "/etc/passwd", "art/missing.jpg"):
        data["feed"] = {"image": bad}
        write_manifest(good, data)
        with pytest.raises(FeedError, match="room folder|not a file"):
            room_feed_meta(load_room(good, verify_decoding=False))


def test_episode_artwork_travels_with_a_submitted_room(short_room: Path, tmp_path: Path) -> None:
    """Distributed mode: the room a worker materializes from the store's inbox holds the picture, checked again."""
    room = with_artwork(short_room, tmp_path / "room", (90, 20, 140))
    store = LocalStore(tmp_path / "store")
    ref = upload_room(store, load_room(room, verify_decoding=False))
    folder = materialize(store, ref.removeprefix(STORE_REF), tmp_path / "cache")
    assert (folder / "art" / "episode.jpg").read_bytes() == (room / "art" / "episode.jpg").read_bytes()
    assert room_feed_meta(load_room(folder, verify_decoding=False)).image_file == "art/episode.jpg"
