"""Progress reporting: stage changes go to the catalog (``roomcast status``) and to any listener in this process
(the CLI's progress bar when a room is processed in-process)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

Listener = Callable[[str, str, float | None], None]
"""Called with (episode id, stage, fraction done or None)."""

_listeners: list[Listener] = []


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def notify(episode_id: str, stage: str, fraction: float | None = None) -> None:
    for listener in list(_listeners):
        try:
            listener(episode_id, stage, fraction)
        except Exception:  # a broken progress display must never fail a job
            log.debug("progress listener failed", exc_info=True)
