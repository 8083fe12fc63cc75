"""The upload server's HTTP layer in clone mode: `CLONE_PATH` only, for the one cloner.

`GET /healthz` answers without a certificate (probes); `HEAD CLONE_PATH` answers 200 with
`RESUME_HEADER` (where a resumed stream must start); `POST CLONE_PATH` takes one stream
(`cdicontract.clonestream`) and answers when it ends: 200 with the termination report as
JSON once the digest verified and the target is synced; 409 for a request that does not
continue the stream (with the offset); 400 `<Reason>: <message>` when the clone failed for
good, or when the body broke off (the clone then waits to be resumed). Every path but
/healthz needs a client certificate of the CA whose CN is the cloner's
(`clone.client_name(target uid)`, set as UPLOADSERVER_CLIENT_NAME): the upload proxy's
certificate cannot write into a clone target. The upload paths do not exist here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from cdicontract import clone
from cdicontract import clonestream as cs
from importer.targets import select_target
from uploadproxy.server import bodyreader
from uploadproxy.server.app import CONFIG, HEALTHZ, healthz, require_proxy_certificate
from uploadproxy.server.clonesession import CloneSession
from uploadproxy.server.config import ServerConfig
from uploadproxy.server.transfer import TargetFactory

log = logging.getLogger(__name__)

CLONE_SESSION = web.AppKey("clone_session", CloneSession)
READ_BUFSIZE = 1 << 20
"""The request body's buffer (aiohttp's default is 64 KiB): a stream of 4 MiB frames then
arrives in large pieces, without pausing and resuming the socket every 128 KiB."""


def _offset_headers(session: CloneSession) -> dict[str, str]:
    return {cs.RESUME_HEADER: str(session.offset)}


async def head(request: web.Request) -> web.Response:
    return web.Response(status=200, headers=_offset_headers(request.app[CLONE_SESSION]))


async def post(request: web.Request) -> web.Response:
    session = request.app[CLONE_SESSION]
    if request.content_type != cs.MEDIA_TYPE:
        return web.Response(status=415, text=f"a clone stream is {cs.MEDIA_TYPE}\n")
    answer = await session.receive(bodyreader.raw_chunks(request, request.app[CONFIG].read_timeout))
    log.info(
        "clone request status=%d offset=%d state=%s", answer.status, session.offset, session.state
    )
    if answer.report is not None:
        return web.Response(status=200, text=answer.text + "\n", content_type="application/json")
    return web.Response(
        status=answer.status, text=answer.text + "\n", headers=_offset_headers(session)
    )


def make_clone_app(
    config: ServerConfig,
    session: CloneSession | None = None,
    *,
    target_factory: TargetFactory = select_target,
) -> web.Application:
    app = web.Application(middlewares=[require_proxy_certificate])
    app[CONFIG] = config
    app[CLONE_SESSION] = session or CloneSession(config, target_factory)
    app.router.add_get(HEALTHZ, healthz)
    app.router.add_route("HEAD", clone.CLONE_PATH, head)
    app.router.add_post(clone.CLONE_PATH, post)

    async def close_session(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[CLONE_SESSION].aclose()

    app.cleanup_ctx.append(close_session)
    return app
