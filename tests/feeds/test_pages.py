"""Episode and show pages in a real browser (Debian's chromium driven by Playwright), over rooms processed by the
real pipeline and served by ``roomcast serve``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.roomgen import duration, manifest, write_manifest

pytestmark = [pytest.mark.slow, pytest.mark.model]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
# axe-core comes from npm: .ci/run installs it with `npm install --prefix .node axe-core`.
AXE_JS = Path(os.environ.get("ROOMCAST_AXE_JS") or REPO / ".node" / "node_modules" / "axe-core" / "axe.min.js")
HOSTILE_TITLE = 'Levels <img src=x onerror="window.pwned=1"> & "quotes" 🎧 שלום'
HOSTILE_NAME = "<script>window.pwned=2</script> Alice & Zoë 🎙️ مرحبا"
SHOW = "founders-hour"


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True, env=env,
                          timeout=1800, cwd=REPO)


def _variant(room_dir: Path, target: Path, **changes: Any) -> Path:
    """A copy of a room with its manifest changed."""
    shutil.copytree(room_dir, target)
    data = manifest(room_dir)
    data.update(changes)
    write_manifest(target, data)
    return target


@pytest.fixture(scope="module")
def site(short_room: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("pages")
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{home / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(home / "work"), ROOMCAST_CACHE_DIR=str(home / "cache"), HF_HUB_OFFLINE="1",
               ROOMCAST_STORE=str(home / "store"), PYTHONPATH=str(REPO))
    data = manifest(short_room)
    speakers = [dict(s, name=HOSTILE_NAME) if s["id"] == "alice" else s for s in data["speakers"]]
    public = _variant(short_room, home / "rooms" / "public", title=HOSTILE_TITLE, speakers=speakers)
    private = _variant(short_room, home / "rooms" / "private", id="secret-room", visibility="private",
                       title="Secret room")
    unlisted = _variant(short_room, home / "rooms" / "unlisted", id="hidden-room", visibility="unlisted",
                        title="Hidden room")
    done = run_cli("process", str(public), "--model", "tiny.en", "--min-chapter", "5", "-q", env=env)
    assert done.returncode == 0, done.stderr
    for room in (private, unlisted):
        other = run_cli("process", str(room), "--no-transcribe", "-q", env=env)
        assert other.returncode == 0, other.stderr
    server = subprocess.Popen([sys.executable, "-m", "workers.cli", "serve", str(home / "store"), "--port", "0"],
                              stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().split(" at ")[1].split(" ")[0]
        store = home / "store"
        episode_dir = store / "shows" / SHOW / "episodes" / data["id"]
        yield {"base": base, "store": store, "env": env, "dir": episode_dir, "manifest": data,
               "summary": json.loads(done.stdout), "url": f"{base}shows/{SHOW}/episodes/{data['id']}/index.html",
               "words": json.loads((episode_dir / "words.json").read_text())["words"],
               "chapters": json.loads((episode_dir / "chapters.json").read_text())["chapters"]}
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Watched:
    """A page with every request and console error it made recorded."""

    def __init__(self, browser: Browser, *, javascript: bool = True, width: int = 1280) -> None:
        self.context = browser.new_context(java_script_enabled=javascript, viewport={"width": width, "height": 800})
        self.page: Page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, url: str) -> Page:
        self.page.goto(url)
        self.page.wait_for_selector("html[data-ready]")
        wait_until(self.page, "() => document.getElementById('player').readyState >= 1")
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture()
def watched(browser: Browser) -> Iterator[Watched]:
    page = Watched(browser)
    yield page
    page.close()


def wait_until(page: Page, predicate: str, arg: Any = None, timeout_s: float = 5.0) -> None:
    """Poll ``predicate`` (a JavaScript function of ``arg``) until it is true. Playwright's wait_for_function
    would evaluate strings, which the page's Content-Security-Policy forbids."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(predicate, arg):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s: {predicate} ({arg!r})"
        time.sleep(0.05)


def current_time(page: Page) -> float:
    return float(page.evaluate("document.getElementById('player').currentTime"))


def test_duration_chapters_and_words_seek(site: dict[str, Any], watched: Watched) -> None:
    page = watched.open(site["url"])
    replay = duration(site["dir"] / "replay.mp3")
    assert abs(page.evaluate("document.getElementById('player').duration") - replay) <= 0.3
    chapters = page.locator(".chapters a")
    assert chapters.count() == len(site["chapters"]) >= 2
    chapters.nth(2).click()
    assert abs(current_time(page) - site["chapters"][2]["startTime"]) <= 0.3
    words = page.locator(".turns .words > span")
    assert words.count() == len(site["words"])
    k = len(site["words"]) * 2 // 3
    words.nth(k).click()
    assert abs(current_time(page) - site["words"][k]["start"]) <= 0.3


