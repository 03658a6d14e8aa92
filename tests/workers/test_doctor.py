"""``roomcast doctor`` against a real S3-compatible server (SeaweedFS) over HTTP, and against a public URL that
serves nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from storage.layout import PROBE_KEY
from storage.s3 import S3Store
from tests.s3servers import ACCESS_KEY, SECRET_KEY, WeedServer
from workers.doctor import check_store

pytestmark = pytest.mark.s3

CORS = {"CORSRules": [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"], "AllowedHeaders": ["*"],
                       "ExposeHeaders": ["Content-Length", "Content-Range", "Accept-Ranges"],
                       "MaxAgeSeconds": 86400}]}


def _client(server: WeedServer) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, region_name="us-east-1")


def test_doctor_reads_the_store_from_outside(s3_server: WeedServer, bucket: str) -> None:
    store = S3Store(bucket)
    checks = {c.name: c for c in check_store(store)}
    for name in ("public read", "content type", "range requests"):
        assert checks[name].ok, checks[name]
    assert not store.exists(PROBE_KEY)  # the probe is cleaned up
    _client(s3_server).put_bucket_cors(Bucket=bucket, CORSConfiguration=CORS)
    after = {c.name: c for c in check_store(store)}
    assert after["CORS read"].ok and after["CORS preflight"].ok, after


def test_doctor_fails_loudly_when_the_public_url_serves_nothing(s3_server: WeedServer, bucket: str,
                                                              tmp_path: Path) -> None:
    env = dict(os.environ, ROOMCAST_STORE=f"s3://{bucket}", ROOMCAST_PUBLIC_URL="http://127.0.0.1:9/nothing",
               ROOMCAST_DATABASE_URL=f"sqlite:///{tmp_path / 'c.sqlite'}")
    done = subprocess.run([sys.executable, "-m", "workers.cli", "doctor"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 1
    assert "FAIL public read" in done.stdout and "ROOMCAST_PUBLIC_URL" in done.stdout


def test_doctor_names_what_a_plain_web_server_lacks(tmp_path: Path) -> None:
    """A folder store behind Python's http.server: readable, but no byte ranges and no CORS headers."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from storage.objects import LocalStore

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    root = tmp_path / "store"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        store = LocalStore(root, public_url=f"http://127.0.0.1:{server.server_address[1]}")
        checks = {c.name: c for c in check_store(store)}
    finally:
        server.shutdown()
        server.server_close()
    assert checks["public read"].ok and checks["content type"].ok
    assert not checks["range requests"].ok and "HTTP 200" in checks["range requests"].detail
    assert not checks["CORS read"].ok and "docs/deployment.md" in checks["CORS read"].detail
    assert not checks["CORS preflight"].ok
