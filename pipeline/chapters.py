"""Chapter type shared by the chapter builder, the encoders and the Podcasting 2.0 chapters file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chapter:
    """A chapter of the replay: seconds on the replay's clock, a title, and the speaker holding the floor."""

    start: float
    end: float
    title: str
    speaker: str
