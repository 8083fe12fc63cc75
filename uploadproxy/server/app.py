"""The upload server's HTTP layer: mutual-TLS check, CDI's paths, status codes as CDI's.

`GET /healthz` answers without a client certificate (kubelet probes have none); every
upload path needs the proxy's verified certificate (401 without one, 403 for another
name). POST starts, resumes or restarts the one upload (`decisions.decide_post`); HEAD
answers 200 and, while an upload is paused, `Upload-Offset`.

Sync answers come when the image is fully written; when that takes longer than
`keepalive_after` after the last byte, the 200 goes out early, then a space every
`keepalive_interval`, then the termination report as one JSON line. Async answers come
once the pipeline holds the whole body.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from cdicontract import clonestream
from cdicontract import upload as contract
from cdicontract.report import TerminationReport
from importer.checksum import Checksum
from importer.errors import ImportFailure
from importer.targets import select_target
from importer.transferspec import ContentType
from uploadproxy.server import bodyreader, decisions, tlsauth
from uploadproxy.server.config import ServerConfig
from uploadproxy.server.decisions import Action, State
from uploadproxy.server.session import UploadSession
from uploadproxy.server.transfer import TargetFactory

log = logging.getLogger(__name__)

HEALTHZ = "/healthz"
SESSION = web.AppKey("session", UploadSession)
CONFIG = web.AppKey("config", ServerConfig)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One line per request: method, path, status, body bytes taken (no headers: nothing
    secret can leak). Probes only at debug level, they come every few seconds."""
    response = await handler(request)
    level = logging.DEBUG if request.path == HEALTHZ else logging.INFO
    log.log(
        level,
        "request method=%s path=%s status=%d offset=%d",
        request.method,
        request.path,
        response.status,
        request.app[SESSION].offset,
    )
    return response


@web.middleware
async def require_proxy_certificate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == HEALTHZ:
        return await handler(request)
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    peer = ssl_object.getpeercert() if ssl_object is not None else None
    verdict = tlsauth.check_peer(peer, request.app[CONFIG].client_name)
    if verdict is tlsauth.Peer.NO_CERTIFICATE:
        log.warning("request refused: no client certificate path=%s", request.path)
        return _text(401, "a client certificate is required")
    if verdict is tlsauth.Peer.WRONG_NAME:
        log.warning("request refused: client certificate of another name path=%s", request.path)
        return _text(403, "this client may not upload here")
    return await handler(request)


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="OK")


