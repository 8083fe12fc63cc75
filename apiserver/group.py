"""The API group this server serves and its discovery documents, as CDI publishes them.

CDI's apiserver answers `/apis`, `/apis/upload.cdi.kubevirt.io` and the version's
APIResourceList in the legacy (v1) discovery format, which the kube-aggregator converts
into its merged discovery; the resource has short names `utr`, `utrs` and one verb.
"""

from __future__ import annotations

from apiserver.obj import Obj

GROUP = "upload.cdi.kubevirt.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
RESOURCE = "uploadtokenrequests"
SINGULAR = "uploadtokenrequest"
KIND = "UploadTokenRequest"
SHORT_NAMES = ("utr", "utrs")
VERBS = ("create",)
APISERVICE = f"{VERSION}.{GROUP}"

GROUP_PATH = f"/apis/{GROUP}"
VERSION_PATH = f"{GROUP_PATH}/{VERSION}"
COLLECTION_PATH = f"{VERSION_PATH}/namespaces/{{namespace}}/{RESOURCE}"


def api_group() -> Obj:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
            "versions": [version], "preferredVersion": dict(version)}


def api_group_list() -> Obj:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group()]}


def api_resource_list() -> Obj:
    return {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GROUP_VERSION,
        "resources": [{
            "name": RESOURCE, "singularName": SINGULAR, "namespaced": True,
            "group": GROUP, "version": VERSION, "kind": KIND,
            "verbs": list(VERBS), "shortNames": list(SHORT_NAMES),
        }],
    }


def root_paths() -> Obj:
    return {"paths": sorted(["/apis", "/apis/", GROUP_PATH, VERSION_PATH, "/healthz",
                             "/readyz", "/openapi/v2", "/openapi/v3"])}
