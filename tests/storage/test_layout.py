"""The storage layout: every key comes from storage.layout, matches the documented layout, and refuses segments that
could climb out of their folder."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.errors import FeedError
from storage import layout
from storage.objects import LocalStore, check_key

ROOT = Path(__file__).resolve().parents[2]


def test_public_keys_follow_the_documented_layout() -> None:
    assert layout.feed_key("founders-hour") == "shows/founders-hour/feed.xml"
    assert layout.show_page_key("founders-hour") == "shows/founders-hour/index.html"
    assert layout.episode_prefix("founders-hour", "ep-1") == "shows/founders-hour/episodes/ep-1/"
    assert layout.artwork_key("founders-hour", "0123456789abcdef", ".png") == \
        "shows/founders-hour/artwork-0123456789abcdef.png"
    assert layout.static_key("founders-hour", "player-abc.js") == "shows/founders-hour/static/player-abc.js"


def test_private_keys_live_under_the_token() -> None:
    token = "t0k3n"
    assert layout.feed_key("s", token) == "shows/s/private/t0k3n/feed.xml"
    assert layout.show_page_key("s", token) == "shows/s/private/t0k3n/index.html"
    assert layout.episode_prefix("s", "e", token) == "shows/s/private/t0k3n/episodes/e/"
    assert layout.show_prefix("s", token).startswith(layout.show_prefix("s"))


def test_work_and_inbox_keys_stay_out_of_the_public_folder() -> None:
    digest = "ab" * 32
    assert layout.work_key("ep-1", digest, "track-0.json") == f"work/ep-1/{digest[:16]}/track-0.json"
    assert layout.track_result_key("ep-1", digest, 2) == f"work/ep-1/{digest[:16]}/track-2.json"
    assert layout.track_result_key("ep-1", digest, 2, transcribed=False) == \
        f"work/ep-1/{digest[:16]}/track-2-audio.json"
    assert layout.track_voices_key("ep-1", digest, 1) == f"work/ep-1/{digest[:16]}/track-1-voices.npz"
    assert layout.work_key("ep-1", digest, "x").startswith(layout.work_prefix("ep-1"))
    assert layout.inbox_prefix("room-1") == "inbox/room-1/"
    for key in (layout.work_prefix("e"), layout.inbox_prefix("r")):
        assert not key.startswith(layout.SHOWS_PREFIX + "/")


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "a\x00b", "\ud800"])
def test_segments_that_could_escape_are_refused(bad: str) -> None:
    for build in (lambda: layout.feed_key(bad), lambda: layout.episode_prefix("x", bad),
                  lambda: layout.feed_key("x", bad), lambda: layout.work_prefix(bad), lambda: layout.inbox_prefix(bad),
                  lambda: layout.static_key("x", bad)):
        with pytest.raises(FeedError, match="cannot be used in an object key"):
            build()


def test_keys_are_valid_store_keys_and_list_under_their_prefixes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    keys = [layout.feed_key("s"), layout.feed_key("s", "tok"), layout.episode_prefix("s", "e") + "replay.mp3",
            layout.episode_prefix("s", "p", "tok") + "replay.mp3", layout.work_key("e", "f" * 64, "track-0.json"),
            layout.inbox_prefix("r") + "room.json", layout.PROBE_KEY]
    for key in keys:
        store.put_bytes(check_key(key), key.encode())
    assert sorted(i.key for i in store.list(layout.show_prefix("s", "tok"))) == sorted(keys[1:4:2])
    assert [i.key for i in store.list(layout.work_prefix("e"))] == [keys[4]]
    assert [i.key for i in store.list(layout.inbox_prefix("r"))] == [keys[5]]


def _string_parts(tree: ast.AST) -> list[tuple[int, str]]:
    """The literal text that starts each string expression (an f-string's first literal part), docstrings aside."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            found.append((node.lineno, str(node.values[0].value)))
    return found


def test_no_other_module_builds_a_storage_key() -> None:
    owners = {ROOT / "storage" / "layout.py"}
    prefixes = tuple(p + "/" for p in (layout.SHOWS_PREFIX, layout.WORK_PREFIX, layout.INBOX_PREFIX))
    for package in ("pipeline", "storage", "feeds", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if path in owners:
                continue
            for line, text in _string_parts(ast.parse(path.read_text(), str(path))):
                assert not text.startswith(prefixes), \
                    f"{path.relative_to(ROOT)}:{line} builds a storage key ({text!r}): use storage.layout"
