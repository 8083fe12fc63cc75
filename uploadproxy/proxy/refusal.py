"""The one way a request ends early: a status and a short message for the client."""

from __future__ import annotations


class Refused(Exception):
    """Answer `status` with `message`: short, and safe to show the client and to log
    (never a token, a key or a request body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
