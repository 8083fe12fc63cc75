"""Small helpers for the cluster tests: manifests and waiting on API state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

TESTUTIL = "cdi-py/testutil:latest"

# A pod command serving its own name over HTTP on 8443 (POD_NAME from the downward API).
SERVE = (
    "python3 -c 'import http.server, os; "
    'h = type("H", (http.server.BaseHTTPRequestHandler,), {"do_GET": lambda s: '
    '(s.send_response(200), s.end_headers(), s.wfile.write(os.environ["POD_NAME"].encode()))}); '
    'http.server.ThreadingHTTPServer(("0.0.0.0", 8443), h).serve_forever()\''
)
POD_NAME_ENV = {
    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
}


def wait_for(
    what: str, fn: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.3
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # the object may not exist yet
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def pod(name: str, script: str, *, restart: str = "Never", **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": TESTUTIL, "command": ["sh", "-c", script]}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {"app": name})},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 5,
            "containers": [container],
            **spec,
        },
    }


def pvc(
    name: str, size: str = "64Mi", mode: str = "Filesystem", sc: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": mode,
        "resources": {"requests": {"storage": size}},
    }
    if sc:
        spec["storageClassName"] = sc
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": spec,
    }


def phase(api: Any, ns: str, name: str, *phases: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        p: dict[str, Any] = api.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        return p if p.get("status", {}).get("phase") in phases else None

    return check
