"""Shared fixtures: generated sample rooms (built once per session) and a way to copy one to break it."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.roomgen import make_room
from tests.s3servers import WeedServer

# Models are resolved from installed packages; tests never reach for a model hub.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session", autouse=True)
def _offline_models() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def sample_room(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``founders-hour`` demo room (about 3 minutes, 5 speakers), generated once per session."""
    return make_room("founders-hour", tmp_path_factory.mktemp("sample-room"))


@pytest.fixture(scope="session")
def short_room(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``short`` room (about 45 seconds, 3 speakers, one declined), generated once per session."""
    return make_room("short", tmp_path_factory.mktemp("short-room"))


@pytest.fixture
def room_copy(tmp_path: Path) -> Callable[[Path], Path]:
    """``copy(room_dir)`` copies a room folder into this test's tmp_path (same folder name) and returns it."""

    def copy(room_dir: Path) -> Path:
        target = tmp_path / Path(room_dir).name
        shutil.copytree(room_dir, target, symlinks=True)
        return target

    return copy


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WeedServer]:
    """A real S3-compatible server (SeaweedFS) on 127.0.0.1 for the whole session; boto3 in this process is
    pointed at it through its standard environment variables."""
    server = WeedServer(tmp_path_factory.mktemp("s3"))
    server.start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture()
def bucket(s3_server: WeedServer) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    name = f"rc-{uuid.uuid4().hex[:16]}"
    s3_server.create_bucket(name)
    return name
