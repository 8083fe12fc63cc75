"""Certificate checks on the connection to an HTTPS proxy, whatever the origin's scheme.

requests turns certificate verification off for every plain-`http://` URL, and with an
`https://` proxy that forwards such a request the only TLS connection is the one to the
proxy: it would go unverified, and the proxy's credentials (Proxy-Authorization) to
whoever answers. This adapter verifies that connection as it would an HTTPS origin, with
the same trust (the system's, the certConfigMap's, trustedCAProxy's).
"""

from __future__ import annotations

from typing import Any

from requests.adapters import HTTPAdapter


class ProxyVerifyingAdapter(HTTPAdapter):
    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if getattr(conn, "scheme", "") == "https" and url.lower().startswith("http://"):
            # A pool whose own scheme is https for a plain-http URL: the HTTPS proxy's.
            url = "https://" + url[len("http://"):]
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]


def verify_proxies(session: Any) -> None:
    """Mount the adapter on a requests.Session for http and https."""
    adapter = ProxyVerifyingAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
