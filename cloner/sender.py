"""The stream over HTTPS with mutual TLS, resumed where the server stands after a break.

Each attempt asks `HEAD CLONE_PATH` for the server's offset (`RESUME_HEADER`), then
POSTs the stream from there (chunked, a generator body: memory stays a few frames).
Broken connections, 5xx and 409 (the server has not yet seen the old connection end)
are retried with backoff until `deadline_seconds`; TLS refusals and other 4xx are final.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from cdicontract import clonestream as cs
from cdicontract.reasons import Reason
from cdicontract.report import TerminationReport
from cloner.errors import CloneFailure
from cloner.frames import FrameSource

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0
RESPONSE_TIMEOUT = 3600.0
"""The answer comes after the server verified the digest and synced the target."""


@dataclass(frozen=True)
class Tls:
    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class Outcome:
    report: TerminationReport
    """The server's termination report, as it answered the final POST."""
    resumes: int


def _session(tls: Tls) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxy between the two pods, whatever the environment says
    s.verify = tls.ca
    s.cert = (tls.cert, tls.key)
    return s


def _server_offset(s: requests.Session, url: str) -> int:
    r = s.head(url, timeout=(CONNECT_TIMEOUT, 60))
    _raise_final(r)
    if r.status_code != 200:
        raise _Retry(f"HEAD answered {r.status_code}")
    text = r.headers.get(cs.RESUME_HEADER, "0")
    if not text.isdigit():
        raise CloneFailure(
            Reason.SERVER_ERROR, f"the server's offset {text[:40]!r} is not a number"
        )
    return int(text)


class _Retry(Exception):
    pass


def _raise_final(r: requests.Response) -> None:
    """Final answers: 401/403 (the certificate), 400/404/413 and other 4xx but 408/409."""
    if r.status_code in (401, 403):
        reason = Reason.UNAUTHORIZED if r.status_code == 401 else Reason.FORBIDDEN
        raise CloneFailure(reason, f"the upload server refused the cloner: {r.text.strip()[:300]}")
    if 400 <= r.status_code < 500 and r.status_code not in (408, 409):
        raise CloneFailure(
            _reason_of(r) or Reason.SERVER_ERROR,
            f"the upload server refused the stream ({r.status_code}): {r.text.strip()[:500]}",
        )


def _reason_of(r: requests.Response) -> Reason | None:
    """The server names the reason of a final refusal in its first word (`Reason: ...`)."""
    word = r.text.strip().split(":", 1)[0]
    try:
        return Reason(word)
    except ValueError:
        return None


def send(
    url: str,
    tls: Tls,
    source: FrameSource,
    *,
    deadline_seconds: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Stream until the server confirms; raises CloneFailure otherwise."""
    deadline = time.monotonic() + deadline_seconds
    delay = 0.5
    attempts = 0
    last = "no attempt"
    with _session(tls) as s:
        while True:
            attempts += 1
            try:
                start = _server_offset(s, url)
                log.info(
                    "streaming clone start=%d size=%d attempt=%d", start, source.size, attempts
                )
                r = s.post(
                    url,
                    data=source.frames(start),
                    headers={"Content-Type": cs.MEDIA_TYPE},
                    timeout=(CONNECT_TIMEOUT, RESPONSE_TIMEOUT),
                )
                _raise_final(r)
                if r.status_code == 200:
                    return Outcome(_report(r.text), resumes=attempts - 1)
                last = f"the server answered {r.status_code}: {r.text.strip()[:200]}"
            except requests.exceptions.SSLError as e:
                if not _refused_by_tls(e):  # the connection broke inside TLS
                    last = f"connection to the upload server broke: {_short(e)}"
                    if time.monotonic() + delay > deadline:
                        raise CloneFailure(Reason.NETWORK_ERROR, last) from None
                    sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                raise CloneFailure(
                    Reason.TLS_ERROR, f"TLS with the upload server failed: {_short(e)}"
                ) from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as e:
                last = f"connection to the upload server failed: {_short(e)}"
            except _Retry as e:
                last = str(e)
            if time.monotonic() + delay > deadline:
                raise CloneFailure(
                    Reason.NETWORK_ERROR, f"giving up after {attempts} attempts: {last}"
                )
            log.warning("clone stream interrupted, retrying delay=%.1f why=%s", delay, last)
            sleep(delay)
            delay = min(delay * 2, 10.0)


def _report(text: str) -> TerminationReport:
    line = text.strip().splitlines()[-1] if text.strip() else ""
    try:
        json.loads(line)
    except ValueError:
        return TerminationReport(Reason.COMPLETED, "Clone Complete")
    return TerminationReport.from_json(line)


def _refused_by_tls(e: BaseException) -> bool:
    """A TLS refusal (a certificate not trusted, an alert), not a connection cut."""
    seen: BaseException | None = e
    texts = []
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        texts.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    text = " ".join(texts).upper()
    return any(word in text for word in ("CERTIFICATE", "ALERT", "HANDSHAKE", "WRONG_VERSION"))


def _short(e: Exception) -> str:
    return str(e).replace("\n", " ")[:300]
