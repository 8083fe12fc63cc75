"""Streaming one request body to an upload server, chunk by chunk, and its answer back.

Backpressure end to end: a chunk of at most `chunk_size` bytes is read from the client
only after the previous one was handed to the upstream socket (aiohttp's writer drains
above 64 KiB), and the server side stops reading the client's socket when its small
buffer is full. So memory stays flat whatever the body's size, and a slow upload server
slows the client down instead of filling the proxy.

The body is passed on untouched, with its Content-Type (a form upload's multipart body
and boundary go through as they are, as CDI's reverse proxy does; the upload server
picks the field `file`) and its Content-Length (or chunked when the client sent none).
The client's Authorization header is not passed on: the upload server trusts the proxy's
client certificate, not the user's token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from uploadproxy.proxy.refusal import Refused

log = logging.getLogger("cdi-uploadproxy")

MAX_REPLY_BYTES = 4096
"""The upload server's answers are short messages; anything longer is cut."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str | None
    sent: int
    """Body bytes handed to the upload server."""


class ClientGone(Exception):
    """The client went away mid-body; the upstream connection was closed."""

    def __init__(self, sent: int) -> None:
        super().__init__(f"client disconnected after {sent} bytes")
        self.sent = sent


class _Body:
    """The client's body as chunks, counting, remembering whether the client failed."""

    def __init__(self, content: web.StreamReader | aiohttp.StreamReader, chunk_size: int) -> None:
        self._content = content
        self._chunk = chunk_size
        self.sent = 0
        self.client_failed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await self._content.read(self._chunk)
            except (OSError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError):
                self.client_failed = True
                raise
            if not chunk:
                return
            yield chunk
            self.sent += len(chunk)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    out = bytearray()
    while len(out) < cap:
        piece = await resp.content.read(cap - len(out))
        if not piece:
            break
        out += piece
    return bytes(out)


async def forward(session: aiohttp.ClientSession, url: str, request: web.Request, *,
                  ssl_context: object, chunk_size: int, connect_timeout: float,
                  total_timeout: float, what: str) -> Reply:
    """POST the request's body to `url`; the upstream's status and short body.

    Raises ClientGone when the client dropped, Refused(502/503/504) when the upstream
    failed; `what` names the upload server in messages ("PVC ns/name").
    """
    body = _Body(request.content, chunk_size)
    headers: dict[str, str] = {}
    if request.headers.get("Content-Type"):
        headers["Content-Type"] = request.headers["Content-Type"]
    if request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)
    timeout = aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout)
    try:
        async with session.post(url, data=body.chunks(), headers=headers, ssl=ssl_context,
                                timeout=timeout, allow_redirects=False) as resp:
            reply = await _read_capped(resp, MAX_REPLY_BYTES)
            return Reply(resp.status, reply, resp.headers.get("Content-Type"), body.sent)
    except asyncio.CancelledError:
        # The handler is cancelled when the client's connection is lost (or the proxy
        # stops); leaving the `async with` has closed the upstream connection.
        log.info("upload aborted, upstream closed target=%s sent=%d", what, body.sent)
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        if body.client_failed:
            raise ClientGone(body.sent) from None
        raise _refusal(exc, what, body.sent) from None


def _refusal(exc: BaseException, what: str, sent: int) -> Refused:
    """Upstream failures as the client sees them; the detail goes to the log."""
    log.warning("upload server failed target=%s sent=%d error=%s detail=%s", what, sent,
                type(exc).__name__, str(exc)[:200])
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return Refused(502, f"upload server for {what} presented a certificate the proxy "
                            "does not trust")
    if isinstance(exc, aiohttp.ClientSSLError):
        return Refused(502, f"TLS with the upload server for {what} failed")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Refused(503, f"upload server for {what} is unreachable")
    if isinstance(exc, TimeoutError):
        return Refused(504, f"upload server for {what} did not answer in time "
                            f"after {sent} bytes")
    return Refused(502, f"upload server for {what} closed the connection after {sent} bytes")
