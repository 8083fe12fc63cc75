"""The app over real TLS: only the front proxy is believed, the review decides, and
every failure is a Kubernetes Status with the right code."""

from __future__ import annotations

import http.client
import json
import ssl

import pytest
import requests

from apiserver import group, openapi
from cdicontract import uploadtoken
from tests.apiserver.conftest import FRONT_PROXY_NAME, Served
from tests.apiserver.pki import CA

# A refused client certificate shows as a TLS error, or under TLS 1.3 (where the server
# checks it after the client's Finished) as the connection closed.
REFUSED = (requests.exceptions.SSLError, requests.exceptions.ConnectionError)
COLLECTION = f"{group.VERSION_PATH}/namespaces/ns1/{group.RESOURCE}"


def utr(pvc: object = "disk", **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"apiVersion": group.GROUP_VERSION, "kind": group.KIND,
                               "metadata": {"name": "token-for-dv-disk"},
                               "spec": {"pvcName": pvc}}
    body.update(extra)
    return body


def assert_status(r: requests.Response, code: int, reason: str) -> dict[str, object]:
    assert r.status_code == code, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert (doc["kind"], doc["status"], doc["code"], doc["reason"]) == (
        "Status", "Failure", code, reason), doc
    return doc  # type: ignore[no-any-return]


def test_an_allowed_user_gets_a_token_for_the_pvc_in_the_url_namespace(served: Served):
    r = served.proxied("alice").post(served.url + COLLECTION, json=utr())
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["kind"] == group.KIND and doc["apiVersion"] == group.GROUP_VERSION
    assert doc["metadata"] == {"name": "token-for-dv-disk", "namespace": "ns1"}
    assert doc["spec"] == {"pvcName": "disk"}
    claims = uploadtoken.verify(doc["status"]["token"], served.key.public_pem)
    assert (claims.namespace, claims.name) == ("ns1", "disk")
    assert "Warning" not in r.headers


def test_the_review_asks_exactly_for_create_uploadtokenrequests_as_the_forwarded_user(
        served: Served):
    s = served.proxied("alice")
    r = s.post(served.url + COLLECTION, json=utr(), headers={
        "X-Remote-Group": "devs", "X-Remote-Extra-Scopes%2fa": "s1"})
    assert r.status_code == 201, r.text
    spec = served.reviews[-1]["spec"]
    assert spec["user"] == "alice"
    assert spec["groups"] == ["devs"]
    assert spec["extra"] == {"scopes/a": ["s1"]}
    assert spec["resourceAttributes"] == {
        "namespace": "ns1", "verb": "create", "group": "upload.cdi.kubevirt.io",
        "version": "v1beta1", "resource": "uploadtokenrequests"}


def test_a_denied_user_gets_403_naming_user_resource_and_namespace(served: Served):
    r = served.proxied("mallory").post(served.url + COLLECTION, json=utr())
    doc = assert_status(r, 403, "Forbidden")
    assert doc["message"] == (
        'uploadtokenrequests.upload.cdi.kubevirt.io is forbidden: User "mallory" cannot '
        'create resource "uploadtokenrequests" in API group "upload.cdi.kubevirt.io" in the '
        'namespace "ns1": no RBAC policy matched')
    assert '"status": {' not in r.text and "eyJ" not in r.text  # no token object, no JWT


def test_without_a_client_certificate_everything_but_probes_is_401(served: Served):
    s = served.session()
    for path in (COLLECTION, "/apis", group.VERSION_PATH, "/openapi/v2"):
        method = s.post if path == COLLECTION else s.get
        r = method(served.url + path, json=utr(),
                   headers={"X-Remote-User": "alice", "X-Remote-Group": "system:masters"})
        assert_status(r, 401, "Unauthorized")
    assert served.reviews == []  # headers from an unverified caller were never read
    for probe in ("/healthz", "/readyz"):
        assert s.get(served.url + probe).text == "ok"


