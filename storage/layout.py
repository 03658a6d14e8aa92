"""The storage layout: every object key roomcast reads or writes, public and private, is built here.

The same keys are used on a local folder and on S3 (DESIGN.md, "Storage layout")::

    shows/{show}/feed.xml                                the public feed
    shows/{show}/artwork-{digest}{.jpg|.png}             the show's artwork, named by its content
    shows/{show}/index.html                              the public show page
    shows/{show}/static/{name}                           the pages' script and stylesheet
    shows/{show}/episodes/{episode}/{asset}              replay.mp3, replay.m4a, transcript.*, chapters.json, pages
    shows/{show}/private/{token}/feed.xml                the private feed, its page, and under it
    shows/{show}/private/{token}/episodes/{episode}/...  the private episodes' assets
    work/{episode}/{input digest}/{name}                 a run's intermediate results (private, removed when done)
    inbox/{room}/...                                     rooms uploaded for processing (private)
    doctor/probe.mp3                                     the object ``roomcast doctor`` checks public reads with

Every variable segment is checked: a show id, episode id or token that could climb out of its folder (or that XML
cannot carry, since feeds print these keys) is refused with :class:`FeedError`.
"""

from __future__ import annotations

from pipeline.errors import FeedError
from pipeline.text import XML_ILLEGAL

SHOWS_PREFIX = "shows"
WORK_PREFIX = "work"
INBOX_PREFIX = "inbox"
FEED_NAME = "feed.xml"
PAGE_NAME = "index.html"
PROBE_KEY = "doctor/probe.mp3"
# How much of a room's input digest names its run's folder of intermediate results.
WORK_DIGEST_CHARS = 16


def segment(value: str, what: str) -> str:
    """One path segment of an object key: anything that could climb out of the show's folder is refused."""
    if not value or "/" in value or "\\" in value or value in (".", "..") or XML_ILLEGAL.search(value):
        raise FeedError(f"{what} {value!r} cannot be used in an object key; use letters, digits, '-' or '_'")
    return value


def show_prefix(show_id: str, private_token: str | None = None) -> str:
    """Key prefix (ending in ``/``) of a show's public objects, or of its private feed's under the token."""
    prefix = f"{SHOWS_PREFIX}/{segment(show_id, 'show id')}/"
    if private_token is not None:
        prefix += f"private/{segment(private_token, 'private feed token')}/"
    return prefix


def feed_key(show_id: str, private_token: str | None = None) -> str:
    """Object key of a show's public feed, or of its private feed under the unguessable token."""
    return show_prefix(show_id, private_token) + FEED_NAME


def show_page_key(show_id: str, private_token: str | None = None) -> str:
    """The show page: public, or the private feed's own page under its token."""
    return show_prefix(show_id, private_token) + PAGE_NAME


def episode_prefix(show_id: str, episode_id: str, private_token: str | None = None) -> str:
    """Key prefix (ending in ``/``) of an episode's objects; private episodes live under the show's token."""
    return show_prefix(show_id, private_token) + f"episodes/{segment(episode_id, 'episode id')}/"


def artwork_key(show_id: str, digest: str, suffix: str = ".jpg") -> str:
    """The show's artwork, named by (a prefix of) its content's digest so a new picture gets a new URL."""
    return show_prefix(show_id) + f"artwork-{segment(digest, 'artwork digest')}{suffix}"


def static_key(show_id: str, name: str) -> str:
    """A file every page of the show loads (its name carries its content's hash)."""
    return show_prefix(show_id) + f"static/{segment(name, 'static file name')}"


def work_prefix(episode_id: str) -> str:
    """Key prefix (ending in ``/``) of every run's intermediate results for an episode."""
    return f"{WORK_PREFIX}/{segment(episode_id, 'episode id')}/"


def work_key(episode_id: str, input_hash: str, name: str) -> str:
    """An intermediate result of the run over the inputs whose digest is ``input_hash``."""
    return work_prefix(episode_id) + f"{input_hash[:WORK_DIGEST_CHARS]}/{name}"


def inbox_prefix(room_id: str) -> str:
    """Key prefix (ending in ``/``) of a room uploaded for processing."""
    return f"{INBOX_PREFIX}/{segment(room_id, 'room id')}/"


def track_result_key(episode_id: str, input_hash: str, track_index: int, *, transcribed: bool = True) -> str:
    """A track's analysis (and transcript, when ``transcribed``) from the run over ``input_hash``."""
    return work_key(episode_id, input_hash, f"track-{track_index}{'' if transcribed else '-audio'}.json")


def track_voices_key(episode_id: str, input_hash: str, track_index: int) -> str:
    """The voice windows of a mixed recording's track from the run over ``input_hash``."""
    return work_key(episode_id, input_hash, f"track-{track_index}-voices.npz")
