"""Rules for text that every output of roomcast carries, in one place: what XML 1.0 can hold and what a language
tag looks like. Checked when a room or a show is read (:mod:`pipeline.manifest`, :mod:`feeds.shows`), applied when
a feed is written (:mod:`feeds.rss`) and when an object key is built (:mod:`storage.layout`).

This module imports nothing of roomcast, so every package may use it.
"""

from __future__ import annotations

import re

# Characters XML 1.0 cannot carry (control characters, lone surrogates, the two non-characters): a title holding
# one would make every feed of the show unreadable.
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# A BCP 47 language tag as feeds and Whisper use them: a 2-3 letter language and optional subtags ("en", "pt-BR",
# "zh-Hant-TW"). Tags are case-insensitive (RFC 5646 2.1.1).
LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def clean_xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 forbids removed."""
    return XML_ILLEGAL.sub("", text)
