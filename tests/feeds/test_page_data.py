"""The pages' data (turns, lanes, word times), their escaping, and the file server of ``roomcast serve``."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from feeds.page_data import read_chapters, read_words, word_times_json
from feeds.page_publish import publish_episode_page, publish_show_page
from feeds.pages import clock, script_json
from pipeline.errors import FeedError
from storage.layout import show_page_key
from storage.objects import LocalStore
from storage.records import AssetRecord, EpisodeRecord, PersonRecord, ShowRecord
from workers.serve import make_server

HOSTILE = '</script><script>alert(1)</script> & "x" ‮evil'


def _words(*items: tuple[float, float, str, str]) -> bytes:
    return json.dumps({"version": 1, "language": "en", "speakers": {"a": "Ann", "b": HOSTILE},
                       "words": [{"start": s, "end": e, "text": t, "speaker": p} for s, e, t, p in items]}).encode()


def test_turns_follow_speakers_and_split_long_monologues() -> None:
    items = [(0.0, 0.4, "Hello", "a"), (0.5, 0.9, "there.", "a"), (1.0, 1.3, "Hi", "b"), (1.4, 1.8, "Ann.", "b")]
    items += [(4.0 + n, 4.5 + n, "word." if n % 10 == 9 else "word", "a") for n in range(80)]
    page = read_words(_words(*reversed(items)), "test")
    assert [t.speaker for t in page.turns[:3]] == ["a", "b", "a"]
    assert page.turns[0].start == 0.0 and page.turns[1].words[-1].text == "Ann."
    assert len(page.turns) == 4 and page.turns[3].speaker == "a"  # the 80 s monologue split at a sentence end
    assert page.turns[2].words[-1].text.endswith(".")
    assert page.word_count == len(items)
    lanes = {lane.speaker: lane for lane in page.lanes}
    assert set(lanes) == {"a", "b"} and lanes["b"].spans == ((1.0, 1.8),)
    assert lanes["a"].spans[0] == (0.0, 0.9) and len(lanes["a"].spans) == 2
    times = json.loads(word_times_json(page))
    assert times["count"] == len(items) and times["start"][:3] == [0, 50, 100]


def test_bad_published_files_name_the_object() -> None:
    with pytest.raises(FeedError, match="episode 'x': shows/s/words.json: not valid JSON"):
        read_words(b"{", "episode 'x': shows/s/words.json")
    with pytest.raises(FeedError, match="chapters.json: not a Podcasting 2.0 chapters file"):
        read_chapters(b'{"chapters": [{"title": "no start"}]}', "chapters.json")


def test_script_json_cannot_close_its_element() -> None:
    text = script_json({"name": HOSTILE})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": HOSTILE}
    assert clock(754.9) == "12:34" and clock(3723) == "1:02:03"


def _published(tmp_path: Path) -> tuple[LocalStore, ShowRecord, EpisodeRecord]:
    store = LocalStore(tmp_path / "store")
    prefix = "shows/s/episodes/e/"
    infos = [store.put_bytes(prefix + "replay.mp3", b"\xff\xfb" + b"\0" * 100),
             store.put_bytes(prefix + "words.json", _words((0.0, 0.5, HOSTILE, "b"), (1.0, 1.5, "fine", "a"))),
             store.put_bytes(prefix + "chapters.json", json.dumps(
                 {"version": "1.2.0", "chapters": [{"startTime": 0, "title": HOSTILE}]}).encode())]
    episode = EpisodeRecord(id="e", show="s", title=HOSTILE, description=HOSTILE, visibility="public", guid="g",
                            recorded_at=datetime(2026, 1, 2, tzinfo=UTC), duration_s=2.0,
                            assets=tuple(AssetRecord(i.key.rsplit("/", 1)[1], i.key, i.size, i.content_type, i.md5)
                                         for i in infos),
                            persons=(PersonRecord(HOSTILE, "host"), PersonRecord("Ann")))
    show = ShowRecord(id="s", title=HOSTILE, author="a", owner_name="a", owner_email="a@example.com",
                      description=HOSTILE)
    return store, show, episode


def test_hostile_text_is_escaped_in_the_html(tmp_path: Path) -> None:
    store, show, episode = _published(tmp_path)
    html = store.get_bytes(publish_episode_page(store, show, episode)).decode()
    assert "<script>alert" not in html and "</script><script>" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#34;x&#34;" in html
    assert html.count("<script") == 2  # the page's own script and its JSON-LD
    show_html = store.get_bytes(publish_show_page(store, show, [episode])).decode()
    assert "<script" not in show_html and 'href="episodes/e/index.html"' in show_html
    assert show_page_key("s", "tok") == "shows/s/private/tok/index.html"


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "a.mp3").write_bytes(bytes(range(256)) * 4)
    (tmp_path / ".roomcast-meta").mkdir()
    (tmp_path / ".roomcast-meta" / "a.mp3.json").write_text("{}")
    server = make_server(tmp_path, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_serve_answers_byte_ranges_and_hides_metadata(served: str) -> None:
    request = urllib.request.Request(served + "a.mp3", headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206 and response.read() == bytes(range(10, 20))
        assert response.headers["Content-Range"] == "bytes 10-19/1024"
        assert response.headers["Content-Type"] == "audio/mpeg"
    with urllib.request.urlopen(urllib.request.Request(served + "a.mp3", headers={"Range": "bytes=-4"})) as response:
        assert response.read() == bytes(range(252, 256))
    with urllib.request.urlopen(served + "a.mp3") as response:
        assert response.status == 200 and len(response.read()) == 1024
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(served + ".roomcast-meta/a.mp3.json")
    assert missing.value.code == 404
    missing.value.close()


def test_downloads_sharing_tags_and_the_show_page(tmp_path: Path) -> None:
    """With a public URL: every download the episode page lists is a published object of the episode, the feed's
    address is given, OpenGraph and Twitter tags carry absolute addresses (``og:audio`` the MP3); the show page
    lists its episodes newest first, each linking to its page, with the feed's address and subscribe links."""
    import re
    from html import unescape

    base = "https://cdn.example.org/pod/"
    store = LocalStore(tmp_path / "store", public_url=base)
    art = store.put_bytes("shows/s/artwork-ab12.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    names = ("replay.mp3", "replay.m4a", "transcript.vtt", "transcript.srt", "transcript.txt", "transcript.json",
             "chapters.json")
    show = ShowRecord(id="s", title="Show", author="a", owner_name="a", owner_email="a@example.com",
                      description="About the show", artwork_key=art.key)
    episodes = []
    for n, day in ((1, 2), (2, 9)):
        prefix = f"shows/s/episodes/e{n}/"
        infos = [store.put_bytes(prefix + name, b"x" * 10) for name in names if name != "chapters.json"]
        infos.append(store.put_bytes(prefix + "chapters.json", json.dumps(
            {"version": "1.2.0", "chapters": [{"startTime": 0, "title": "Opening"}]}).encode()))
        infos.append(store.put_bytes(prefix + "words.json", _words((0.0, 0.5, "hello", "a"))))
        episodes.append(EpisodeRecord(
            id=f"e{n}", show="s", title=f"Episode {n}", description="d", visibility="public", guid=f"g{n}",
            recorded_at=datetime(2026, 1, day, tzinfo=UTC), duration_s=2.0,
            assets=tuple(AssetRecord(i.key.rsplit("/", 1)[1], i.key, i.size, i.content_type, i.md5) for i in infos)))
    html = store.get_bytes(publish_episode_page(store, show, episodes[0])).decode()

    downloads = html[html.index('class="downloads"'):]
    links = [unescape(h) for h in re.findall(r'<li><a href="([^"]+)"', downloads)]
    assert set(names) <= set(links)
    assert all(store.exists("shows/s/episodes/e1/" + link) for link in links)
    assert re.search(r'Podcast feed for your app: <a href="\.\./\.\./feed\.xml"', downloads)

    def meta(attribute: str, name: str) -> str:
        found = re.search(rf'<meta {attribute}="{re.escape(name)}" content="([^"]*)"', html)
        assert found, name
        return unescape(found.group(1))

    assert meta("property", "og:audio") == base + "shows/s/episodes/e1/replay.mp3"
    assert meta("property", "og:image") == base + art.key
    assert meta("property", "og:title") == "Episode 1" and meta("name", "twitter:title") == "Episode 1"
    assert meta("name", "twitter:card")
    assert '"@type": "PodcastEpisode"' in html or '"@type":"PodcastEpisode"' in html

    show_html = store.get_bytes(publish_show_page(store, show, list(reversed(episodes)))).decode()
    pages = re.findall(r'<h3><a href="([^"]+)"', show_html)
    assert pages == ["episodes/e2/index.html", "episodes/e1/index.html"]  # newest first
    assert base + "shows/s/feed.xml" in show_html
    assert "pktc://subscribe/" in show_html and "antennapod-subscribe://" in show_html
