"""OpenAPI documents for UploadTokenRequest, so `kubectl explain utr` and clients work.

The kube-aggregator downloads `/openapi/v3` (a list of group-versions with their URLs)
and proxies `/openapi/v3/apis/<group>/<version>` here; `kubectl explain` reads that
document and finds the type by its `x-kubernetes-group-version-kind`. `/openapi/v2` is
merged into the cluster's v2 document (older clients, `--output plaintext-openapiv2`).
The schema is written once and inlined (no `$ref` to Kubernetes' own definitions, so the
v2 merge never meets a conflicting ObjectMeta).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache

from apiserver import group
from apiserver.obj import Obj

SCHEMA_NAME = "io.kubevirt.cdi.upload.v1beta1.UploadTokenRequest"
V3_PATH = f"/openapi/v3/apis/{group.GROUP}/{group.VERSION}"
_GVK = {"group": group.GROUP, "kind": group.KIND, "version": group.VERSION}
_OPERATION_ID = "createUploadCdiKubevirtIoV1beta1NamespacedUploadTokenRequest"
_API_PATH = f"{group.VERSION_PATH}/namespaces/{{namespace}}/{group.RESOURCE}"
_QUERY = [
    ("dryRun", "When present, indicates that modifications should not be persisted. "
               "Nothing is persisted for this resource either way."),
    ("fieldManager", "A name associated with the actor making these changes (ignored: "
                     "the object is not stored)."),
    ("fieldValidation", "How to treat unknown fields in the body: Ignore (drop them), "
                        "Warn (drop them with a warning; the default) or Strict (fail)."),
]


def _string(description: str) -> Obj:
    return {"type": "string", "description": description}


def _schema() -> Obj:
    meta = {
        "type": "object",
        "description": "Standard object's metadata. More info: https://git.k8s.io/community/"
                       "contributors/devel/sig-architecture/api-conventions.md#metadata",
        "properties": {
            "name": _string("Name of the request. The request is not stored, so the name "
                            "only labels the answer."),
            "generateName": _string("Prefix for a generated name (the request is not "
                                    "stored; kept as given)."),
            "namespace": _string("Namespace of the PersistentVolumeClaim the token is for; "
                                 "must match the namespace in the URL."),
            "labels": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "Map of string keys and values, echoed back."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"},
                            "description": "Map of string keys and values, echoed back."},
        },
    }
    return {
        "description": "UploadTokenRequest is the request for a token that allows "
                       "uploading a disk image into one PersistentVolumeClaim through the "
                       "CDI upload proxy (virtctl image-upload creates one).",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": _string("APIVersion defines the versioned schema of this "
                                  "representation of an object."),
            "kind": _string("Kind is a string value representing the REST resource this "
                            "object represents."),
            "metadata": meta,
            "spec": {
                "type": "object",
                "description": "Spec contains the parameters of the request",
                "required": ["pvcName"],
                "properties": {"pvcName": _string(
                    "PvcName is the name of the PVC to upload to")},
            },
            "status": {
                "type": "object",
                "description": "Status contains the status of the request",
                "properties": {"token": _string(
                    'Token is a JWT token to be inserted in "Authentication Bearer header"')},
            },
        },
        "x-kubernetes-group-version-kind": [dict(_GVK)],
    }


def _namespace_param() -> Obj:
    return {"name": "namespace", "in": "path", "required": True, "uniqueItems": True,
            "description": "object name and auth scope, such as for teams and projects"}


@cache
def v3_bytes() -> bytes:
    ref = {"$ref": f"#/components/schemas/{SCHEMA_NAME}"}
    media = {"application/json": {"schema": ref}}
    ns = _namespace_param()
    ns["schema"] = {"type": "string"}
    del ns["uniqueItems"]
    doc: Obj = {
        "openapi": "3.0.0",
        "info": {"title": "CDI Upload API", "version": group.VERSION},
        "paths": {_API_PATH: {
            "parameters": [ns],
            "post": {
                "tags": ["uploadCdiKubevirtIo_v1beta1"],
                "description": "create an UploadTokenRequest",
                "operationId": _OPERATION_ID,
                "parameters": [{"name": n, "in": "query", "description": d,
                                "schema": {"type": "string", "uniqueItems": True}}
                               for n, d in _QUERY],
                "requestBody": {"content": media, "required": True},
                "responses": {
                    "201": {"description": "Created", "content": media},
                    "401": {"description": "Unauthorized"},
                    "403": {"description": "Forbidden"},
                },
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": dict(_GVK),
            },
        }},
        "components": {"schemas": {SCHEMA_NAME: _schema()}},
    }
    return json.dumps(doc, sort_keys=True).encode()


def v3_hash() -> str:
    """The document's hash, as kube-openapi puts it in serverRelativeURL (sha512, hex)."""
    return hashlib.sha512(v3_bytes()).hexdigest().upper()


def v3_discovery() -> Obj:
    gv = f"apis/{group.GROUP}/{group.VERSION}"
    return {"paths": {gv: {"serverRelativeURL": f"{V3_PATH}?hash={v3_hash()}"}}}


@cache
def v2_bytes() -> bytes:
    ref = {"$ref": f"#/definitions/{SCHEMA_NAME}"}
    doc: Obj = {
        "swagger": "2.0",
        "info": {"title": "CDI Upload API", "version": group.VERSION},
        "paths": {_API_PATH: {
            "parameters": [_namespace_param() | {"type": "string"}],
            "post": {
                "tags": ["uploadCdiKubevirtIo_v1beta1"],
                "description": "create an UploadTokenRequest",
                "operationId": _OPERATION_ID,
                "consumes": ["application/json"],
                "produces": ["application/json"],
                "schemes": ["https"],
                "parameters": [
                    {"name": "body", "in": "body", "required": True, "schema": ref},
                    *({"name": n, "in": "query", "description": d, "type": "string",
                       "uniqueItems": True} for n, d in _QUERY),
                ],
                "responses": {
                    "201": {"description": "Created", "schema": ref},
                    "401": {"description": "Unauthorized"},
                    "403": {"description": "Forbidden"},
                },
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": dict(_GVK),
            },
        }},
        "definitions": {SCHEMA_NAME: _schema()},
    }
    return json.dumps(doc, sort_keys=True).encode()
