"""A room announced as a ``podcast:liveItem``, then published: the live item leaves and the replay item keeps
its guid. Read with lxml, feedparser and (when installed) podcast-partytime."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from tests.feeds.test_feed_extras import PARTYTIME
from tests.roomgen import manifest

pytestmark = pytest.mark.slow
LIVE = "{https://podcastindex.org/namespace/1.0}liveItem"


def test_announced_room_becomes_its_replay(short_room: Path, tmp_path: Path) -> None:
    data = manifest(short_room)
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{tmp_path / 'c.sqlite'}",
               ROOMCAST_WORK_DIR=str(tmp_path / "work"), ROOMCAST_STORE=str(tmp_path / "store"),
               ROOMCAST_PUBLIC_URL="https://cdn.example.com")
    env.pop("ROOMCAST_SHOWS", None)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True,
                              env=env, timeout=600)
        assert done.returncode == 0, done.stderr
        return done

    cli("live", "announce", data["show"], data["id"], "--title", "Live: shipping audio",
        "--start", "2026-12-05T18:00:00+0000", "--end", "2026-12-05T19:00:00+0000",
        "--stream", "https://live.example.com/room.mp3", "--link", "https://example.com/join")
    feed_path = tmp_path / "store" / "shows" / data["show"] / "feed.xml"
    live = etree.parse(str(feed_path)).getroot().find(f"channel/{LIVE}")
    assert live is not None and live.get("status") == "pending"
    assert live.findtext("title") == "Live: shipping audio"
    assert live.find("enclosure").get("url") == "https://live.example.com/room.mp3"
    live_guid = live.findtext("guid")
    assert feedparser.parse(feed_path.read_bytes()).bozo == 0
    if shutil.which("node") and PARTYTIME.is_dir():
        script = ("const {parseFeed} = require(process.argv[1]); const fs = require('fs');"
                  "console.log(JSON.stringify(parseFeed(fs.readFileSync(process.argv[2], 'utf8'))))")
        out = subprocess.run(["node", "-e", script, str(PARTYTIME), str(feed_path)], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        parsed = json.loads(out.splitlines()[-1])  # partytime may log lines of its own first
        [item] = parsed["podcastLiveItems"]
        assert item["status"] == "pending" and item["guid"] == live_guid
        assert item["contentLinks"][0]["url"] == "https://example.com/join"

    cli("process", str(short_room), "--no-transcribe", "-q")
    root = etree.parse(str(feed_path)).getroot()
    assert root.find(f"channel/{LIVE}") is None
    assert [i.findtext("guid") for i in root.findall("channel/item")] == [live_guid]
