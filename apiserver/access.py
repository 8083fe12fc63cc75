"""May this user create an UploadTokenRequest here? Asked of the kube-apiserver.

The kube-apiserver already ran its authorizers before proxying, but an aggregated server
decides for itself (as CDI's does and as the aggregation docs ask): the answer comes from
a SubjectAccessReview for exactly the identity the front proxy forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass

from apiserver import group
from apiserver.authn import Identity
from apiserver.obj import Obj, get_path


def review(identity: Identity, namespace: str) -> Obj:
    """The SubjectAccessReview for `create uploadtokenrequests` in `namespace`."""
    spec: Obj = {
        "user": identity.user,
        "groups": list(identity.groups),
        "resourceAttributes": {
            "namespace": namespace, "verb": "create", "group": group.GROUP,
            "version": group.VERSION, "resource": group.RESOURCE,
        },
    }
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.extra:
        spec["extra"] = {k: list(v) for k, v in identity.extra.items()}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": spec}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def decision(answer: Obj) -> Decision:
    """Allowed only when the review says so; anything else (denied, no opinion) is no."""
    allowed = get_path(answer, "status", "allowed") is True
    reason = get_path(answer, "status", "reason")
    return Decision(allowed, reason if isinstance(reason, str) and not allowed else "")
