"""The HTTP(S) source: probe with HEAD, stream with GET, re-open with Range, describe nbdkit access.

Redirects are followed here, hop by hop, rather than by requests, so that every hop's
scheme is checked (a redirect to `file://` or `ftp://`, or from https down to http, is
refused before anything is fetched), loops are named as loops, the final URL is known for
ranged reads, and credentials (basic auth, `secretExtraHeaders`, and extra headers named
Authorization, Proxy-Authorization or Cookie) are only sent to the origin they were given
for: the same scheme, host and port, or its https upgrade.

Random access (`random_reads`) is a `PinnedObject` whose ranged GETs carry the validator
(If-Match for a strong ETag, If-Range, If-Unmodified-Since for a date), so a server that
changes the object mid-import is caught, and whose bytes are fingerprinted, so one that
answers two reads of the same range differently is caught too.

requests/urllib3 exceptions are translated into `ImportFailure`s in this module only
(`_translate`), with messages built from the redacted URL, never from the exception text
of requests (which quotes the full URL, query secrets included).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import posixpath
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import requests
import urllib3

from cdicontract.reasons import Reason
from importer.errors import ImportFailure, RestartRequired, TransientSourceError
from importer.sources.addressguard import guard, refused_in
from importer.sources.base import SourceCapabilities, SourceInfo, Stream
from importer.sources.httpwire import (
    auth_allowed,
    ca_bundle_from_dir,
    content_length,
    failure_for_status,
    parse_content_range,
    parse_header_line,
    redact_url,
    validator_of,
)
from importer.sources.pinned import BLOCK, PinnedObject, Window
from importer.sources.proxytls import verify_proxies

__all__ = [
    "HttpOptions",
    "HttpSource",
    "auth_allowed",
    "ca_bundle_from_dir",
    "content_length",
    "failure_for_status",
    "parse_content_range",
    "parse_header_line",
    "redact_url",
    "validator_of",
]

CHUNK_SIZE = 1 << 20
MAX_REDIRECTS = 10
ALLOWED_SCHEMES = frozenset({"http", "https"})
# HEAD answers that mean "this server does not do HEAD" rather than "this object is bad"
# (S3 presigned GET URLs answer 403 to HEAD, some servers 405/501).
HEAD_REFUSED = frozenset({400, 403, 405, 501})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Extra headers that are credentials whatever list they came from: origin only.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True)
class HttpOptions:
    ca_bundle: str | None = None
    """Path of a PEM bundle of trusted CAs (see `ca_bundle_from_dir`); None: system trust."""
    insecure: bool = False
    """Skip certificate verification (DataVolume `insecureSkipVerify`)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers, parsed from "Name: value" lines by `parse_header_line`; sent
    on every hop, except credential headers (CREDENTIAL_HEADERS), which go to the origin."""
    origin_headers: tuple[tuple[str, str], ...] = ()
    """Secret headers (`secretExtraHeaders`): sent to the origin only, like basic auth."""
    basic_auth: tuple[str, str] | None = None
    connect_timeout: float = 30.0
    read_timeout: float = 60.0
    """No byte for this long: a transient failure (Reason.STALLED), which the reader resumes."""
    user_agent: str = "cdi-py-importer"
    range_block: int = BLOCK
    """Block size of the pinned view (`random_reads`)."""
    deny_local_addresses: bool = False
    """Refuse loopback and link-local peers at every hop (see addressguard.py)."""


_SAFE_MODULES = frozenset({"builtins", "ssl", "socket", "http.client"})


def _cause(exc: BaseException) -> str:
    """Name the innermost cause; quote its text only for stdlib errors (no URLs in them)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    inner = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        inner = current
        reason = getattr(current, "reason", None)
        nested = [a for a in current.args if isinstance(a, BaseException)]
        if isinstance(reason, BaseException):
            current = reason
        elif current.__cause__ is not None:
            current = current.__cause__
        elif nested:
            current = nested[-1]
        else:
            current = current.__context__
    if type(inner).__module__ in _SAFE_MODULES:
        return f"{type(inner).__name__}: {str(inner)[:200]}"
    return type(inner).__name__


