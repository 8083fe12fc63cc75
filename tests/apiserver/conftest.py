"""A real `cdi-apiserver` app on localhost over real TLS, and clients for it.

The server runs in a thread with its own event loop, so tests are plain synchronous
`requests` calls. It trusts a front-proxy CA made here; the SubjectAccessReview answerer
is the one injected piece (the real one is exercised in e2e/), allowing user `alice`.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from requests.adapters import HTTPAdapter

from apiserver import authn, server, servingcert, signingkey, tls
from cdicontract import uploadtoken
from tests.apiserver.pki import CA, Issued

SERVICE_HOST = "cdi-apiserver.cdi.svc"
FRONT_PROXY_NAME = "front-proxy-client"


class _PinnedHost(HTTPAdapter):
    """Connects to 127.0.0.1 but verifies the name the kube-aggregator dials."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["assert_hostname"] = SERVICE_HOST
        super().init_poolmanager(*args, **kwargs)


@dataclass
class Served:
    url: str
    ca_file: Path
    front: CA
    proxy: Issued
    state: server.State
    contexts: tls.ServerContexts
    key: signingkey.SigningKey
    workdir: Path
    reviews: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[requests.Session] = field(default_factory=list)

    def session(self, cert: Issued | None = None) -> requests.Session:
        s = requests.Session()
        self.sessions.append(s)
        s.mount("https://", _PinnedHost())
        s.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA
        s.verify = str(self.ca_file)
        if cert is not None:
            s.cert = (str(cert.cert), str(cert.key))
        return s

    def proxied(self, user: str | None = "alice", groups: tuple[str, ...] = (),
                extra: dict[str, list[str]] | None = None) -> requests.Session:
        """As the kube-apiserver's front proxy, speaking for `user`."""
        s = self.session(self.proxy)
        if user is not None:
            s.headers["X-Remote-User"] = user
        # requests merges session headers; repeated groups go as one comma-joined header
        # here, so tests wanting several groups pass them per request.
        if groups:
            s.headers["X-Remote-Group"] = groups[0]
        for k, values in (extra or {}).items():
            s.headers[f"X-Remote-Extra-{k}"] = values[0]
        return s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def signing_key() -> signingkey.SigningKey:
    return signingkey.SigningKey.generate()


@pytest.fixture
def served(tmp_path: Path, signing_key: signingkey.SigningKey) -> Iterator[Served]:
    front = CA("front-proxy-ca")
    serving = servingcert.generate("cdi-apiserver", "cdi")
    ca_file = tmp_path / "serving-ca.crt"
    ca_file.write_bytes(serving.ca_pem)
    auth = authn.AuthConfig(client_ca_pem=front.pem, allowed_names=(FRONT_PROXY_NAME,))
    contexts = tls.ServerContexts(serving, front.pem)
    reviews: list[dict[str, Any]] = []

    async def review(sar: dict[str, Any]) -> dict[str, Any]:
        reviews.append(sar)
        allowed = sar["spec"]["user"] == "alice"
        return {**sar, "status": {"allowed": allowed,
                                  **({} if allowed else {"reason": "no RBAC policy matched"})}}

    def sign(namespace: str, pvc: str) -> str:
        return uploadtoken.sign(signing_key.loaded, namespace=namespace, pvc=pvc)

    state = server.State(auth=auth, review=review, sign=sign)
    port = _free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(server.app(state), shutdown_timeout=2)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=contexts.listener).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    async def stop() -> None:
        await runner.cleanup()
        current = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not current]
        for t in left:
            t.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    served = Served(f"https://127.0.0.1:{port}", ca_file, front,
                    front.client(FRONT_PROXY_NAME, tmp_path / "certs"), state, contexts,
                    signing_key, tmp_path, reviews)
    try:
        yield served
    finally:
        for s in served.sessions:
            s.close()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
