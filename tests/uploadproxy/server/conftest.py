"""The upload server on a real localhost socket with real mutual TLS, writing a tmp file.

`upload_server(**overrides)` starts the aiohttp app in a thread of its own (its own event
loop, the real importer pipeline in its worker thread); tests talk to it with `requests`
and raw TLS sockets, as the proxy would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web

from cdicontract import upload as contract
from tests.uploadproxy.server.pki import Pki, make_pki
from uploadproxy.server import tlsauth
from uploadproxy.server.app import make_app
from uploadproxy.server.config import ServerConfig
from uploadproxy.server.session import UploadSession
from uploadproxy.server.transfer import TargetFactory


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path, contract.CLIENT_COMMON_NAME)


class RunningServer:
    def __init__(
        self, config: ServerConfig, pki: Pki, target_factory: TargetFactory | None
    ) -> None:
        self.config = config
        self.pki = pki
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        kwargs = {"target_factory": target_factory} if target_factory else {}
        self.port, self.session, self._runner = self.run(self._start(kwargs))

    async def _start(self, kwargs: dict[str, Any]) -> tuple[int, UploadSession, web.AppRunner]:
        session = UploadSession(self.config, **kwargs)
        app = make_app(self.config, session)
        runner = web.AppRunner(app, shutdown_timeout=5.0)
        await runner.setup()
        ctx = tlsauth.server_context(
            self.config.tls_cert, self.config.tls_key, self.config.client_ca
        )
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = runner.addresses[0][1]
        return port, session, runner

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def client(self, cert: tuple[str, str] | None = None) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # else REQUESTS_CA_BUNDLE wins over s.verify
        s.verify = self.pki.server_ca
        s.cert = cert if cert is not None else self.pki.client
        return s

    def tls_socket(self, cert: tuple[str, str] | None = None) -> ssl.SSLSocket:
        ctx = ssl.create_default_context(cafile=self.pki.server_ca)
        ctx.load_cert_chain(*(cert or self.pki.client))
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return ctx.wrap_socket(raw, server_hostname="localhost")

    @property
    def state(self) -> str:
        return str(self.session.state)

    def wait_finished(self, timeout: float = 60) -> None:
        self.run(asyncio.wait_for(self.session.finished.wait(), timeout), timeout + 5)

    def stop(self) -> None:
        try:
            self.run(self._runner.cleanup(), 30)
            self.run(_cancel_leftover_tasks(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


async def _cancel_leftover_tasks() -> None:
    """Connections the runner left (a client still sending after an early answer)."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def upload_server(tmp_path: Path, pki: Pki) -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def start(target_factory: TargetFactory | None = None, **overrides: Any) -> RunningServer:
        config = ServerConfig(
            dest=str(tmp_path / "disk.img"),
            tls_dir=str(pki.tls_dir),
            host="127.0.0.1",
            port=0,
            metrics_port=None,
            keepalive_after=2.0,
            keepalive_interval=0.2,
        )
        server = RunningServer(dataclasses.replace(config, **overrides), pki, target_factory)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
