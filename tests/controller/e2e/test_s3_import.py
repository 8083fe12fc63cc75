"""An S3 DataVolume through the same path: moto in server mode as an in-cluster peer."""

from __future__ import annotations

import base64

import boto3
import pytest
from botocore.config import Config

from tests.cluster.helpers import TESTUTIL, wait_for
from tests.controller.e2e.conftest import disk_of, dv_manifest, sha256_prefix

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def moto(cdi, namespace):
    api = cdi.api
    api.create(f"/api/v1/namespaces/{namespace}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "moto", "labels": {"app": "moto"}},
        # No service links: a Service named moto would set MOTO_PORT=tcp://..., which
        # moto reads as its own port.
        "spec": {"terminationGracePeriodSeconds": 1, "enableServiceLinks": False,
                 "containers": [{
            "name": "moto", "image": TESTUTIL,
            "command": ["moto_server", "-H", "0.0.0.0", "-p", "5000"]}]}})
    svc = api.create(f"/api/v1/namespaces/{namespace}/services", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "moto"},
        "spec": {"selector": {"app": "moto"}, "ports": [{"port": 5000}]}})

    # The test (on the host) reaches the Service's ClusterIP, as the importer does.
    client = boto3.client("s3", endpoint_url=f"http://{svc['spec']['clusterIP']}:5000",
                          aws_access_key_id="AKIDTEST", aws_secret_access_key="s3cr3t-key",
                          region_name="us-east-1",
                          config=Config(connect_timeout=1, read_timeout=5,
                                        retries={"max_attempts": 1}))
    # Ready once it answers (a probe-less pod is Ready as soon as it runs).
    wait_for("moto answering", lambda: client.list_buckets() is not None, timeout=60)
    # By IP, not name: moto reads a dotted host name as a virtual-hosted bucket.
    return client, f"http://{svc['spec']['clusterIP']}:5000"


def test_s3_object_with_credentials_is_imported(cdi, cluster, namespace, images, moto):
    client, endpoint = moto
    client.create_bucket(Bucket="disks")
    client.upload_file(str(images.server.docroot / "disk.qcow2"), "disks", "img/disk.qcow2")
    cdi.api.create(f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3creds"},
        "data": {"accessKeyId": base64.b64encode(b"AKIDTEST").decode(),
                 "secretKey": base64.b64encode(b"s3cr3t-key").decode()}})
    src = {"s3": {"url": f"{endpoint}/disks/img/disk.qcow2", "secretRef": "s3creds"}}
    cdi.create_dv(namespace, dv_manifest("s3", src, size="32Mi"))
    dv = cdi.wait_phase(namespace, "s3", "Succeeded", "Failed")
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
    assert sha256_prefix(disk_of(cluster, namespace, "s3"), images.reference.size) == \
        images.raw_sha256
