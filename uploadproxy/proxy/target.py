"""Is the token's PVC ready for an upload, and where does its upload server take it?

`judge` is the decision, a pure function of the PVC as read from the API; `wait_ready`
reads and watches the PVC until the decision is no longer "wait", for at most the ready
timeout (CDI: 10 s), as CDI's proxy polls before it gives up with 503.

CDI's rules, in its order: a PVC that does not exist or is not an upload target
(annotation `storage.upload.target`) is refused at once; one whose upload already
succeeded (`storage.pod.phase` Succeeded) is refused at once (CDI answers 503; our
contract says 409, which tells a client not to retry); otherwise wait until
`storage.pod.ready` is true. An `archive` PVC always takes the archive path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from cdicontract import annotations as ann
from cdicontract import upload
from uploadproxy.proxy import kube
from uploadproxy.proxy.refusal import Refused

log = logging.getLogger("cdi-uploadproxy")

KUBEVIRT, ARCHIVE = "kubevirt", "archive"
WATCH_RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class Ready:
    path: str
    """The upload server's path for this request."""


@dataclass(frozen=True)
class Wait:
    reason: str


Verdict = Ready | Wait


def judge(pvc: kube.Obj | None, name: str, request_path: str) -> Verdict:
    """What to do with an upload for `pvc` (None: not found) sent to `request_path`.

    Raises Refused for answers that waiting cannot change.
    """
    if pvc is None:
        raise Refused(503, f"rejecting upload request for PVC {name} that does not exist")
    meta = pvc.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        raise Refused(503, f"rejecting upload request for PVC {name} that is being deleted")
    annotations: dict[str, str] = meta.get("annotations") or {}
    if ann.UPLOAD_TARGET not in annotations:
        raise Refused(503, f"PVC {name} is not an upload target")
    if annotations.get(ann.POD_PHASE) == "Succeeded":
        raise Refused(409, f"rejecting upload request for PVC {name} that already finished "
                           "uploading")
    if not upload.parse_bool(annotations.get(ann.POD_READY)):
        return Wait(f"upload server for PVC {name} is not ready")
    content = annotations.get(ann.CONTENT_TYPE, "")
    if content in ("", KUBEVIRT):
        return Ready(request_path)
    if content == ARCHIVE:
        version = request_path.strip("/").split("/", 1)[0]
        return Ready(upload.archive_path(version))
    raise Refused(503, f"rejecting upload request for PVC {name}: content type "
                       f"{content[:40]!r} is invalid")


async def wait_ready(client: kube.Kube, namespace: str, name: str, request_path: str,
                     timeout: float) -> Ready:
    """The Ready verdict once the PVC allows the upload; Refused(503) after `timeout`."""
    deadline = time.monotonic() + timeout
    verdict: Verdict = Wait("not read yet")
    try:
        async with asyncio.timeout(timeout):
            while True:
                pvc = await client.get_pvc(namespace, name)
                verdict = judge(pvc, name, request_path)
                if isinstance(verdict, Ready):
                    return verdict
                assert pvc is not None
                rv = str(pvc["metadata"].get("resourceVersion", ""))
                try:
                    async for event in client.watch_pvc(namespace, name, rv,
                                                        deadline - time.monotonic()):
                        kind = event.get("type")
                        if kind == "DELETED":
                            verdict = judge(None, name, request_path)
                        elif kind in ("ADDED", "MODIFIED"):
                            verdict = judge(event["object"], name, request_path)
                        if isinstance(verdict, Ready):
                            return verdict
                except (kube.ApiError, aiohttp.ClientError, ValueError) as exc:
                    # 410 Gone and dropped watches: read again after a breath.
                    log.info("pvc watch interrupted ns=%s pvc=%s error=%s", namespace, name,
                             type(exc).__name__)
                    await asyncio.sleep(WATCH_RETRY_SECONDS)
    except TimeoutError:
        assert isinstance(verdict, Wait)
        raise Refused(503, verdict.reason) from None
    except (kube.ApiError, aiohttp.ClientError, ValueError) as exc:
        log.warning("cannot read pvc ns=%s pvc=%s error=%s", namespace, name, exc)
        raise Refused(503, f"cannot read PVC {name} from the API server") from None
