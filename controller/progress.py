"""Reading a transfer pod's progress from its Prometheus endpoint, at a bounded cost.

`parse` is pure (the text format in, "NN.NN%" out). `Fetcher` is one scrape over HTTPS
from the pod IP: connect and total timeouts, at most `MAX_BODY` bytes read (a bigger
body is dropped and counted, never buffered whole), no decompression (a small gzip body
could inflate without bound), few and short headers. The pod's certificate is
self-signed per pod, so it is not verified: the number is advisory and nothing secret
is sent. Scrapes run in the background (`runtime/poller.py`), never in a reconcile, and
only against pods the controller itself made (`scrapemark.py`).
"""

from __future__ import annotations

import logging
import math
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import aiohttp

from cdicontract import envvars

log = logging.getLogger(__name__)

_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
MAX_BODY = 64 * 1024
"""The importer's metrics are a few KiB; anything past this is not an importer's."""
CONNECT_TIMEOUT = 1.0
TOTAL_TIMEOUT = 2.0


def parse(text: str, owner_uid: str, metric: str = envvars.IMPORT_PROGRESS_METRIC) -> str | None:
    """The progress for `owner_uid` formatted as CDI does (two decimals), if present."""
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or m.group("name") != metric:
            continue
        if f'ownerUID="{owner_uid}"' not in m.group("labels"):
            continue
        try:
            value = float(m.group("value"))
        except ValueError:
            return None
        if math.isnan(value):
            return None
        value = max(0.0, min(value, 100.0))
        return f"{value:.2f}%"
    return None


@dataclass(frozen=True)
class Target:
    """Where and what to scrape for one transfer."""

    ip: str
    port: int
    metric: str
    owner_uid: str


class Outcome(StrEnum):
    """How one scrape ended (the label of the controller's scrape counter)."""

    OK = "ok"
    ABSENT = "absent"
    """The body had no value for this transfer."""
    OVERSIZED = "oversized"
    TIMEOUT = "timeout"
    HTTP_ERROR = "http_error"
    ERROR = "error"


class _TooBig(Exception):
    pass


class Fetcher:
    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT,
                 total_timeout: float = TOTAL_TIMEOUT, max_body: int = MAX_BODY,
                 connections: int = 16,
                 count: Callable[[Outcome], None] = lambda _o: None) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self._ssl = ctx
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout,
                                              connect=connect_timeout)
        self._max_body = max_body
        self._connections = connections
        self._count = count
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections,
                                               keepalive_timeout=5.0),
                auto_decompress=False, read_bufsize=16 * 1024,
                max_line_size=4096, max_field_size=4096, max_headers=32,
                headers={"Accept-Encoding": "identity"})
        return self._session

    async def _body(self, resp: aiohttp.ClientResponse) -> bytes:
        if resp.content_length is not None and resp.content_length > self._max_body:
            raise _TooBig
        buf = bytearray()
        while True:
            chunk = await resp.content.read(self._max_body + 1 - len(buf))
            if not chunk:
                return bytes(buf)
            buf += chunk
            if len(buf) > self._max_body:
                raise _TooBig

    async def __call__(self, target: Target) -> str | None:
        outcome, value = await self.scrape(target)
        self._count(outcome)
        return value

    async def scrape(self, target: Target) -> tuple[Outcome, str | None]:
        host = f"[{target.ip}]" if ":" in target.ip else target.ip
        url = f"https://{host}:{target.port}/metrics"
        try:
            async with self._client().get(url, timeout=self._timeout,
                                          allow_redirects=False) as resp:
                if resp.status != 200:
                    return Outcome.HTTP_ERROR, None
                try:
                    body = await self._body(resp)
                except _TooBig:
                    resp.close()  # the connection goes; the rest is never read
                    log.info("progress body dropped ip=%s limit=%d", target.ip, self._max_body)
                    return Outcome.OVERSIZED, None
        except TimeoutError:
            return Outcome.TIMEOUT, None
        except (aiohttp.ClientError, OSError, ValueError):
            return Outcome.ERROR, None
        value = parse(body.decode("utf-8", errors="replace"), target.owner_uid, target.metric)
        return (Outcome.OK, value) if value is not None else (Outcome.ABSENT, None)
