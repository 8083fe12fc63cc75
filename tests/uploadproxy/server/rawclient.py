"""A client that sends an upload by hand over mutual TLS: part of a body, then drop or wait."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class RawUpload:
    def __init__(
        self, sock: ssl.SSLSocket, path: str, length: int, headers: dict[str, str] | None = None
    ) -> None:
        self.sock = sock
        self.sent = 0
        lines = [
            f"POST {path} HTTP/1.1",
            "Host: localhost",
            "Content-Type: application/octet-stream",
            f"Content-Length: {length}",
            *(f"{k}: {v}" for k, v in (headers or {}).items()),
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def answer(self, timeout: float = 30) -> Answer:
        self.sock.settimeout(timeout)
        resp = http.client.HTTPResponse(self.sock)  # type: ignore[arg-type]
        resp.begin()
        body = resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)

    def drop(self) -> None:
        """Close without TLS close_notify: the server sees the body cut short."""
        self.sock.close()
