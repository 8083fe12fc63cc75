"""The bytes' way to the upload proxy: probe for async, stream the file, resume after drops.

The one module of cdictl that speaks HTTP. The file is streamed from disk in constant
memory (requests sends a reader of known length, so `Content-Length` is exact, as the
proxy requires); what to do after each answer is decided by `resume`, purely. The token
is asked for again through `tokens` when it nears its 5-minute end or the proxy calls
it expired; it never appears in a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3

from cdicontract import upload as contract
from cdicontract import uploadtoken
from cdictl import resume

SYNC_PATH = contract.path("v1beta1", contract.Variant.SYNC)
ASYNC_PATH = contract.path("v1beta1", contract.Variant.ASYNC)
CONNECT_TIMEOUT = 30.0
PROBE_TIMEOUT = (CONNECT_TIMEOUT, 30.0)
SILENCE_TIMEOUT = 900.0
"""How long a POST may hear nothing (cdi-py's server speaks every 5 s; CDI's stays silent
while it converts a synchronous upload)."""
TOKEN_RENEW_AFTER = uploadtoken.LIFETIME.total_seconds() - 60.0
_RESULT_TAIL = 4096
_BLOCK = 1 << 20
"""Bytes read from the file per send: the HTTP stack asks for 16 KiB, a syscall and a
progress update each; larger blocks cost less per byte, in bounded memory."""


class TransferError(Exception):
    """The upload could not be done; the message never carries the token."""


class Progress(Protocol):
    def update(self, n: int) -> None: ...
    def restart_at(self, offset: int) -> None: ...


def with_path(base: str, path: str) -> str:
    """virtctl's ConstructUploadProxyPath: append the path unless the URL has it already."""
    if path in base:
        return base
    parts = urlsplit(base)
    joined = "/".join(p for p in (parts.path.strip("/"), path.strip("/")) if p)
    return urlunsplit((parts.scheme, parts.netloc, "/" + joined, parts.query, parts.fragment))


def normalize_base(url: str) -> str:
    """A proxy URL without a scheme means https (virtctl).

    `host:port` parses as scheme `host`, which virtctl then keeps and fails on; only
    http and https count as schemes here.
    """
    return url if urlsplit(url).scheme in ("http", "https") else f"https://{url}"


class _FileBody:
    """The file from `start` to its end, read in blocks, reporting each block.

    Has `read` and `__len__` but no `tell`/`__iter__`, so requests sends it as a plain
    body with a Content-Length of what is left, not chunked.
    """

    def __init__(self, f: BinaryIO, start: int, size: int, progress: Progress) -> None:
        f.seek(start)
        self._f = f
        self._left = size - start
        self._progress = progress
        self.sent = start

    def __len__(self) -> int:
        return self._left

    def read(self, n: int = -1) -> bytes:
        # One block whatever is asked: more than the HTTP stack's 16 KiB (cheaper per
        # byte), never the whole file (a read() without a size must not load it).
        want = min(_BLOCK, self._left)
        block = self._f.read(want) if want else b""
        self._left -= len(block)
        self.sent += len(block)
        if block:
            self._progress.update(len(block))
        return block


@dataclass(frozen=True)
class Sent:
    url: str
    resumed: int
    """How many times the upload continued after a drop."""


