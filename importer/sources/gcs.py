"""Google Cloud Storage objects as an importer source, through GCS's JSON API.

URLs are the ones CDI accepts (`pkg/importer/gcs-datasource.go`): `gs://bucket/object`
for Google itself, or `http(s)://host[:port]/bucket/object`, whose scheme and host CDI
takes as the endpoint (so `https://storage.googleapis.com/bucket/object`, and an emulator
or a private endpoint by its address). `storage.cloud.google.com` is the console's
browser-download host, which serves no API: it means storage.googleapis.com. For gs://
URLs the endpoint can be moved with `STORAGE_EMULATOR_HOST`, the variable Google's own
client libraries read (CDI has no such knob).

Credentials as CDI reads them: the `secretRef` Secret mounted at /google with
`GOOGLE_APPLICATION_CREDENTIALS=/google/credentials.json` (a service-account key, see
gcsauth.py); anonymous without one.

The metadata GET gives the size and the object's generation; every media GET names that
generation, so a drop resumes with a Range request from the last byte without ever mixing
two versions, and random access for qemu-img is a `PinnedObject` over ranged GETs of the
same generation, served to nbdkit by the loopback range proxy (no token reaches nbdkit).
The object's md5Hash, when GCS keeps one, is verified over the bytes like a user's
checksum (CDI relies on it the same way). Objects stored gzip-encoded are fetched as
stored (`Accept-Encoding: gzip`), so sizes and ranges match the metadata and our own
decompression takes over.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import requests
import urllib3.exceptions

from cdicontract.reasons import Reason
from importer.checksum import Checksum
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.sources.addressguard import LocalAddressRefused, check_host, guard, refused_in
from importer.sources.base import SourceCapabilities, SourceInfo
from importer.sources.gcsauth import TokenSource, read_key
from importer.sources.httpwire import content_length, parse_content_range
from importer.sources.pinned import BLOCK, PinnedObject, Window

CHUNK = 1 << 20
GOOGLE_API = "https://storage.googleapis.com"
BROWSER_HOST = "storage.cloud.google.com"
_NETWORK_ERRORS = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


@dataclass(frozen=True)
class GcsOptions:
    credentials_file: str | None = None
    """A service-account key (GOOGLE_APPLICATION_CREDENTIALS); None: anonymous."""
    emulator_host: str | None = None
    """STORAGE_EMULATOR_HOST: where gs:// URLs go instead of storage.googleapis.com."""
    ca_bundle: str | None = None
    insecure: bool = False
    range_block: int = BLOCK
    deny_local_addresses: bool = False
    connect_timeout: float = 20.0
    read_timeout: float = 60.0


@dataclass(frozen=True)
class GcsLocation:
    bucket: str
    object: str
    api: str
    """The endpoint's scheme://host[:port], without a trailing slash."""

    @property
    def description(self) -> str:
        if self.api == GOOGLE_API:
            return f"gs://{self.bucket}/{self.object}"
        return f"{self.api}/{self.bucket}/{self.object}"

    @property
    def object_url(self) -> str:
        return (
            f"{self.api}/storage/v1/b/{quote(self.bucket, safe='')}"
            f"/o/{quote(self.object, safe='')}"
        )

    @property
    def bucket_url(self) -> str:
        return f"{self.api}/storage/v1/b/{quote(self.bucket, safe='')}"


def emulator_base(host: str) -> str:
    """STORAGE_EMULATOR_HOST as Google's libraries read it: `host:port` means http."""
    host = host.strip().rstrip("/")
    return host if "://" in host else f"http://{host}"


def parse_gcs_url(url: str, emulator_host: str | None = None) -> GcsLocation:
    """Split a CDI GCS URL into endpoint, bucket and object (pure; raises INVALID_CONFIG)."""
    parts = urlsplit(url.strip())
    if parts.username or parts.password:
        raise ImportFailure(Reason.INVALID_CONFIG, "GCS URL must not carry credentials")
    if parts.query or parts.fragment:
        raise ImportFailure(Reason.INVALID_CONFIG, "GCS URL must not carry a query or fragment")
    scheme = parts.scheme.lower()
    if scheme == "gs":
        # gs:// names are literal (gsutil's rule): no percent-decoding.
        bucket, obj = parts.netloc, parts.path.lstrip("/")
        api = emulator_base(emulator_host) if emulator_host else GOOGLE_API
    elif scheme in ("http", "https") and parts.hostname:
        bucket, _, obj = unquote(parts.path).lstrip("/").partition("/")
        host = parts.hostname.lower()
        api = GOOGLE_API if host == BROWSER_HOST else f"{scheme}://{parts.netloc}"
    else:
        raise ImportFailure(
            Reason.INVALID_CONFIG,
            "GCS URL must be gs://bucket/object or http(s)://host[:port]/bucket/object",
        )
    if not bucket or not obj or obj.endswith("/"):
        raise ImportFailure(Reason.INVALID_CONFIG, "GCS URL must name a bucket and an object")
    return GcsLocation(bucket=bucket, object=obj, api=api)


