"""S3-compatible object store through boto3 (AWS S3, MinIO, R2, B2, SeaweedFS...).

boto3 reads the endpoint and credentials itself (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, profiles...).
Large files go up in parts (TransferConfig); every object carries its MD5 in ``x-amz-meta-md5`` and is checked
after upload (size, the MD5 metadata, and the ETag of single-part objects); an object with the same MD5, size and
content type is not uploaded again. boto3/botocore errors become :class:`StorageError`, with ``transient`` set for
what a retry can fix (connection trouble, 5xx, throttling) and cleared for what it cannot (403, 404, no bucket,
missing credentials).
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
from boto3.exceptions import Boto3Error, RetriesExceededError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from pipeline.errors import StorageError
from storage.objects import ObjectInfo, cache_control_for, check_key, check_redirect, content_type_for, file_md5

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 16 * 1024 * 1024
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "Throttling",
                             "ThrottlingException", "InternalError", "ServiceUnavailable", "500", "502", "503", "504"})
# botocore errors that no retry can fix: the request itself or the local configuration is wrong.
PERMANENT_BOTOCORE = (NoCredentialsError, PartialCredentialsError, ParamValidationError)
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
S3_ERRORS = (BotoCoreError, ClientError, Boto3Error)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the request that raised ``exc`` may succeed."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
    if isinstance(exc, RetriesExceededError):
        return True
    if isinstance(exc, Boto3Error):
        # boto3 wraps the botocore error of a transfer (S3UploadFailedError); classify by that one.
        cause = exc.__cause__ or exc.__context__
        return is_transient(cause) if cause is not None else False
    return isinstance(exc, BotoCoreError) and not isinstance(exc, PERMANENT_BOTOCORE)


def _detail(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '')}: {error.get('Message', '') or exc}"
    return str(exc)


def _single_part_etag(head: dict[str, Any]) -> str | None:
    """The ETag when it is the object's MD5: single-part, not encrypted with KMS or a customer key."""
    etag = str(head.get("ETag", "")).strip('"')
    if "-" in etag or head.get("ServerSideEncryption") == "aws:kms" or head.get("SSECustomerAlgorithm"):
        return None
    return etag


