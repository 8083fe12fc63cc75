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
        self,
        sock: ssl.SSLSocket,
        path: str,
        length: int,
        headers: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> None:
        self.sock = sock
        self.sent = 0
        lines = [
            f"POST {path} HTTP/1.1",
            "Host: localhost",
            f"Content-Type: {content_type}",
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


def form(
    data: bytes, boundary: str = "cdi-test-boundary", field: str = "file"
) -> tuple[bytes, str]:
    """A multipart form holding `data` in `field`, and its Content-Type."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="disk.img"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + data + tail, f"multipart/form-data; boundary={boundary}"