def stored_md5(value: object) -> Checksum | None:
    """GCS's `md5Hash` (base64 of 16 bytes) as a checksum; None when absent (composite
    objects have only a crc32c) or not a digest."""
    if not isinstance(value, str):
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except ValueError:
        return None
    return Checksum("md5", digest.hex()) if len(digest) == 16 else None


def failure_for(status: int, where: str, *, after_info: bool = False) -> ImportFailure | None:
    """What a JSON API status means (pure); None for a 2xx."""
    if 200 <= status < 300:
        return None
    if status == 404 and after_info:
        return RestartRequired(
            f"GCS object {where} changed during the import (its generation is gone)",
            Reason.SOURCE_CHANGED,
        )
    if status == 412:
        return RestartRequired(
            f"GCS object {where} changed during the import", Reason.SOURCE_CHANGED
        )
    if status in (404, 410):
        return ImportFailure(Reason.SOURCE_NOT_FOUND, f"GCS object {where} does not exist")
    if status == 401:
        return ImportFailure(
            Reason.UNAUTHORIZED, f"GCS {where}: HTTP 401, credentials missing or refused"
        )
    if status == 403:
        return ImportFailure(Reason.FORBIDDEN, f"GCS {where}: HTTP 403, access forbidden")
    if status in (408, 429) or status >= 500:
        return TransientSourceError(f"GCS {where}: HTTP {status}", Reason.SERVER_ERROR)
    return ImportFailure(Reason.SERVER_ERROR, f"GCS {where}: unexpected HTTP {status}")


