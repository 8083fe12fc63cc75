"""`cdictl upload`: virtctl image-upload's flow, step by step, with resumable transfers.

1. find the PVC; create the DataVolume (or PVC) when it is missing, or check and mark an
   existing one as an upload target;
2. wait (`--wait-secs`) for the upload server: DataVolume phase UploadReady, or the PVC
   annotation `storage.pod.ready`;
3. the proxy URL: `--uploadproxy-url`, else CDIConfig `config`;
4. a token from the UploadTokenRequest API; probe the async path; stream the file
   (resuming after drops);
5. wait for the PVC's `storage.pod.phase` Succeeded (or, beyond virtctl, a failure).

The messages are virtctl's, so a user (or a script) sees the same conversation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cdicontract import annotations as keys
from cdictl import checksum, manifests, readiness, transfer
from cdictl.options import Target, UploadOptions

JSON = dict[str, Any]
POLL_SECONDS = 2.0
PROCESSING_TIMEOUT = 24 * 3600.0


class UploadFailed(Exception):
    """The upload did not happen (or did not finish); the message says why."""


class KubeApi(Protocol):
    def pvc(self, namespace: str, name: str) -> JSON | None: ...
    def create_pvc(self, body: JSON) -> JSON: ...
    def annotate_pvc(self, namespace: str, name: str, annotations: dict[str, str]) -> JSON: ...
    def datavolume(self, namespace: str, name: str) -> JSON | None: ...
    def create_datavolume(self, body: JSON) -> JSON: ...
    def require_storage_class(self, name: str) -> None: ...
    def events(self, namespace: str) -> list[JSON]: ...
    def cdiconfig(self) -> JSON: ...
    def upload_token(self, namespace: str, pvc: str) -> str: ...


class ProgressBar(transfer.Progress, Protocol):
    def close(self) -> None: ...


def _uid(obj: JSON | None) -> str | None:
    return None if obj is None else obj.get("metadata", {}).get("uid")


@dataclass
class Uploader:
    kube: KubeApi
    namespace: str
    say: Callable[[str], None]
    progress: Callable[[int], ProgressBar]
    transfer_factory: Callable[[Callable[[], str], bool], transfer.Transfer] = field(
        default=lambda tokens, insecure: transfer.Transfer(tokens, insecure=insecure))
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = POLL_SECONDS
    processing_timeout: float = PROCESSING_TIMEOUT

    def run(self, options: UploadOptions) -> None:
        path = options.image_path
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise UploadFailed(f"open {path}: {exc.strerror or exc}") from None
        self.prepare(options)
        self.wait_ready(options)
        base = self.proxy_url(options)
        self.say(f"Uploading data to {base}")
        self.send(options, base)
        self.say("Uploading data completed successfully, waiting for processing to complete, "
                 "you can hit ctrl-c without interrupting the progress")
        self.wait_processing(options)
        self.say(f"Uploading {path} completed successfully")

    # -- 1. the target -------------------------------------------------------------------
    def prepare(self, options: UploadOptions) -> None:
        ns, name = self.namespace, options.name
        pvc = self.kube.pvc(ns, name)
        if pvc is None:
            self.say(f"PVC {ns}/{name} not found ")
            if options.no_create:
                raise UploadFailed(f'persistentvolumeclaims "{name}" not found')
            if not options.size:
                raise UploadFailed("when creating a resource, the size must be specified")
            try:
                body = (manifests.pvc(options, ns) if options.target is Target.PVC
                        else manifests.datavolume(options, ns))
            except manifests.ManifestError as exc:
                raise UploadFailed(str(exc)) from None
            if options.storage_class:
                self.kube.require_storage_class(options.storage_class)
            if options.target is Target.PVC:
                self.kube.create_pvc(body)
                self.say(f"PersistentVolumeClaim {ns}/{name} created")
            else:
                self.kube.create_datavolume(body)
                self.say(f"DataVolume {ns}/{name} created")
            return
        try:
            if options.target is Target.DV:
                prime = readiness.datavolume_claim(pvc, self.kube.datavolume(ns, name), name)
                if prime is not None:
                    found = self.kube.pvc(ns, prime.name)
                    if found is None:
                        raise UploadFailed(f"Unable to get PVC Prime {ns}/{name}")
                    pvc = found
            readiness.check_existing_pvc(pvc, name, no_create=options.no_create,
                                         archive=options.archive)
        except readiness.Refused as exc:
            raise UploadFailed(str(exc)) from None
        pvc_name = str(pvc["metadata"]["name"])
        if readiness.needs_upload_annotation(pvc):
            self.kube.annotate_pvc(ns, pvc_name, {keys.UPLOAD_TARGET: ""})
        self.say(f"Using existing PVC {ns}/{pvc_name}")

    # -- 2. the upload server ------------------------------------------------------------
    def _ready_once(self, options: UploadOptions) -> bool:
        ns, name = self.namespace, options.name
        if options.target is Target.PVC:
            pvc = self.kube.pvc(ns, name)
            if pvc is None:
                return False
            if readiness.pvc_ready(pvc) is readiness.Wait.READY:
                return True
            problem = readiness.event_error(self.kube.events(ns), pvc_uid=_uid(pvc),
                                            dv_uid=_uid(self.kube.datavolume(ns, name)))
        else:
            dv = self.kube.datavolume(ns, name)
            if dv is None:
                self.say(f"DV {name} not found... ")
                return False
            try:
                if readiness.datavolume_ready(dv, force_bind=options.force_bind) \
                        is readiness.Wait.READY:
                    return True
            except readiness.Refused as exc:
                raise UploadFailed(str(exc)) from None
            claim = dv.get("status", {}).get("claimName") or ""
            pvc = self.kube.pvc(ns, claim) if claim else None
            problem = readiness.event_error(self.kube.events(ns), pvc_uid=_uid(pvc),
                                            dv_uid=_uid(dv))
        if problem:
            raise UploadFailed(problem)
        return False

    def wait_ready(self, options: UploadOptions) -> None:
        deadline = self.clock() + options.wait_secs
        logged = False
        while True:
            if self._ready_once(options):
                if logged:
                    self.say("Pod now ready")
                return
            # With no time to wait (`--wait-secs 0`) virtctl says nothing before failing.
            if not logged and options.wait_secs > 0:
                self.say(f"Waiting for PVC {options.name} upload pod to be ready...")
                logged = True
            if self.clock() + self.poll_seconds > deadline:
                raise UploadFailed(
                    f"timed out after {options.wait_secs}s waiting for the upload pod of "
                    f"{self.namespace}/{options.name} to be ready")
            self.sleep(self.poll_seconds)

    # -- 3. where to send ----------------------------------------------------------------
    def proxy_url(self, options: UploadOptions) -> str:
        url = options.uploadproxy_url or readiness.proxy_url_from_config(self.kube.cdiconfig())
        if not url:
            raise UploadFailed("uploadproxy URL not found")
        return transfer.normalize_base(url)

    # -- 4. the bytes --------------------------------------------------------------------
    def send(self, options: UploadOptions, base: str) -> None:
        ns, name = self.namespace, options.name
        header = None
        if options.checksum is not None:
            if options.checksum.hexdigest is None:
                self.say(f"Computing the {options.checksum.algorithm} of {options.image_path}")
            header = checksum.resolve(options.checksum, options.image_path).header()
        mover = self.transfer_factory(lambda: self.kube.upload_token(ns, name),
                                      options.insecure)
        mover.set_token(self.kube.upload_token(ns, name))
        url = mover.choose_url(base, force_sync=options.force_sync)
        bar = self.progress(Path(options.image_path).stat().st_size)
        try:
            mover.send(url, options.image_path, attempts=options.retries, checksum=header,
                       progress=bar)
        except transfer.TransferError as exc:
            raise UploadFailed(str(exc)) from None
        finally:
            bar.close()

    # -- 5. the processing ---------------------------------------------------------------
    def wait_processing(self, options: UploadOptions) -> None:
        ns, name = self.namespace, options.name
        deadline = self.clock() + self.processing_timeout
        while True:
            pvc = self.kube.pvc(ns, name)
            if pvc is None:
                raise UploadFailed(f'persistentvolumeclaims "{name}" not found')
            dv = self.kube.datavolume(ns, name) if options.target is Target.DV else None
            state, message = readiness.processing(pvc, dv)
            if state is readiness.Processing.DONE:
                self.say("Processing completed successfully")
                return
            if state is readiness.Processing.FAILED:
                raise UploadFailed(f"processing the upload failed: {message}")
            if self.clock() + self.poll_seconds > deadline:
                self.say("Timed out waiting for post upload processing to complete, please "
                         "check upload pod status for progress")
                raise UploadFailed("timed out waiting for the upload to be processed")
            self.sleep(self.poll_seconds)
