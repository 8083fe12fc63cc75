"""Keeps secrets out of messages: known secret values and URL credentials become ***."""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SIGNED_QUERY = re.compile(
    r"(?i)([?&](?:X-Amz-Signature|X-Amz-Credential|Signature|token|sig)=)[^&\s]+"
)


def hide(text: str, secrets: Iterable[str]) -> str:
    """`text` with each known secret value replaced by ***, longest first (no fragment left)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    text = hide(text, secrets)
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    return _SIGNED_QUERY.sub(r"\1***", text)