class S3Store:
    """Objects under ``prefix`` in ``bucket``. ``client`` defaults to a boto3 client configured by boto3 itself."""

    def __init__(self, bucket: str, prefix: str = "", *, public_url: str | None = None, client: Any = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        try:
            self.client = client or boto3.client(
                "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                                    read_timeout=60, signature_version="s3v4"))
        except S3_ERRORS as exc:
            raise StorageError(f"store {self.describe()}: cannot configure the S3 client ({exc}); check "
                               f"AWS_ENDPOINT_URL, AWS_DEFAULT_REGION and the AWS profile") from exc
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_threshold)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: BaseException, action: str, key: str) -> StorageError:
        transient = is_transient(exc)
        hint = "; retry later" if transient else ""
        return StorageError(f"store {self.describe()}: cannot {action} {key}: {_detail(exc)}{hint}",
                            transient=transient)

    def _call(self, action: str, key: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except S3_ERRORS as exc:
            raise self._error(exc, action, key) from exc

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or exc.response.get("Error", {}).get("Code") in NOT_FOUND_CODES:
                return None
            raise self._error(exc, "inspect", key) from exc
        except S3_ERRORS as exc:
            raise self._error(exc, "inspect", key) from exc
        return head

    def _unchanged(self, key: str, md5: str, size: int, kind: str, redirect: str | None = None) -> ObjectInfo | None:
        current = self.stat(key)
        if current is not None and (current.md5, current.size, current.content_type, current.redirect) \
                == (md5, size, kind, redirect):
            log.debug("%s: %s unchanged, not uploaded again", self.describe(), key)
            return current
        return None

    def put_file(self, key: str, path: Path, *, content_type: str | None = None,
                 cache_control: str | None = None) -> ObjectInfo:
        md5, size = file_md5(path), path.stat().st_size
        kind = content_type or content_type_for(key)
        if (current := self._unchanged(key, md5, size, kind)) is not None:
            return current
        extra = {"ContentType": kind, "CacheControl": cache_control or cache_control_for(key), "Metadata": {"md5": md5}}
        self._call("upload", key, self.client.upload_file, Filename=str(path), Bucket=self.bucket,
                   Key=self._key(key), ExtraArgs=extra, Config=self.transfer)
        return self._verify(key, md5, size, kind)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None,
                  cache_control: str | None = None, redirect: str | None = None) -> ObjectInfo:
        """``redirect``: the object carries ``WebsiteRedirectLocation``, so the bucket's website endpoint (and a CDN
        in front of it) answers its URL with a 301 there, while the REST endpoint still serves the body."""
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        kind = content_type or content_type_for(key)
        if (current := self._unchanged(key, md5, len(data), kind, check_redirect(redirect))) is not None:
            return current
        extra = {"WebsiteRedirectLocation": redirect} if redirect else {}
        # Content-MD5 makes the server itself refuse a body damaged on the way.
        self._call("upload", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data,
                   ContentType=kind, CacheControl=cache_control or cache_control_for(key), Metadata={"md5": md5},
                   ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode(), **extra)
        return self._verify(key, md5, len(data), kind, redirect)

    def _verify(self, key: str, md5: str, size: int, kind: str, redirect: str | None = None) -> ObjectInfo:
        head = self._head(key)
        found = None if head is None else (int(head["ContentLength"]), head.get("Metadata", {}).get("md5"))
        etag = None if head is None else _single_part_etag(head)
        if found != (size, md5) or (etag is not None and etag != md5):
            raise StorageError(f"store {self.describe()}: {key} did not arrive intact (expected {size} bytes with "
                               f"md5 {md5}; the server has size/md5 {found}, ETag {etag}); upload it again",
                               transient=True)
        stored = None if head is None else head.get("WebsiteRedirectLocation") or None
        if redirect and stored != redirect:
            # Some S3-compatible servers drop the header (SeaweedFS, for one): the body is what counts here.
            log.warning("%s: %s stored without its redirect to %s: this server ignores WebsiteRedirectLocation; "
                        "redirect the old URL at the web server or CDN in front of the bucket", self.describe(),
                        key, redirect)
        return ObjectInfo(key, size, md5, kind, uploaded=True, redirect=stored)

    def stat(self, key: str) -> ObjectInfo | None:
        head = self._head(key)
        if head is None:
            return None
        md5 = head.get("Metadata", {}).get("md5") or _single_part_etag(head) or ""
        return ObjectInfo(key, int(head["ContentLength"]), md5, str(head.get("ContentType", "")),
                          redirect=head.get("WebsiteRedirectLocation") or None)

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def get_bytes(self, key: str) -> bytes:
        reply = self._call("read", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        return self._call("read", key, reply["Body"].read)

    def download(self, key: str, path: Path) -> None:
        self._call("download", key, self.client.download_file, Bucket=self.bucket, Key=self._key(key),
                   Filename=str(path), Config=self.transfer)

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            reply = self._call("delete", prefix or "(everything)", self.client.delete_objects, Bucket=self.bucket,
                               Delete={"Objects": batch, "Quiet": True})
            # A batch delete answers 200 even when single objects failed; those are listed in Errors.
            if failed := reply.get("Errors"):
                first = failed[0]
                raise StorageError(f"store {self.describe()}: cannot delete {len(failed)} object(s) under "
                                   f"{prefix!r}, e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')}",
                                   transient=str(first.get("Code", "")) in TRANSIENT_CODES)
        return len(keys)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``. Listings carry no content type, so it is guessed from the key;
        the MD5 comes from the ETag (empty for multipart objects: ``stat`` reads the stored one)."""
        if prefix:
            check_key(prefix.rstrip("/"))
        full = (self.prefix + "/" if self.prefix else "") + prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    etag = str(item.get("ETag", "")).strip('"')
                    yield ObjectInfo(item["Key"][strip:], int(item["Size"]), "" if "-" in etag else etag,
                                     content_type_for(item["Key"]))
        except S3_ERRORS as exc:
            raise self._error(exc, "list", prefix or "(everything)") from exc

    def url(self, key: str) -> str:
        if self.public_url:
            return f"{self.public_url}/{quote(check_key(key))}"
        endpoint = self.client.meta.endpoint_url.rstrip("/")
        return f"{endpoint}/{self.bucket}/{quote(self._key(key))}"

    def presign(self, key: str, expires_s: int = 3600) -> str:
        return self._call("sign", key, self.client.generate_presigned_url,
                          ClientMethod="get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                          ExpiresIn=expires_s)
