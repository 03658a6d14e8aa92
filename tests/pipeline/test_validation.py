"""One test per validation rule of the room manifest: each breaks a copy of the short sample room in one way and
checks that ``load_room`` raises ``InvalidRoom`` with a problem naming the room and the file concerned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import InvalidRoom
from pipeline.manifest import load_room, validate_room
from tests.roomgen import manifest, write_manifest

ROOM_ID = "short-room-2026-11-20"
Copy = Callable[[Path], Path]


@pytest.fixture
def room(short_room: Path, room_copy: Copy) -> Path:
    return room_copy(short_room)


def edit(room: Path, change: Callable[[dict[str, Any]], object]) -> None:
    data = manifest(room)
    change(data)
    write_manifest(room, data)


def problems(room: Path) -> list[str]:
    with pytest.raises(InvalidRoom) as caught:
        load_room(room)
    assert caught.value.room == ROOM_ID
    assert str(caught.value).startswith(f"room {ROOM_ID!r} is invalid")
    assert list(caught.value.problems) == validate_room(room)
    return list(caught.value.problems)


def assert_problem(room: Path, file: str, *words: str) -> str:
    """Exactly the problems of ``room`` include one that names the room and ``file`` and says ``words``."""
    found = problems(room)
    prefix = f"room {ROOM_ID!r}: {file}: "
    matching = [p for p in found if p.startswith(prefix) and all(w in p for w in words)]
    assert matching, f"no problem starting {prefix!r} with {words} in {found}"
    return matching[0]


def test_the_untouched_copy_is_valid(room: Path) -> None:
    assert validate_room(room) == []
    assert load_room(room).id == ROOM_ID


def test_malformed_json_names_line_and_column(room: Path) -> None:
    lines = (room / "room.json").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].rstrip(",") + ",,"  # a stray comma at the end of line 3
    write_manifest(room, "\n".join(lines))
    message = assert_problem(room, "room.json", "malformed JSON", "line 3, column")
    assert f"column {len(lines[2])}" in message


def test_missing_manifest(room: Path) -> None:
    (room / "room.json").unlink()
    assert_problem(room, "room.json", "missing")


def test_manifest_that_is_not_an_object(room: Path) -> None:
    write_manifest(room, "[1, 2, 3]")
    assert_problem(room, "room.json", "JSON object")


@pytest.mark.parametrize("key", ["id", "show", "title", "speakers", "tracks"])
def test_missing_required_room_field(room: Path, key: str) -> None:
    edit(room, lambda data: data.pop(key))
    assert_problem(room, "room.json", f"missing required field {key!r}")


@pytest.mark.parametrize("key", ["file", "start", "speaker"])
def test_missing_required_track_field(room: Path, key: str) -> None:
    edit(room, lambda data: data["tracks"][1].pop(key))
    assert_problem(room, "room.json", "tracks[1]", f"missing required field {key!r}")


def test_unknown_speaker_id(room: Path) -> None:
    edit(room, lambda data: data["tracks"][0].update(speaker="mallory"))
    assert_problem(room, "room.json", "tracks[0]", "unknown speaker id 'mallory'")


def test_duplicate_speaker_id(room: Path) -> None:
    edit(room, lambda data: data["speakers"].append({"id": "zoe", "name": "Another Zoë"}))
    assert_problem(room, "room.json", "speakers[3]", "duplicate speaker id 'zoe'")


def test_missing_track_file(room: Path) -> None:
    (room / "tracks" / "zoe.flac").unlink()
    assert_problem(room, "tracks/zoe.flac", "missing")


def test_empty_track_file(room: Path) -> None:
    (room / "tracks" / "zoe.flac").write_bytes(b"")
    assert_problem(room, "tracks/zoe.flac", "empty (0 bytes)")


def test_text_renamed_to_wav(room: Path) -> None:
    (room / "tracks" / "notes.wav").write_text("These are my notes, not a recording.\n" * 50, encoding="utf-8")
    edit(room, lambda data: data["tracks"][1].update(file="tracks/notes.wav"))
    assert_problem(room, "tracks/notes.wav", "not decodable audio")


def test_truncated_mp3_whose_header_claims_the_full_length(room: Path) -> None:
    track = room / "tracks" / "dave.mp3"
    data = track.read_bytes()
    track.write_bytes(data[: len(data) // 3])
    assert_problem(room, "tracks/dave.mp3", "truncated")


def test_truncated_flac(room: Path) -> None:
    track = room / "tracks" / "zoe.flac"
    data = track.read_bytes()
    track.write_bytes(data[: len(data) // 2])
    assert_problem(room, "tracks/zoe.flac", "not decodable audio")


def test_corrupt_audio_frames(room: Path) -> None:
    track = room / "tracks" / "zoe.flac"
    data = bytearray(track.read_bytes())
    data[200:20_000] = bytes(range(256)) * 77 + bytes(19_800 - 256 * 77)
    track.write_bytes(bytes(data))
    assert_problem(room, "tracks/zoe.flac", "not decodable audio")


def test_a_room_loaded_again_is_test_decoded_again_only_where_a_track_changed(room: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line validates a room while roomcast loads, and the run loads it again: the second load decodes
    no track again, except one that was replaced meanwhile, and so still finds that track broken."""
    import pipeline.manifest

    decoded: list[str] = []
    real = pipeline.manifest.check_decodes

    def counting(path: Path, **kwargs: Any) -> None:
        decoded.append(path.name)
        real(path, **kwargs)

    monkeypatch.setattr(pipeline.manifest, "check_decodes", counting)
    tracks = len(manifest(room)["tracks"])
    load_room(room)
    assert len(decoded) == tracks
    load_room(room)
    assert len(decoded) == tracks
    track = room / "tracks" / "zoe.flac"
    data = track.read_bytes()
    track.write_bytes(data[: len(data) // 2])  # another size: a changed file whatever the clock's resolution
    assert_problem(room, "tracks/zoe.flac", "not decodable audio")
    assert decoded[tracks:] == ["zoe.flac"] * (len(decoded) - tracks) and len(decoded) > tracks


def test_negative_start(room: Path) -> None:
    edit(room, lambda data: data["tracks"][1].update(start=-1))
    assert_problem(room, "room.json", "tracks[1]", "start -1", "negative")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_start_that_is_not_finite(room: Path, literal: str) -> None:
    edit(room, lambda data: data["tracks"][1].update(start="@@"))
    text = (room / "room.json").read_text(encoding="utf-8").replace('"@@"', literal)
    write_manifest(room, text)
    assert json.loads(text)["tracks"][1]["start"] != 0  # Python's json accepts these literals
    assert_problem(room, "room.json", "tracks[1]", "finite number")


@pytest.mark.parametrize("value", ["1.5", True, None, [1.0]])
def test_start_of_the_wrong_type(room: Path, value: object) -> None:
    edit(room, lambda data: data["tracks"][1].update(start=value))
    expected = "missing required field 'start'" if value is None else "finite number"
    assert_problem(room, "room.json", "tracks[1]", expected)


def test_path_leaving_the_room(room: Path) -> None:
    shutil.copy(room / "tracks" / "zoe.flac", room.parent / "outside.flac")
    edit(room, lambda data: data["tracks"][1].update(file="../outside.flac"))
    assert_problem(room, "../outside.flac", "leaves the room folder")


def test_absolute_path(room: Path) -> None:
    outside = room.parent / "outside.flac"
    shutil.copy(room / "tracks" / "zoe.flac", outside)
    edit(room, lambda data: data["tracks"][1].update(file=str(outside)))
    assert_problem(room, str(outside), "absolute paths are not allowed")


def test_symlink_pointing_outside_the_room(room: Path) -> None:
    outside = room.parent / "outside.flac"
    shutil.copy(room / "tracks" / "zoe.flac", outside)
    os.symlink(outside, room / "tracks" / "link.flac")
    edit(room, lambda data: data["tracks"][1].update(file="tracks/link.flac"))
    assert_problem(room, "tracks/link.flac", "symbolic link pointing outside")


def test_symlink_inside_the_room_is_fine(room: Path) -> None:
    os.symlink("zoe.flac", room / "tracks" / "link.flac")
    edit(room, lambda data: data["tracks"][1].update(file="tracks/link.flac"))
    assert load_room(room).tracks[1].info.codec == "flac"


def test_track_path_that_is_a_folder(room: Path) -> None:
    (room / "tracks" / "folder.wav").mkdir()
    edit(room, lambda data: data["tracks"][1].update(file="tracks/folder.wav"))
    assert_problem(room, "tracks/folder.wav", "not a regular file")


def test_unsupported_visibility(room: Path) -> None:
    edit(room, lambda data: data.update(visibility="secret"))
    assert_problem(room, "room.json", "unsupported visibility 'secret'")


@pytest.mark.parametrize(("key", "value", "words"), [
    ("recorded_at", "last tuesday", "ISO 8601"),
    ("language", "English", "language code"),
    ("id", "../escape", "storage paths"),
    ("title", "bell\x07", "control characters"),
    ("title", "   ", "non-empty string"),
])
def test_bad_room_field_values(room: Path, key: str, value: str, words: str) -> None:
    edit(room, lambda data: data.update({key: value}))
    assert_problem(room, "room.json", words)


def test_unknown_role_and_bad_consent(room: Path) -> None:
    edit(room, lambda data: data["speakers"][0].update(role="emperor", consent="maybe"))
    assert_problem(room, "room.json", "speakers[0]", "unknown role 'emperor'")
    assert_problem(room, "room.json", "speakers[0]", "consent must be true or false")


def test_overlapping_segments_of_one_speaker(room: Path) -> None:
    shutil.copy(room / "tracks" / "zoe.flac", room / "tracks" / "zoe-again.flac")
    edit(room, lambda data: data["tracks"].append({"speaker": "zoe", "file": "tracks/zoe-again.flac", "start": 5.0}))
    assert_problem(room, "tracks/zoe-again.flac", "speaker 'zoe'", "before their previous segment")


def test_nobody_consented(room: Path) -> None:
    edit(room, lambda data: [s.update(consent=False) for s in data["speakers"]])
    assert_problem(room, "room.json", "nothing to publish")


def test_several_problems_are_reported_at_once(room: Path) -> None:
    (room / "tracks" / "zoe.flac").unlink()

    def break_many(data: dict[str, Any]) -> None:
        data["visibility"] = "secret"
        data["tracks"][0]["speaker"] = "mallory"
        data["tracks"][2]["start"] = -3.5
        data["speakers"].append({"id": "alice", "name": "Alice again"})

    edit(room, break_many)
    found = problems(room)
    assert len(found) == 5, found
    for file, words in [("room.json", "unsupported visibility"), ("room.json", "unknown speaker id 'mallory'"),
                        ("room.json", "negative"), ("room.json", "duplicate speaker id 'alice'"),
                        ("tracks/zoe.flac", "missing")]:
        assert_problem(room, file, words)


@pytest.mark.parametrize("end", [-5, "soon", True])
def test_declared_end_must_follow_start(room: Path, end: object) -> None:
    edit(room, lambda data: data["tracks"][1].update(end=end))
    assert_problem(room, "room.json", "tracks[1]", "end", "after start")


def test_a_track_replaced_after_validation_is_probed_again(room: Path, tmp_path: Path) -> None:
    # probes are remembered per file for the stages of a run; a changed file must not get the old answer
    track = room / "tracks" / "zoe.flac"
    before = next(t for t in load_room(room).tracks if t.file == "tracks/zoe.flac").info.duration
    cut = tmp_path / "cut.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(track), "-t", "3", str(cut)], check=True)
    os.replace(cut, track)
    after = next(t for t in load_room(room).tracks if t.file == "tracks/zoe.flac").info.duration
    assert before > 10
    assert after == pytest.approx(3.0, abs=0.05)


def test_content_hash_is_remembered_until_a_file_changes(room: Path) -> None:
    """A room's content hash names its work in the store and in the catalog: it is the SHA-256 of the manifest,
    then of each track's file name and bytes in track order; remembered for the process (the command line hashes
    the room while roomcast loads), it is computed again when any file changes."""
    import hashlib

    from pipeline.manifest import content_hash

    def by_hand() -> str:
        digest = hashlib.sha256((room / "room.json").read_bytes())
        for track in manifest(room)["tracks"]:
            digest.update(track["file"].encode())
            digest.update((room / track["file"]).read_bytes())
        return digest.hexdigest()

    loaded = load_room(room)
    first = content_hash(loaded)
    assert first == by_hand()
    assert content_hash(load_room(room)) == first
    track = room / "tracks" / "zoe.flac"
    track.write_bytes(track.read_bytes() + b"\0")  # another size: a changed file whatever the clock's resolution
    assert content_hash(loaded) == by_hand() != first
    edit(room, lambda data: data.update(title="Another title"))
    assert content_hash(load_room(room, verify_decoding=False)) == by_hand()
    # an episode artwork file the manifest names is an input too: a new picture, a new hash
    (room / "cover.jpg").write_bytes(b"first picture")
    edit(room, lambda data: data.update(feed={"image": "cover.jpg"}))
    named = content_hash(load_room(room, verify_decoding=False))
    assert named != by_hand()
    (room / "cover.jpg").write_bytes(b"another picture")
    assert content_hash(load_room(room, verify_decoding=False)) not in (named, by_hand())


def test_a_long_running_worker_remembers_a_bounded_number_of_rooms(room: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Hashes are remembered per room for the process, the least recently used forgotten past their number."""
    import pipeline.room
    from pipeline.ffmpeg import Remembered

    monkeypatch.setattr(pipeline.room, "_DIGESTS", Remembered(2))
    copies = [shutil.copytree(room, tmp_path / f"copy-{n}" / room.name) for n in range(3)]
    digests = {pipeline.room.content_hash(load_room(c, verify_decoding=False)) for c in copies}
    assert len(digests) == 1  # the same contents in other folders
    assert len(pipeline.room._DIGESTS) == 2
