"""A small JSON client for the API server, on plain ``requests``.

Why not the ``kubernetes`` package here: the simulated node and the provisioner handle
objects as plain dicts (they patch whole status blocks with JSON merge patches and
stream watches line by line), and dicts avoid converting to and from generated models.
Tests get the real ``kubernetes`` client from the fixture.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

Obj = dict[str, Any]


class ApiError(Exception):
    """An API call answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:1000]}")
        self.status = status
        self.body = body


class Gone(ApiError):
    """The watch's resourceVersion is too old: list again."""


@dataclass(frozen=True)
class Credentials:
    server: str
    ca: Path
    cert: Path
    key: Path


def path_for(
    resource: str,
    *,
    group: str = "",
    version: str = "v1",
    namespace: str | None = None,
    name: str | None = None,
    sub: str | None = None,
) -> str:
    """The REST path of a resource, e.g. ``/api/v1/namespaces/ns/pods/name/status``."""
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace is not None:
        base += f"/namespaces/{namespace}"
    base += f"/{resource}"
    if name is not None:
        base += f"/{name}"
    if sub is not None:
        base += f"/{sub}"
    return base


class Api:
    """Thread-safe: each thread gets its own ``requests.Session``."""

    def __init__(self, creds: Credentials, timeout: float = 30.0) -> None:
        self.creds = creds
        self.timeout = timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.verify = str(self.creds.ca)
            s.cert = (str(self.creds.cert), str(self.creds.key))
            s.trust_env = False
            self._local.session = s
        return s

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        url = self.creds.server + path
        if params:
            url += "?" + urlencode(params)
        data = None if body is None else json.dumps(body)
        r = self._session().request(
            method,
            url,
            data=data,
            headers={"Content-Type": content_type, "Accept": "application/json"},
            timeout=timeout or self.timeout,
        )
        if r.status_code >= 400:
            raise ApiError(r.status_code, r.text)
        return r.json() if r.content else None

    def get(self, path: str, **params: str) -> Any:
        return self.request("GET", path, params=params or None)

    def get_or_none(self, path: str) -> Obj | None:
        try:
            result: Obj = self.get(path)
        except ApiError as e:
            if e.status == 404:
                return None
            raise
        return result

    def create(self, path: str, body: Obj) -> Obj:
        result: Obj = self.request("POST", path, body=body)
        return result

    def merge_patch(self, path: str, body: Obj) -> Obj:
        result: Obj = self.request(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )
        return result

    def delete(self, path: str, body: Obj | None = None) -> None:
        try:
            self.request("DELETE", path, body=body)
        except ApiError as e:
            if e.status != 404:
                raise

    def watch(self, path: str, resource_version: str, **params: str) -> Iterator[Obj]:
        """Yield watch events until the server closes the stream."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
            **params,
        }
        url = self.creds.server + path + "?" + urlencode(query)
        with self._session().get(url, stream=True, timeout=(10, 330)) as r:
            if r.status_code == 410:
                raise Gone(410, r.text)
            if r.status_code >= 400:
                raise ApiError(r.status_code, r.text)
            for line in r.iter_lines():
                if not line:
                    continue
                event: Obj = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    if status.get("code") == 410:
                        raise Gone(410, json.dumps(status))
                    raise ApiError(int(status.get("code", 500)), json.dumps(status))
                yield event
