"""The mutating admission webhook for clones: authorise the requester, sign a clone token.

`/datavolume-mutate` (DataVolume CREATE, failurePolicy Fail) and `/pvc-mutate` (a PVC
CREATE carrying the legacy `k8s.io/CloneRequest`, failurePolicy Ignore). When the
requester may read the source (`controller/cloneauth.py`), the object gets a short-lived
clone token for exactly that source and target (`cdicontract/clonetoken.py`), replacing
whatever the creator put there; when not, the create is refused with CDI's message.
Everything else is allowed untouched. The reconciler verifies the token before it touches
the source, so an annotation edited later is caught there.

As CDI: a `sourceRef` whose DataSource does not exist is refused (the error names it),
unless the DataVolume is pre-populated or static (then it proceeds without a token); a
cross-namespace source in a namespace that does not exist is refused the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import api, clonetoken
from controller import cloneauth
from controller.cloneauth import BadRequest, DataSourceRef, Source, UserInfo
from controller.runtime import kube
from controller.runtime.objects import Obj

log = logging.getLogger(__name__)

DV_PATH = "/datavolume-mutate"
PVC_PATH = "/pvc-mutate"
SARS = kube.Resource("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False)
DATASOURCES = kube.Resource(api.GROUP, api.VERSION, api.DATASOURCES)
NAMESPACES = kube.Resource("", "v1", "namespaces", namespaced=False)
LOOKUP_TIMEOUT = 4.0
BUDGET_SECONDS = 8.0
"""All lookups and reviews of one request, inside the webhook's 10 s timeoutSeconds, so
the requester reads our reason rather than the API server's deadline."""


class BadReview(Exception):
    """The body is not an AdmissionReview this endpoint answers (HTTP 400)."""


class _NoTokenOkay(Exception):
    """CDI's ErrNoTokenOkay: allow without a token."""


class _Unavailable(Exception):
    """A lookup or review could not be made: refuse (the API server retries nothing)."""