def _translate(exc: BaseException, where: str, read_timeout: float) -> ImportFailure:
    """The one place requests/urllib3/socket exceptions become ImportFailures."""
    refused = refused_in(exc)
    if refused is not None:
        return ImportFailure(
            Reason.ADDRESS_REFUSED,
            f"{where}: {refused.host} is {refused.address}, a loopback or link-local "
            "address, which this cluster does not import from",
        )
    rx = requests.exceptions
    if isinstance(exc, rx.SSLError):
        return ImportFailure(Reason.TLS_ERROR, f"TLS with {where} failed: {_cause(exc)}")
    if isinstance(exc, rx.ProxyError):
        return TransientSourceError(f"proxy for {where} failed: {_cause(exc)}")
    if isinstance(exc, rx.ConnectTimeout):
        return TransientSourceError(f"timed out connecting to {where}")
    if isinstance(exc, rx.ReadTimeout | urllib3.exceptions.ReadTimeoutError | TimeoutError):
        return TransientSourceError(
            f"{where} sent nothing for {read_timeout:g}s (stalled)", Reason.STALLED
        )
    if isinstance(exc, rx.InvalidURL | rx.InvalidSchema | rx.MissingSchema | rx.InvalidHeader):
        return ImportFailure(Reason.INVALID_CONFIG, f"cannot request {where}: {type(exc).__name__}")
    if isinstance(exc, urllib3.exceptions.SSLError):
        # Mid-body TLS errors are broken connections (the handshake already succeeded).
        return TransientSourceError(f"connection to {where} broke: {_cause(exc)}")
    return TransientSourceError(f"connection to {where} failed: {_cause(exc)}")


_NETWORK_ERRORS = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


class _HttpStream:
    """One GET body as raw chunks (no Content-Encoding decoding: the bytes as stored)."""

    def __init__(
        self, response: requests.Response, expected: int | None, where: str, read_timeout: float
    ) -> None:
        self._response = response
        self._expected = expected
        self._where = where
        self._read_timeout = read_timeout

    def __iter__(self) -> Iterator[bytes]:
        got = 0
        raw = self._response.raw
        try:
            while True:
                chunk = raw.read(CHUNK_SIZE, decode_content=False)
                if not chunk:
                    break
                got += len(chunk)
                yield chunk
        except _NETWORK_ERRORS as e:
            raise _translate(e, self._where, self._read_timeout) from e
        if self._expected is not None and got < self._expected:
            raise TransientSourceError(
                f"{self._where}: body ended after {got} of {self._expected} bytes"
            )

    def close(self) -> None:
        self._response.close()


