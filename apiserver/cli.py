"""`cdi-apiserver`: start-up, the HTTPS listener, and the loop that keeps state current.

Start-up order: the signing key (created on first start) and its public half, the serving
certificate, the kube-apiserver's front-proxy settings; then listen; then write our CA
into the APIService. Every `--refresh-seconds` the front-proxy settings are read again
(the request-header CA may rotate), the APIService's caBundle and the public-key
ConfigMap are checked, so a re-applied manifest heals without a restart. Configuration
is read here once: flags, with the namespace from `CDI_NAMESPACE` (the Deployment's
downward API).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from apiserver import authn, group, kubeapi, server, signingkey, tls
from apiserver.obj import Obj
from cdicontract import uploadtoken

log = logging.getLogger("cdi-apiserver")

ENV_NAMESPACE = "CDI_NAMESPACE"
DEFAULT_PORT = 8443
DEFAULT_REFRESH_SECONDS = 30.0
RETRY_SECONDS = 2.0
KEEPALIVE_SECONDS = 120.0
"""Longer than the kube-aggregator's 90 s idle timeout: it closes idle connections first,
so it never reuses one this server is closing (which would fail a user's request)."""
SHUTDOWN_SECONDS = 10.0
"""In-flight requests finish within the pod's 30 s grace period."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="cdi-apiserver",
        description="The aggregated API server of upload.cdi.kubevirt.io "
                    "(UploadTokenRequest).")
    p.add_argument("--namespace", default=os.environ.get(ENV_NAMESPACE, ""),
                   help=f"where the signing key and certificates live (default: "
                        f"${ENV_NAMESPACE})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on")  # noqa: S104
    p.add_argument("--service", default=tls.SERVICE_NAME,
                   help="the Service the APIService names (the certificate's DNS names)")
    p.add_argument("--kubeconfig", default=None,
                   help="out of a cluster: the kubeconfig to use")
    p.add_argument("--refresh-seconds", type=float, default=DEFAULT_REFRESH_SECONDS)
    args = p.parse_args(argv)
    if not args.namespace:
        p.error(f"--namespace or ${ENV_NAMESPACE} is required")
    if not 0 < args.port < 65536:
        p.error("--port must be 1-65535")
    if args.refresh_seconds <= 0:
        p.error("--refresh-seconds must be positive")
    return args


async def _auth_config(client: kubeapi.Kube) -> authn.AuthConfig:
    cm = await client.get(kubeapi.CONFIGMAPS.path(authn.CONFIGMAP_NAMESPACE,
                                                  authn.CONFIGMAP_NAME))
    if cm is None:
        raise authn.NoAuthConfig(f"ConfigMap {authn.CONFIGMAP_NAMESPACE}/"
                                 f"{authn.CONFIGMAP_NAME} not found")
    return authn.AuthConfig.from_configmap(cm)


@dataclass(frozen=True)
class Live:
    """What the running server holds and the refresh loop keeps current."""

    namespace: str
    state: server.State
    contexts: tls.ServerContexts
    serving: tls.ServingCert
    key: signingkey.SigningKey


async def _refresh(client: kubeapi.Kube, live: Live) -> bool:
    """One round of keeping what others may change in line; each part fails alone.

    False when a part failed, so the next round comes soon: on a fresh install the
    Deployment may start before the APIService exists.
    """
    ok = True
    try:
        auth = await _auth_config(client)
        live.state.auth = auth
        if live.contexts.update(auth.client_ca_pem):
            log.info("front-proxy CA changed; trusted from the next handshake")
    except (kubeapi.ApiError, authn.NoAuthConfig, OSError, TimeoutError) as exc:
        log.warning("front-proxy settings not refreshed: %s", exc)
        ok = False
    try:
        await tls.ensure_ca_bundle(client, live.serving)
    except (kubeapi.ApiError, OSError, TimeoutError) as exc:
        log.warning("APIService caBundle not checked: %s", exc)
        ok = False
    try:
        await signingkey.publish(client, live.namespace, live.key)
    except (kubeapi.ApiError, OSError, TimeoutError) as exc:
        log.warning("public key not published: %s", exc)
        ok = False
    return ok


async def run(args: argparse.Namespace, stop: asyncio.Event) -> None:
    async with kubeapi.Kube(kubeapi.load_config(args.kubeconfig)) as client:
        key = await signingkey.ensure(client, args.namespace)
        await signingkey.publish(client, args.namespace, key)
        serving = await tls.ensure_serving_cert(client, args.namespace, args.service)
        auth = await _auth_config(client)
        contexts = tls.ServerContexts(serving, auth.client_ca_pem)

        async def review(sar: Obj) -> Obj:
            return await client.create(kubeapi.SUBJECT_ACCESS_REVIEWS.path(), sar)

        def sign(namespace: str, pvc: str) -> str:
            return uploadtoken.sign(key.loaded, namespace=namespace, pvc=pvc)

        state = server.State(auth=auth, review=review, sign=sign)
        live = Live(args.namespace, state, contexts, serving, key)
        runner = web.AppRunner(server.app(state), handle_signals=False,
                               access_log_class=server.AccessLogger,
                               keepalive_timeout=KEEPALIVE_SECONDS,
                               shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        try:
            site = web.TCPSite(runner, args.bind, args.port, ssl_context=contexts.listener)
            await site.start()
            log.info("serving group=%s port=%d ns=%s", group.GROUP_VERSION, args.port,
                     args.namespace)
            while True:
                ok = await _refresh(client, live)
                wait = args.refresh_seconds if ok else min(RETRY_SECONDS, args.refresh_seconds)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                if stop.is_set():
                    break
        finally:
            await runner.cleanup()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")

    async def start() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(args, stop)

    try:
        asyncio.run(start())
    except (signingkey.BadKey, authn.NoAuthConfig, tls.BadServingCert,
            kubeapi.ApiError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
