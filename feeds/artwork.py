"""Show artwork: a configured cover checked against what podcast directories accept (square JPEG or PNG, RGB,
1400-3000 px), or a cover generated from the show's title in a calm colour of its own."""

from __future__ import annotations

import colorsys
import hashlib
import io
import unicodedata
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from feeds.shows import title_from_id
from pipeline.errors import FeedError
from storage.records import ShowRecord

ARTWORK_MIN_PX = 1400
ARTWORK_MAX_PX = 3000
ARTWORK_FORMATS = ("JPEG", "PNG")
# Pillow's bundled font covers ASCII only; a system font with wide Latin, Greek and Cyrillic coverage is preferred
# when installed (Debian's fonts-dejavu-core), so titles such as "Chloé" keep their accents.
COVER_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf")

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def check_artwork(path: Path) -> None:
    """Raise FeedError unless ``path`` is cover art Apple Podcasts accepts: square JPEG or PNG, RGB, 1400-3000 px."""
    rule = f"use a square RGB JPEG or PNG of {ARTWORK_MIN_PX}-{ARTWORK_MAX_PX} px"
    try:
        with Image.open(path) as image:
            fmt, mode, (width, height) = image.format, image.mode, image.size
            if fmt not in ARTWORK_FORMATS:
                raise FeedError(f"artwork {path} is {fmt}, not JPEG or PNG; {rule}")
            if mode != "RGB":
                raise FeedError(f"artwork {path} has colour mode {mode}, not RGB; {rule}")
            if width != height:
                raise FeedError(f"artwork {path} is {width}x{height} px, not square; {rule}")
            if not ARTWORK_MIN_PX <= width <= ARTWORK_MAX_PX:
                raise FeedError(f"artwork {path} is {width}x{height} px; {rule}")
            image.load()  # a truncated file only shows when decoded
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise FeedError(f"artwork {path} cannot be read as an image ({exc}); {rule}") from exc


def default_artwork(show: ShowRecord, size: int = ARTWORK_MIN_PX) -> bytes:
    """A generated cover (JPEG, ``size`` px square): the show title in large wrapped text on a calm colour that is
    derived from the show id, so a show keeps its colour across rebuilds; the author in small text below."""
    if not ARTWORK_MIN_PX <= size <= ARTWORK_MAX_PX:
        raise FeedError(f"generated artwork must be {ARTWORK_MIN_PX}-{ARTWORK_MAX_PX} px, not {size}")
    background = _calm_colour(show.id)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    margin = size // 10
    title = _drawable(show.title) or title_from_id(show.id)
    font_size, lines = _fit_title(draw, title, size - 2 * margin, int(size * 0.62))
    font = _font(font_size)
    line_height = round(font_size * 1.18)
    top = (size - line_height * len(lines)) // 2 - size // 16
    for i, line in enumerate(lines):
        draw.text((size / 2, top + i * line_height), line, font=font, fill=(248, 246, 240), anchor="ma")
    rule_y = size - margin - size // 12
    draw.line([(margin, rule_y), (size - margin, rule_y)], fill=_tint(background, 0.35), width=max(2, size // 400))
    small = _font(size // 28)
    author = _fit_line(draw, _drawable(show.author), small, size - 2 * margin)
    draw.text((margin, rule_y + size // 40), author, font=small, fill=_tint(background, 0.7))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, optimize=True)
    return buffer.getvalue()


def _calm_colour(show_id: str) -> tuple[int, int, int]:
    """A muted, mid-dark colour (any hue) picked by the show id: white text stays readable on all of them."""
    digest = hashlib.sha256(show_id.encode()).digest()
    hue = int.from_bytes(digest[:4], "big") / 2**32
    red, green, blue = colorsys.hls_to_rgb(hue, 0.30, 0.38)
    return round(red * 255), round(green * 255), round(blue * 255)


def _tint(colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    r, g, b = (round(c + (255 - c) * amount) for c in colour)
    return r, g, b


@lru_cache(maxsize=64)
def _font(size: int) -> _Font:
    for name in COVER_FONTS:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=1024)
def _has_glyph(char: str) -> bool:
    font = _font(64)
    missing = font.getmask("\U0010fffd")  # a private-use code point: every font draws its "no glyph" box
    mask = font.getmask(char)
    return mask.size != missing.size or bytes(mask) != bytes(missing)


def _drawable(text: str) -> str:
    """``text`` reduced to what the cover font can draw: accents dropped where the accented letter is missing,
    emoji and other symbols without a glyph left out, instead of drawn as empty boxes."""
    kept = []
    for char in unicodedata.normalize("NFC", text):
        if unicodedata.category(char).startswith("C") or "\ufe00" <= char <= "\ufe0f":
            continue  # controls, format characters and emoji variation selectors draw nothing useful
        if char.isspace() or _has_glyph(char):
            kept.append(" " if char.isspace() else char)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        kept.extend(c for c in base if _has_glyph(c))
    return " ".join("".join(kept).split())


def _fit_title(draw: ImageDraw.ImageDraw, title: str, width: int, height: int) -> tuple[int, list[str]]:
    """The largest font size (down to a floor) at which the title wraps into at most five lines inside the box,
    and the wrapped lines."""
    text = " ".join(title.split())

    def fits(font_size: int) -> bool:
        lines = _wrap(draw, text, _font(font_size), width)
        return len(lines) <= 5 and len(lines) * font_size * 1.18 <= height

    low, high = width // 22, width // 6
    if fits(low):  # the fit shrinks as the font grows, so a bisection finds the largest size that fits
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
    font = _font(low)
    lines = _wrap(draw, text, font, width)
    if len(lines) > 5:
        lines = lines[:4] + [_fit_line(draw, lines[4] + "…", font, width)]
    return low, lines


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: _Font, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        while draw.textlength(word, font=font) > width:  # a word too long for a line is broken where it must be
            cut = next((i for i in range(len(word) - 1, 1, -1) if draw.textlength(word[:i], font=font) <= width), 1)
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:cut])
            word = word[cut:]
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def _fit_line(draw: ImageDraw.ImageDraw, text: str, font: _Font, width: int) -> str:
    """``text`` shortened with an ellipsis until it fits ``width``."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text.rstrip() + "…"
