"""What a running importer pod may touch: it runs as uid/gid 107, its root file system
(the image: the program, its Python, /etc) is read-only to it, and it writes only to its
volumes and its /tmp emptyDir, as the pod the controller builds asks."""

from __future__ import annotations

import json

import pytest

from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import dv_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# Run inside the importer's container with the image's Debian Python (the venv's base).
PROBE = r"""
import errno, json, os
def writable(d):
    p = os.path.join(d, ".cdi-probe")
    try:
        with open(p, "w") as f:
            f.write("x")
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    os.unlink(p)
    return "ok"
dirs = ["/", "/etc", "/usr", "/usr/bin", "/opt", "/tmp", "/data"]
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(),
                  "dirs": {d: writable(d) for d in dirs}}))
"""


def test_the_importer_runs_as_107_on_a_read_only_root_and_writes_only_tmp_and_data(
        cdi, cluster, namespace, images):
    cdi.create_dv(namespace, dv_manifest("sandboxed", {"http": {"url": images.url(
        "big.raw", where="slow/")}}, size="80Mi"))
    cdi.wait_phase(namespace, "sandboxed", "ImportInProgress", timeout=90)
    def running_pod():
        p = cdi.api.get_or_none(f"/api/v1/namespaces/{namespace}/pods/importer-sandboxed")
        statuses = (p or {}).get("status", {}).get("containerStatuses") or []
        return p if any("running" in (s.get("state") or {}) for s in statuses) else None

    pod = wait_for("importer running", running_pod, timeout=60)
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    tries = []

    def probe():
        # Retried: the simulated node records the sandbox's inner pid a moment after it
        # reports the container running (entering the outer one finds no /usr).
        r = cluster.exec(namespace, "importer-sandboxed", "/usr/bin/python3", "-c", PROBE,
                         check=False)
        tries.append((r.returncode, r.stderr[-300:]))
        return r.stdout if r.returncode == 0 else None

    try:
        out = wait_for("the probe to run in the importer", probe, timeout=30, interval=1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last tries: {tries[-3:]}") from None
    seen = json.loads(out.strip().splitlines()[-1])
    assert (seen["uid"], seen["gid"]) == (107, 107), seen
    dirs = seen["dirs"]
    assert dirs["/tmp"] == "ok" and dirs["/data"] == "ok", dirs
    read_only = {d: r for d, r in dirs.items() if d not in ("/tmp", "/data")}
    assert set(read_only.values()) <= {"EROFS", "EACCES"}, dirs
    dv = cdi.wait_phase(namespace, "sandboxed", "Succeeded", "Failed", timeout=180)
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
