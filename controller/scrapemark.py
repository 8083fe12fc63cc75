"""The mark that says a transfer pod was made by this controller, not by a tenant.

Labels, owner references and a pod's name can all be set by whoever creates a pod in
the namespace, so none of them says who made it: a tenant could point the controller's
progress scraper at a pod of their own (one that hangs or floods), or take the name of
an importer pod they deleted. A pod's UID is assigned by the API server, so the
controller records the UID of each pod it creates, from the create's answer, on the PVC
(`POD_MARK`), with an HMAC over the PVC's and the pod's UIDs under a key only the
controller holds (derived from its clone-token key, which every replica shares). A
tenant who edits the PVC cannot make a valid mark for a pod of their own; a mark copied
from another PVC names another PVC. Pure.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import annotations as ann
from controller.runtime import objects as o
from controller.runtime.objects import Obj

POD_MARK = ann.PREFIX + "storage.pod.controllerMark"
"""Ours: `<pod uid>.<hmac>` of the transfer pod the controller made for this PVC."""
_CONTEXT = b"cdi-py transfer pod mark v1\0"


def key_from(private: rsa.RSAPrivateKey) -> bytes:
    """The marking key, derived from the controller's private key (never logged)."""
    der = private.private_bytes(serialization.Encoding.DER,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return hashlib.sha256(_CONTEXT + der).digest()


def _mac(key: bytes, pvc_uid: str, pod_uid: str) -> str:
    return hmac.new(key, f"{pvc_uid}/{pod_uid}".encode(), hashlib.sha256).hexdigest()


def mark(key: bytes, pvc: Obj, pod: Obj) -> dict[str, str]:
    """The PVC annotation recording `pod` (as the API returned it) as the controller's."""
    pod_uid = o.uid(pod)
    return {POD_MARK: f"{pod_uid}.{_mac(key, o.uid(pvc), pod_uid)}"}


def made_by_controller(key: bytes | None, pvc: Obj, pod: Obj) -> bool:
    """Whether `pod` is the one the controller made for `pvc` (its mark verifies)."""
    if key is None or not o.uid(pod) or not o.uid(pvc):
        return False
    recorded = o.annotations(pvc).get(POD_MARK, "")
    pod_uid, _, mac = recorded.partition(".")
    return pod_uid == o.uid(pod) and hmac.compare_digest(
        mac, _mac(key, o.uid(pvc), pod_uid))
