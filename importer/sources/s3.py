"""S3 and S3-compatible object stores as an importer source.

URLs are the ones CDI users write: `s3://bucket/key` for AWS (region from botocore's own
configuration), or an endpoint URL `http(s)://host[:port]/bucket/key` for MinIO, Ceph RGW
and friends, addressed path-style so IP-and-port endpoints work (CDI issue #2173).

The body is streamed with ranged GETs pinned to the object's ETag (`IfMatch`), so a drop
resumes from the last byte without mixing two versions of an object. Random access for
qemu-img is a `PinnedObject` (pinned.py) whose ranged GETs carry the same `IfMatch`; the
pipeline serves it to nbdkit through the loopback range proxy, which signs each GET
in-process: no credential reaches nbdkit.

Every botocore/urllib3 exception is translated here, at the boundary, into an
`ImportFailure` with a precise reason; messages name the bucket and key, never the keys.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import botocore.exceptions
import urllib3.exceptions
from botocore import UNSIGNED
from botocore.config import Config

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.sources.addressguard import LocalAddressRefused, check_host
from importer.sources.base import SourceCapabilities, SourceInfo
from importer.sources.pinned import BLOCK, PinnedObject, Window

CHUNK = 1 << 20
_AWS_VHOST = re.compile(r"^(?P<bucket>.+)\.s3[.-](?:[a-z0-9-]+\.)?amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class S3Options:
    access_key: str | None = None
    secret_key: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    region: str | None = None
    range_block: int = BLOCK
    deny_local_addresses: bool = False


@dataclass(frozen=True)
class S3Location:
    """Where an object lives: endpoint None means AWS itself (botocore picks the endpoint)."""

    bucket: str
    key: str
    endpoint: str | None

    @property
    def description(self) -> str:
        where = self.endpoint or "s3:/"
        return f"{where}/{self.bucket}/{self.key}"


def parse_s3_url(url: str) -> S3Location:
    """Split a CDI S3 URL into endpoint, bucket and key (pure; raises INVALID_CONFIG)."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.scheme == "s3":
        bucket, key = parts.netloc, path.lstrip("/")
        endpoint = None
    elif parts.scheme in ("http", "https") and parts.netloc:
        if parts.username or parts.password:
            raise ImportFailure(Reason.INVALID_CONFIG, "S3 URL must not carry credentials")
        host = parts.hostname or ""
        vhost = _AWS_VHOST.match(host)
        if vhost:  # https://bucket.s3.region.amazonaws.com/key: virtual-hosted AWS style
            bucket, key = vhost.group("bucket"), path.lstrip("/")
            endpoint = None
        else:
            bucket, _, key = path.lstrip("/").partition("/")
            endpoint = f"{parts.scheme}://{parts.netloc}"
    else:
        raise ImportFailure(
            Reason.INVALID_CONFIG,
            "S3 URL must be s3://bucket/key or http(s)://host[:port]/bucket/key",
        )
    if not bucket or not key or key.endswith("/"):
        raise ImportFailure(Reason.INVALID_CONFIG, "S3 URL must name a bucket and an object key")
    return S3Location(bucket=bucket, key=key, endpoint=endpoint)


def _client_kwargs(loc: S3Location, options: S3Options) -> dict[str, Any]:
    signed = bool(options.access_key and options.secret_key)
    config = Config(
        signature_version="s3v4" if signed else UNSIGNED,
        s3={"addressing_style": "path" if loc.endpoint else "auto"},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=20,
        read_timeout=60,
    )
    kwargs: dict[str, Any] = {"config": config}
    if loc.endpoint:
        kwargs["endpoint_url"] = loc.endpoint
        # Non-AWS stores ignore the region but SigV4 needs one.
        kwargs["region_name"] = options.region or "us-east-1"
    elif options.region:
        kwargs["region_name"] = options.region
    if signed:
        kwargs["aws_access_key_id"] = options.access_key
        kwargs["aws_secret_access_key"] = options.secret_key
    if options.insecure:
        kwargs["verify"] = False
    elif options.ca_bundle:
        kwargs["verify"] = options.ca_bundle
    return kwargs


_TRANSIENT_BOTO = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.HTTPClientError,
)
_STREAM_ERRORS = (
    botocore.exceptions.BotoCoreError,
    urllib3.exceptions.HTTPError,
    OSError,
)


def reason_for_code(code: str, status: int) -> Reason:
    """Map an S3 error code / HTTP status to a termination reason (pure)."""
    if code == "NoSuchBucket":
        return Reason.BUCKET_NOT_FOUND
    if code in ("NoSuchKey", "404", "NotFound") or status == 404:
        return Reason.SOURCE_NOT_FOUND
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
        return Reason.UNAUTHORIZED
    if code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
        return Reason.FORBIDDEN
    if code == "401" or status == 401:
        return Reason.UNAUTHORIZED
    if status >= 500:
        return Reason.SERVER_ERROR
    return Reason.SERVER_ERROR


