"""`cdi-controller`: the controller Deployment's process (webhook on every replica,
reconciling on the leader only).

Configuration comes from flags or the env vars the Deployment sets (CDI's names where CDI
has them: IMPORTER_IMAGE, UPLOADSERVER_IMAGE, CLONER_IMAGE, PULL_POLICY); it is parsed here
once. The images of the pods it creates default to this version's release images
(`cdicontract.images.default_image`), so a controller without that env still creates pods
that match it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cdicontract import images
from controller import clonekey, clonemutate, webhook
from controller.app import Controller
from controller.reconciler import Settings
from controller.runtime import kube
from controller.runtime.leader import LeaderElector, Timing
from controller.runtime.metrics import Metrics
from controller.runtime.stallwatch import StallWatch
from controller.transfers.clone import objects as cloneobjects
from controller.transfers.importing import pod as importpod
from controller.transfers.upload import objects as uploadobjects

log = logging.getLogger("cdi-controller")
LEASE_NAME = "cdi-controller-leader"


@dataclass(frozen=True)
class Options:
    kubeconfig: str | None
    namespace: str
    identity: str
    importer_image: str
    uploadserver_image: str
    cloner_image: str
    pull_policy: str
    metrics_addr: tuple[str, int]
    webhook_addr: tuple[str, int] | None
    leader_elect: bool
    workers: int
    lease_duration: float
    drain_seconds: float


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "0.0.0.0", int(port)  # noqa: S104 - the pod's own network namespace


def _image(env: Mapping[str, str], name: str, component: str) -> str:
    """The image of a pod the controller creates: the Deployment's env (which kustomize
    `images:` rewrites), else the release image of this version."""
    return env.get(name) or images.default_image(component)


def parse_args(argv: Sequence[str] | None = None,
               env: Mapping[str, str] | None = None) -> Options:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog="cdi-controller", description=__doc__)
    p.add_argument("--kubeconfig", default=None, help="default: in-cluster, else $KUBECONFIG")
    p.add_argument("--namespace", default=env.get("CDI_NAMESPACE", "cdi"))
    p.add_argument("--identity", default=env.get("POD_NAME") or socket.gethostname())
    p.add_argument("--importer-image", default=_image(env, "IMPORTER_IMAGE", "importer"))
    p.add_argument("--uploadserver-image",
                   default=_image(env, "UPLOADSERVER_IMAGE", "uploadserver"))
    p.add_argument("--cloner-image", default=_image(env, "CLONER_IMAGE", "cloner"))
    p.add_argument("--pull-policy", default=env.get("PULL_POLICY", "IfNotPresent"))
    p.add_argument("--metrics-addr", default=":8080")
    p.add_argument("--webhook-addr", default=":8443", help="'off' to not serve the webhook")
    p.add_argument("--no-leader-elect", action="store_true")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--lease-duration", type=float, default=15.0)
    p.add_argument("--drain-seconds", type=float, default=3.0,
                   help="keep serving the webhook this long after SIGTERM")
    a = p.parse_args(argv)
    return Options(
        kubeconfig=a.kubeconfig,
        namespace=a.namespace,
        identity=a.identity,
        importer_image=a.importer_image,
        uploadserver_image=a.uploadserver_image,
        cloner_image=a.cloner_image,
        pull_policy=a.pull_policy,
        metrics_addr=_addr(a.metrics_addr),
        webhook_addr=None if a.webhook_addr == "off" else _addr(a.webhook_addr),
        leader_elect=not a.no_leader_elect,
        workers=a.workers,
        lease_duration=a.lease_duration,
        drain_seconds=a.drain_seconds,
    )


async def _serve_webhook(client: kube.Kube, opts: Options, runner: list[web.AppRunner]) -> None:
    """Set up TLS and the clone-token key (retrying until the API lets us) and serve the
    webhooks. A key Secret holding no usable key stops the process (clonekey.BadKey)."""
    assert opts.webhook_addr is not None
    delay = 0.5
    while True:
        try:
            serving = await webhook.ensure_tls(client, opts.namespace)
            key = await clonekey.ensure(client, opts.namespace)
            break
        except (kube.ApiError, OSError, TimeoutError) as exc:
            log.warning("webhook tls setup failed retry_in=%.1fs error=%s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)
    # The API server's webhook client keeps idle connections for 90 s; closing ours later
    # than that means it never sends a review on a connection we are just closing.
    r = web.AppRunner(webhook.app(clonemutate.Mutator(client, key), client), access_log=None,
                      keepalive_timeout=webhook.KEEPALIVE_SECONDS)
    await r.setup()
    await web.TCPSite(r, *opts.webhook_addr, ssl_context=webhook.ssl_context(serving)).start()
    runner.append(r)
    log.info("webhook serving addr=%s:%d", *opts.webhook_addr)


def _stop_acting() -> None:
    """Leadership is lost: exit at once, from the renew-deadline timer, so no worker takes
    another step that another leader could overlap (CDI's manager exits the same way)."""
    logging.shutdown()
    os._exit(1)


async def run(opts: Options) -> int:
    metrics = Metrics()
    ready = asyncio.Event()

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok") if ready.is_set() else web.Response(status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, *opts.metrics_addr).start()
    runners = [runner]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stallwatch = StallWatch(loop)
    stallwatch.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    client = kube.Kube(kube.load_config(opts.kubeconfig))
    elector = LeaderElector(client, opts.namespace, LEASE_NAME, opts.identity,
                            timing=Timing(lease_duration=opts.lease_duration,
                                          renew_deadline=opts.lease_duration * 2 / 3,
                                          retry_period=max(opts.lease_duration / 7.5, 0.5)))
    settings = Settings(namespace=opts.namespace, instance=opts.identity)
    code = 0
    try:
        if opts.webhook_addr is not None:
            await _serve_webhook(client, opts, runners)
        ready.set()
        stopping = asyncio.create_task(stop.wait())
        if opts.leader_elect:
            log.info("waiting for leadership lease=%s identity=%s", LEASE_NAME, opts.identity)
            acquiring = asyncio.create_task(elector.acquire())
            await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                acquiring.cancel()
                return 0
        metrics.leader.set(1)
        controller = Controller(
            client, settings, metrics, workers=opts.workers,
            importer=importpod.PodSettings(opts.importer_image, opts.pull_policy,
                                           cdi_namespace=opts.namespace),
            uploadserver=uploadobjects.PodSettings(opts.uploadserver_image, opts.pull_policy),
            cloner=cloneobjects.SourcePodSettings(opts.cloner_image, opts.pull_policy))
        running = asyncio.create_task(controller.run())
        watched = {running, stopping}
        keeping = None
        if opts.leader_elect:
            keeping = asyncio.create_task(elector.keep(on_lost=_stop_acting))
            watched.add(keeping)
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if keeping is not None and keeping in done:
            log.error("lost leadership; exiting so a fresh process competes again")
            code = 1
        elif running in done and running.exception() is not None:
            log.error("controller stopped error=%s", running.exception())
            code = 1
        for t in (running, keeping, stopping):
            if t is not None:
                t.cancel()
        await asyncio.gather(running, return_exceptions=True)
        if keeping is not None:
            await asyncio.gather(keeping, return_exceptions=True)
        if code == 0 and opts.leader_elect:
            with contextlib.suppress(kube.ApiError, OSError, TimeoutError):
                await elector.release()
    finally:
        if stop.is_set():
            # Keep answering admission calls while the endpoint is being removed from the
            # Service, so a rollout does not fail requests mid-flight.
            await asyncio.sleep(opts.drain_seconds)
        for r in runners:
            await r.cleanup()
        await client.close()
        stallwatch.stop()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
