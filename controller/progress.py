"""Reading the importer's progress from its Prometheus endpoint.

`parse` is pure (the text format in, "NN.NN%" out); `Scraper` fetches over HTTPS from the
pod IP. The importer's certificate is self-signed per pod, so it is not verified: the
number is advisory and nothing secret is sent.
"""

from __future__ import annotations

import re
import ssl

import aiohttp

from cdicontract import envvars

_LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')


def parse(text: str, owner_uid: str, metric: str = envvars.IMPORT_PROGRESS_METRIC) -> str | None:
    """The progress for `owner_uid` formatted as CDI does (two decimals), if present."""
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m or m.group("name") != metric:
            continue
        if f'ownerUID="{owner_uid}"' not in m.group("labels"):
            continue
        try:
            value = float(m.group("value"))
        except ValueError:
            return None
        value = max(0.0, min(value, 100.0))
        return f"{value:.2f}%"
    return None


class Scraper:
    def __init__(self, *, timeout: float = 2.0) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self._ssl = ctx
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def progress(self, pod_ip: str, owner_uid: str,
                       port: int = envvars.METRICS_PORT,
                       metric: str = envvars.IMPORT_PROGRESS_METRIC) -> str | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=16))
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        try:
            async with self._session.get(f"https://{host}:{port}/metrics",
                                         timeout=aiohttp.ClientTimeout(total=self._timeout)
                                         ) as resp:
                if resp.status != 200:
                    return None
                return parse(await resp.text(), owner_uid, metric)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
