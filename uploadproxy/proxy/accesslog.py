"""One log line per request: method, path, status, size, time; never headers or query.

Why not aiohttp's default format: `%r` carries the query string and a custom format could
name headers; a token must never reach a log, so the line is built from fields that
cannot hold one.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path == "/healthz":
            return
        self.logger.info("request method=%s path=%s status=%d bytes=%d seconds=%.3f peer=%s",
                         request.method, request.path[:200], response.status,
                         response.body_length, time, request.remote)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
