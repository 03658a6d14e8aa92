"""Replay first (``--replay-first``, on by default for workers): the replay and its feed item are published as
soon as the mix is made, the transcripts in a second publish of the same episode. Real pipeline (ffmpeg, Whisper
tiny.en), a folder store, the feed read with feedparser at the moment the first publish is out."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
from pathlib import Path
from typing import Any

import feedparser
import pytest

from pipeline.errors import RoomcastError
from workers.config import Settings
from workers.context import Context
from workers.progress import listening
from workers.runner import process_room

pytestmark = [pytest.mark.slow, pytest.mark.model]
SHOW = "founders-hour"
EPISODE = "short-room-2026-11-20"
TRANSCRIPTS = ("transcript.json", "transcript.vtt", "transcript.srt", "transcript.txt", "words.json")


def _settings(home: Path, **changes: Any) -> Settings:
    return Settings(store=str(home / "store"), database_url=f"sqlite:///{home / 'catalog.sqlite'}",
                    work_dir=home / "work", cache_dir=home / "cache", min_chapter_s=5.0, replay_first=True,
                    **changes)


def _episode(home: Path) -> Path:
    return home / "store" / "shows" / SHOW / "episodes" / EPISODE


def _feed(home: Path) -> feedparser.FeedParserDict:
    return feedparser.parse((home / "store" / "shows" / SHOW / "feed.xml").read_bytes())


def _packets(path: Path) -> str:
    """A digest of the file's encoded audio as stored (the same digest: the same audio, whatever its tags)."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-c", "copy", "-f", "md5", "-"],
                          capture_output=True, text=True, check=True).stdout.strip()


class FirstPublish:
    """What the store and the feed hold when the replay phase has published (seen from the progress hook)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.seen: tuple[Any, ...] | None = None
        self.priorities: list[int] = []  # of this process's pool processes, as the replay came out

    def __call__(self, episode: str, stage: str, fraction: float | None) -> None:
        if self.seen is None and episode == EPISODE and stage.startswith("replay published"):
            folder = _episode(self.home)
            replay = (folder / "replay.mp3").read_bytes()
            copy = self.home / "first-replay.mp3"
            copy.write_bytes(replay)
            raw = (self.home / "store" / "shows" / SHOW / "feed.xml").read_text(encoding="utf-8")
            self.seen = (_feed(self.home), raw, sorted(p.name for p in folder.iterdir()), len(replay),
                         _packets(copy), (folder / "index.html").read_text(encoding="utf-8"))
            self.priorities = [os.getpriority(os.PRIO_PROCESS, p.pid) for p in multiprocessing.active_children()
                               if p.pid is not None]


@pytest.mark.parametrize("processes", [1, 2], ids=["canvas", "pool"])
def test_the_replay_is_published_first_then_the_same_item_with_its_transcripts(short_room: Path, tmp_path: Path,
                                                                              processes: int) -> None:
    settings = _settings(tmp_path)
    first = FirstPublish(tmp_path)
    with listening(first):
        summary = process_room(settings, short_room, processes=processes)
    assert summary["status"] == "published" and summary["words"] > 50
    assert first.seen is not None, "the replay was never published on its own"
    feed, raw, names, length, packets, page = first.seen

    # the first publish: the replay, chapters from speaker turns, the page and one item, no transcript anywhere
    assert len(feed.entries) == 1 and int(feed.entries[0].enclosures[0].length) == length
    assert "podcast:transcript" not in raw
    assert {"replay.mp3", "replay.m4a", "chapters.json", "index.html"} <= set(names)
    assert not set(TRANSCRIPTS) & set(names)
    assert "Welcome</span>" not in page
    if processes > 1:  # the pool was transcribing, at a lower priority, while the replay was mixed and published
        assert first.priorities and max(first.priorities) >= os.getpriority(os.PRIO_PROCESS, 0) + 10

    # the second: the same item (guid), its transcripts, the same audio re-tagged (not encoded again)
    final = _feed(tmp_path)
    assert len(final.entries) == 1 and final.entries[0].id == feed.entries[0].id
    final_raw = (tmp_path / "store" / "shows" / SHOW / "feed.xml").read_text(encoding="utf-8")
    assert final_raw.count("<podcast:transcript") >= 3
    folder = _episode(tmp_path)
    assert all((folder / name).is_file() for name in TRANSCRIPTS)
    assert int(final.entries[0].enclosures[0].length) == (folder / "replay.mp3").stat().st_size
    assert _packets(folder / "replay.mp3") == packets
    assert "Welcome</span>" in (folder / "index.html").read_text(encoding="utf-8")
    catalog = Context.of(settings).catalog
    assert [j.status for j in catalog.jobs(EPISODE)] == ["done"]
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file() and "work" in p.parts]  # results gone
    assert not list((tmp_path / "work").rglob("*.f32*"))  # no decode kept for the words phase is left behind


def test_a_failed_second_publish_leaves_the_first_and_a_rerun_finishes(short_room: Path, tmp_path: Path) -> None:
    """The words phase fails for real (its Whisper model folder does not exist): the replay stays published,
    whole, in one feed item, the error recorded beside it, and no decode of a track is left on this machine; the
    run again with a model finishes the episode."""
    broken = _settings(tmp_path, model=str(tmp_path / "no-such-model"))
    first = FirstPublish(tmp_path)
    with listening(first), pytest.raises(RoomcastError, match="no-such-model"):
        process_room(broken, short_room, processes=2)
    assert first.seen is not None
    feed, _raw, names, length, packets, _page = first.seen
    folder = _episode(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == names  # nothing of a second publish
    assert (folder / "replay.mp3").stat().st_size == length and _packets(folder / "replay.mp3") == packets
    after = _feed(tmp_path)
    assert [e.id for e in after.entries] == [feed.entries[0].id]
    episode = Context.of(broken).catalog.get_episode(EPISODE)
    assert episode is not None and episode.status == "published" and "no-such-model" in episode.error
    assert {a.name for a in episode.assets} >= {"replay.mp3", "chapters.json"}
    assert all(a.name not in TRANSCRIPTS for a in episode.assets)
    assert not list((tmp_path / "work").rglob("*.f32*"))  # nor the decodes the replay phase kept for the words

    summary = process_room(_settings(tmp_path), short_room, processes=2)
    assert summary["status"] == "published" and summary["words"] > 50
    final = _feed(tmp_path)
    assert [e.id for e in final.entries] == [feed.entries[0].id]
    assert all((folder / name).is_file() for name in TRANSCRIPTS)
    episode = Context.of(broken).catalog.get_episode(EPISODE)
    assert episode is not None and episode.status == "published" and not episode.error
    assert hashlib.md5((folder / "replay.mp3").read_bytes()).hexdigest() == next(
        a.md5 for a in episode.assets if a.name == "replay.mp3")
