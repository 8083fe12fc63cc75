"""The image bytes of one request: the raw body, or the `file` field of a multipart form.

Both are read in pieces as they arrive (never the whole body), with a per-read timeout so
a silent connection counts as dropped. `ClientGone` means the body did not arrive whole:
the upload pauses. `BadBody` is the client's mistake (a form without the field): 400.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from aiohttp import BodyPartReader, web
from aiohttp.client_exceptions import ClientError
from aiohttp.http_exceptions import HttpProcessingError

from cdicontract import upload as contract

CHUNK = 256 << 10
T = TypeVar("T")


class ClientGone(Exception):
    """The connection dropped or went silent before the body ended."""


class BadBody(ValueError):
    """The request cannot carry an image (a form without its `file` field...)."""


_DROPS = (ClientError, ConnectionError, asyncio.IncompleteReadError, EOFError)


async def _read(step: Awaitable[T], timeout: float) -> T:
    try:
        return await asyncio.wait_for(step, timeout)
    except TimeoutError:
        raise ClientGone(f"no body bytes for {timeout:g} s") from None
    except _DROPS as e:
        raise ClientGone(f"the connection dropped mid-body ({type(e).__name__})") from e
    except HttpProcessingError as e:  # a cut body: ContentLengthError, TransferEncodingError
        raise ClientGone(f"the body did not arrive whole ({type(e).__name__})") from e


async def raw_chunks(request: web.Request, timeout: float) -> AsyncIterator[bytes]:
    content = request.content
    while True:
        chunk = await _read(content.readany(), timeout)
        if not chunk:
            return
        yield chunk


async def form_chunks(request: web.Request, timeout: float) -> AsyncIterator[bytes]:
    try:
        reader = await request.multipart()
    except (ValueError, KeyError, AssertionError) as e:
        raise BadBody(f"not a multipart form: {e}") from e
    while True:
        part = await _read(reader.next(), timeout)
        if part is None:
            raise BadBody(f"the form has no field {contract.FORM_FIELD!r}")
        if isinstance(part, BodyPartReader) and part.name == contract.FORM_FIELD:
            break
        await _read(part.release(), timeout)
    while True:
        chunk = await _read(part.read_chunk(CHUNK), timeout)
        if not chunk:
            break
        yield chunk
    # The rest of the form (closing boundary, other fields) must arrive too: a form cut
    # right after the file's bytes is not a complete upload.
    await _read(reader.release(), timeout)
