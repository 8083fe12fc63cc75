"""Streaming one request body to an upload server, and its answer back as it comes.

Backpressure end to end: a chunk of at most `chunk_size` bytes is read from the client
only after the previous one was handed to the upstream socket (aiohttp's writer drains
above its high-water mark), and the server side stops reading the client's socket when
its small buffer is full. So memory stays flat whatever the body's size, and a slow
upload server slows the client down instead of filling the proxy.

The body is passed on untouched, with its Content-Type (a form upload's multipart body
and boundary go through as they are, as CDI's reverse proxy does; the upload server
picks the field `file`), its Content-Length (or chunked when the client sent none) and
our resume and checksum headers. The client's Authorization header is not passed on: the
upload server trusts the proxy's client certificate, not the user's token.

The answer is streamed back chunk by chunk with the upstream's status, so the spaces a
sync upload's server sends while it converts reach the client as they are written (no
"timeout at 99%" through the proxy).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from cdicontract import upload
from uploadproxy.proxy.refusal import Refused

log = logging.getLogger("cdi-uploadproxy")

MAX_REPLY_BYTES = 1 << 20
"""Upload servers answer with a short message (and keepalive spaces); more is cut."""
PASSED_UP = ("Content-Type", upload.UPLOAD_OFFSET_HEADER, upload.UPLOAD_CHECKSUM_HEADER)
PASSED_DOWN = ("Content-Type", upload.UPLOAD_OFFSET_HEADER)
HEAD_TIMEOUT = 10.0


@dataclass(frozen=True)
class Upstream:
    """How to reach upload servers: the shared session and the current client TLS."""

    session: aiohttp.ClientSession
    ssl_context: ssl.SSLContext
    connect_timeout: float
    total_timeout: float


class ClientGone(Exception):
    """The client went away mid-body; the upstream connection was closed."""

    def __init__(self, sent: int) -> None:
        super().__init__(f"client disconnected after {sent} bytes")
        self.sent = sent


class UntrustedUpstream(Refused):
    """The upload server's certificate did not verify (perhaps our CA bundle is old)."""


class _Body:
    """The client's body as chunks, counting, remembering whether the client failed."""

    def __init__(self, content: aiohttp.StreamReader, chunk_size: int) -> None:
        self._content = content
        self._chunk = chunk_size
        self.started = False
        self.sent = 0
        self.client_failed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        while True:
            try:
                chunk = await self._content.read(self._chunk)
            except Exception:
                # A cut connection shows up as one of several aiohttp errors; whichever it
                # is, the upload cannot go on and it is the client's doing.
                self.client_failed = True
                raise
            if not chunk:
                return
            yield chunk
            self.sent += len(chunk)


def _headers_up(request: web.Request) -> dict[str, str]:
    headers = {h: request.headers[h] for h in PASSED_UP if h in request.headers}
    if request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)
    return headers


async def forward(up: Upstream, url: str, request: web.Request, *, chunk_size: int,
                  what: str) -> tuple[web.StreamResponse, int]:
    """POST the request's body to `url`; the response sent to the client, body bytes sent.

    Raises ClientGone when the client dropped, Refused(502/503/504) when the upstream
    failed before answering (UntrustedUpstream when its certificate did not verify, with
    nothing read from the client, so the caller may retry with fresh credentials);
    `what` names the upload server in messages ("PVC ns/name").
    """
    body = _Body(request.content, chunk_size)
    timeout = aiohttp.ClientTimeout(total=up.total_timeout, sock_connect=up.connect_timeout)
    response: web.StreamResponse | None = None
    try:
        async with up.session.post(url, data=body.chunks(), headers=_headers_up(request),
                                   ssl=up.ssl_context, timeout=timeout,
                                   allow_redirects=False) as resp:
            response = web.StreamResponse(status=resp.status)
            for h in PASSED_DOWN:
                if h in resp.headers:
                    response.headers[h] = resp.headers[h]
            await response.prepare(request)
            passed = 0
            while passed < MAX_REPLY_BYTES:
                piece = await resp.content.readany()
                if not piece:
                    break
                piece = piece[: MAX_REPLY_BYTES - passed]
                await response.write(piece)
                passed += len(piece)
            await response.write_eof()
            return response, body.sent
    except asyncio.CancelledError:
        # The proxy is stopping, or the handler was cancelled: leaving the `async with`
        # has closed the upstream connection.
        log.info("upload aborted, upstream closed target=%s sent=%d", what, body.sent)
        raise
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        if body.client_failed:
            raise ClientGone(body.sent) from None
        if response is not None:
            # The status already went out: all that is left is to cut the connection, so
            # the client sees a truncated answer rather than a complete-looking one.
            log.warning("upload server answer cut target=%s sent=%d error=%s", what,
                        body.sent, type(exc).__name__)
            if request.transport is not None:
                request.transport.close()
            return response, body.sent
        raise _refusal(exc, what, body.sent, body.started) from None


async def probe_offset(up: Upstream, url: str, what: str) -> str | None:
    """The upload server's Upload-Offset for a paused upload; None when there is none
    or the server cannot be asked (a HEAD through the proxy answers 200 either way)."""
    timeout = aiohttp.ClientTimeout(total=HEAD_TIMEOUT, sock_connect=up.connect_timeout)
    try:
        async with up.session.head(url, ssl=up.ssl_context, timeout=timeout,
                                   allow_redirects=False) as resp:
            if resp.status != 200:
                return None
            return resp.headers.get(upload.UPLOAD_OFFSET_HEADER)
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        log.info("upload server not asked for its offset target=%s error=%s", what,
                 type(exc).__name__)
        return None


def _refusal(exc: BaseException, what: str, sent: int, started: bool) -> Refused:
    """Upstream failures as the client sees them; the detail goes to the log."""
    log.warning("upload server failed target=%s sent=%d error=%s detail=%s", what, sent,
                type(exc).__name__, str(exc)[:200])
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cls = Refused if started else UntrustedUpstream
        return cls(502, f"upload server for {what} presented a certificate the proxy "
                        "does not trust")
    if isinstance(exc, aiohttp.ClientSSLError):
        return Refused(502, f"TLS with the upload server for {what} failed")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Refused(503, f"upload server for {what} is unreachable")
    if isinstance(exc, TimeoutError):
        return Refused(504, f"upload server for {what} did not answer in time "
                            f"after {sent} bytes")
    return Refused(502, f"upload server for {what} closed the connection after {sent} bytes")