def _upload_handler(variant: contract.Variant | None) -> Handler:
    """`variant` None: the archive path (raw body, sync, content type archive)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return _head(request)
        if request.method != "POST":
            return web.Response(status=404)
        return await _post(request, variant)

    return handle


def _head(request: web.Request) -> web.Response:
    """200; `Upload-Offset` while an upload is paused, or still receiving: a client whose
    connection broke may ask before the server noticed, and must not start over then."""
    session = request.app[SESSION]
    headers = {}
    if session.state in (State.PAUSED, State.RECEIVING):
        headers[contract.UPLOAD_OFFSET_HEADER] = str(session.offset)
    return web.Response(status=200, headers=headers)


async def _post(request: web.Request, variant: contract.Variant | None) -> web.StreamResponse:
    session = request.app[SESSION]
    config = request.app[CONFIG]
    try:
        requested = decisions.parse_offset(request.headers.get(contract.UPLOAD_OFFSET_HEADER))
        checksum = _checksum(request.headers.get(contract.UPLOAD_CHECKSUM_HEADER))
    except (decisions.BadHeader, ImportFailure) as e:
        return _text(400, str(e))
    if request.content_type == clonestream.MEDIA_TYPE:
        return _text(400, "a clone stream goes to a server in clone mode, not to an upload path")
    if request.headers.get(contract.CONTENT_TYPE_HEADER):
        # CDI's host-assisted clone streams through its upload server; ours clones elsewhere.
        return _text(400, f"{contract.CONTENT_TYPE_HEADER} (clone streams) is not supported here")
    action = decisions.decide_post(session.state, requested, session.offset)
    if action in decisions.STATUS:
        return _refuse(session, action)
    if action is Action.RESUME:
        assert session.transfer is not None
        if checksum is not None and checksum != session.transfer.checksum:
            return _text(400, "Upload-Checksum differs from the one the upload started with")
        problem = decisions.resumed_length_problem(
            session.transfer.declared_size, session.offset, request.content_length
        )
        if problem is not None:
            return _text(400, problem)
        resumed = session.resume()
        if resumed is None:
            return _text(503, "the paused upload ended meanwhile; ask again")
        transfer = resumed
    else:
        if action is Action.RESTART:
            await session.abandon_paused()
            if session.state is not State.IDLE:  # the old run ended the server meanwhile
                return _refuse(session, decisions.decide_post(session.state, None, 0))
        archive = variant is None or config.content_type is ContentType.ARCHIVE
        form = variant is not None and variant.is_form
        declared = None if form else request.content_length
        transfer = session.start(
            ContentType.ARCHIVE if archive else ContentType.KUBEVIRT, checksum, declared
        )
    form = variant is not None and variant.is_form
    if form:
        session.form_length(request.content_length)
    chunks: AsyncIterator[bytes] = (
        bodyreader.form_chunks(request, config.read_timeout)
        if form
        else bodyreader.raw_chunks(request, config.read_timeout)
    )
    received = await session.receive(chunks)
    if received.bad_body is not None:
        return _text(400, received.bad_body)
    if received.early is not None:
        # Ended before the body did: a failure seen early, or (an archive whose end
        # marker came before the client's padding) a success.
        if received.early.ok:
            return _success(received.early)
        return _failure(received.early)
    if not received.complete:
        # The client is gone; nobody reads this, but the handler must answer something.
        return _text(400, "the body did not arrive whole; the upload is paused")
    if variant is not None and variant.is_async:
        await asyncio.shield(transfer.drained)
        if transfer.result.done() and not transfer.result.result().ok:
            return _failure(transfer.result.result())
        session.answered_early()
        log.info("async upload answered, processing continues")
        return web.Response(status=200)
    return await _answer_when_done(request, session, transfer.result, config)


def _checksum(text: str | None) -> Checksum | None:
    return Checksum.parse(text) if text is not None else None


def _refuse(session: UploadSession, action: Action) -> web.Response:
    status = decisions.STATUS[action]
    if action is Action.OFFSET_MISMATCH:
        offset = str(session.offset) if session.state is State.PAUSED else "0"
        return _text(
            status,
            f"the upload continues at byte {offset}",
            {contract.UPLOAD_OFFSET_HEADER: offset},
        )
    if action is Action.CONFLICT:
        if session.state is State.FAILED and session.final is not None:
            return _text(status, f"the upload already failed: {session.final.message}")
        return _text(status, "the upload is already complete")
    log.warning("concurrent upload request refused state=%s", session.state)
    return _text(status, "another upload is in progress")


def _failure(report: TerminationReport) -> web.Response:
    return _text(
        decisions.status_for_failure(report.reason),
        f"Saving stream failed: {report.reason}: {report.message}",
    )


def _success(report: TerminationReport) -> web.Response:
    return web.Response(status=200, body=_result_line(report), content_type="application/json")


def _result_line(report: TerminationReport) -> bytes:
    return report.to_json().encode() + b"\n"


async def _answer_when_done(
    request: web.Request,
    session: UploadSession,
    result: asyncio.Future[TerminationReport],
    config: ServerConfig,
) -> web.StreamResponse:
    try:
        report = await asyncio.wait_for(asyncio.shield(result), config.keepalive_after)
    except TimeoutError:
        pass
    else:
        return _success(report) if report.ok else _failure(report)
    # Conversion outlasts the ingress' patience: answer now, keep the connection alive.
    # A client that only looks at the status (virtctl) now waits for the PVC's phase, so
    # a failure from here on must end the server with its report, as after an async 200.
    session.answered_early()
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    log.info("sync upload still processing, keeping the connection alive")
    try:
        await response.prepare(request)
        while True:
            try:
                report = await asyncio.wait_for(asyncio.shield(result), config.keepalive_interval)
                break
            except TimeoutError:
                await response.write(b" ")
        await response.write(b"\n" + _result_line(report))
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        log.info("client left while the upload was processing")
        with contextlib.suppress(Exception):
            await asyncio.shield(result)
    return response


def make_app(
    config: ServerConfig,
    session: UploadSession | None = None,
    *,
    target_factory: TargetFactory = select_target,
) -> web.Application:
    app = web.Application(middlewares=[log_requests, require_proxy_certificate])
    app[CONFIG] = config
    app[SESSION] = session or UploadSession(config, target_factory)
    app.router.add_get(HEALTHZ, healthz)
    for version in contract.API_VERSIONS:
        for variant in contract.Variant:
            app.router.add_route("*", contract.path(version, variant), _upload_handler(variant))
        app.router.add_route("*", contract.archive_path(version), _upload_handler(None))

    async def close_session(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[SESSION].aclose()

    app.cleanup_ctx.append(close_session)
    return app
