"""roomcast's one exception tree.

    RoomcastError            base of everything roomcast raises on purpose
    ├── InvalidRoom          the room folder or its manifest is unusable; ``problems`` lists every problem
    │   └── InvalidSource    a platform's recording output cannot be imported as a room; ``missing`` names the
    │                        files its metadata names that are not there (yet)
    ├── MediaError           ffmpeg/ffprobe failed or produced something unusable (carries the command and
    │                        the tail of ffmpeg's stderr)
    ├── TranscriptionError   the Whisper model could not be resolved, loaded or run
    ├── StorageError         an object store or the catalog failed (``transient`` says whether a retry may help)
    ├── FeedError            a feed could not be built (bad show configuration, artwork, ...)
    └── InvalidEdit          an edit of a published episode cannot apply (unknown speaker, span outside the
                             replay, overlapping cuts, ...); nothing was changed

Every message names the room and the file concerned and says what to do. Every exception pickles (all
constructor arguments are passed to ``Exception.__init__``) so Celery can carry it between processes.
This module lives in ``pipeline`` (the lowest package) and is the only part of it that ``storage`` imports.
"""

from __future__ import annotations


class RoomcastError(Exception):
    """Base class of every error roomcast raises on purpose."""


class InvalidRoom(RoomcastError):
    """A room that cannot be processed; ``problems`` holds one line per problem found."""

    def __init__(self, room: str, problems: list[str] | tuple[str, ...]) -> None:
        super().__init__(room, tuple(problems))
        self.room = room
        self.problems = tuple(problems)

    def __str__(self) -> str:
        lines = [f"room {self.room!r} is invalid ({len(self.problems)} problem(s)):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class InvalidSource(InvalidRoom):
    """Raw platform output that does not make a room; ``missing`` lists the named files not present (yet)."""

    def __init__(self, room: str, problems: list[str] | tuple[str, ...], missing: tuple[str, ...] = ()) -> None:
        super().__init__(room, problems)
        self.args = (room, tuple(problems), tuple(missing))
        self.missing = tuple(missing)


class MediaError(RoomcastError):
    """ffmpeg or ffprobe failed; carries the command line and the end of stderr."""

    def __init__(self, message: str, command: str = "", stderr_tail: str = "") -> None:
        super().__init__(message, command, stderr_tail)
        self.message = message
        self.command = command
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        text = self.message
        if self.command:
            text += f"\n  command: {self.command}"
        if self.stderr_tail:
            text += "\n  ffmpeg said:\n    " + "\n    ".join(self.stderr_tail.splitlines())
        return text


class TranscriptionError(RoomcastError):
    """The Whisper model could not be resolved, loaded or run."""


class StorageError(RoomcastError):
    """An object store or the catalog failed. ``transient`` errors may succeed when retried."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message, transient)
        self.message = message
        self.transient = transient

    def __str__(self) -> str:
        return self.message


class FeedError(RoomcastError):
    """A feed could not be built."""


class InvalidEdit(RoomcastError):
    """An edit of a published episode that cannot apply; raised before anything is changed."""
