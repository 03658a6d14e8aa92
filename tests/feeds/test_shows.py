"""Show configuration from shows.toml, artwork checks on real image files, and the generated cover."""

from __future__ import annotations

import io
from pathlib import Path
from typing import cast

import pytest
from PIL import Image

from feeds.artwork import check_artwork, default_artwork
from feeds.shows import PLACEHOLDER_EMAIL, show_config, show_record, title_from_id
from pipeline.errors import FeedError
from storage.records import ShowRecord

SHOWS_TOML = """
[roomcast]
store = "ignored/by/the/show/loader"

[shows.founders-hour]
title = "Founders Hour: Q&A <live>"
author = "Alice Martin"
owner = "Founders Media"
email = "alice@example.com"
description = "Weekly live conversations."
language = "fr-CA"
category = "News"
subcategory = "Tech News"
explicit = true
artwork = "art/cover.png"
link = "https://example.com/founders"
max_items = 50
locked = false

[shows.minimal]
author = "Bob Okafor"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "shows.toml"
    path.write_text(SHOWS_TOML, encoding="utf-8")
    return path


def test_configured_show(config: Path) -> None:
    record = show_record("founders-hour", config)
    assert record == ShowRecord(
        id="founders-hour", title="Founders Hour: Q&A <live>", author="Alice Martin", owner_name="Founders Media",
        owner_email="alice@example.com", description="Weekly live conversations.", language="fr-CA",
        category="News", subcategory="Tech News", explicit=True, link="https://example.com/founders", max_items=50,
        locked=False, artwork_path=str(config.parent / "art" / "cover.png"))


def test_partial_table_gets_defaults(config: Path) -> None:
    record = show_record("minimal", config)
    assert (record.title, record.author, record.owner_name) == ("Minimal", "Bob Okafor", "Bob Okafor")
    assert record.owner_email == PLACEHOLDER_EMAIL and record.owner_email.endswith(".invalid")
    assert record.locked is False  # never locked to an address nobody reads
    assert (record.language, record.category, record.subcategory, record.explicit) == ("en", "Technology", None,
                                                                                       False)
    assert record.max_items == 300 and record.artwork_path is None and record.link is None
    assert "Minimal" in record.description


@pytest.mark.parametrize("path_given", [False, True])
def test_unconfigured_show_defaults(config: Path, path_given: bool) -> None:
    record = show_record("late-night_chats", config if path_given else None)
    assert record.title == "Late Night Chats"
    assert record.author == "roomcast"
    assert record.owner_email == PLACEHOLDER_EMAIL
    titled = show_record("late-night_chats", config if path_given else None, fallback_title="Late Night: Chloé")
    assert titled.title == "Late Night: Chloé"
    # A configured title wins over the fallback.
    assert show_record("founders-hour", config, fallback_title="Other").title == "Founders Hour: Q&A <live>"


def test_real_email_locks_by_default(tmp_path: Path) -> None:
    path = tmp_path / "shows.toml"
    path.write_text('[shows.s]\nemail = "owner@example.com"\n', encoding="utf-8")
    assert show_record("s", path).locked is True


def test_title_from_id() -> None:
    assert title_from_id("founders-hour") == "Founders Hour"
    assert title_from_id("a__b..c") == "A B C"


@pytest.mark.parametrize(("toml", "message"), [
    ('[shows.s]\ntitel = "typo"\n', "unknown key"),
    ('[shows.s]\nexplicit = "yes"\n', "explicit must be true or false"),
    ("[shows.s]\nmax_items = 0\n", "max_items"),
    ("[shows.s]\nmax_items = true\n", "max_items"),
    ("[shows.s]\ntitle = 3\n", "title must be a string"),
    ('[shows.s]\ncategory = "Cooking"\n', "not an Apple Podcasts category"),
    ('[shows.s]\ncategory = "News"\nsubcategory = "Golf"\n', "does not belong"),
    ('[shows.s]\nlanguage = "english!"\n', "language"),
    ('[shows.s]\nemail = "nobody"\n', "email"),
    ('[shows.s]\nlink = "example.com"\n', "link"),
    ('shows = "not a table"\n', r"one \[shows.<id>\] table"),
    ("[shows.s\n", "TOML"),
])
def test_bad_configuration_is_named(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "shows.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(FeedError, match=message) as info:
        show_config("s", path)
    assert str(path) in str(info.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="does not exist"):
        show_record("s", tmp_path / "nope.toml")


def save(image: Image.Image, path: Path, fmt: str) -> Path:
    image.save(path, format=fmt)
    return path


def test_good_artwork_is_accepted(tmp_path: Path) -> None:
    check_artwork(save(Image.new("RGB", (1400, 1400), (30, 60, 90)), tmp_path / "a.jpg", "JPEG"))
    check_artwork(save(Image.new("RGB", (3000, 3000), (30, 60, 90)), tmp_path / "b.png", "PNG"))


@pytest.mark.parametrize(("mode", "size", "fmt", "message"), [
    ("RGB", (1400, 1500), "JPEG", "not square"),
    ("RGB", (1000, 1000), "PNG", "1000x1000"),
    ("RGB", (3200, 3200), "PNG", "3200x3200"),
    ("CMYK", (1400, 1400), "JPEG", "CMYK"),
    ("RGBA", (1400, 1400), "PNG", "RGBA"),
    ("L", (1400, 1400), "PNG", "mode L"),
    ("P", (1400, 1400), "GIF", "GIF"),
    ("RGB", (1400, 1400), "WEBP", "WEBP"),
])
def test_bad_artwork_is_rejected(tmp_path: Path, mode: str, size: tuple[int, int], fmt: str, message: str) -> None:
    path = save(Image.new(mode, size), tmp_path / f"art.{fmt.lower()}", fmt)
    with pytest.raises(FeedError, match=message) as info:
        check_artwork(path)
    assert str(path) in str(info.value)


def test_unreadable_artwork_is_rejected(tmp_path: Path) -> None:
    text = tmp_path / "cover.jpg"
    text.write_text("not an image", encoding="utf-8")
    with pytest.raises(FeedError, match="cannot be read"):
        check_artwork(text)
    good = save(Image.effect_noise((1400, 1400), 64).convert("RGB"), tmp_path / "full.jpg", "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FeedError, match="cannot be read"):
        check_artwork(truncated)
    with pytest.raises(FeedError, match="cannot be read"):
        check_artwork(tmp_path / "missing.png")


@pytest.mark.parametrize("title", ["Founders Hour", "Q&A <live> \"quoted\" — Chloé 🎙️ " * 4, "🎙️", "x" * 200])
def test_default_artwork_is_a_valid_cover(tmp_path: Path, title: str) -> None:
    show = show_record("founders-hour", None, fallback_title=title)
    data = default_artwork(show)
    path = tmp_path / "cover.jpg"
    path.write_bytes(data)
    check_artwork(path)
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (1400, 1400))
        low, high = cast(tuple[int, int], image.convert("L").getextrema())
        assert high - low > 150  # light title text on a darker background: readable contrast
        band_low, band_high = cast(tuple[int, int], image.crop((140, 300, 1260, 1000)).convert("L").getextrema())
        assert band_high > 200  # the title was drawn where it belongs
    assert len(data) < 1_000_000


def test_default_artwork_colour_is_stable_per_show() -> None:
    def corner(show_id: str) -> tuple[int, int, int]:
        with Image.open(io.BytesIO(default_artwork(show_record(show_id, None)))) as image:
            return cast(tuple[int, int, int], image.getpixel((5, 5)))

    assert corner("founders-hour") == corner("founders-hour")
    colours = {corner(f"show-{i}") for i in range(4)}
    assert len(colours) >= 3


def test_default_artwork_at_3000_px() -> None:
    with Image.open(io.BytesIO(default_artwork(show_record("big", None), size=3000))) as image:
        assert image.size == (3000, 3000)
    with pytest.raises(FeedError):
        default_artwork(show_record("big", None), size=800)
