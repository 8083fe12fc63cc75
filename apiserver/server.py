"""The aiohttp application of `cdi-apiserver`: discovery, OpenAPI and one create.

Every answer but /healthz and /readyz needs the kube-apiserver's front-proxy client
certificate (verified by the TLS layer against the request-header CA); creating an
UploadTokenRequest further needs a user in the forwarded headers and a
SubjectAccessReview allowing it. Failures are Kubernetes `Status` objects, so kubectl and
virtctl show them as they show the kube-apiserver's own.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from apiserver import access, authn, group, openapi, statuses, tokenrequests
from apiserver.obj import Obj
from cdicontract import upload

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024  # the kube-apiserver's own request size limit
_COLLECTION = re.compile(
    rf"^{re.escape(group.VERSION_PATH)}/namespaces/([^/]+)/{group.RESOURCE}/?$")
_ITEM = re.compile(
    rf"^{re.escape(group.VERSION_PATH)}/namespaces/([^/]+)/{group.RESOURCE}/[^/]+(/[^/]+)?/?$")
_OPEN_PATHS = frozenset({"/healthz", "/readyz", "/livez"})

Reviewer = Callable[[Obj], Awaitable[Obj]]
"""Creates a SubjectAccessReview and returns the kube-apiserver's answer."""
Signer = Callable[[str, str], str]
"""(namespace, pvc) -> token."""


@dataclass
class State:
    """What a request needs; `auth` is replaced when the kube-apiserver's ConfigMap changes."""

    auth: authn.AuthConfig
    review: Reviewer
    sign: Signer


STATE = web.AppKey("state", State)


def _json(body: Obj, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    out = {"X-Content-Type-Options": "nosniff", **(headers or {})}
    return web.Response(body=json.dumps(body).encode(), status=status,
                        content_type="application/json", headers=out)


def _failure(body: Obj) -> web.Response:
    return _json(body, status=int(body["code"]))


def _peercert(request: web.Request) -> Any:
    return request.transport.get_extra_info("peercert") if request.transport else None


def _front_proxy(request: web.Request) -> bool:
    """The caller presented a verified front-proxy certificate with an allowed name."""
    return authn.is_front_proxy(_peercert(request), request.app[STATE].auth)


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    """Front-proxy check for everything but probes; unknown routes as Status objects."""
    if request.path not in _OPEN_PATHS and not _front_proxy(request):
        log.info("request refused: no front-proxy certificate method=%s path=%s",
                 request.method, request.path)
        return _failure(statuses.unauthorized())
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _failure(statuses.not_found())
    except web.HTTPMethodNotAllowed:
        return _failure(statuses.method_not_allowed())


async def _probe(_: web.Request) -> web.Response:
    """Serving at all means ready: the key, certificate and CA were loaded before listening."""
    return web.Response(text="ok")


def _static(doc: Callable[[], Obj]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return _json(doc())
    return handler


async def _openapi_v2(_: web.Request) -> web.Response:
    return web.Response(body=openapi.v2_bytes(), content_type="application/json")


async def _openapi_v3_group(_: web.Request) -> web.Response:
    return web.Response(body=openapi.v3_bytes(), content_type="application/json",
                        headers={"Cache-Control": "public, immutable",
                                 "Etag": f'"{openapi.v3_hash()}"'})


async def _anything(request: web.Request) -> web.Response:
    """Paths under our group that are not a route: a create-only resource, or nothing."""
    if _ITEM.match(request.path) or _COLLECTION.match(request.path):
        return _failure(statuses.method_not_allowed())
    return _failure(statuses.not_found())


async def _create(request: web.Request) -> web.Response:
    state = request.app[STATE]
    namespace = request.match_info["namespace"]
    try:
        identity = authn.authenticate(_peercert(request), request.headers, state.auth)
    except authn.Unauthenticated as exc:
        log.info("request refused: %s", exc)
        return _failure(statuses.unauthorized())
    if not upload.is_dns_label(namespace):
        return _failure(statuses.not_found())
    try:
        answer = await state.review(access.review(identity, namespace))
    except Exception:
        log.exception("SubjectAccessReview failed ns=%s", namespace)
        return _failure(statuses.internal_error("could not check access"))
    decision = access.decision(answer)
    if not decision.allowed:
        log.info("create refused user=%s ns=%s", identity.user, namespace)
        return _failure(statuses.forbidden(identity.user, namespace, decision.reason))
    content_type = request.headers.get("Content-Type", "")
    # No Content-Type means JSON, as for the kube-apiserver's own resources (its input
    # negotiation falls back to the first supported type): the Python kubernetes client
    # sends custom-object bodies without one, and the kube-apiserver forwards it as is.
    media = content_type.split(";", 1)[0].strip().lower() or "application/json"
    if media != "application/json":
        return _failure(statuses.unsupported_media_type(content_type))
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _failure(statuses.too_large(MAX_BODY))
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _failure(statuses.too_large(MAX_BODY))
    try:
        body: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _failure(statuses.bad_request("the body is not valid JSON"))
    try:
        parsed = tokenrequests.parse(body, namespace,
                                     request.query.get("fieldValidation", ""),
                                     tuple(request.query.getall("dryRun", ())))
    except tokenrequests.Malformed as exc:
        return _failure(statuses.bad_request(str(exc)))
    except tokenrequests.Invalid as exc:
        return _failure(statuses.invalid(exc.name, exc.causes))
    token = None if parsed.dry_run else state.sign(namespace, parsed.pvc)
    log.info("upload token issued user=%s ns=%s pvc=%s dryRun=%s", identity.user, namespace,
             parsed.pvc, parsed.dry_run)
    warnings = ", ".join(f'299 - "{_escape(w)}"' for w in parsed.warnings)
    return _json(tokenrequests.answer(parsed, token), status=201,
                 headers={"Warning": warnings} if warnings else None)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


class AccessLogger(AbstractAccessLogger):
    """One line per request, without the kubelet's probes every two seconds.

    Method, path (no query: nothing secret is sent there, but nothing is needed either),
    status, duration; never a header (the forwarded identity is logged by the handler).
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse,
            time: float) -> None:
        if request.path in _OPEN_PATHS and response.status < 400:
            return
        self.logger.info("request method=%s path=%s status=%d seconds=%.3f",
                         request.method, request.path, response.status, time)


def app(state: State) -> web.Application:
    application = web.Application(client_max_size=MAX_BODY, middlewares=[_errors])
    application[STATE] = state
    r = application.router
    for path in _OPEN_PATHS:
        r.add_get(path, _probe)
    r.add_get("/", _static(group.root_paths))
    r.add_get("/apis", _static(group.api_group_list))
    r.add_get("/apis/", _static(group.api_group_list))
    r.add_get(group.GROUP_PATH, _static(group.api_group))
    r.add_get(group.VERSION_PATH, _static(group.api_resource_list))
    r.add_get("/openapi/v2", _openapi_v2)
    r.add_get("/openapi/v3", _static(openapi.v3_discovery))
    r.add_get(openapi.V3_PATH, _openapi_v3_group)
    r.add_post(f"{group.VERSION_PATH}/namespaces/{{namespace}}/{group.RESOURCE}", _create)
    r.add_route("*", f"{group.GROUP_PATH}/{{tail:.*}}", _anything)
    return application
