"""`cdi-uploadproxy`: parse the settings, open the listeners, serve until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Sequence

from aiohttp import web

from uploadproxy.proxy import app, kube, settings, tls
from uploadproxy.proxy.accesslog import AccessLogger
from uploadproxy.proxy.metrics import Metrics

log = logging.getLogger("cdi-uploadproxy")


class ServingCert:
    """The serving context: the mounted pair, re-read when it changes, else self-signed."""

    def __init__(self, s: settings.Settings) -> None:
        self._s = s
        self.context = tls.server_context()
        self._seen: tuple[bytes, bytes] | None = None
        if not self.reload():
            names = ["cdi-uploadproxy", f"cdi-uploadproxy.{s.namespace}",
                     f"cdi-uploadproxy.{s.namespace}.svc", socket.gethostname()]
            tls.load_pem(self.context, *tls.self_signed(names))
            log.info("no serving certificate mounted, using a self-signed one path=%s",
                     s.tls_cert_file)

    def reload(self) -> bool:
        """Load the mounted pair when it is new; whether one is in use."""
        try:
            pair = (self._s.tls_cert_file.read_bytes(), self._s.tls_key_file.read_bytes())
        except OSError:
            return self._seen is not None
        if pair != self._seen:
            try:
                # Tried on a scratch context first: a failed load can leave the live
                # one with a certificate that no longer matches its key.
                tls.load_pem(tls.server_context(), *pair)
                tls.load_pem(self.context, *pair)
            except (ssl.SSLError, ValueError) as exc:
                log.warning("serving certificate unusable path=%s error=%s",
                            self._s.tls_cert_file, type(exc).__name__)
                return self._seen is not None
            self._seen = pair
            log.info("serving certificate loaded path=%s", self._s.tls_cert_file)
        return True


async def serve(s: settings.Settings) -> None:
    client = kube.Kube(kube.load_config(s.kubeconfig, _environ()))
    metrics = Metrics()
    upload_app = app.build(s, client, metrics)
    runners: list[web.AppRunner] = []
    cert = None if s.plain_http else ServingCert(s)
    try:
        runner = web.AppRunner(upload_app, access_log_class=AccessLogger,
                               access_log=logging.getLogger("cdi-uploadproxy.access"))
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, *s.listen, ssl_context=cert.context if cert else None,
                          reuse_address=True).start()
        if s.metrics_listen is not None:
            mrunner = web.AppRunner(app.build_metrics(metrics), access_log=None)
            await mrunner.setup()
            runners.append(mrunner)
            await web.TCPSite(mrunner, *s.metrics_listen, reuse_address=True).start()
        log.info("serving listen=%s:%d tls=%s namespace=%s", *s.listen, cert is not None,
                 s.namespace)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), s.credentials_max_age)
            if cert is not None:
                cert.reload()
        log.info("stopping")
    finally:
        for r in reversed(runners):
            await r.cleanup()
        if not runners:
            await client.close()


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        s = settings.parse(argv)
    except settings.SettingsError as exc:
        print(f"cdi-uploadproxy: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=s.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(serve(s))
    except kube.ConfigError as exc:
        log.error("no API server credentials error=%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot listen error=%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