class Transfer:
    def __init__(
        self,
        tokens: Callable[[], str],
        *,
        insecure: bool,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        say: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self._tokens = tokens
        self._verify = not insecure
        if insecure:
            # Asked for on the command line: one warning per request would drown the bar.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._session = session or requests.Session()
        self._clock = clock
        self._sleep = sleep
        self._say = say
        self._token = ""
        self._token_at = float("-inf")
        self._resent = False

    # -- tokens ----------------------------------------------------------------------
    def _auth(self, *, renew: bool = False) -> dict[str, str]:
        if renew or self._clock() - self._token_at > TOKEN_RENEW_AFTER:
            self._token = self._tokens()
            self._token_at = self._clock()
        return {"Authorization": f"Bearer {self._token}"}

    def set_token(self, token: str) -> None:
        """The token the caller already has (taken now)."""
        self._token = token
        self._token_at = self._clock()

    # -- async discovery (virtctl's ConstructUploadProxyPathAsync) --------------------
    def choose_url(self, base: str, *, force_sync: bool) -> str:
        if force_sync:
            return with_path(base, SYNC_PATH)
        url = with_path(base, ASYNC_PATH)
        try:
            r = self._session.head(url, headers=self._auth(), verify=self._verify,
                                   timeout=PROBE_TIMEOUT, allow_redirects=False)
        except requests.RequestException:
            return with_path(base, SYNC_PATH)
        return url if r.status_code == 200 else with_path(base, SYNC_PATH)

    # -- the upload ------------------------------------------------------------------
    def _probe(self, url: str, renew: bool) -> tuple[int | None, str | None]:
        try:
            r = self._session.head(url, headers=self._auth(renew=renew), verify=self._verify,
                                   timeout=PROBE_TIMEOUT, allow_redirects=False)
        except requests.exceptions.SSLError as exc:
            raise TransferError(f"TLS error talking to the upload proxy: {exc}") from None
        except requests.RequestException:
            return None, None
        return r.status_code, r.headers.get(contract.UPLOAD_OFFSET_HEADER)

    def _post(self, url: str, f: BinaryIO, *, offset: int, size: int, checksum: str | None,
              renew: bool, progress: Progress) -> resume.Next:
        headers = self._auth(renew=renew)
        headers["Content-Type"] = "application/octet-stream"
        if offset:
            headers[contract.UPLOAD_OFFSET_HEADER] = str(offset)
        if checksum:
            headers[contract.UPLOAD_CHECKSUM_HEADER] = checksum
        body = _FileBody(f, offset, size, progress)
        answered = False
        try:
            with self._session.post(url, data=body, headers=headers, verify=self._verify,
                                    timeout=(CONNECT_TIMEOUT, SILENCE_TIMEOUT), stream=True,
                                    allow_redirects=False) as r:
                if r.status_code != 200:
                    text = r.raw.read(_RESULT_TAIL, decode_content=True).decode(
                        "utf-8", "replace").strip()
                    return resume.after_post(
                        r.status_code, r.headers.get(contract.UPLOAD_OFFSET_HEADER), text,
                        size, resent=self._resent and offset == 0)
                answered = True
                # A synchronous answer may come early and then keep the line alive with
                # spaces while the image is converted: read to its end, keep the tail.
                tail = b""
                for chunk in r.iter_content(_RESULT_TAIL):
                    tail = (tail + chunk)[-_RESULT_TAIL * 2:]
                return resume.after_result(tail.decode("utf-8", "replace"))
        except requests.exceptions.SSLError as exc:
            raise TransferError(f"TLS error talking to the upload proxy: {exc}") from None
        except requests.RequestException:
            return resume.after_drop(answered=answered)

    def send(self, url: str, path: Path, *, attempts: int, checksum: str | None,
             progress: Progress) -> Sent:
        """POST the file to `url`, resuming after drops; TransferError when it cannot.

        `attempts` bounds the POSTs in a row that move the server's offset no further,
        and, separately, the HEADs in a row that get no answer.
        """
        size = path.stat().st_size
        posts = resume.Budget(attempts)
        probes = 0
        resumed = 0
        step = resume.Next(resume.Step.SEND, offset=0)
        with path.open("rb") as f:
            while True:
                if step.step is resume.Step.DONE:
                    return Sent(url, resumed)
                if step.step is resume.Step.FAIL:
                    raise TransferError(f"error uploading image: {step.error}")
                if step.step is resume.Step.PROBE:
                    probes += 1
                    if probes > attempts:
                        raise TransferError(
                            f"error uploading image: the upload proxy did not answer "
                            f"{attempts} times in a row")
                    if step.pause:
                        self._sleep(resume.backoff_seconds(max(probes, posts.fruitless)))
                    status, header = self._probe(url, step.renew_token)
                    if status is not None:
                        probes = 0
                    step = resume.after_probe(status, header, size)
                    if step.step is resume.Step.SEND:
                        self._resent = step.offset == 0
                        if step.offset:
                            resumed += 1
                            self._say(f"Resuming upload at byte {step.offset} of {size}")
                    continue
                if not posts.record(step.offset):
                    raise TransferError(
                        f"error uploading image after {attempts} attempts without progress")
                progress.restart_at(step.offset)
                step = self._post(url, f, offset=step.offset, size=size, checksum=checksum,
                                  renew=step.renew_token, progress=progress)