def test_a_certificate_from_another_ca_fails_the_handshake(served: Served):
    stranger = CA("not-the-front-proxy").client(FRONT_PROXY_NAME, served.workdir / "stranger")
    with pytest.raises(REFUSED):
        served.session(stranger).post(served.url + COLLECTION, json=utr(),
                                      headers={"X-Remote-User": "alice"})
    assert served.reviews == []


def test_a_front_proxy_certificate_with_a_name_not_allowed_is_401(served: Served):
    other = served.front.client("some-other-client", served.workdir / "other")
    r = served.session(other).post(served.url + COLLECTION, json=utr(),
                                   headers={"X-Remote-User": "alice"})
    assert_status(r, 401, "Unauthorized")
    assert served.reviews == []


def test_the_front_proxy_without_a_user_header_is_401(served: Served):
    r = served.proxied(None).post(served.url + COLLECTION, json=utr())
    assert_status(r, 401, "Unauthorized")


@pytest.mark.parametrize(("body", "code", "reason", "needle"), [
    pytest.param(b"{not json", 400, "BadRequest", "not valid JSON", id="not-json"),
    pytest.param(b"[]", 400, "BadRequest", "not a JSON object", id="not-an-object"),
    pytest.param(json.dumps(utr(kind="Pod")).encode(), 400, "BadRequest",
                 "kind in the data (Pod)", id="wrong-kind"),
    pytest.param(json.dumps(utr(metadata={"namespace": "ns2"})).encode(), 400,
                 "BadRequest", "does not match the namespace", id="other-namespace"),
    pytest.param(json.dumps(utr(pvc=None)).encode(), 422, "Invalid",
                 "spec.pvcName: Required value", id="no-pvc"),
    pytest.param(json.dumps(utr(pvc="Not_A_Name")).encode(), 422, "Invalid",
                 'spec.pvcName: Invalid value: "Not_A_Name"', id="bad-pvc-name"),
])
def test_bad_bodies_get_precise_statuses(served: Served, body: bytes, code: int,
                                         reason: str, needle: str):
    r = served.proxied().post(served.url + COLLECTION, data=body,
                              headers={"Content-Type": "application/json"})
    doc = assert_status(r, code, reason)
    assert needle in str(doc["message"])


def test_invalid_lists_the_field_as_a_cause(served: Served):
    r = served.proxied().post(served.url + COLLECTION, json=utr(pvc=""))
    doc = assert_status(r, 422, "Invalid")
    assert doc["details"] == {
        "name": "token-for-dv-disk", "group": group.GROUP, "kind": group.KIND,
        "causes": [{"reason": "FieldValueRequired", "field": "spec.pvcName",
                    "message": "Required value: the PersistentVolumeClaim to upload to"}]}


def test_strict_field_validation_refuses_unknown_fields_and_warn_warns(served: Served):
    body = utr(spec={"pvcName": "disk", "size": "1Gi"})
    r = served.proxied().post(served.url + COLLECTION + "?fieldValidation=Strict", json=body)
    doc = assert_status(r, 400, "BadRequest")
    assert doc["message"] == 'strict decoding error: unknown field "spec.size"'
    r = served.proxied().post(served.url + COLLECTION, json=body)
    assert r.status_code == 201
    assert r.headers["Warning"] == '299 - "unknown field \\"spec.size\\""'


def test_a_dry_run_answers_without_a_token(served: Served):
    r = served.proxied().post(served.url + COLLECTION + "?dryRun=All", json=utr())
    assert r.status_code == 201, r.text
    assert r.json()["status"] == {}
    r = served.proxied().post(served.url + COLLECTION + "?dryRun=Some", json=utr())
    assert_status(r, 400, "BadRequest")