class HttpSource:
    """An object behind an http(s) URL. Implements `importer.sources.base.Source`."""

    def __init__(
        self, url: str, options: HttpOptions, session: requests.Session | None = None
    ) -> None:
        parts = urlsplit(url)
        self._where = redact_url(url)
        if parts.scheme.lower() not in ALLOWED_SCHEMES or not parts.hostname:
            raise ImportFailure(Reason.INVALID_CONFIG, f"not an http(s) URL: {self._where}")
        if options.ca_bundle and not options.insecure and not os.path.isfile(options.ca_bundle):
            raise ImportFailure(
                Reason.INVALID_CONFIG, f"CA bundle {options.ca_bundle} is not a file"
            )
        # Credentials in the URL are honoured like curl does, but kept out of the URL we
        # pass around (messages, nbdkit's command line).
        auth = options.basic_auth
        if auth is None and parts.username is not None:
            auth = (unquote(parts.username), unquote(parts.password or ""))
        self._url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self._origin = urlsplit(self._url)
        self._auth = auth
        self._options = options
        self._session = session if session is not None else requests.Session()
        self._owns_session = session is None
        if options.deny_local_addresses:
            guard(self._session)
        else:
            verify_proxies(self._session)
        # identity: the image bytes as stored (a .gz must stay gzip), lengths that match.
        self._headers = {"User-Agent": options.user_agent, "Accept-Encoding": "identity"}
        self._origin_headers: dict[str, str] = {}
        for name, value in options.headers:
            if name.lower() in CREDENTIAL_HEADERS:
                self._origin_headers[name] = value
            else:
                self._headers[name] = value
        self._origin_headers.update(options.origin_headers)
        self._verify: bool | str = False if options.insecure else (options.ca_bundle or True)
        self._info: SourceInfo | None = None
        self._final_url = self._url
        self._window: Window | None = None

    # -- requests ----------------------------------------------------------------

    def _send(self, method: str, url: str, headers: Mapping[str, str]) -> requests.Response:
        to_origin = auth_allowed(self._origin, urlsplit(url))
        auth = self._auth if to_origin else None
        sent = {**self._headers, **(self._origin_headers if to_origin else {}), **headers}
        quiet = warnings.catch_warnings() if self._options.insecure else contextlib.nullcontext()
        with quiet:
            if self._options.insecure:
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            try:
                return self._session.request(
                    method,
                    url,
                    headers=sent,
                    auth=auth,
                    stream=True,
                    allow_redirects=False,
                    timeout=(self._options.connect_timeout, self._options.read_timeout),
                    verify=self._verify,
                )
            except _NETWORK_ERRORS as e:
                raise _translate(e, self._where, self._options.read_timeout) from e

    def _request(
        self, method: str, headers: Mapping[str, str], start: str | None = None
    ) -> tuple[requests.Response, str]:
        """Send, following redirects ourselves; returns the final response and URL."""
        url = start or self._url
        seen: set[str] = set()
        for _hop in range(MAX_REDIRECTS + 1):
            response = self._send(method, url, headers)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                return response, url
            response.close()
            target = urljoin(url, location)
            scheme = urlsplit(target).scheme.lower()
            if scheme not in ALLOWED_SCHEMES:
                raise ImportFailure(
                    Reason.REDIRECT_REFUSED,
                    f"{self._where} redirected to a {scheme or 'relative'}: URL; "
                    "only http and https redirects are followed",
                )
            if urlsplit(url).scheme.lower() == "https" and scheme == "http":
                raise ImportFailure(
                    Reason.REDIRECT_REFUSED,
                    f"{self._where} redirected from https to plain http "
                    f"({redact_url(target)}); a downgrade is never followed",
                )
            seen.add(url)
            if target in seen:
                raise ImportFailure(Reason.SERVER_ERROR, f"{self._where}: redirect loop")
            url = target
        raise ImportFailure(
            Reason.SERVER_ERROR, f"{self._where}: more than {MAX_REDIRECTS} redirects"
        )

    # -- Source ----------------------------------------------------------------

    def info(self) -> SourceInfo:
        if self._info is not None:
            return self._info
        response, final = self._request("HEAD", {})
        response.close()
        status = response.status_code
        if status in HEAD_REFUSED:
            info, final = self._probe_with_get()
        else:
            failure = failure_for_status(status, self._where)
            if failure is not None:
                raise failure
            accept = {
                t.strip().lower() for t in response.headers.get("Accept-Ranges", "").split(",")
            }
            head_ranges = "bytes" in accept
            size = content_length(response.headers)
            info = SourceInfo(
                size=size,
                supports_ranges=head_ranges,
                validator=validator_of(response.headers),
                description=self._where,
            )
            if "none" not in accept and (size is None or not head_ranges):
                # Ranges may work without being advertised; one tiny GET tells for sure.
                probed, final = self._probe_with_get()
                info = SourceInfo(
                    size=size if size is not None else probed.size,
                    supports_ranges=probed.supports_ranges,
                    validator=info.validator or probed.validator,
                    description=self._where,
                )
        self._final_url = final
        self._info = info
        return info

    def _probe_with_get(self) -> tuple[SourceInfo, str]:
        """GET bytes 0-0: learns range support and the size from Content-Range, body unread."""
        response, final = self._request("GET", {"Range": "bytes=0-0"})
        try:
            failure = failure_for_status(response.status_code, self._where)
            if failure is not None:
                raise failure
            validator = validator_of(response.headers)
            if response.status_code == 206:
                parsed = parse_content_range(response.headers.get("Content-Range"))
                if parsed is not None and parsed[0] == 0:
                    return SourceInfo(parsed[2], True, validator, self._where), final
            return SourceInfo(
                content_length(response.headers), False, validator, self._where
            ), final
        finally:
            response.close()  # closes the connection instead of downloading a 200 body

    def open(self, offset: int = 0) -> Stream:
        if offset < 0:
            raise ValueError(f"negative offset {offset}")
        headers: dict[str, str] = {}
        if offset > 0:
            validator = self._info.validator if self._info is not None else None
            if not validator:
                # Without a validator a resumed body may belong to another version of the
                # object: the disk would silently mix two images. Start over instead.
                self._info = None
                raise RestartRequired(
                    f"{self._where}: cannot resume at byte {offset}: the server gives no "
                    "ETag or Last-Modified to pin the object"
                )
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = validator
        response, _final = self._request("GET", headers)
        try:
            self._check_body(response, offset)
        except RestartRequired:
            response.close()
            # The probed size/validator no longer describe the object: the restarted
            # transfer must call info() again and get fresh ones.
            self._info = None
            raise
        except BaseException:
            response.close()
            raise
        return _HttpStream(
            response, content_length(response.headers), self._where, self._options.read_timeout
        )

    def _check_body(self, response: requests.Response, offset: int) -> None:
        status = response.status_code
        if offset > 0 and status == 416:
            raise RestartRequired(
                f"{self._where}: byte {offset} is past the end now (HTTP 416)",
                Reason.SOURCE_CHANGED,
            )
        failure = failure_for_status(status, self._where)
        if failure is not None:
            raise failure
        if offset == 0:
            if status != 200:
                raise ImportFailure(
                    Reason.SERVER_ERROR, f"{self._where}: HTTP {status} to a plain GET"
                )
            return
        if status != 206:
            # Ranges worked when probed and If-Range carried the validator: a whole body
            # now means the object is no longer the one we started with.
            raise RestartRequired(
                f"{self._where}: HTTP {status} to a ranged GET from byte {offset} "
                "(the object changed, or the server stopped honouring ranges)",
                Reason.SOURCE_CHANGED,
            )
        parsed = parse_content_range(response.headers.get("Content-Range"))
        if parsed is None or parsed[0] != offset:
            raise RestartRequired(
                f"{self._where}: Content-Range does not start at the requested byte {offset}",
                Reason.SOURCE_CHANGED,
            )
        known = self._info.size if self._info is not None else None
        if known is not None and parsed[2] is not None and parsed[2] != known:
            raise RestartRequired(
                f"{self._where}: size changed from {known} to {parsed[2]}", Reason.SOURCE_CHANGED
            )

    def capabilities(self) -> SourceCapabilities:
        info = self.info()
        if info.supports_ranges and info.size:
            return SourceCapabilities(restartable=True, random_access=True)
        return SourceCapabilities(
            restartable=True,
            random_access=False,
            scratch_reason="the source does not support random access (range requests)",
        )

    def random_reads(self) -> Window | None:
        """A pinned view of the object for qemu-img and inspection, or None without ranges."""
        if self._window is None:
            info = self.info()
            if not (info.supports_ranges and info.size):
                return None
            name = posixpath.basename(urlsplit(self._final_url).path) or "image"
            pinned = PinnedObject(
                self._fetch_range,
                info.size,
                description=self._where,
                block=self._options.range_block,
            )
            self._window = Window(pinned, 0, info.size, name=name)
        return self._window

    def _fetch_range(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end] of the object as first probed, or RestartRequired if it changed."""
        info = self.info()
        headers = {"Range": f"bytes={start}-{end}"}
        validator = info.validator
        if validator:
            headers["If-Range"] = validator
            if validator.startswith('"'):
                headers["If-Match"] = validator  # strong ETag: 412 once it changed
            else:
                headers["If-Unmodified-Since"] = validator
        response, _final = self._request("GET", headers, start=self._final_url)
        try:
            self._check_range(response, start, end, info.size)
        except BaseException:
            response.close()
            raise
        stream = _HttpStream(response, end - start + 1, self._where, self._options.read_timeout)
        try:
            yield from stream
        finally:
            stream.close()

    def _check_range(
        self, response: requests.Response, start: int, end: int, size: int | None
    ) -> None:
        status = response.status_code
        if status in (412, 416):
            raise RestartRequired(f"{self._where}: the object changed (HTTP {status})")
        failure = failure_for_status(status, self._where)
        if failure is not None:
            raise failure
        if status != 206:
            raise RestartRequired(
                f"{self._where}: HTTP {status} to a ranged GET of bytes {start}-{end}: the "
                "object changed or the server stopped honouring ranges"
            )
        parsed = parse_content_range(response.headers.get("Content-Range"))
        if parsed is None or parsed[:2] != (start, end) or parsed[2] != size:
            raise RestartRequired(
                f"{self._where}: Content-Range does not match bytes {start}-{end}/{size}"
            )

    def close(self) -> None:
        """Release connections and the pinned view (after nbdkit has exited)."""
        if self._window is not None:
            self._window.close()
            self._window = None
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> HttpSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
