"""The admission webhooks: an aiohttp HTTPS server.

The validating webhook for DataVolumes (`controller/validation.py`), and the mutating
ones that authorise clones and sign their tokens (`controller/clonemutate.py`). Every
replica serves them (leadership only gates reconciling). At startup `ensure_tls` loads
the serving certificate from its Secret, creating it on first start (a 409 means another
replica won the race, so its Secret is used), and writes the CA into each webhook
configuration's caBundle, so `kubectl apply -k deploy/` needs no manual certificate step.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

from cdicontract import api
from controller import adoption, certs, clonemutate, validation
from controller.runtime import kube
from controller.runtime import objects as o
from controller.runtime.objects import Obj

log = logging.getLogger(__name__)

SECRET_NAME = "cdi-api-server-cert"  # noqa: S105 - a name, not a secret
SERVICE_NAME = "cdi-api"
WEBHOOK_CONFIG = "cdi-api-datavolume-validate"
WEBHOOK_NAME = "datavolume-validate.cdi.kubevirt.io"
PATH = "/datavolume-validate"
MUTATING_CONFIGS = {
    "cdi-api-datavolume-mutate": "datavolume-mutate.cdi.kubevirt.io",
    "cdi-api-pvc-mutate": "pvc-mutate.cdi.kubevirt.io",
}
MWCS = kube.Resource("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
                     namespaced=False)
MAX_BODY = 3 * 1024 * 1024  # the API server's own request size limit
LOOKUP_TIMEOUT = 4.0
"""The existing-PVC lookup, well inside the webhook's timeoutSeconds."""
KEEPALIVE_SECONDS = 120.0  # longer than the API server's 90 s idle-connection timeout


async def ensure_tls(client: kube.Kube, namespace: str) -> certs.ServingCert:
    path = kube.SECRETS.path(namespace, SECRET_NAME)
    secret = await client.get(path)
    if secret is None:
        generated = certs.generate(SERVICE_NAME, namespace)
        try:
            secret = await client.create(kube.SECRETS.path(namespace), {
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": SECRET_NAME, "namespace": namespace},
                "data": generated.secret_data()})
        except kube.Conflict:
            secret = await client.get(path)
            if secret is None:
                raise
    serving = certs.ServingCert.from_secret(secret)
    ca_bundle = base64.b64encode(serving.ca_pem).decode()
    await client.strategic_patch(kube.VWCS.path(None, WEBHOOK_CONFIG), {
        "webhooks": [{"name": WEBHOOK_NAME, "clientConfig": {"caBundle": ca_bundle}}]})
    for config, name in MUTATING_CONFIGS.items():
        await client.strategic_patch(MWCS.path(None, config), {
            "webhooks": [{"name": name, "clientConfig": {"caBundle": ca_bundle}}]})
    return serving


def ssl_context(serving: certs.ServingCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert.write_bytes(serving.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(serving.key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx


def _request(review: Any) -> Obj:
    request = review.get("request") if isinstance(review, dict) else None
    if not isinstance(request, dict):
        raise web.HTTPBadRequest(text="not an AdmissionReview")
    return request


def review_response(review: Any, existing: Obj | None = None, *,
                    adoption_gate: bool = False) -> Obj:
    """An AdmissionReview answer for a request (pure); `existing` is the PVC of the new
    DataVolume's name when one exists, `adoption_gate` CDIConfig's claim adoption gate."""
    request = _request(review)
    uid = request.get("uid", "")
    new, old = request.get("object"), request.get("oldObject")
    errors: list[str] = []
    if request.get("operation") == "CREATE" and isinstance(new, dict) and existing is not None:
        refusal = adoption.admission_refusal(existing, new, adoption_gate)
        errors = [refusal] if refusal else []
    if not errors and request.get("operation") in ("CREATE", "UPDATE") and isinstance(
            new, dict):
        errors = validation.validate(new, old if request.get("operation") == "UPDATE" else None)
    response: Obj = {"uid": uid, "allowed": not errors}
    if errors:
        response["status"] = {"code": 422, "reason": "Invalid",
                              "message": "; ".join(errors)}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": response}


async def _body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY,
                                            actual_size=request.content_length)
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body is not JSON") from None


async def _existing_claim(client: kube.Kube, request: Obj) -> tuple[Obj | None, bool]:
    """The PVC a DataVolume being created would take, and the claim adoption gate (CDI
    looks both up at admission; a failed lookup refuses the create, as CDI's does)."""
    new = request.get("object")
    if request.get("operation") != "CREATE" or not isinstance(new, dict):
        return None, False
    ns = o.namespace(new) or str(request.get("namespace") or "")
    try:
        async with asyncio.timeout(LOOKUP_TIMEOUT):
            pvc = await client.get(kube.PVCS.path(ns, o.name(new)))
            if pvc is None:
                return None, False
            config = await client.get(kube.CDICONFIGS.path(None, api.CDICONFIG_NAME))
    except (kube.ApiError, OSError, TimeoutError) as exc:
        log.warning("webhook pvc lookup failed ns=%s name=%s error=%s", ns, o.name(new), exc)
        raise web.HTTPServiceUnavailable(text="cannot look up the target PVC") from None
    gate = adoption.FEATURE_GATE in (o.spec(config).get("featureGates") or []) if config \
        else False
    return pvc, gate


async def _validate(request: web.Request) -> web.Response:
    review = await _body(request)
    client = request.app.get(CLIENT)
    existing, gate = (await _existing_claim(client, _request(review))
                      if client is not None else (None, False))
    return web.json_response(review_response(review, existing, adoption_gate=gate))


MUTATOR = web.AppKey("mutator", clonemutate.Mutator)


async def _mutate_datavolume(request: web.Request) -> web.Response:
    try:
        answer = await request.app[MUTATOR].datavolume(await _body(request))
    except clonemutate.BadReview as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response(answer)


async def _mutate_claim(request: web.Request) -> web.Response:
    try:
        answer = await request.app[MUTATOR].claim(await _body(request))
    except clonemutate.BadReview as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response(answer)


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


CLIENT = web.AppKey("client", kube.Kube)


def app(mutator: clonemutate.Mutator | None = None,
        client: kube.Kube | None = None) -> web.Application:
    """The webhook server; the clone webhooks only with a `mutator` (it holds the key);
    the existing-PVC check (claim adoption) only with a `client`."""
    application = web.Application(client_max_size=MAX_BODY)
    if client is not None:
        application[CLIENT] = client
    application.router.add_post(PATH, _validate)
    if mutator is not None:
        application[MUTATOR] = mutator
        application.router.add_post(clonemutate.DV_PATH, _mutate_datavolume)
        application.router.add_post(clonemutate.PVC_PATH, _mutate_claim)
    application.router.add_get("/healthz", _healthz)
    return application