def test_a_body_without_content_type_is_json_as_for_the_kube_apiserver(served: Served):
    """The Python kubernetes client (cdictl) posts custom objects with no Content-Type;
    the kube-apiserver forwards that unchanged and itself reads such bodies as JSON."""
    r = served.proxied().post(served.url + COLLECTION, data=json.dumps(utr()).encode())
    assert "Content-Type" not in r.request.headers
    assert r.status_code == 201, r.text
    assert r.json()["status"]["token"]


def test_other_media_types_are_415_and_huge_bodies_413(served: Served):
    r = served.proxied().post(served.url + COLLECTION, data=b"spec: {pvcName: x}",
                              headers={"Content-Type": "application/yaml"})
    assert_status(r, 415, "UnsupportedMediaType")
    # Announced, never sent: the answer comes before a byte of the body is read.
    ctx = ssl.create_default_context(cafile=str(served.ca_file))
    ctx.check_hostname = False
    ctx.load_cert_chain(served.proxy.cert, served.proxy.key)
    host, port = served.url.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    conn.putrequest("POST", COLLECTION)
    for k, v in (("X-Remote-User", "alice"), ("Content-Type", "application/json"),
                 ("Content-Length", str(4 << 20))):
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    assert (resp.status, doc["reason"]) == (413, "RequestEntityTooLarge")


@pytest.mark.parametrize(("method", "path", "code", "reason"), [
    ("GET", COLLECTION, 405, "MethodNotAllowed"),
    ("DELETE", COLLECTION, 405, "MethodNotAllowed"),
    ("GET", COLLECTION + "/some-name", 405, "MethodNotAllowed"),
    ("PUT", COLLECTION + "/some-name", 405, "MethodNotAllowed"),
    ("GET", f"{group.VERSION_PATH}/namespaces/ns1/datavolumes", 404, "NotFound"),
    ("GET", "/apis/other.group/v1", 404, "NotFound"),
    ("POST", f"{group.VERSION_PATH}/namespaces/Bad_NS/{group.RESOURCE}", 404, "NotFound"),
])
def test_what_is_not_served_is_404_or_405(served: Served, method: str, path: str, code: int,
                                          reason: str):
    r = served.proxied().request(method, served.url + path, json=utr())
    assert_status(r, code, reason)


def test_discovery_and_openapi_describe_one_create_only_resource(served: Served):
    s = served.proxied(None)  # the aggregator's own calls carry no user
    groups = s.get(served.url + "/apis").json()
    assert [g["name"] for g in groups["groups"]] == [group.GROUP]
    assert s.get(served.url + group.GROUP_PATH).json()["preferredVersion"] == {
        "groupVersion": group.GROUP_VERSION, "version": group.VERSION}
    (resource,) = s.get(served.url + group.VERSION_PATH).json()["resources"]
    assert (resource["name"], resource["kind"], resource["verbs"], resource["namespaced"]) == (
        "uploadtokenrequests", "UploadTokenRequest", ["create"], True)
    index = s.get(served.url + "/openapi/v3").json()
    url = index["paths"][f"apis/{group.GROUP}/{group.VERSION}"]["serverRelativeURL"]
    v3 = s.get(served.url + url).json()
    schema = v3["components"]["schemas"][openapi.SCHEMA_NAME]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": group.GROUP, "kind": group.KIND, "version": group.VERSION}]
    v2 = s.get(served.url + "/openapi/v2").json()
    assert openapi.SCHEMA_NAME in v2["definitions"]


def test_a_rotated_front_proxy_ca_is_trusted_from_the_next_handshake(served: Served):
    new_ca = CA("front-proxy-ca-2")
    new_client = new_ca.client(FRONT_PROXY_NAME, served.workdir / "new")
    assert served.contexts.update(new_ca.pem)
    assert not served.contexts.update(new_ca.pem)
    r = served.session(new_client).post(served.url + COLLECTION, json=utr(),
                                        headers={"X-Remote-User": "alice"})
    assert r.status_code == 201, r.text
    with pytest.raises(REFUSED):
        served.proxied().post(served.url + COLLECTION, json=utr())