def translate(exc: Exception, what: str) -> ImportFailure:
    """One boundary for botocore exceptions; the message names the object, never credentials."""
    if isinstance(exc, ImportFailure):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        reason = reason_for_code(code, status)
        message = f"S3 {what}: {code or status}"
        if reason is Reason.SERVER_ERROR:
            return TransientSourceError(message, Reason.SERVER_ERROR)
        return ImportFailure(reason, message)
    if isinstance(exc, botocore.exceptions.SSLError):
        return ImportFailure(Reason.TLS_ERROR, f"S3 {what}: TLS verification failed")
    if isinstance(exc, _TRANSIENT_BOTO):
        return TransientSourceError(f"S3 {what}: {type(exc).__name__}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.NoRegionError):
        return ImportFailure(Reason.INVALID_CONFIG, f"S3 {what}: {type(exc).__name__}")
    if isinstance(exc, _STREAM_ERRORS):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in type(exc).__name__:
            return ImportFailure(Reason.TLS_ERROR, f"S3 {what}: TLS verification failed")
        return TransientSourceError(f"S3 {what}: {type(exc).__name__}")
    return ImportFailure(Reason.INTERNAL, f"S3 {what}: {type(exc).__name__}")


class _S3Stream:
    """One ranged GET body, re-raising drops as TransientSourceError."""

    def __init__(self, body: Any, expected: int | None, what: str) -> None:
        self._body = body
        self._expected = expected
        self._what = what

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        try:
            for chunk in self._body.iter_chunks(CHUNK):
                received += len(chunk)
                yield chunk
        except Exception as exc:
            raise translate(exc, f"reading {self._what}") from exc
        if self._expected is not None and received != self._expected:
            raise TransientSourceError(
                f"S3 reading {self._what}: body ended after {received} of {self._expected} bytes"
            )

    def close(self) -> None:
        # Closing a broken connection may fail; there is nothing left to release then.
        with contextlib.suppress(Exception):
            self._body.close()


class S3Source:
    """An S3 object as a Source: `info` (HEAD), `open(offset)` (ranged GET), nbdkit access."""

    def __init__(
        self,
        url: str,
        options: S3Options,
        client_factory: Callable[..., Any] | None = None,
    ) -> None:
        self._loc = parse_s3_url(url)
        self._options = options
        if options.deny_local_addresses and self._loc.endpoint:
            parts = urlsplit(self._loc.endpoint)
            try:
                check_host(parts.hostname or "", parts.port or 443)
            except LocalAddressRefused as exc:
                raise ImportFailure(
                    Reason.ADDRESS_REFUSED,
                    f"S3 endpoint {exc.host} is {exc.address}, a loopback or link-local "
                    "address, which this cluster does not import from",
                ) from exc
        factory = client_factory or boto3.session.Session().client
        try:
            self._client = factory("s3", **_client_kwargs(self._loc, options))
        except Exception as exc:
            raise translate(exc, f"client for {self._loc.description}") from exc
        self._info: SourceInfo | None = None
        self._window: Window | None = None

    @property
    def location(self) -> S3Location:
        return self._loc

    def info(self) -> SourceInfo:
        loc = self._loc
        try:
            head = self._client.head_object(Bucket=loc.bucket, Key=loc.key)
        except botocore.exceptions.ClientError as exc:
            raise self._explain_head_error(exc) from exc
        except Exception as exc:
            raise translate(exc, f"HEAD {loc.description}") from exc
        self._info = SourceInfo(
            size=int(head["ContentLength"]),
            supports_ranges=True,
            validator=head.get("ETag"),
            description=loc.description,
        )
        return self._info

    def _explain_head_error(self, exc: botocore.exceptions.ClientError) -> ImportFailure:
        """HEAD responses carry no error body: ask a GET for the precise code (bucket vs key,
        access denied vs unknown key)."""
        loc = self._loc
        try:
            self._client.get_object(Bucket=loc.bucket, Key=loc.key, Range="bytes=0-0")
        except botocore.exceptions.ClientError as detail:
            return translate(detail, f"GET {loc.description}")
        except Exception as other:
            return translate(other, f"GET {loc.description}")
        return translate(exc, f"HEAD {loc.description}")

    def open(self, offset: int = 0) -> _S3Stream:
        loc = self._loc
        info = self._info or self.info()
        kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": loc.key}
        if offset:
            if info.size is not None and offset >= info.size:
                return _S3Stream(_EmptyBody(), 0, loc.description)
            kwargs["Range"] = f"bytes={offset}-"
        if info.validator:
            kwargs["IfMatch"] = info.validator
        resp = self._get_object(kwargs)
        expected = resp.get("ContentLength")
        return _S3Stream(resp["Body"], None if expected is None else int(expected), loc.description)

    def _get_object(self, kwargs: dict[str, Any]) -> Any:
        """GET with the boto exceptions translated; a failed IfMatch means the object changed."""
        loc = self._loc
        try:
            return self._client.get_object(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412"):
                raise RestartRequired(
                    f"S3 object {loc.description} changed during the import",
                    Reason.SOURCE_CHANGED,
                ) from exc
            raise translate(exc, f"GET {loc.description}") from exc
        except Exception as exc:
            raise translate(exc, f"GET {loc.description}") from exc

    def capabilities(self) -> SourceCapabilities:
        info = self._info or self.info()
        if info.size:
            return SourceCapabilities(restartable=True, random_access=True)
        return SourceCapabilities(
            restartable=True, random_access=False, scratch_reason="the S3 object is empty"
        )

    def random_reads(self) -> Window | None:
        """A pinned view of the object (ranged GETs with IfMatch), or None when it is empty."""
        if self._window is None:
            info = self._info or self.info()
            if not info.size:
                return None
            pinned = PinnedObject(
                self._fetch_range,
                info.size,
                description=info.description,
                block=self._options.range_block,
            )
            name = posixpath.basename(self._loc.key)
            self._window = Window(pinned, 0, info.size, name=name)
        return self._window

    def _fetch_range(self, start: int, end: int) -> Iterator[bytes]:
        loc = self._loc
        kwargs: dict[str, Any] = {"Bucket": loc.bucket, "Key": loc.key}
        kwargs["Range"] = f"bytes={start}-{end}"
        if self._info is not None and self._info.validator:
            kwargs["IfMatch"] = self._info.validator
        resp = self._get_object(kwargs)
        stream = _S3Stream(resp["Body"], end - start + 1, loc.description)
        try:
            yield from stream
        finally:
            stream.close()

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


class _EmptyBody:
    def iter_chunks(self, size: int) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        pass
