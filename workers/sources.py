"""Raw platform output where a room folder is expected: ``roomcast process/submit/scan --source SOURCE``.

Each input (a folder, ZIP or file) is imported into a room folder of its own under ``{work_dir}/imports/``, made
again on every run from the input (the manifest and track names come out the same, so a room imported twice has
the same content hash and is not processed twice). In an inbox, every entry is one room's output; one whose
metadata names a file not there yet is ``incomplete`` until a later scan finds it whole.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from pipeline.errors import InvalidRoom, InvalidSource, RoomcastError
from pipeline.importers import SOURCES, import_room
from storage.objects import ObjectStore, check_key, open_store
from workers.config import Settings
from workers.distributed import Submission, submit_room

log = logging.getLogger(__name__)


def imported(settings: Settings, source: str, path: Path) -> Path:
    """The room folder made from ``path``, a ``source`` platform's output (replacing any earlier import of it)."""
    path = Path(path)
    tag = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    out = Path(settings.work_dir) / "imports" / f"{path.name}-{tag}"
    if out.exists():
        shutil.rmtree(out)
    report = import_room(source, path, out)
    for line in report.lines():
        log.info("%s", line)
    return out


def _entries(settings: Settings, inbox: str) -> list[tuple[str, Path]]:
    if inbox.startswith("s3://"):
        store = open_store(inbox)
        names = sorted({info.key.partition("/")[0] for info in store.list("") if "/" in info.key})
        cache = Path(settings.cache_dir) / "scan-raw"
        return [(name, materialize_raw(store, name, cache)) for name in names]
    if not Path(inbox).is_dir():
        raise RoomcastError(f"inbox {inbox}: not a folder; give a folder of platform outputs or s3://bucket/prefix")
    return [(p.name, p) for p in sorted(Path(inbox).iterdir()) if not p.name.startswith(".")]


def materialize_raw(store: ObjectStore, name: str, cache: Path) -> Path:
    """A local copy of one platform output held in a store (a prefix of files)."""
    objects = list(store.list(f"{name}/"))
    folder = cache / name
    for info in objects:
        target = folder / check_key(info.key[len(name) + 1:])
        target.parent.mkdir(parents=True, exist_ok=True)
        store.download(info.key, target)
    return folder


def scan_sources(settings: Settings, inbox: str, source: str) -> list[Submission]:
    """Import and submit every platform output in ``inbox`` (each entry a folder, ZIP or file of one room)."""
    if source not in SOURCES:
        raise RoomcastError(f"unknown source {source!r} (use one of {', '.join(SOURCES)})")
    results = []
    for name, path in _entries(settings, inbox):
        try:
            results.append(submit_room(settings, imported(settings, source, path)))
        except InvalidSource as exc:
            if exc.missing:
                results.append(Submission(name, "incomplete", "waiting for " + ", ".join(exc.missing)))
            else:
                results.append(Submission(name, "invalid", exc.problems[0] if exc.problems else str(exc)))
        except InvalidRoom as exc:
            results.append(Submission(name, "invalid", str(exc).splitlines()[0]))
    for result in results:
        log.info("scan %s (%s): %s", inbox, source, result)
    return results


__all__ = ["imported", "scan_sources"]
