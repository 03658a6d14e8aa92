"""S3-compatible object store through boto3 (AWS S3, MinIO, R2, B2, SeaweedFS...).

boto3 reads the endpoint and credentials itself (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, profiles...).
Large files go up in parts (TransferConfig); every object carries its MD5 in ``x-amz-meta-md5`` and is checked
after upload; an object with the same MD5 and size is not uploaded again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pipeline.errors import StorageError
from storage.objects import ObjectInfo, cache_control_for, check_key, content_type_for, file_md5

log = logging.getLogger(__name__)

MULTIPART_THRESHOLD = 16 * 1024 * 1024
TRANSIENT_CODES = {"RequestTimeout", "RequestTimeTooSkewed", "SlowDown", "Throttling", "ThrottlingException",
                   "InternalError", "ServiceUnavailable", "503", "500", "502", "504"}


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", *, public_url: str | None = None, client: Any = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        self.client = client or boto3.client(
            "s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                                signature_version="s3v4"))
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_threshold)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: Exception, action: str, key: str) -> StorageError:
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, EndpointConnectionError

        transient = isinstance(exc, ConnectionError | EndpointConnectionError)
        detail = str(exc)
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            transient = code in TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
            detail = f"{code}: {exc.response.get('Error', {}).get('Message', '')}"
        elif isinstance(exc, BotoCoreError):
            transient = True
        return StorageError(f"store {self.describe()}: cannot {action} {key}: {detail}", transient=transient)

    def _call(self, action: str, key: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, action, key) from exc

    def put_file(self, key: str, path: Path, *, content_type: str | None = None,
                 cache_control: str | None = None) -> ObjectInfo:
        md5, size = file_md5(path), path.stat().st_size
        kind = content_type or content_type_for(key)
        current = self.stat(key)
        if current is not None and current.md5 == md5 and current.size == size and current.content_type == kind:
            return current
        extra = {"ContentType": kind, "CacheControl": cache_control or cache_control_for(key), "Metadata": {"md5": md5}}
        self._call("upload", key, self.client.upload_file, Filename=str(path), Bucket=self.bucket, Key=self._key(key),
                   ExtraArgs=extra, Config=self.transfer)
        return self._verify(key, md5, size, kind)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None,
                  cache_control: str | None = None) -> ObjectInfo:
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        kind = content_type or content_type_for(key)
        current = self.stat(key)
        if current is not None and current.md5 == md5 and current.size == len(data) and current.content_type == kind:
            return current
        import base64

        self._call("upload", key, self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data,
                   ContentType=kind, CacheControl=cache_control or cache_control_for(key), Metadata={"md5": md5},
                   ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode())
        return self._verify(key, md5, len(data), kind)

    def _verify(self, key: str, md5: str, size: int, kind: str) -> ObjectInfo:
        stored = self.stat(key)
        if stored is None or stored.size != size or stored.md5 != md5:
            raise StorageError(f"store {self.describe()}: {key} did not arrive intact (expected {size} bytes, md5 "
                               f"{md5}; found {stored})", transient=True)
        return ObjectInfo(key, size, md5, kind, uploaded=True)

    def stat(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404 or \
                    exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(exc, "inspect", key) from exc
        except Exception as exc:
            from botocore.exceptions import BotoCoreError

            if isinstance(exc, BotoCoreError):
                raise self._error(exc, "inspect", key) from exc
            raise
        etag = str(head.get("ETag", "")).strip('"')
        md5 = head.get("Metadata", {}).get("md5") or ("" if "-" in etag else etag)
        return ObjectInfo(key, int(head["ContentLength"]), md5, str(head.get("ContentType", "")))

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def get_bytes(self, key: str) -> bytes:
        body = self._call("read", key, self.client.get_object, Bucket=self.bucket, Key=self._key(key))["Body"]
        return body.read()

    def download(self, key: str, path: Path) -> None:
        self._call("download", key, self.client.download_file, Bucket=self.bucket, Key=self._key(key),
                   Filename=str(path), Config=self.transfer)

    def delete(self, key: str) -> None:
        self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = [info.key for info in self.list(prefix)]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            self._call("delete", prefix, self.client.delete_objects, Bucket=self.bucket,
                       Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        if prefix:
            check_key(prefix.rstrip("/"))
        full = (self.prefix + "/" if self.prefix else "") + prefix
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    etag = str(item.get("ETag", "")).strip('"')
                    yield ObjectInfo(item["Key"][strip:], int(item["Size"]), "" if "-" in etag else etag,
                                     content_type_for(item["Key"]))
        except Exception as exc:
            from botocore.exceptions import BotoCoreError, ClientError

            if isinstance(exc, BotoCoreError | ClientError):
                raise self._error(exc, "list", prefix) from exc
            raise

    def url(self, key: str) -> str:
        if self.public_url:
            return f"{self.public_url}/{quote(check_key(key))}"
        endpoint = self.client.meta.endpoint_url.rstrip("/")
        return f"{endpoint}/{self.bucket}/{quote(self._key(key))}"

    def presign(self, key: str, expires_s: int = 3600) -> str:
        return self._call("sign", key, self.client.generate_presigned_url, ClientMethod="get_object",
                          Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=expires_s)
