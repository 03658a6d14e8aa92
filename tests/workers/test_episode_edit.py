"""Editing a published episode in place, against the real pipeline (Whisper tiny.en, ffmpeg) and a real S3
server: a speaker removed, a span cut, a word bleeped, bad edits refused, the server stopped mid-edit, and a
podcast client subscribed before the edits."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import feedparser
import numpy as np
import pytest
from mutagen.id3 import ID3

from pipeline.edits import EditRequest, Span
from pipeline.errors import InvalidEdit, StorageError
from storage import edit_log
from storage.s3 import S3Store
from tests.roomgen import duration, truth
from tests.s3servers import WeedServer
from workers.config import Settings
from workers.context import Context
from workers.edit import edit_episode, render_state
from workers.progress import listening
from workers.runner import process_room

pytestmark = [pytest.mark.s3, pytest.mark.slow, pytest.mark.model]
EPISODE = "short-room-2026-11-20"
PREFIX = f"shows/founders-hour/episodes/{EPISODE}/"
TEXTS = ("transcript.json", "transcript.vtt", "transcript.srt", "transcript.txt", "words.json", "chapters.json")
RATE = 44_100


def _decode(data: bytes, tmp: Path) -> np.ndarray:
    path = tmp / f"decoded-{hashlib.md5(data).hexdigest()}.mp3"
    path.write_bytes(data)
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(RATE),
                          "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


def _packets(data: bytes, fmt: str, tmp: Path) -> str:
    """A digest of the file's audio packets as stored (ffmpeg's md5 muxer on a stream copy): equal digests mean
    the same encoded audio whatever the tags around it."""
    path = tmp / f"packets-{hashlib.md5(data).hexdigest()}.{fmt}"
    path.write_bytes(data)
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-c", "copy", "-f", "md5",
                           "-"], capture_output=True, text=True, check=True).stdout.strip()


def _ffprobe_tags(data: bytes, tmp: Path) -> dict[str, Any]:
    path = tmp / f"probe-{hashlib.md5(data).hexdigest()}.m4a"
    path.write_bytes(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_chapters", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def _dbfs(samples: np.ndarray) -> float:
    return float(20 * np.log10(max(1e-10, float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))))))


def _words(store: Any) -> list[dict[str, Any]]:
    return list(json.loads(store.get_bytes(PREFIX + "words.json"))["words"])


def _snapshot(store: Any) -> dict[str, str]:
    return {o.key: o.md5 for o in store.list("")}


@pytest.fixture()
def server(tmp_path: Path) -> Any:
    server = WeedServer(tmp_path / "weed")
    server.start()
    saved = {key: os.environ.get(key) for key in server.env}
    os.environ.update(server.env)
    try:
        server.create_bucket("rc-edit")
        yield server
    finally:
        server.stop()
        for key, value in saved.items():  # the session's S3 server is the one other tests expect
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _retrying(call: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:  # a restarted server may answer 5xx for a moment
        try:
            return call()
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_edits_after_publish(short_room: Path, server: WeedServer, tmp_path: Path) -> None:
    settings = Settings(store="s3://rc-edit", database_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                        work_dir=tmp_path / "work", cache_dir=tmp_path / "cache", min_chapter_s=5.0)
    process_room(settings, short_room, processes=2)
    ctx = Context.of(settings)
    store, catalog = ctx.store, ctx.catalog
    assert isinstance(store, S3Store)
    feed_url = store.url("shows/founders-hour/feed.xml")
    guid = feedparser.parse(store.get_bytes("shows/founders-hour/feed.xml")).entries[0].id
    basis = edit_log.get_basis(catalog, EPISODE)
    assert basis is not None and basis["transcript"]["segments"] and basis["analyses"]
    shift = float(basis["plan"]["trim_start"])
    zoe_turns = [Span(t["start"] - shift, t["end"] - shift) for t in truth(short_room)["turns"]
                 if t["speaker"] == "zoe"]
    others = [Span(t["start"] - shift, t["end"] - shift) for t in truth(short_room)["turns"] if t["speaker"] != "zoe"]
    original = _snapshot(store)
    old_audio = {original[PREFIX + "replay.mp3"], original[PREFIX + "replay.m4a"]}
    assert any(w["speaker"] == "zoe" for w in _words(store))

    env = {**os.environ, "GPODDER_HOME": str(tmp_path / "gpodder"), "GPODDER_DOWNLOAD_DIR": str(tmp_path / "dl")}

    def gpo(*args: str) -> str:
        done = subprocess.run(["gpo", *args], env=env, capture_output=True, text=True, timeout=180, check=True)
        return done.stdout + done.stderr

    assert "Successfully added" in gpo("subscribe", feed_url)  # subscribed before any edit

    # bad edits fail clearly and change nothing
    for bad, message in ((EditRequest(remove_speakers=("nobody",)), "unknown speaker 'nobody'"),
                         (EditRequest(remove_speakers=("dave",)), "unknown speaker 'dave'"),
                         (EditRequest(cuts=(Span(5.0, 9999.0),)), "outside the replay"),
                         (EditRequest(cuts=(Span(2.0, 6.0), Span(5.0, 8.0))), "overlap")):
        with pytest.raises(InvalidEdit, match=message):
            edit_episode(settings, EPISODE, bad, by="tester")
    assert _snapshot(store) == original and edit_log.edits(catalog, EPISODE) == []

    # 1. consent withdrawn: the S3 server stops while the replay is re-encoded; nothing of the old version changes
    def stop_when_encoding(episode: str, stage: str, fraction: float | None) -> None:
        if stage == "mixing and encoding" and episode == EPISODE:
            server.stop()

    remove = EditRequest(remove_speakers=("zoe",))
    with listening(stop_when_encoding), pytest.raises(StorageError):
        edit_episode(settings, EPISODE, remove, by="moderator")
    server.start()
    assert _retrying(lambda: _snapshot(store)) == original
    assert [e.status for e in edit_log.edits(catalog, EPISODE)] == ["failed"]
    summary = _retrying(lambda: edit_episode(settings, EPISODE, remove, by="moderator"))  # finishes it
    assert summary["guid"] == guid and summary["encoded"]
    assert [e.status for e in edit_log.edits(catalog, EPISODE)] == ["done"]

    replay = store.get_bytes(PREFIX + "replay.mp3")
    audio = _decode(replay, tmp_path)
    alone = [t for t in zoe_turns if not any(t.overlaps(o) for o in others)]
    assert alone
    for turn in alone:
        level = _dbfs(audio[int((turn.start + 0.3) * RATE):int((turn.end - 0.3) * RATE)])
        assert level < -50.0, f"zoe's turn {turn} is at {level:.1f} dBFS"
    for name in TEXTS:
        text = store.get_bytes(PREFIX + name).decode()
        assert "Brien" not in text and '"zoe"' not in text, name
    page = store.get_bytes(PREFIX + "index.html").decode()  # the episode page: no name, no lane, no turn
    assert "Brien" not in page and "Alice Martin" in page
    assert "Brien" not in store.get_bytes("shows/founders-hour/index.html").decode()
    feed_xml = store.get_bytes("shows/founders-hour/feed.xml").decode()
    assert "Brien" not in feed_xml
    feed = feedparser.parse(feed_xml)
    assert len(feed.entries) == 1 and feed.entries[0].id == guid
    assert int(feed.entries[0].enclosures[0].length) == len(replay)
    heads = store.client.head_object(Bucket="rc-edit", Key=PREFIX + "replay.mp3")
    assert heads["CacheControl"] == "public, max-age=300"

    # gPodder, subscribed before, gets the new file
    gpo("update")
    gpo("download")
    downloaded = [p.read_bytes() for p in (tmp_path / "dl").rglob("*.mp3")]
    assert downloaded == [replay]

    # 2. a cut: the replay shortens by the span, later words and chapters move earlier by it
    words_before = _words(store)
    chapters_before = json.loads(store.get_bytes(PREFIX + "chapters.json"))["chapters"]
    local = tmp_path / "before.mp3"
    local.write_bytes(replay)
    length_before = duration(local)
    cut = Span(4.0, 7.5)
    edit_episode(settings, EPISODE, EditRequest(cuts=(cut,)), by="moderator")
    replay = store.get_bytes(PREFIX + "replay.mp3")
    local.write_bytes(replay)
    assert abs(duration(local) - (length_before - cut.duration)) <= 0.02
    later = [(w["start"], w["text"]) for w in words_before if w["start"] >= cut.end]
    assert later and [(round(s - cut.duration, 3), t) for s, t in later] == \
        [(w["start"], w["text"]) for w in _words(store) if w["start"] >= cut.start]
    chapters = json.loads(store.get_bytes(PREFIX + "chapters.json"))["chapters"]
    moved = [round(c["startTime"] - cut.duration, 3) for c in chapters_before if c["startTime"] >= cut.end]
    assert moved == [c["startTime"] for c in chapters if c["startTime"] >= cut.start]
    feed = feedparser.parse(store.get_bytes("shows/founders-hour/feed.xml"))
    assert len(feed.entries) == 1 and feed.entries[0].id == guid
    assert int(feed.entries[0].enclosures[0].length) == len(replay)
    seconds = [int(p) for p in feed.entries[0].itunes_duration.split(":")]
    assert abs(sum(v * 60 ** i for i, v in enumerate(reversed(seconds))) - duration(local)) <= 1.0

    # 3. a bleep: the word is gone from every text, and a tone is in its place in the audio
    target = next(w for w in _words(store) if re.sub(r"\W", "", w["text"]).lower() == "mixing")
    edit_episode(settings, EPISODE, EditRequest(bleep_words=("MIXING!",)), by="moderator")
    for name in TEXTS[:-1]:
        text = store.get_bytes(PREFIX + name).decode().lower()
        assert "mixing" not in text, name
    assert "[bleep]" in store.get_bytes(PREFIX + "transcript.vtt").decode()
    audio = _decode(store.get_bytes(PREFIX + "replay.mp3"), tmp_path)
    span = audio[int((target["start"] + 0.05) * RATE):int((target["end"] - 0.05) * RATE)]
    spectrum = np.abs(np.fft.rfft(span * np.hanning(span.size)))
    peak_hz = float(np.argmax(spectrum) * RATE / span.size)
    assert abs(peak_hz - 1000.0) < 20 and spectrum.max() > 20 * np.median(spectrum)

    # no copy of the old audio anywhere in the store; one set of objects for the episode
    final = _snapshot(store)
    assert not old_audio & set(final.values())
    assert sorted(k for k in final if k.startswith(f"shows/founders-hour/episodes/{EPISODE}/")) == \
        sorted(k for k in original if k.startswith(f"shows/founders-hour/episodes/{EPISODE}/"))

    # the audit trail, and the recorded edits reproduce the published texts
    history = edit_log.edits(catalog, EPISODE)
    assert [(e.status, e.by) for e in history] == [("done", "moderator")] * 3
    assert history[0].hash_before == basis["input_hash"]
    assert [e.hash_before for e in history[1:]] == [e.hash_after for e in history[:-1]]
    from pipeline.edits import resolve

    state = resolve(float(basis["duration"]), basis["speakers"],
                    [EditRequest.from_dict(e.request) for e in history], "again")
    again = tmp_path / "again"
    again.mkdir()
    from pipeline.manifest import load_room

    rendered = render_state(settings, ctx, load_room(short_room), basis, state, again, cover=None, audio=False,
                            replays={})
    for name in TEXTS:
        assert rendered.files[name].read_bytes() == store.get_bytes(PREFIX + name), name


def test_the_command_line_edits_records_and_refuses(short_room: Path, tmp_path: Path) -> None:
    """``roomcast episode edit`` and ``history`` as a real subprocess, on a folder store: a metadata edit encodes
    nothing, a bad edit exits non-zero naming the problem and changes nothing."""
    import sys

    from storage.objects import LocalStore

    env = dict(os.environ, ROOMCAST_DATABASE_URL=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
               ROOMCAST_WORK_DIR=str(tmp_path / "work"), ROOMCAST_STORE=str(tmp_path / "store"),
               ROOMCAST_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workers.cli", *args], capture_output=True, text=True,
                              env=env, timeout=600)

    assert cli("process", str(short_room), "--no-transcribe", "-q").returncode == 0
    store = LocalStore(tmp_path / "store")
    before = _snapshot(store)
    replays = {f: store.get_bytes(PREFIX + f"replay.{f}") for f in ("mp3", "m4a")}
    bad = cli("episode", "edit", EPISODE, "--remove-speaker", "nobody")
    assert bad.returncode != 0 and "unknown speaker 'nobody'" in bad.stderr
    bad = cli("episode", "edit", EPISODE, "--cut", "0:00:05-0:00:10", "--cut", "8-12")
    assert bad.returncode != 0 and "overlap" in bad.stderr
    assert _snapshot(store) == before

    done = cli("episode", "edit", EPISODE, "--title", "Levels, corrected", "--speaker-name", "alice=Alice M.",
               "--by", "editor")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["encoded"] is False
    # no encoding: the replays' audio packets are the published ones, their tags and chapters the edited ones
    for fmt, published in replays.items():
        edited = store.get_bytes(PREFIX + f"replay.{fmt}")
        assert edited != published
        assert _packets(edited, fmt, tmp_path) == _packets(published, fmt, tmp_path), fmt
    tags = ID3(io.BytesIO(store.get_bytes(PREFIX + "replay.mp3")))
    assert str(tags["TIT2"]) == "Levels, corrected"
    feed = feedparser.parse(store.get_bytes("shows/founders-hour/feed.xml"))
    assert str(tags["TALB"]) == feed.feed.title == str(ID3(io.BytesIO(replays["mp3"]))["TALB"])  # the show's title
    assert "Alice M." in str(tags["TPE1"])
    chapter_titles = [str(c.sub_frames["TIT2"]) for c in tags.getall("CHAP")]
    assert chapter_titles and any("Alice M." in t for t in chapter_titles), chapter_titles
    m4a = _ffprobe_tags(store.get_bytes(PREFIX + "replay.m4a"), tmp_path)
    assert m4a["format"]["tags"]["title"] == "Levels, corrected"
    assert any("Alice M." in c["tags"]["title"] for c in m4a["chapters"])
    assert [e.title for e in feed.entries] == ["Levels, corrected"]
    assert '"title": "Alice M.' in store.get_bytes(PREFIX + "chapters.json").decode()

    done = cli("episode", "edit", EPISODE, "--cut", "0:00:02-0:00:03.5")
    assert done.returncode == 0, done.stderr
    history = cli("episode", "history", EPISODE)
    lines = history.stdout.splitlines()
    assert history.returncode == 0 and len(lines) == 2
    assert "by editor [done]" in lines[0] and "title 'Levels, corrected'" in lines[0]
    assert "[done] cut 0:00:02.000-0:00:03.500" in lines[1]


def test_processing_the_room_again_keeps_its_edits(short_room: Path, tmp_path: Path) -> None:
    """A room processed again (its inputs changed) is published with its recorded edits: a removed speaker stays
    removed, a cut stays cut, a corrected title stays corrected; its private episode stays private."""
    import shutil

    from tests.roomgen import manifest, write_manifest

    room = tmp_path / short_room.name
    shutil.copytree(short_room, room)
    data = manifest(room)
    data["visibility"] = "private"
    write_manifest(room, data)
    settings = Settings(store=str(tmp_path / "store"), database_url=f"sqlite:///{tmp_path / 'catalog.sqlite'}",
                        work_dir=tmp_path / "work", cache_dir=tmp_path / "cache", transcribe=False)
    process_room(settings, room, processes=2)
    ctx = Context.of(settings)
    token = ctx.catalog.get_show("founders-hour").private_token
    private = f"shows/founders-hour/private/{token}/"
    edit_episode(settings, EPISODE, EditRequest(remove_speakers=("zoe",), cuts=(Span(1.0, 3.0),),
                                                title="Corrected"), by="editor")
    edited = {o.key: o.md5 for o in ctx.store.list(private)}
    replay_key = private + f"episodes/{EPISODE}/replay.mp3"
    edited_audio = _decode(ctx.store.get_bytes(replay_key), tmp_path)
    assert "Brien" not in ctx.store.get_bytes(private + "feed.xml").decode()
    assert not any(k.startswith(PREFIX) for k in _snapshot(ctx.store))  # nothing under the public path
    assert [e.title for e in feedparser.parse(ctx.store.get_bytes("shows/founders-hour/feed.xml")).entries] == []

    data["description"] = "Described again."
    write_manifest(room, data)
    process_room(settings, room, processes=2)
    feed_xml = ctx.store.get_bytes(private + "feed.xml").decode()
    assert "Brien" not in feed_xml and "Corrected" in feed_xml
    again = {o.key: o.md5 for o in ctx.store.list(private)}
    assert sorted(again) == sorted(edited)
    audio = _decode(ctx.store.get_bytes(replay_key), tmp_path)  # the same audio (its tags hold the description)
    assert audio.size == edited_audio.size and np.abs(audio - edited_audio).max() < 1e-3
    assert not any(k.startswith(PREFIX) for k in _snapshot(ctx.store))
