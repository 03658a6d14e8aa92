"""``roomcast serve``: a folder store over HTTP on this machine, to look at pages and feeds before publishing.

The standard library's file server, plus what players need from a media host: byte ranges (seeking in a replay
before it is downloaded), the content types of podcast files, no listing of roomcast's own metadata folders, and
a 301 for an object the store marks as redirected (the old address of a feed that moved, ``roomcast feed move``).
"""

from __future__ import annotations

import logging
import os
import re
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pipeline.errors import StorageError
from storage.objects import LocalStore

log = logging.getLogger(__name__)

EXTRA_TYPES = {".vtt": "text/vtt", ".srt": "application/x-subrip", ".m4a": "audio/mp4", ".mp3": "audio/mpeg",
               ".opus": "audio/ogg", ".xml": "application/rss+xml", ".json": "application/json",
               ".js": "text/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8"}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class StoreRequestHandler(SimpleHTTPRequestHandler):
    """Serves files with single byte ranges; hides dot folders (the store's metadata and temp files)."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **EXTRA_TYPES}
    _remaining: int | None = None  # bytes left to send of a range request

    def send_head(self) -> Any:
        if any(part.startswith(".") for part in self.path.split("?")[0].split("/") if part):
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return None
        if (location := self._redirect()) is not None:
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        path = self.translate_path(self.path)
        match = _RANGE.match(self.headers.get("Range", "").strip())
        if match is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        elif last:
            start, end = max(0, size - int(last)), size - 1
        else:
            return super().send_head()
        if start >= size or start > end:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.end_headers()
            return None
        handle = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller, as in SimpleHTTPRequestHandler
        handle.seek(start)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self._remaining = end - start + 1
        return handle

    def _redirect(self) -> str | None:
        key = unquote(urlsplit(self.path).path).lstrip("/")
        try:
            return LocalStore(Path(self.directory)).redirect(key) if key else None
        except StorageError:
            return None  # not a key a store could hold: served (or refused) as a plain path

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def copyfile(self, source: Any, outputfile: Any) -> None:
        remaining, self._remaining = self._remaining, None
        try:
            if remaining is None:
                super().copyfile(source, outputfile)
                return
            while remaining > 0:
                chunk = source.read(min(1 << 16, remaining))
                if not chunk:
                    break
                outputfile.write(chunk)
                remaining -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a player that has what it needs closes the connection mid-file

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.info("%s " + format, self.address_string(), *args)


def make_server(folder: Path, *, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server for ``folder`` (not started); ``port`` 0 picks a free one (see ``server_address``)."""
    handler = partial(StoreRequestHandler, directory=str(folder))
    return ThreadingHTTPServer((host, port), handler)
