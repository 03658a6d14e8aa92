"""Reading an importer's input safely: a folder, a single file, or a ZIP archive, never following a path out of it.

A folder's symbolic links are refused (a bot's output holds none, and one could point anywhere). A ZIP is checked
entry by entry before anything is expanded: no absolute names, no ``..``, no backslashes, no symbolic links, the
expanded total under :attr:`ArchiveLimits.max_bytes` and each large entry's expansion ratio under
:attr:`ArchiveLimits.max_ratio`; while expanding, the bytes actually written are counted (a header may lie), and a
truncated or corrupt archive is reported as such.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pipeline.errors import InvalidSource

IGNORED_NAMES = re.compile(r"^(\.|__MACOSX$|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on what a ZIP may expand to: its total size, its entry count, and the ratio of an entry's expanded
    size to its compressed size (checked for entries over ``ratio_floor_bytes``: audio barely compresses, a
    bomb's zeros compress a thousandfold)."""

    max_bytes: int = 16 << 30
    max_entries: int = 10_000
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 1 << 20


@dataclass(frozen=True)
class SourceFiles:
    """The input's regular files: ``root`` and the POSIX paths of its files relative to it, sorted."""

    root: Path
    names: tuple[str, ...]
    label: str  # what errors call the input (its file or folder name)

    def path(self, name: str) -> Path:
        return self.root / name

    def by_basename(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for name in self.names:
            found.setdefault(PurePosixPath(name).name, []).append(name)
        return found


def open_input(path: Path, scratch: Path, limits: ArchiveLimits = ArchiveLimits()) -> SourceFiles:
    """The files of ``path``: a folder (read in place), a ZIP (expanded into ``scratch``) or one file."""
    path = Path(path)
    label = path.name or str(path)
    if path.is_symlink():
        raise InvalidSource(label, [f"{label}: is a symbolic link; give the folder or file itself"])
    if path.is_dir():
        return SourceFiles(path, _folder_files(path, label), label)
    if not path.is_file():
        raise InvalidSource(label, [f"{label}: no such file or folder"])
    if zipfile.is_zipfile(path) or path.suffix.lower() == ".zip":
        expand_zip(path, scratch, limits, label)
        return SourceFiles(scratch, _folder_files(scratch, label), label)
    return SourceFiles(path.parent, (path.name,), label)


def _folder_files(root: Path, label: str) -> tuple[str, ...]:
    names: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        for name in sorted(dirs + files):
            full = here / name
            relative = full.relative_to(root).as_posix()
            if full.is_symlink():
                raise InvalidSource(label, [f"{label}: {relative}: is a symbolic link; roomcast does not follow "
                                            "links out of an input (copy the file in)"])
        dirs[:] = [d for d in dirs if not IGNORED_NAMES.match(d)]
        for name in files:
            full = here / name
            if not IGNORED_NAMES.match(name) and full.is_file():
                names.append(full.relative_to(root).as_posix())
    return tuple(sorted(names))


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute name"
    if "\\" in name or ".." in PurePosixPath(name).parts:
        return "leaves the archive ('..' or a backslash in its name)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link (links are not followed)"
    return None


def expand_zip(path: Path, dest: Path, limits: ArchiveLimits, label: str) -> None:
    """Check every entry of the ZIP at ``path``, then expand it into ``dest``; raise :class:`InvalidSource`
    naming the entry at fault (``dest`` may then hold part of the archive: the caller removes it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            _check_entries(entries, limits, label)
            budget = limits.max_bytes
            for info in entries:
                if not info.is_dir() and not IGNORED_NAMES.match(PurePosixPath(info.filename).name):
                    budget -= _expand_entry(archive, info, dest, budget, label)
    except zipfile.BadZipFile as exc:
        raise InvalidSource(label, [f"{label}: not a readable ZIP archive ({exc}); it may be truncated: "
                                    "download it again"]) from exc
    except (EOFError, OSError, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise InvalidSource(label, [f"{label}: the ZIP archive cannot be expanded ({exc}); it may be truncated "
                                    "or use an unsupported compression"]) from exc


def _check_entries(entries: list[zipfile.ZipInfo], limits: ArchiveLimits, label: str) -> None:
    if len(entries) > limits.max_entries:
        raise InvalidSource(label, [f"{label}: holds {len(entries)} entries, more than the {limits.max_entries} "
                                    "allowed"])
    total = 0
    for info in entries:
        problem = _entry_problem(info)
        if problem:
            raise InvalidSource(label, [f"{label}: entry {info.filename!r} {problem}; nothing was imported"])
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise InvalidSource(label, [f"{label}: entry {info.filename!r} expands {ratio:.0f}-fold "
                                        f"({info.file_size} bytes), more than the {limits.max_ratio:.0f}-fold "
                                        "allowed: refusing a likely ZIP bomb"])
    if total > limits.max_bytes:
        raise InvalidSource(label, [f"{label}: expands to {total} bytes, more than the {limits.max_bytes} allowed"])


def _expand_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, budget: int, label: str) -> int:
    target = dest / info.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with archive.open(info) as source, open(target, "xb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > info.file_size or written > budget:
                raise InvalidSource(label, [f"{label}: entry {info.filename!r} expands past the size its header "
                                            "declares or the archive's cap: refusing a likely ZIP bomb"])
            out.write(chunk)
    return written
