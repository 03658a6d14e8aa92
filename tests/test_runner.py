"""The in-process runner's scheduling of a room's tracks."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.roomgen import manifest, write_manifest
from workers import jobs
from workers.config import Settings
from workers.runner import _heaviest_first


def test_the_dearest_track_is_analysed_first(short_room: Path, tmp_path: Path) -> None:
    """Tracks of about the same length: the 48 kHz Opus track (the costliest to decode) starts first, even when
    the manifest lists it last, so the pool does not end waiting on it alone."""
    room = tmp_path / short_room.name
    shutil.copytree(short_room, room)
    data = manifest(room)
    data["tracks"] = sorted(data["tracks"], key=lambda t: str(t["file"]).endswith(".opus"))
    write_manifest(room, data)
    tracks = tuple(range(len(data["tracks"])))
    job = jobs.Job(str(data["id"]), str(room), "0" * 64, "en", tracks)
    order = _heaviest_first(Settings(), job)
    assert sorted(order) == list(tracks)
    assert str(data["tracks"][order[0]]["file"]).endswith(".opus"), (order, data["tracks"])
