"""The snapshot.storage.k8s.io/v1 CRDs (VolumeSnapshot, VolumeSnapshotClass, Content).

Fixture `snapshot_crds` (session): the `cluster` with the CSI snapshot CRDs of
`snapshotcrds.yaml` installed (`kubectl apply`, so a second session or a cluster that has
them already is fine) and Established, and their resources answering. Nothing takes a
snapshot: the test cluster runs no snapshot controller, so a VolumeSnapshot is stored but
never becomes ready, which is what a cluster without snapshot-capable storage looks like.
The CRDs are left installed (they are cluster-scoped and cost nothing).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

MANIFEST = Path(__file__).with_name("snapshotcrds.yaml")
GROUP = "snapshot.storage.k8s.io"
PLURALS = ("volumesnapshotclasses", "volumesnapshots", "volumesnapshotcontents")
TIMEOUT = 60.0


def install(cluster: Any) -> None:
    cluster.kubectl("apply", "-f", str(MANIFEST))
    cluster.kubectl("wait", "--for=condition=Established", f"--timeout={int(TIMEOUT)}s",
                    *(f"crd/{plural}.{GROUP}" for plural in PLURALS))
    api = cluster.api()
    deadline = time.monotonic() + TIMEOUT
    for plural in PLURALS:
        # Established is the CRD's condition; the list answering is what a client needs.
        while True:
            try:
                api.get(f"/apis/{GROUP}/v1/{plural}", limit="1")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture(scope="session")
def snapshot_crds(cluster: Any) -> Any:
    install(cluster)
    return cluster
