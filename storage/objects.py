"""Object stores behind one interface: a local folder (the default) and S3-compatible storage through boto3.

Both use the same keys (see the storage layout in the README). Writes are atomic on a folder (temp file +
``os.replace``); on S3 an object is either there whole or not at all, and every upload is verified (size and MD5)
before it counts. ``put_*`` skips objects whose content is already stored (same MD5 and size), so re-publishing
an unchanged episode uploads nothing again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from pipeline.errors import StorageError

log = logging.getLogger(__name__)

FEED_CACHE_CONTROL = "public, max-age=300"
# Episode assets are replaced in place when a room is re-processed or an episode edited (a speaker removed, a
# span cut), so caches keep them no longer than the feed that points at them: an app or a CDN sees the new file
# within the feed's own lifetime.
ASSET_CACHE_CONTROL = "public, max-age=300"
CONTENT_TYPES = {
    ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".opus": "audio/ogg", ".ogg": "audio/ogg",
    ".vtt": "text/vtt; charset=utf-8", ".srt": "application/x-subrip", ".json": "application/json",
    ".txt": "text/plain; charset=utf-8", ".xml": "application/rss+xml; charset=utf-8", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".png": "image/png", ".wav": "audio/wav", ".flac": "audio/flac",
}


def content_type_for(key: str) -> str:
    name = posixpath.basename(key)
    if name == "chapters.json":
        return "application/json+chapters"
    suffix = posixpath.splitext(name)[1].lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def cache_control_for(key: str) -> str:
    return FEED_CACHE_CONTROL if key.endswith(".xml") else ASSET_CACHE_CONTROL


def check_key(key: str) -> str:
    """Refuse keys that could escape the store's root or are not plain relative paths."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts[:-1]) \
            or parts[-1] in ("", ".", "..") or "\x00" in key:
        raise StorageError(f"invalid object key {key!r}: keys are relative paths without '.' or '..' parts")
    return key


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# A web server reading the store's folder runs as another user: published files get the usual permissions.
_UMASK = _current_umask()


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    md5: str
    content_type: str
    uploaded: bool = False  # False when put_* found the same content already stored
    redirect: str | None = None  # where a web host sends requests for this object instead (a 301)


def check_redirect(location: str | None) -> str | None:
    """A redirect target as S3 takes it (``WebsiteRedirectLocation``): an absolute http(s) URL or a path."""
    if location is not None and (not location.startswith(("/", "http://", "https://"))
                                 or any(c.isspace() for c in location) or len(location) > 2048):
        raise StorageError(f"invalid redirect {location!r}: give an absolute http(s) URL or a path starting with /")
    return location


class ObjectStore(Protocol):
    def put_file(self, key: str, path: Path, *, content_type: str | None = None,
                 cache_control: str | None = None) -> ObjectInfo: ...
    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None,
                  cache_control: str | None = None, redirect: str | None = None) -> ObjectInfo: ...
    def stat(self, key: str) -> ObjectInfo | None: ...
    def exists(self, key: str) -> bool: ...
    def get_bytes(self, key: str) -> bytes: ...
    def download(self, key: str, path: Path) -> None: ...
    def delete(self, key: str) -> None: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...
    def url(self, key: str) -> str: ...
    def presign(self, key: str, expires_s: int = 3600) -> str: ...
    def describe(self) -> str: ...


