"""What each of the product's service accounts may and may not do, asked of the real API
server's authorizer (a SubjectAccessReview per question, as `kubectl auth can-i --as` does)
with the RBAC installed by `kubectl apply -k deploy/`.

The allowed lists are the calls the code makes (so a rule removed by mistake fails here
before an e2e test finds it); the denied lists are what least privilege keeps out: other
Secrets and ConfigMaps of the CDI namespace, Secrets anywhere else, writes nobody makes.
"""

from __future__ import annotations

from typing import Any

import pytest

from cdicontract import upload
from controller import clonekey, webhook
from controller.cli import LEASE_NAME

pytestmark = pytest.mark.cluster
NS = "cdi"
OTHER = "default"

# (verb, group, resource, namespace, name)
Ask = tuple[str, str, str, str | None, str | None]

CONTROLLER_SECRETS = [webhook.SECRET_NAME, clonekey.SECRET_NAME, upload.SERVER_CA_SECRET,
                      upload.CLIENT_CA_SECRET, upload.PROXY_CLIENT_CERT_SECRET]

ALLOWED: dict[str, list[Ask]] = {
    "cdi-sa": [
        *[("get", "", "secrets", NS, name) for name in CONTROLLER_SECRETS],
        ("patch", "", "secrets", NS, upload.PROXY_CLIENT_CERT_SECRET),
        ("create", "", "secrets", NS, None),
        ("create", "", "secrets", OTHER, None),  # upload server / clone client certificates
        ("delete", "", "secrets", OTHER, None),
        ("get", "", "configmaps", NS, upload.SERVER_CA_BUNDLE_CONFIGMAP),
        ("patch", "", "configmaps", NS, upload.SERVER_CA_BUNDLE_CONFIGMAP),
        ("create", "", "configmaps", NS, None),
        ("get", "", "configmaps", NS, "my-proxy-ca"),  # importProxy.trustedCAProxy
        ("create", "", "configmaps", OTHER, None),  # its copy beside an importer pod
        ("delete", "", "configmaps", OTHER, None),
        ("get", "coordination.k8s.io", "leases", NS, LEASE_NAME),
        ("update", "coordination.k8s.io", "leases", NS, LEASE_NAME),
        ("create", "coordination.k8s.io", "leases", NS, None),
        ("create", "", "events", OTHER, None),
        ("list", "", "events", OTHER, None),  # a Pending PVC's latest event (bound condition)
        ("list", "", "nodes", None, None),
        ("create", "", "pods", OTHER, None),
        ("watch", "", "persistentvolumeclaims", None, None),
        ("delete", "", "persistentvolumeclaims", OTHER, None),  # a scratch PVC, once done
        ("update", "cdi.kubevirt.io", "datavolumes/status", OTHER, None),
    ],
    "cdi-uploadproxy": [
        ("get", "", "secrets", NS, upload.PROXY_CLIENT_CERT_SECRET),
        ("get", "", "configmaps", NS, upload.SERVER_CA_BUNDLE_CONFIGMAP),
        ("get", "", "persistentvolumeclaims", OTHER, None),
    ],
    "cdi-apiserver": [
        ("get", "", "secrets", NS, upload.SIGNING_KEY_SECRET),
        ("create", "authorization.k8s.io", "subjectaccessreviews", None, None),
    ],
}

DENIED: dict[str, list[Ask]] = {
    "cdi-sa": [
        ("get", "", "secrets", NS, upload.SIGNING_KEY_SECRET),  # the apiserver's key
        ("get", "", "secrets", NS, "some-other-secret"),
        ("list", "", "secrets", NS, None),
        ("watch", "", "secrets", NS, None),
        ("get", "", "secrets", OTHER, "a-users-secret"),
        ("list", "", "secrets", None, None),
        ("update", "", "secrets", NS, webhook.SECRET_NAME),
        ("list", "", "configmaps", NS, None),
        ("get", "", "configmaps", OTHER, "a-users-configmap"),
        ("get", "coordination.k8s.io", "leases", NS, "someone-elses-lease"),
        ("update", "coordination.k8s.io", "leases", NS, "someone-elses-lease"),
        ("delete", "coordination.k8s.io", "leases", NS, LEASE_NAME),
        ("patch", "", "events", OTHER, None),
        ("get", "", "nodes", None, "node-1"),
        ("update", "", "pods", OTHER, None),
    ],
    "cdi-uploadproxy": [
        ("get", "", "secrets", NS, clonekey.SECRET_NAME),
        ("get", "", "secrets", NS, upload.CLIENT_CA_SECRET),
        ("list", "", "secrets", NS, None),
        ("get", "", "secrets", OTHER, "a-users-secret"),
        ("list", "", "persistentvolumeclaims", None, None),
        ("create", "", "pods", OTHER, None),
        ("get", "", "configmaps", NS, "my-proxy-ca"),
    ],
    "cdi-apiserver": [
        ("get", "", "secrets", NS, clonekey.SECRET_NAME),
        ("get", "", "secrets", NS, upload.PROXY_CLIENT_CERT_SECRET),
        ("list", "", "secrets", NS, None),
        ("get", "", "secrets", OTHER, "a-users-secret"),
        ("list", "", "persistentvolumeclaims", None, None),
        ("get", "", "configmaps", NS, "my-proxy-ca"),
    ],
}


def allowed(api: Any, sa: str, ask: Ask) -> bool:
    verb, group, resource, ns, name = ask
    resource, _, sub = resource.partition("/")
    attrs: dict[str, str] = {"verb": verb, "group": group, "resource": resource}
    if sub:
        attrs["subresource"] = sub
    if ns:
        attrs["namespace"] = ns
    if name:
        attrs["name"] = name
    review = api.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": f"system:serviceaccount:{NS}:{sa}",
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NS}",
                            "system:authenticated"],
                 "resourceAttributes": attrs}})
    return bool(review["status"].get("allowed"))


@pytest.mark.parametrize("sa", sorted(ALLOWED))
def test_each_service_account_may_make_the_calls_its_code_makes_and_no_more(cdi, sa):
    api = cdi.api
    missing = [ask for ask in ALLOWED[sa] if not allowed(api, sa, ask)]
    extra = [ask for ask in DENIED[sa] if allowed(api, sa, ask)]
    assert not missing, f"{sa} lacks {missing}"
    assert not extra, f"{sa} may also {extra}"
