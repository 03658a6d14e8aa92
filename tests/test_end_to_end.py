"""The whole chain on a generated room, through the real CLI, checked against the room's ground truth with
independent meters and parsers (pyloudnorm, ffmpeg's ebur128, feedparser, webvtt-py, mutagen)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import feedparser
import jiwer
import numpy as np
import pyloudnorm
import pytest
import webvtt
from mutagen.id3 import ID3
from mutagen.mp4 import MP4

from feeds.shows import title_from_id
from tests.roomgen import duration, ebur128, truth

pytestmark = [pytest.mark.slow, pytest.mark.model]

TARGET_LUFS = -19.0


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True, env=env,
                          timeout=1800)


@pytest.fixture(scope="module")
def published(sample_room: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("e2e")
    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{home / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(home / "work"), ROOMCAST_CACHE_DIR=str(home / "cache"),
               HF_HUB_OFFLINE="1", ROOMCAST_PUBLIC_URL="https://cdn.example.com/podcasts")
    done = run_cli("process", str(sample_room), "--out", str(home / "store"), "--model", "tiny.en", "-q", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    manifest = json.loads((sample_room / "room.json").read_text())
    episode_dir = home / "store" / "shows" / manifest["show"] / "episodes" / manifest["id"]
    return {"summary": summary, "store": home / "store", "dir": episode_dir, "manifest": manifest,
            "truth": truth(sample_room), "env": env, "home": home}


def _decode(path: Path, rate: int = 44_100) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32).astype(np.float64)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def _consenting_turns(t: dict[str, Any]) -> list[dict[str, Any]]:
    return [turn for turn in t["turns"] if turn.get("consent", True)]


def test_layout(published: dict[str, Any]) -> None:
    names = {p.name for p in published["dir"].iterdir()}
    assert {"replay.mp3", "replay.m4a", "transcript.json", "transcript.vtt", "transcript.srt", "transcript.txt",
            "chapters.json"} <= names
    assert (published["store"] / "shows" / published["manifest"]["show"] / "feed.xml").is_file()


@pytest.mark.parametrize("name", ["replay.mp3", "replay.m4a"])
def test_loudness_and_true_peak(published: dict[str, Any], name: str) -> None:
    path = published["dir"] / name
    meter = pyloudnorm.Meter(44_100)
    loudness = meter.integrated_loudness(_decode(path))
    assert abs(loudness - TARGET_LUFS) <= 1.0, loudness
    report = ebur128(path)
    assert report["true_peak"] <= -1.0, report
    assert abs(report["integrated"] - TARGET_LUFS) <= 1.0, report


def test_quiet_and_loud_speakers_are_levelled(published: dict[str, Any]) -> None:
    audio = _decode(published["dir"] / "replay.mp3")
    shift = published["summary"]["trim_start_s"]
    meter = pyloudnorm.Meter(44_100)
    turns = _consenting_turns(published["truth"])
    per_speaker: dict[str, list[np.ndarray]] = {}
    for turn in turns:
        others = [o for o in turns if o is not turn and o["start"] < turn["end"] and o["end"] > turn["start"]]
        if others or turn["end"] - turn["start"] < 1.0:
            continue  # overlapping or tiny turns do not show one speaker's level
        a, b = int((turn["start"] - shift) * 44_100), int((turn["end"] - shift) * 44_100)
        per_speaker.setdefault(turn["speaker"], []).append(audio[max(0, a):b])
    levels = {s: meter.integrated_loudness(np.concatenate(chunks)) for s, chunks in per_speaker.items()}
    assert len(levels) >= 3, levels
    assert max(levels.values()) - min(levels.values()) <= 3.0, levels


def _transcript_words(published: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads((published["dir"] / "words.json").read_text())["words"]


def test_word_error_rate(published: dict[str, Any]) -> None:
    reference = _words(" ".join(t["text"] for t in sorted(_consenting_turns(published["truth"]),
                                                          key=lambda t: t["start"])))
    hypothesis = _words(" ".join(w["text"] for w in _transcript_words(published)))
    wer = jiwer.wer(reference, hypothesis)
    print(f"WER {wer:.3f}")
    assert wer <= 0.15, (wer, hypothesis)


def test_speaker_attribution(published: dict[str, Any]) -> None:
    shift = published["summary"]["trim_start_s"]
    turns = _consenting_turns(published["truth"])
    words = _transcript_words(published)
    right = 0
    for word in words:
        middle = (word["start"] + word["end"]) / 2 + shift
        near = [t for t in turns if t["start"] - 0.5 <= middle <= t["end"] + 0.5]
        right += any(t["speaker"] == word["speaker"] for t in near)
    accuracy = right / len(words)
    print(f"attribution {accuracy:.3f} over {len(words)} words")
    assert accuracy >= 0.95


def test_chapters_start_on_turns(published: dict[str, Any]) -> None:
    shift = published["summary"]["trim_start_s"]
    chapters = json.loads((published["dir"] / "chapters.json").read_text())
    assert chapters["version"] == "1.2.0" and len(chapters["chapters"]) >= 2
    starts = [t["start"] - shift for t in _consenting_turns(published["truth"])]
    for chapter in chapters["chapters"][1:]:
        assert min(abs(chapter["startTime"] - s) for s in starts) <= 2.0, chapter
    tags = ID3(published["dir"] / "replay.mp3")
    assert len(tags.getall("CHAP")) == len(chapters["chapters"]) and tags.getall("CTOC")
    assert len(MP4(published["dir"] / "replay.m4a").chapters or []) == len(chapters["chapters"])


def test_tags_and_cover_art(published: dict[str, Any]) -> None:
    manifest = published["manifest"]
    tags = ID3(published["dir"] / "replay.mp3")
    assert tags.version[:2] == (2, 3)
    assert tags["TIT2"].text[0] == manifest["title"]
    assert tags["TALB"].text[0] == title_from_id(manifest["show"])  # the show's title (no shows.toml here)
    assert [c.text[0] for c in tags.getall("COMM")] == ([manifest["description"]] if manifest.get("description")
                                                        else [])
    assert str(tags["TDRC"].text[0]).startswith(manifest["recorded_at"][:10])
    consenting = [s["name"] for s in manifest["speakers"] if s.get("consent", True)]
    assert tags["TPE1"].text[0] == ", ".join(consenting)
    cover = tags.getall("APIC")
    assert cover and cover[0].data[:3] == b"\xff\xd8\xff"
    m4a = MP4(published["dir"] / "replay.m4a")
    assert m4a.tags["\xa9nam"] == [manifest["title"]] and m4a.tags["covr"]


def test_feed(published: dict[str, Any]) -> None:
    feed_path = published["store"] / "shows" / published["manifest"]["show"] / "feed.xml"
    parsed = feedparser.parse(feed_path.read_bytes())
    assert not parsed.bozo, parsed.bozo_exception
    assert len(parsed.entries) == 1
    entry = parsed.entries[0]
    assert entry.title == published["manifest"]["title"]
    enclosure = entry.enclosures[0]
    replay = published["dir"] / "replay.mp3"
    assert int(enclosure.length) == replay.stat().st_size
    assert enclosure.href.startswith("https://cdn.example.com/podcasts/shows/")
    assert abs(int(entry.itunes_duration) - duration(replay)) <= 1.0
    # a soundbite chosen from the transcript, inside the replay
    from lxml import etree

    bites = etree.parse(str(feed_path)).findall(".//{https://podcastindex.org/namespace/1.0}soundbite")
    assert len(bites) == 1
    start, length = float(bites[0].get("startTime")), float(bites[0].get("duration"))
    assert 15.0 <= length <= 60.0 and 0.0 <= start and start + length <= duration(replay) + 0.5


def test_vtt_parses_with_voices(published: dict[str, Any]) -> None:
    captions = webvtt.read(str(published["dir"] / "transcript.vtt"))
    assert len(captions) > 5
    consenting = {s["name"] for s in published["manifest"]["speakers"] if s.get("consent", True)}
    voices = set(re.findall(r"<v ([^>]+)>", (published["dir"] / "transcript.vtt").read_text()))
    unescaped = {v.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">") for v in voices}
    assert unescaped and unescaped <= consenting


def test_declined_speaker_is_absent_everywhere(published: dict[str, Any]) -> None:
    declined = [s for s in published["manifest"]["speakers"] if s.get("consent") is False]
    assert declined
    texts = [p.read_text() for p in published["dir"].iterdir() if p.suffix in (".json", ".vtt", ".srt", ".txt")]
    texts.append((published["store"] / "shows" / published["manifest"]["show"] / "feed.xml").read_text())
    for speaker in declined:
        for text in texts:
            assert speaker["name"] not in text and f'"{speaker["id"]}"' not in text
    # Their audio is gone too: the replay is (near) silent while only they speak.
    shift = published["summary"]["trim_start_s"]
    audio = _decode(published["dir"] / "replay.mp3")
    turns = published["truth"]["turns"]
    for turn in turns:
        if turn.get("consent", True) or turn["end"] - turn["start"] < 1.0:
            continue
        if any(o.get("consent", True) and o["start"] < turn["end"] and o["end"] > turn["start"] for o in turns):
            continue
        a, b = int((turn["start"] - shift) * 44_100), int((turn["end"] - shift) * 44_100)
        if a < 0 or b > audio.size:
            continue
        rms_db = 20 * np.log10(np.sqrt(np.mean(audio[a:b] ** 2)) + 1e-12)
        assert rms_db < -50, (turn, rms_db)