@pytest.mark.parametrize("fragment, seconds", [("t=21", 21.0), ("t=0:17", 17.0), ("t=0:00:09.5", 9.5)])
def test_deep_link_opens_there(site: dict[str, Any], watched: Watched, fragment: str, seconds: float) -> None:
    page = watched.open(f"{site['url']}#{fragment}")
    wait_until(page, "(s) => Math.abs(document.getElementById('player').currentTime - s) < 0.3", seconds)
    turn_link = page.locator(".turn .time").nth(3).get_attribute("href")
    assert turn_link is not None and turn_link.startswith("#t=") and turn_link[3:].isdigit()


def test_highlight_follows_current_time(site: dict[str, Any], watched: Watched) -> None:
    page = watched.open(site["url"])
    words = site["words"]
    for k in (5, len(words) // 2, len(words) - 3):
        middle = (words[k]["start"] + words[k]["end"]) / 2
        page.evaluate(f"document.getElementById('player').currentTime = {middle}")
        wait_until(page, "(k) => document.querySelectorAll('.turns .words > span')[k].classList.contains('current')", k)
        assert page.locator(".words span.current").count() == 1
        assert page.locator(".words span.current").inner_text() == words[k]["text"].strip()


def test_search_filters_turns(site: dict[str, Any], watched: Watched) -> None:
    page = watched.open(site["url"])
    turns = page.locator(".turns .turn")
    total = turns.count()
    page.fill("#search", "microphone quiet")
    wait_until(page, "() => document.querySelector('.search-status').textContent.includes('match')")
    shown = page.locator(".turns .turn:not([hidden])")
    assert 1 <= shown.count() < total
    for n in range(shown.count()):
        text = shown.nth(n).inner_text().lower()
        assert "microphone" in text and "quiet" in text
    shown.first.locator(".words > span").first.click()
    assert abs(current_time(page) - float(shown.first.get_attribute("data-start") or -9)) <= 0.3
    page.fill("#search", "")
    wait_until(page, "(n) => document.querySelectorAll('.turns .turn:not([hidden])').length === n", total)


def test_timeline_has_one_lane_per_consenting_speaker(site: dict[str, Any], watched: Watched) -> None:
    page = watched.open(site["url"])
    speakers = site["manifest"]["speakers"]
    consenting = {s["id"] for s in speakers if s.get("consent", True)}
    declined = [s for s in speakers if s.get("consent") is False]
    assert declined
    lanes = page.locator(".timeline .lane")
    assert {lanes.nth(n).get_attribute("data-speaker") for n in range(lanes.count())} == consenting
    assert lanes.count() == len(consenting)
    for speaker in declined:
        assert speaker["name"] not in page.content() and f'data-speaker="{speaker["id"]}"' not in page.content()
    box = lanes.first.locator("svg").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    half = page.evaluate("Number(document.querySelector('main').dataset.duration)") / 2
    assert abs(current_time(page) - half) <= 0.5


def test_nothing_leaves_the_origin_and_no_console_errors(site: dict[str, Any], watched: Watched) -> None:
    page = watched.open(site["url"])
    page.locator(".chapters a").nth(1).click()
    page.fill("#search", "levels")
    page.evaluate("document.getElementById('player').currentTime = 10")
    page.wait_for_timeout(300)
    origin = urlsplit(site["base"])[:2]
    assert watched.requests and all(urlsplit(url)[:2] == origin for url in watched.requests), watched.requests
    assert any(url.endswith(".js") for url in watched.requests)
    assert not watched.errors, watched.errors
    csp = page.locator("meta[http-equiv='Content-Security-Policy']").get_attribute("content") or ""
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_axe_finds_no_serious_violation(site: dict[str, Any], watched: Watched) -> None:
    assert AXE_JS.is_file(), (f"axe-core is missing at {AXE_JS}: run `npm install --prefix .node axe-core` "
                              f"(as .ci/run does) or set ROOMCAST_AXE_JS")
    for url in (site["url"], f"{site['base']}shows/{SHOW}/index.html"):
        watched.page.goto(url)
        watched.page.evaluate(AXE_JS.read_text())  # evaluated by the driver: the page's CSP rightly refuses it
        violations = watched.page.evaluate(
            "axe.run().then(r => r.violations.map(v => ({id: v.id, impact: v.impact, "
            "html: v.nodes.map(n => n.html).slice(0, 3)})))")
        serious = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert not serious, (url, serious)


def test_phone_width_and_keyboard(site: dict[str, Any], browser: Browser) -> None:
    phone = Watched(browser, width=360)
    try:
        page = phone.open(site["url"])
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        page.locator(".chapters a").nth(1).focus()
        page.keyboard.press("Enter")
        assert abs(current_time(page) - site["chapters"][1]["startTime"]) <= 0.3
        page.locator(".turn .time").nth(2).focus()
        page.keyboard.press("Enter")
        expected = int(float(page.locator(".turn").nth(2).get_attribute("data-start") or -9))
        assert abs(current_time(page) - expected) <= 0.3
    finally:
        phone.close()


def test_without_javascript_transcript_and_chapters_are_in_the_html(site: dict[str, Any], browser: Browser) -> None:
    plain = Watched(browser, javascript=False)
    try:
        plain.page.goto(site["url"])
        text = plain.page.locator(".transcript").inner_text()
        for word in (site["words"][0], site["words"][len(site["words"]) // 2], site["words"][-1]):
            assert word["text"].strip() in text
        listed = plain.page.locator(".chapters li").all_inner_texts()
        assert len(listed) == len(site["chapters"])
        for item, chapter in zip(listed, site["chapters"], strict=True):
            assert chapter["title"] in item
        assert plain.page.locator("audio track[kind='captions']").count() == 1
        assert plain.page.locator("audio source").count() == 2
    finally:
        plain.close()


def test_hostile_text_renders_as_text(site: dict[str, Any], watched: Watched) -> None:
    page = watched.open(site["url"])
    assert page.locator("h1").inner_text() == HOSTILE_TITLE
    assert page.evaluate("window.pwned") is None
    assert page.locator("main img, main script").count() == 0
    names = page.locator(".speakers .name").all_inner_texts()
    assert HOSTILE_NAME in names
    assert HOSTILE_NAME in page.locator(".turn .speaker").all_inner_texts()
    assert HOSTILE_NAME in page.locator(".lane-name").all_inner_texts()
    ld = json.loads(page.locator("script[type='application/ld+json']").inner_text())
    assert ld["@type"] == "PodcastEpisode" and ld["name"] == HOSTILE_TITLE
    assert page.locator("meta[property='og:title']").get_attribute("content") == HOSTILE_TITLE


def test_private_page_only_under_private_path(site: dict[str, Any], watched: Watched) -> None:
    store = site["store"] / "shows" / SHOW
    private_pages = list(store.glob("private/*/episodes/secret-room/index.html"))
    assert len(private_pages) == 1 and not (store / "episodes" / "secret-room").exists()
    token = private_pages[0].parts[-4]
    public_show = (store / "index.html").read_text()
    assert "secret-room" not in public_show and token not in public_show and "Secret room" not in public_show
    assert "hidden-room" not in public_show and (store / "episodes" / "hidden-room" / "index.html").is_file()
    assert "secret-room" in (store / "private" / token / "index.html").read_text()
    page = watched.page
    page.goto(f"{site['base']}shows/{SHOW}/index.html")
    hrefs = page.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert any(h.endswith(f"episodes/{site['manifest']['id']}/index.html") for h in hrefs)
    assert not [h for h in hrefs if "secret" in h or "hidden" in h or "/private/" in h]
    page.goto(f"{site['base']}shows/{SHOW}/private/{token}/episodes/secret-room/index.html")
    assert page.locator("h1").inner_text() == "Secret room"
    assert page.locator("meta[name='robots']").get_attribute("content") == "noindex"


def test_feeds_link_to_pages(site: dict[str, Any]) -> None:
    store = site["store"] / "shows" / SHOW
    feed = feedparser.parse((store / "feed.xml").read_bytes())
    assert _path(feed.feed.link) == store / "index.html"
    episode = site["manifest"]["id"]
    assert [_path(e.link) for e in feed.entries] == [store / "episodes" / episode / "index.html"]
    private_feed = next(store.glob("private/*/feed.xml"))
    parsed = feedparser.parse(private_feed.read_bytes())
    assert _path(parsed.feed.link) == private_feed.parent / "index.html"
    assert _path(parsed.entries[0].link) == private_feed.parent / "episodes" / "secret-room" / "index.html"
    for link in (feed.feed.link, feed.entries[0].link, parsed.feed.link, parsed.entries[0].link):
        assert _path(link).is_file()


def _path(file_url: str) -> Path:
    """The file a ``file:`` link of the folder store names (feedparser may drop one of its slashes)."""
    return Path("/" + urlsplit(file_url).path.lstrip("/")) if urlsplit(file_url).netloc == "" else \
        Path("/" + urlsplit(file_url).netloc + urlsplit(file_url).path)


def test_rebuild_restores_pages_and_unpublish_removes_them(site: dict[str, Any]) -> None:
    page = site["store"] / "shows" / SHOW / "episodes" / "hidden-room" / "index.html"
    page.unlink()
    done = run_cli("feed", "rebuild", SHOW, env=site["env"])
    assert done.returncode == 0, done.stderr
    assert page.is_file() and "Hidden room" in page.read_text()
    done = run_cli("episode", "unpublish", "hidden-room", env=site["env"])
    assert done.returncode == 0, done.stderr
    assert not page.exists() and not page.with_name("replay.mp3").exists()