class LocalStore:
    """A folder on disk. Metadata (MD5, content type) lives in a sidecar folder (``.roomcast-meta``) beside the
    objects; a sidecar counts only while the object's size and modification time match it, otherwise the MD5 is
    recomputed, so a crash between the two writes or an object replaced by hand never yields a stale MD5.
    ``cache_control`` is accepted for the interface's sake: a folder has no headers (the web server serving it
    sets them). A ``redirect`` is kept in the sidecar: ``roomcast serve`` answers the object's URL with a 301 to
    it (another web server serving the folder needs its own rule, see docs/deployment.md)."""

    META = ".roomcast-meta"
    TMP_PREFIX = ".roomcast-tmp-"

    def __init__(self, root: Path, *, public_url: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.public_url = public_url.rstrip("/") if public_url else None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"store {self.root}: cannot create the folder: {exc}") from exc

    def describe(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        if check_key(key).split("/")[0] == self.META:
            raise StorageError(f"invalid object key {key!r}: {self.META} is reserved for the store's metadata")
        return self.root / key

    def _meta(self, key: str) -> Path:
        return self.root / self.META / (check_key(key) + ".json")

    def put_file(self, key: str, path: Path, *, content_type: str | None = None,
                 cache_control: str | None = None) -> ObjectInfo:
        try:
            md5, size = file_md5(path), path.stat().st_size
        except OSError as exc:
            raise StorageError(f"store {self.root}: cannot read {path} to store it as {key}: {exc}") from exc
        return self._put(key, md5, size, content_type, None, lambda tmp: shutil.copyfile(path, tmp))

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None,
                  cache_control: str | None = None, redirect: str | None = None) -> ObjectInfo:
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        return self._put(key, md5, len(data), content_type, check_redirect(redirect),
                         lambda tmp: Path(tmp).write_bytes(data))

    def _put(self, key: str, md5: str, size: int, content_type: str | None, redirect: str | None,
             write: Callable[[str], object]) -> ObjectInfo:
        target = self._path(key)
        kind = content_type or content_type_for(key)
        current = self.stat(key)
        if current is not None and (current.md5, current.size, current.content_type, current.redirect) \
                == (md5, size, kind, redirect):
            return current
        tmp = ""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.TMP_PREFIX, dir=target.parent)
            os.close(fd)
            write(tmp)
            os.chmod(tmp, 0o666 & ~_UMASK)  # readable like any file we create (mkstemp makes it private)
            # The sidecar names the new file's mtime before the file is swapped in: if we stop in between, the
            # old file no longer matches the sidecar and its MD5 is recomputed.
            meta: dict[str, object] = {"md5": md5, "size": size, "content_type": kind,
                                       "mtime_ns": os.stat(tmp).st_mtime_ns}
            if redirect is not None:
                meta["redirect"] = redirect
            self._write_meta(key, meta)
            os.replace(tmp, target)
        except OSError as exc:
            raise StorageError(f"store {self.root}: cannot write {key}: {exc}") from exc
        finally:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
        return ObjectInfo(key, size, md5, kind, uploaded=True, redirect=redirect)

    def _write_meta(self, key: str, meta: dict[str, object]) -> None:
        path = self._meta(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{self.TMP_PREFIX}{path.name}")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path)

    def _sidecar(self, key: str, st: os.stat_result) -> dict[str, object] | None:
        """The object's sidecar while it still describes the file on disk (same size and modification time)."""
        try:
            meta = json.loads(self._meta(key).read_text())
            if isinstance(meta, dict) and meta["size"] == st.st_size and meta["mtime_ns"] == st.st_mtime_ns:
                return meta
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no sidecar, an old one, or a damaged one
        return None

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"store {self.root}: cannot inspect {key}: {exc}") from exc
        if not path.is_file():
            return None
        meta = self._sidecar(key, st)
        if meta is not None and isinstance(meta.get("md5"), str) and isinstance(meta.get("content_type"), str):
            redirect = meta.get("redirect")
            return ObjectInfo(key, st.st_size, str(meta["md5"]), str(meta["content_type"]),
                              redirect=redirect if isinstance(redirect, str) else None)
        try:
            return ObjectInfo(key, st.st_size, file_md5(path), content_type_for(key))
        except OSError as exc:
            raise StorageError(f"store {self.root}: cannot read {key}: {exc}") from exc

    def redirect(self, key: str) -> str | None:
        """Where the object at ``key`` redirects to, if it does; reads only the sidecar (cheap per request)."""
        path = self._path(key)
        try:
            st = path.stat()
        except OSError:
            return None
        meta = self._sidecar(key, st) if path.is_file() else None
        location = meta.get("redirect") if meta else None
        return location if isinstance(location, str) else None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"store {self.root}: cannot read {key}: {exc}") from exc

    def download(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
        except OSError as exc:
            raise StorageError(f"store {self.root}: cannot copy {key} to {path}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            for path in (self._path(key), self._meta(key)):
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"store {self.root}: cannot delete {key}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the folder the prefix points into, not the whole store.
        folder = prefix.rpartition("/")[0]
        base = self._path(folder) if folder else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(self.META + "/") or path.name.startswith(self.TMP_PREFIX) \
                    or not key.startswith(prefix) or not path.is_file():
                continue
            info = self.stat(key)
            if info is not None:
                yield info

    def url(self, key: str) -> str:
        if self.public_url:
            return f"{self.public_url}/{quote(check_key(key))}"
        return self._path(key).as_uri()

    def presign(self, key: str, expires_s: int = 3600) -> str:
        raise StorageError(f"store {self.root}: cannot sign a link to {key}: expiring download links need an S3 "
                           f"store (--store s3://bucket/prefix)")


def open_store(spec: str, *, public_url: str | None = None) -> ObjectStore:
    """A store from a folder path or ``s3://bucket/prefix``; S3 endpoint and credentials come from boto3."""
    if spec.startswith("s3://"):
        from storage.s3 import S3Store

        bucket, _, prefix = spec[len("s3://"):].partition("/")
        if not bucket:
            raise StorageError(f"store {spec!r}: no bucket name (use s3://bucket/prefix)")
        return S3Store(bucket, prefix.strip("/"), public_url=public_url)
    if "://" in spec:
        raise StorageError(f"store {spec!r}: unsupported scheme (use a folder path or s3://bucket/prefix)")
    return LocalStore(Path(spec), public_url=public_url)
