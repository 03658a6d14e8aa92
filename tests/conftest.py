"""Shared fixtures: generated sample rooms (built once per session) and a way to copy one to break it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.roomgen import make_room

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