class Mutator:
    """Answers AdmissionReviews; the API (lookups, reviews) and the clock are injected."""

    def __init__(self, client: kube.Kube, key: rsa.RSAPrivateKey, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client = client
        self.key = key
        self.clock = clock

    async def datavolume(self, review: Any) -> Obj:
        request, obj = _request(review, "datavolumes", api.GROUP)
        uid = str(request.get("uid", ""))
        if request.get("operation") != "CREATE" or obj is None:
            return cloneauth.response(uid)
        return await _within_budget(uid, self._datavolume(request, obj))

    async def claim(self, review: Any) -> Obj:
        request, obj = _request(review, "persistentvolumeclaims", "")
        uid = str(request.get("uid", ""))
        if request.get("operation") != "CREATE" or obj is None \
                or cloneauth.owned_by_datavolume(obj):
            return cloneauth.response(uid)
        try:
            source = cloneauth.pvc_source(obj)
        except BadRequest as exc:
            return cloneauth.failed(uid, str(exc))
        if source is None:
            return cloneauth.response(uid)
        return await _within_budget(uid, self._authorise(request, obj, source))

    async def _datavolume(self, request: Obj, obj: Obj) -> Obj:
        uid = str(request.get("uid", ""))
        try:
            source = cloneauth.dv_source(obj)
            if isinstance(source, DataSourceRef):
                source = await self._resolve(source, obj)
        except _NoTokenOkay:
            return cloneauth.response(uid)
        except BadRequest as exc:
            return cloneauth.failed(uid, str(exc))
        except _Unavailable as exc:
            return cloneauth.failed(uid, str(exc), 500)
        if source is None:
            return cloneauth.response(uid)
        return await self._authorise(request, obj, source)

    async def _resolve(self, ref: DataSourceRef, dv: Obj) -> Source | None:
        if not ref.name:
            raise BadRequest("sourceRef names no DataSource")
        ds = await self._get(DATASOURCES.path(ref.namespace, ref.name))
        if ds is None:
            if cloneauth.no_token_okay(dv):
                raise _NoTokenOkay
            raise BadRequest(f'{api.DATASOURCES}.{api.GROUP} "{ref.name}" not found')
        return cloneauth.datasource_source(ds)

    async def _authorise(self, request: Obj, obj: Obj, source: Source) -> Obj:
        uid = str(request.get("uid", ""))
        meta = obj.get("metadata") or {}
        target_ns = str(meta.get("namespace") or request.get("namespace") or "")
        target_name = str(meta.get("name") or request.get("name") or "")
        if not source.name:
            return cloneauth.failed(uid, f"the clone source names no {source.kind}")
        if not target_name:
            # generateName is resolved after admission: no token could name the target.
            return cloneauth.failed(uid, "a clone needs metadata.name (generateName is "
                                         "not supported: the clone token names its target)")
        source = Source(source.kind, source.namespace or target_ns, source.name)
        user = UserInfo.from_request(request)
        try:
            if source.namespace != target_ns and not await self._may_clone(obj, source, user):
                if cloneauth.no_token_okay(obj):
                    return cloneauth.response(uid)
                log.info("clone refused user=%s source=%s/%s target=%s/%s", user.username,
                         source.namespace, source.name, target_ns, target_name)
                return cloneauth.refused(uid, cloneauth.denial(user, source.namespace))
        except _NoTokenOkay:
            return cloneauth.response(uid)
        except BadRequest as exc:
            return cloneauth.failed(uid, str(exc))
        except _Unavailable as exc:
            return cloneauth.failed(uid, str(exc), 500)
        ref = cloneauth.clone_ref(source, target_ns, target_name)
        token = clonetoken.sign(self.key, ref, now=self.clock())
        log.info("clone token issued user=%s source=%s/%s target=%s/%s", user.username,
                 source.namespace, source.name, target_ns, target_name)
        return cloneauth.response(uid, patch=cloneauth.token_patch(obj, token))

    async def _may_clone(self, obj: Obj, source: Source, user: UserInfo) -> bool:
        if await self._get(NAMESPACES.path(None, source.namespace)) is None:
            if cloneauth.no_token_okay(obj):
                raise _NoTokenOkay
            raise BadRequest(f'namespaces "{source.namespace}" not found')
        for alternative in cloneauth.alternatives(source):
            allowed = True
            for attributes in alternative:
                if not await self._allowed(cloneauth.review(user, attributes)):
                    allowed = False
                    break
            if allowed:
                return True
        return False

    async def _get(self, path: str) -> Obj | None:
        try:
            return await self.client.request("GET", path, timeout=LOOKUP_TIMEOUT)
        except kube.NotFound:
            return None
        except kube.ApiError as exc:
            raise _Unavailable(f"clone authorization: lookup failed: HTTP {exc.status} "
                               f"{exc.reason}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _Unavailable(f"clone authorization: lookup failed: "
                               f"{type(exc).__name__}") from exc

    async def _allowed(self, body: Obj) -> bool:
        try:
            answer = await self.client.request("POST", SARS.path(), body,
                                               timeout=LOOKUP_TIMEOUT)
        except kube.ApiError as exc:
            raise _Unavailable("clone authorization: SubjectAccessReview failed: "
                               f"HTTP {exc.status} {exc.reason}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise _Unavailable("clone authorization: SubjectAccessReview failed: "
                               f"{type(exc).__name__}") from exc
        return bool((answer.get("status") or {}).get("allowed"))


async def _within_budget(uid: str, answer: Awaitable[Obj]) -> Obj:
    try:
        async with asyncio.timeout(BUDGET_SECONDS):
            return await answer
    except TimeoutError:
        return cloneauth.failed(uid, "clone authorization timed out: the API server did "
                                     "not answer in time", 500)


def _request(review: Any, resource: str, group: str) -> tuple[Obj, Obj | None]:
    """The request and its object; a review for another resource is a client error."""
    request = review.get("request") if isinstance(review, dict) else None
    if not isinstance(request, dict):
        raise BadReview("not an AdmissionReview")
    res = request.get("resource") or {}
    if isinstance(res, dict) and res and (res.get("group", ""), res.get("resource")) != (
            group, resource):
        raise BadReview(f"expected a review of {resource}")
    obj = request.get("object")
    if not isinstance(obj, dict):
        return request, None
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    if not meta.get("namespace") and request.get("namespace"):
        # The API server fills it in before admission; an older one may not have.
        obj = {**obj, "metadata": {**meta, "namespace": request["namespace"]}}
    return request, obj
