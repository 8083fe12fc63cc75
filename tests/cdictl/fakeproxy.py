"""A real HTTP upload proxy for cdictl's tests: an aiohttp app on loopback, in a thread.

It speaks what the client relies on (cdicontract.upload): Bearer tokens (401 for one it
does not know), `HEAD` on the async path (200, with `Upload-Offset` while it holds a
paused upload), `POST` of `application/octet-stream` bodies, resume with `Upload-Offset`
(416 with its own offset on a mismatch), `Upload-Checksum` checked on completion (400 on
a mismatch). Misbehaviours, each once: drop the connection when the body reaches a
given byte, answer 503 to the first POSTs, refuse HEAD on the async path (an old proxy),
answer a sync POST early and keep it alive with spaces.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from cdicontract import upload as contract


@dataclass
class Behaviour:
    tokens: set[str] = field(default_factory=lambda: {"good-token"})
    drop_at: list[int] = field(default_factory=list)
    """Body offsets (absolute) at which to cut the connection, each once."""
    busy_posts: int = 0
    """Answer 503 to this many POSTs first."""
    no_async: bool = False
    """HEAD on the async path is 404, as on a proxy without it."""
    keepalive_spaces: int = 0
    """Sync answers: 200 at once, then this many spaces, then `result_line`."""
    result_line: str = ""
    """What ends a kept-alive sync answer (cdi-py's server: its termination report)."""
    forget_after_drop: bool = False
    drop_before_answer: bool = False
    """Once: take the whole body, then cut the connection without answering."""
    drop_in_keepalive: bool = False
    """Once: answer a sync POST early (200), then cut the connection while keeping it alive."""
    keep_bytes: bool = True
    """False: only count and hash what arrives (for big bodies)."""
    shrink_after_head: int | None = None
    """Once: after telling a HEAD its offset, keep only this many bytes (as a server
    that fell back to its last durable point), so the client's next offset is wrong."""
    """A server without resume: a dropped upload leaves nothing to continue."""


@dataclass
class Recorded:
    method: str
    path: str
    auth: str | None
    offset: str | None
    checksum: str | None
    content_type: str | None
    content_length: int | None
    status: int = 0


class FakeProxy:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.received = bytearray()
        self.count = 0
        self.sha256 = hashlib.sha256()
        self.paused = False
        self.complete = False
        self.requests: list[Recorded] = []
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        for p in contract.PROXY_PATHS:
            app.router.add_route("HEAD", p, self.head)
            app.router.add_route("POST", p, self.post)
        return app

    def _record(self, request: web.Request) -> Recorded:
        rec = Recorded(request.method, request.path, request.headers.get("Authorization"),
                       request.headers.get(contract.UPLOAD_OFFSET_HEADER),
                       request.headers.get(contract.UPLOAD_CHECKSUM_HEADER),
                       request.headers.get("Content-Type"), request.content_length)
        self.requests.append(rec)
        return rec

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.behaviour.tokens

    async def head(self, request: web.Request) -> web.Response:
        rec = self._record(request)
        if not self._authorized(request):
            rec.status = 401
            return web.Response(status=401)
        if self.behaviour.no_async and request.path.endswith("-async"):
            rec.status = 404
            return web.Response(status=404)
        rec.status = 200
        headers = {contract.UPLOAD_OFFSET_HEADER: str(len(self.received))} if self.paused else {}
        if self.paused and self.behaviour.shrink_after_head is not None:
            del self.received[self.behaviour.shrink_after_head:]
            self.behaviour.shrink_after_head = None
        return web.Response(status=200, headers=headers)

    async def post(self, request: web.Request) -> web.StreamResponse:
        rec = self._record(request)
        if not self._authorized(request):
            rec.status = 401
            return web.Response(status=401, text="invalid token")
        if self.complete:
            rec.status = 409
            return web.Response(status=409, text="upload already succeeded")
        if self.behaviour.busy_posts > 0:
            self.behaviour.busy_posts -= 1
            rec.status = 503
            return web.Response(status=503, text="not ready")
        offset = int(request.headers.get(contract.UPLOAD_OFFSET_HEADER, "0"))
        if offset == 0 and not self.paused:
            self.received.clear()
        elif offset != len(self.received):
            rec.status = 416
            return web.Response(status=416, headers={
                contract.UPLOAD_OFFSET_HEADER: str(len(self.received))})
        self.paused = False
        drops = sorted(d for d in self.behaviour.drop_at if d > len(self.received))
        while chunk := await request.content.readany():
            if drops and len(self.received) + len(chunk) >= drops[0]:
                keep = drops[0] - len(self.received)
                self.received += chunk[:keep]
                self.behaviour.drop_at.remove(drops[0])
                self.paused = not self.behaviour.forget_after_drop
                if not self.paused:
                    self.received.clear()
                assert request.transport is not None
                request.transport.abort()
                rec.status = -1
                raise asyncio.CancelledError
            if self.behaviour.keep_bytes:
                self.received += chunk
            self.count += len(chunk)
            self.sha256.update(chunk)
        if rec.checksum:
            algorithm, _, want = rec.checksum.partition(":")
            if hashlib.new(algorithm, bytes(self.received)).hexdigest() != want:
                rec.status = 400
                self.received.clear()
                return web.Response(status=400, text="checksum mismatch")
        self.complete = True
        rec.status = 200
        if self.behaviour.drop_before_answer:
            self.behaviour.drop_before_answer = False
            assert request.transport is not None
            request.transport.abort()
            rec.status = -2
            raise asyncio.CancelledError
        if not request.path.endswith("-async") and self.behaviour.keepalive_spaces:
            resp = web.StreamResponse(status=200)
            await resp.prepare(request)
            for _ in range(self.behaviour.keepalive_spaces):
                await resp.write(b" ")
                await asyncio.sleep(0.05)
                if self.behaviour.drop_in_keepalive:
                    self.behaviour.drop_in_keepalive = False
                    assert request.transport is not None
                    request.transport.abort()
                    rec.status = -3
                    raise asyncio.CancelledError
            await resp.write(b"\n" + self.behaviour.result_line.encode())
            await resp.write_eof()
            return resp
        return web.Response(status=200)


@contextmanager
def running(behaviour: Behaviour | None = None) -> Iterator[FakeProxy]:
    proxy = FakeProxy(behaviour or Behaviour())
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(proxy.app(), handle_signals=False, access_log=None)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        proxy.url = f"http://127.0.0.1:{port}"
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="fakeproxy", daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the fake proxy did not start")
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
