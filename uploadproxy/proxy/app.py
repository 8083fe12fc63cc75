"""The aiohttp application: routes, the CORS and refusal middlewares, the handlers.

A request meets, in order: CORS (a preflight is answered here, before authentication,
as CDI's rs/cors wrapper does), the token (`auth`), the PVC (`target`), then `forward`.
Every early end is a `Refused` turned into a short text answer by one middleware.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from cdicontract import upload, uploadtoken
from uploadproxy.proxy import auth, cors, credentials, forward, kube, target
from uploadproxy.proxy.metrics import Metrics
from uploadproxy.proxy.refusal import Refused
from uploadproxy.proxy.settings import Settings

log = logging.getLogger("cdi-uploadproxy")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class State:
    settings: Settings
    kube: kube.Kube
    credentials: credentials.Credentials
    metrics: Metrics
    session: aiohttp.ClientSession | None = None


STATE = web.AppKey("state", State)


class ConnectTo(AbstractResolver):
    """Every name resolves to one address (curl's --connect-to): TLS still checks the
    URL's name, so tests exercise the real verification against a local server."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[ResolveResult]:
        import socket

        return [ResolveResult(hostname=host, host=self._host, port=self._port,
                              family=socket.AF_INET6 if ":" in self._host else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        return None


# -- middlewares -----------------------------------------------------------------------

@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if cors.is_preflight(request.method, request.headers):
        resp = web.Response(status=200)
        for k, v in cors.preflight_headers(request.headers):
            resp.headers.add(k, v)
        return resp
    return await handler(request)


async def _cors_on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    if cors.is_preflight(request.method, request.headers):
        return
    for k, v in cors.actual_headers(request.method, request.headers):
        response.headers.add(k, v)


@web.middleware
async def refusal_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[STATE].metrics
    try:
        resp = await handler(request)
    except Refused as exc:
        log.info("upload refused method=%s path=%s status=%d reason=%s", request.method,
                 request.path[:200], exc.status, exc.message)
        resp = web.Response(status=exc.status, text=exc.message + "\n")
    except web.HTTPException as exc:
        if request.path in upload.PROXY_PATHS:
            metrics.requests.labels(code=str(exc.status)).inc()
        raise
    if request.path in upload.PROXY_PATHS:
        metrics.requests.labels(code=str(resp.status)).inc()
    return resp


# -- handlers --------------------------------------------------------------------------

async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def _claims(state: State, header: str | None) -> uploadtoken.UploadClaims:
    token = auth.bearer(header)
    try:
        key = await state.credentials.public_key()
    except credentials.Unavailable as exc:
        log.warning("cannot verify tokens reason=%s", exc)
        raise Refused(503, "upload proxy cannot verify tokens yet") from None
    try:
        return auth.authorize(token, key)
    except auth.BadSignature:
        # The signing key may have been rotated since we read it: read it again (rate
        # limited by the cache) and judge the token once more.
        try:
            fresh = await state.credentials.public_key(stale=True)
        except credentials.Unavailable:
            fresh = key
        if fresh == key:
            raise
        return auth.authorize(token, fresh)


async def _upstream(state: State, *, stale: bool = False) -> forward.Upstream:
    try:
        ctx = await state.credentials.client_ssl(stale=stale)
    except credentials.Unavailable as exc:
        log.warning("no client certificate for upload servers reason=%s", exc)
        raise Refused(503, "upload proxy has no client certificate yet") from None
    assert state.session is not None
    s = state.settings
    return forward.Upstream(state.session, ctx, s.upstream_connect_timeout, s.upstream_timeout)


async def _ready_url(state: State, request: web.Request) -> tuple[str, str]:
    claims = await _claims(state, request.headers.get("Authorization"))
    verdict = await target.wait_ready(state.kube, claims.namespace, claims.name, request.path,
                                      state.settings.ready_timeout)
    url = state.settings.upload_url(namespace=claims.namespace, pvc=claims.name,
                                    path=verdict.path)
    return url, f"PVC {claims.namespace}/{claims.name}"


async def handle_upload(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    url, what = await _ready_url(state, request)
    up = await _upstream(state)
    log.info("upload started target=%s path=%s length=%s", what, request.path,
             request.content_length)
    started = time.monotonic()
    state.metrics.in_flight.inc()
    try:
        try:
            response, sent = await forward.forward(up, url, request, what=what,
                                                   chunk_size=state.settings.chunk_size)
        except forward.UntrustedUpstream:
            # Nothing was read from the client yet: with a freshly read CA bundle, once.
            up = await _upstream(state, stale=True)
            response, sent = await forward.forward(up, url, request, what=what,
                                                   chunk_size=state.settings.chunk_size)
    except forward.ClientGone as exc:
        state.metrics.bytes.inc(exc.sent)
        log.info("upload abandoned by client target=%s sent=%d", what, exc.sent)
        raise web.HTTPBadRequest(text="client went away\n") from None
    finally:
        state.metrics.in_flight.dec()
    state.metrics.bytes.inc(sent)
    log.info("upload answered target=%s status=%d sent=%d seconds=%.1f", what,
             response.status, sent, time.monotonic() - started)
    return response


async def handle_head(request: web.Request) -> web.StreamResponse:
    """200 for a probe without a token (clients detect async support so); with a token,
    the PVC's upload server is asked for its Upload-Offset (resume)."""
    state = request.app[STATE]
    if not request.headers.get("Authorization"):
        return web.Response(status=200)
    url, what = await _ready_url(state, request)
    offset = await forward.probe_offset(await _upstream(state), url, what)
    resp = web.Response(status=200)
    if offset is not None:
        resp.headers[upload.UPLOAD_OFFSET_HEADER] = offset
    return resp


# -- wiring ----------------------------------------------------------------------------

def build(settings: Settings, client: kube.Kube, metrics: Metrics | None = None) -> web.Application:
    """The upload application; `client` is closed with it."""
    creds = credentials.Credentials(client, settings.namespace,
                                    max_age=settings.credentials_max_age,
                                    min_refresh=settings.credentials_min_refresh)
    state = State(settings, client, creds, metrics or Metrics())
    app = web.Application(middlewares=[cors_middleware, refusal_middleware])
    app[STATE] = state
    app.router.add_get("/healthz", healthz)
    for p in upload.PROXY_PATHS:
        app.router.add_post(p, handle_upload)
        app.router.add_route("HEAD", p, handle_head)
    app.on_response_prepare.append(_cors_on_prepare)
    app.cleanup_ctx.append(_session_ctx)
    return app


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    s = state.settings
    resolver = ConnectTo(*s.connect_to) if s.connect_to else None
    connector = aiohttp.TCPConnector(limit=0, resolver=resolver, enable_cleanup_closed=True)
    # auto_decompress off: the body is bytes to pass on, never to interpret.
    state.session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                          skip_auto_headers=("User-Agent",))
    try:
        yield
    finally:
        await state.session.close()
        await state.kube.close()


def build_metrics(metrics: Metrics) -> web.Application:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def serve(_request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(metrics.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app = web.Application()
    app.router.add_get("/metrics", serve)
    app.router.add_get("/healthz", healthz)
    return app