def translate(exc: BaseException, where: str) -> ImportFailure:
    """The one place requests/urllib3 exceptions become ImportFailures (no URL text kept)."""
    refused = refused_in(exc)
    if refused is not None:
        return ImportFailure(
            Reason.ADDRESS_REFUSED,
            f"GCS {where}: {refused.host} is {refused.address}, a loopback or link-local "
            "address, which this cluster does not import from",
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return ImportFailure(Reason.TLS_ERROR, f"GCS {where}: TLS verification failed")
    if isinstance(exc, requests.exceptions.ReadTimeout | urllib3.exceptions.ReadTimeoutError):
        return TransientSourceError(f"GCS {where}: the server stalled", Reason.STALLED)
    return TransientSourceError(f"GCS {where}: {type(exc).__name__}")


class _GcsStream:
    """One media GET body as raw chunks, drops re-raised as TransientSourceError."""

    def __init__(self, response: requests.Response | None, expected: int, where: str) -> None:
        self._response = response
        self._expected = expected
        self._where = where

    def __iter__(self) -> Iterator[bytes]:
        if self._response is None:
            return
        got = 0
        raw = self._response.raw
        try:
            while True:
                chunk = raw.read(CHUNK, decode_content=False)
                if not chunk:
                    break
                got += len(chunk)
                yield chunk
        except _NETWORK_ERRORS as e:
            raise translate(e, f"reading {self._where}") from e
        if got != self._expected:
            raise TransientSourceError(
                f"GCS reading {self._where}: body ended after {got} of {self._expected} bytes"
            )

    def close(self) -> None:
        if self._response is not None:
            with contextlib.suppress(Exception):  # a broken connection has nothing to release
                self._response.close()


class GcsSource:
    """A GCS object as a Source: `info` (metadata GET), `open(offset)` (ranged media GET)."""

    def __init__(
        self, url: str, options: GcsOptions, session: requests.Session | None = None
    ) -> None:
        self._loc = parse_gcs_url(url, options.emulator_host)
        self._options = options
        if options.ca_bundle and not options.insecure:
            self._verify: bool | str = options.ca_bundle
        else:
            self._verify = not options.insecure
        self._session = session if session is not None else requests.Session()
        if options.deny_local_addresses:
            parts = urlsplit(self._loc.api)
            try:
                check_host(parts.hostname or "", parts.port or 443)
            except LocalAddressRefused as exc:
                raise ImportFailure(
                    Reason.ADDRESS_REFUSED,
                    f"GCS endpoint {exc.host} is {exc.address}, a loopback or link-local "
                    "address, which this cluster does not import from",
                ) from exc
            guard(self._session)
        self._tokens: TokenSource | None = None
        if options.credentials_file:
            key = read_key(options.credentials_file)
            self._tokens = TokenSource(key, self._post)
        self._info: SourceInfo | None = None
        self._generation: str | None = None
        self._window: Window | None = None

    @property
    def location(self) -> GcsLocation:
        return self._loc

    def _post(self, url: str, **kwargs: Any) -> requests.Response:
        return self._session.post(url, verify=self._verify, **kwargs)

    def _get(
        self, url: str, params: Mapping[str, str], headers: Mapping[str, str], what: str
    ) -> requests.Response:
        sent = {"User-Agent": "cdi-py-importer", **headers}
        if self._tokens is not None:
            sent["Authorization"] = f"Bearer {self._tokens.token()}"
        try:
            return self._session.get(
                url,
                params=params,
                headers=sent,
                stream=True,
                allow_redirects=False,
                timeout=(self._options.connect_timeout, self._options.read_timeout),
                verify=self._verify,
            )
        except _NETWORK_ERRORS as e:
            raise translate(e, what) from e

    def info(self) -> SourceInfo:
        if self._info is not None:
            return self._info
        loc = self._loc
        with self._get(loc.object_url, {}, {}, f"metadata of {loc.description}") as response:
            failure = failure_for(response.status_code, loc.description)
            if failure is not None:
                if failure.reason is Reason.SOURCE_NOT_FOUND and self._bucket_missing():
                    raise ImportFailure(
                        Reason.BUCKET_NOT_FOUND, f"GCS bucket {loc.bucket} does not exist"
                    )
                raise failure
            try:
                doc = response.json()
                size = int(doc["size"])
                generation = str(doc["generation"])
            except (ValueError, KeyError, TypeError):
                raise ImportFailure(
                    Reason.SERVER_ERROR, f"GCS metadata of {loc.description} is malformed"
                ) from None
        if size < 0 or not generation.isdigit():
            raise ImportFailure(
                Reason.SERVER_ERROR, f"GCS metadata of {loc.description} is malformed"
            )
        self._generation = generation
        self._info = SourceInfo(
            size=size,
            supports_ranges=True,
            validator=generation,
            description=loc.description,
            checksum=stored_md5(doc.get("md5Hash")),
        )
        return self._info

    def _bucket_missing(self) -> bool:
        """The object's 404 does not say whether the bucket exists: ask the bucket."""
        loc = self._loc
        try:
            with self._get(loc.bucket_url, {}, {}, f"bucket {loc.bucket}") as response:
                return response.status_code == 404
        except ImportFailure:
            return False

    def _media(self, start: int, end: int | None) -> tuple[requests.Response, int]:
        """A media GET of the pinned generation from `start` (to `end` inclusive)."""
        info = self.info()
        loc = self._loc
        headers = {"Accept-Encoding": "gzip"}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"
        params = {"alt": "media", "generation": self._generation or ""}
        response = self._get(loc.object_url, params, headers, f"GET {loc.description}")
        failure = failure_for(response.status_code, loc.description, after_info=True)
        if failure is not None:
            response.close()
            raise failure
        size = info.size or 0
        last = size - 1 if end is None else end
        if response.status_code == 206:
            got = parse_content_range(response.headers.get("Content-Range"))
            if got is None or got[0] != start or got[1] != last:
                response.close()
                raise ImportFailure(
                    Reason.SERVER_ERROR,
                    f"GCS {loc.description}: answered range {got} for bytes {start}-{last}",
                )
        elif start:
            response.close()
            raise ImportFailure(
                Reason.SERVER_ERROR, f"GCS {loc.description}: the server ignored a Range request"
            )
        expected = last - start + 1
        promised = content_length(response.headers)
        if promised is not None and promised != expected:
            response.close()
            raise ImportFailure(
                Reason.SERVER_ERROR,
                f"GCS {loc.description}: {promised} bytes announced for a range of {expected}",
            )
        return response, expected

    def open(self, offset: int = 0) -> _GcsStream:
        info = self.info()
        if info.size is not None and offset >= info.size:
            return _GcsStream(None, 0, self._loc.description)
        response, expected = self._media(offset, None)
        return _GcsStream(response, expected, self._loc.description)

    def capabilities(self) -> SourceCapabilities:
        info = self.info()
        if info.size:
            return SourceCapabilities(restartable=True, random_access=True)
        return SourceCapabilities(
            restartable=True, random_access=False, scratch_reason="the GCS object is empty"
        )

    def random_reads(self) -> Window | None:
        """A pinned view of the object (ranged GETs of one generation), None when empty."""
        if self._window is None:
            info = self.info()
            if not info.size:
                return None
            pinned = PinnedObject(
                self._fetch_range,
                info.size,
                description=info.description,
                block=self._options.range_block,
            )
            name = posixpath.basename(self._loc.object)
            self._window = Window(pinned, 0, info.size, name=name)
        return self._window

    def _fetch_range(self, start: int, end: int) -> Iterator[bytes]:
        response, expected = self._media(start, end)
        stream = _GcsStream(response, expected, self._loc.description)
        try:
            yield from stream
        finally:
            stream.close()

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
        self._session.close()

