"""Readiness (and liveness) probes: HTTP(S) GET, TCP and exec, as the kubelet runs them.

Why: the product's Services only route to Ready pods (the endpoint controllers read the
Ready condition), and the controller waits for the upload server to be ready, so
readiness must come from really probing the container.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def _port(spec: Obj, container: Obj) -> int:
    port = spec["port"]
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    return int(port)


def http_get(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> bool:
    scheme = spec.get("scheme", "HTTP").lower()
    host = spec.get("host") or pod_ip
    path = spec.get("path", "/")
    url = f"{scheme}://{host}:{_port(spec, container)}{path}"
    req = urllib.request.Request(url, headers={"User-Agent": "kube-probe/1.37"})
    for h in spec.get("httpHeaders", []):
        req.add_header(h["name"], h["value"])
    ctx = ssl.create_default_context()
    # The kubelet does not verify probe certificates.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    try:
        with opener.open(req, timeout=timeout) as r:
            return 200 <= int(r.status) < 400
    except urllib.error.HTTPError as e:
        return 200 <= e.code < 400
    except (OSError, ValueError):
        return False


def tcp(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> bool:
    try:
        with socket.create_connection(
            (spec.get("host") or pod_ip, _port(spec, container)), timeout
        ):
            return True
    except OSError:
        return False


@dataclass
class Prober:
    """Runs one probe on its schedule; ``exec_in`` runs a command inside the container."""

    spec: Obj
    container: Obj
    exec_in: Callable[[list[str], float], int]
    started: float = field(default_factory=time.monotonic)
    last: float = 0.0
    successes: int = 0
    failures: int = 0
    result: bool = False

    def due(self) -> bool:
        delay = self.spec.get("initialDelaySeconds", 0)
        period = self.spec.get("periodSeconds", 10)
        now = time.monotonic()
        return bool(now - self.started >= delay and now - self.last >= period)

    def run(self, pod_ip: str) -> bool:
        """Probe once if due; return the current (thresholded) result."""
        if not self.due():
            return self.result
        self.last = time.monotonic()
        timeout = float(self.spec.get("timeoutSeconds", 1))
        if "httpGet" in self.spec:
            ok = http_get(self.spec["httpGet"], self.container, pod_ip, timeout)
        elif "tcpSocket" in self.spec:
            ok = tcp(self.spec["tcpSocket"], self.container, pod_ip, timeout)
        elif "exec" in self.spec:
            try:
                ok = self.exec_in(self.spec["exec"]["command"], timeout) == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
        else:
            ok = True
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.spec.get("successThreshold", 1):
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.spec.get("failureThreshold", 3):
                self.result = False
        return self.result
