"""A stand-in upload server for the proxy's tests: a real aiohttp process behind mutual TLS.

It requires a client certificate from the client CA with CN client.upload-server.
cdi.kubevirt.io (as the upload server does), records every request it received (path,
Host, headers, body size and SHA-256, whether the body ended early) as one JSON file, and
behaves per PVC as the JSON file `--behaviour-file` says, re-read on every request:

    {"<Host without port>": {"pause": true, "rate": 1048576, "status": 416,
                              "headers": {"Upload-Offset": "42"}, "keepalive": 3,
                              "reply": "text"}}

- pause: read nothing until the file `<record-dir>/release` exists;
- rate: read at most that many bytes a second;
- status/headers/reply: the answer (default 200, "ok\\n");
- early: answer `status` (default 503) at once, reading none of the body;
- die_after: drop the connection after that many body bytes;
- keepalive: answer 200 at once after the body, then that many spaces half a second
  apart, then the reply (a sync upload that converts for a while).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

CLIENT_CN = "client.upload-server.cdi.kubevirt.io"
HASH_LIMIT = 256 << 20


def _behaviour(path: Path, host: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return dict(doc.get(host, {}))


def make_app(record_dir: Path, behaviour_file: Path) -> web.Application:
    counter = iter(range(1 << 30))

    def record(doc: dict[str, Any]) -> None:
        n = next(counter)
        tmp = record_dir / f".{n}.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.rename(record_dir / f"{time.time_ns()}-{n}.json")

    async def handle(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        cn = [v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"]
        host = (request.host or "").rsplit(":", 1)[0]
        b = _behaviour(behaviour_file, host)
        doc: dict[str, Any] = {
            "method": request.method, "path": request.path, "host": request.host,
            "headers": dict(request.headers), "client_cn": cn,
        }
        if cn != [CLIENT_CN]:
            record({**doc, "refused": "client certificate"})
            return web.Response(status=403, text="wrong client\n")
        if request.method == "HEAD":
            record(doc)
            return web.Response(status=b.get("status", 200), headers=b.get("headers", {}))
        if b.get("early"):
            # Refuse before reading the body (a second upload while one is running).
            record({**doc, "early": True})
            return web.Response(status=b.get("status", 503), text=str(b.get("reply", "busy\n")))
        if b.get("die_after") is not None:
            got = 0
            while chunk := await request.content.read(1 << 16):
                got += len(chunk)
                if got >= int(b["die_after"]):
                    record({**doc, "died": got})
                    assert request.transport is not None
                    request.transport.abort()
                    return web.Response(status=500)
        if b.get("pause"):
            while not (record_dir / "release").exists():
                await asyncio.sleep(0.05)
        digest = hashlib.sha256()
        size, complete = 0, True
        rate = b.get("rate")
        start = time.monotonic()
        try:
            while chunk := await request.content.read(1 << 20 if rate is None else 1 << 16):
                size += len(chunk)
                if size <= HASH_LIMIT:
                    digest.update(chunk)
                if rate:
                    ahead = size / rate - (time.monotonic() - start)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
        except Exception as exc:  # the proxy cut the connection
            complete = False
            doc["error"] = type(exc).__name__
        doc.update(size=size, sha256=digest.hexdigest() if size <= HASH_LIMIT else None,
                   complete=complete)
        record(doc)
        reply = str(b.get("reply", "ok\n"))
        if b.get("keepalive"):
            resp = web.StreamResponse(status=200)
            resp.content_type = "text/plain"
            await resp.prepare(request)
            for _ in range(int(b["keepalive"])):
                await resp.write(b" ")
                await asyncio.sleep(0.5)
            await resp.write(reply.encode())
            await resp.write_eof()
            return resp
        return web.Response(status=b.get("status", 200), text=reply,
                            headers=b.get("headers", {}))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(args: argparse.Namespace) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=args.client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(args.cert, args.key)
    runner = web.AppRunner(make_app(Path(args.record_dir), Path(args.behaviour_file)),
                           access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    Path(args.port_file).write_text(str(port))
    await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser()
    for flag in ("--cert", "--key", "--client-ca", "--record-dir", "--behaviour-file",
                 "--port-file"):
        p.add_argument(flag, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
