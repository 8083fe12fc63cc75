"""One progress scrape against a real HTTPS server that misbehaves: it answers in time,
reads at most 64 KiB (a bigger body, announced or streamed, is dropped and counted, the
connection closed), never inflates a compressed body, and a server that hangs costs one
timeout."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from controller.progress import MAX_BODY, Fetcher, Outcome, Target
from importer.selfsigned import write_self_signed

UID = "4b1c0a6e-0000-4000-8000-000000000001"
LINE = f'kubevirt_cdi_import_progress_total{{ownerUID="{UID}"}} 42.5\n'.encode()


async def _serve(tmp: Path, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> tuple[web.AppRunner, int]:
    cert, key = write_self_signed(str(tmp))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


def _scrape(tmp: Path, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
            **fetcher: float) -> tuple[Outcome, str | None, float]:
    async def go() -> tuple[Outcome, str | None, float]:
        runner, port = await _serve(tmp, handler)
        f = Fetcher(**fetcher)  # type: ignore[arg-type]
        try:
            start = time.monotonic()
            outcome, value = await f.scrape(
                Target("127.0.0.1", port, "kubevirt_cdi_import_progress_total", UID))
            return outcome, value, time.monotonic() - start
        finally:
            await f.close()
            await runner.cleanup()
    return asyncio.run(go())


async def _good(_r: web.Request) -> web.StreamResponse:
    return web.Response(body=b"# HELP x\n" + LINE)


def test_a_well_behaved_endpoint_gives_the_progress(tmp_path):
    outcome, value, _ = _scrape(tmp_path, _good)
    assert (outcome, value) == (Outcome.OK, "42.50%")


def test_a_hanging_endpoint_costs_one_timeout(tmp_path):
    async def hang(_r: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3)
        return web.Response(body=LINE)

    outcome, value, took = _scrape(tmp_path, hang, total_timeout=0.5)
    assert (outcome, value) == (Outcome.TIMEOUT, None)
    assert took < 2.0


def test_a_trickling_endpoint_is_cut_at_the_total_timeout(tmp_path):
    async def trickle(r: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(r)
        await resp.write(LINE)
        for _ in range(30):
            await resp.write(b"#\n")
            await asyncio.sleep(0.1)
        return resp

    outcome, value, took = _scrape(tmp_path, trickle, total_timeout=0.5)
    assert (outcome, value) == (Outcome.TIMEOUT, None)
    assert took < 2.0


def test_an_endless_body_is_dropped_after_the_cap(tmp_path):
    sent = 0

    async def flood(r: web.Request) -> web.StreamResponse:
        nonlocal sent
        resp = web.StreamResponse()
        await resp.prepare(r)
        await resp.write(LINE)
        chunk = b"#" * 8191 + b"\n"
        try:
            while sent < 64 * MAX_BODY:
                await resp.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    outcome, value, took = _scrape(tmp_path, flood, total_timeout=5.0)
    # The progress line came first and would parse: a scraper that read it all would
    # report 42.50%.
    assert (outcome, value) == (Outcome.OVERSIZED, None)
    assert took < 2.0


def test_a_big_announced_body_is_not_read(tmp_path):
    async def big(_r: web.Request) -> web.StreamResponse:
        return web.Response(body=LINE + b"#" * (2 * MAX_BODY))

    outcome, value, _ = _scrape(tmp_path, big)
    assert (outcome, value) == (Outcome.OVERSIZED, None)


def test_a_body_just_under_the_cap_is_read(tmp_path):
    async def full(_r: web.Request) -> web.StreamResponse:
        return web.Response(body=LINE + b"#" * (MAX_BODY - len(LINE) - 2) + b"\n")

    outcome, value, _ = _scrape(tmp_path, full)
    assert (outcome, value) == (Outcome.OK, "42.50%")


def test_a_compressed_body_is_never_inflated(tmp_path):
    bomb = gzip.compress(LINE + b"\n" * (32 * MAX_BODY))

    async def gz(_r: web.Request) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    outcome, value, _ = _scrape(tmp_path, gz)
    assert len(bomb) < MAX_BODY
    assert (outcome, value) == (Outcome.ABSENT, None)


def test_an_error_status_gives_no_progress(tmp_path):
    async def err(_r: web.Request) -> web.StreamResponse:
        return web.Response(status=500, body=LINE)

    outcome, value, _ = _scrape(tmp_path, err)
    assert (outcome, value) == (Outcome.HTTP_ERROR, None)
