"""What a running importer pod is and may touch: it runs the image's own programs (the
venv's cdi-importer, the image's qemu-img and nbdkit, none of the host's checkout), as
uid/gid 107, its root file system (the image: the program, its Python, /etc) is read-only
to it, and it writes only to its volumes and its /tmp emptyDir, as the pod the controller
builds asks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.helpers import wait_for
from tests.controller.e2e.conftest import dv_manifest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CHECKOUT = str(Path(__file__).resolve().parents[3])

# Run inside the importer's container with the image's Debian Python (the venv's base).
PROBE = r"""
import errno, json, os, shutil, subprocess, sys
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
def version(tool):
    r = subprocess.run([tool, "--version"], capture_output=True, text=True)
    return r.stdout.splitlines()[0] if r.returncode == 0 else f"exit {r.returncode}"
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(),
                  "dirs": {d: writable(d) for d in dirs},
                  "tools": {t: shutil.which(t) for t in ("qemu-img", "nbdkit", "cdi-importer")},
                  "versions": {t: version(t) for t in ("qemu-img", "nbdkit")},
                  "importer_python": open("/opt/cdi-py/bin/cdi-importer").readline().strip(),
                  "checkout_visible": os.path.exists(sys.argv[1])}))
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
        r = cluster.exec(namespace, "importer-sandboxed", "/usr/bin/python3", "-c", PROBE, CHECKOUT,
                         check=False)
        tries.append((r.returncode, r.stderr[-300:]))
        return r.stdout if r.returncode == 0 else None

    try:
        out = wait_for("the probe to run in the importer", probe, timeout=30, interval=1)
    except AssertionError as e:
        raise AssertionError(f"{e}; last tries: {tries[-3:]}") from None
    seen = json.loads(out.strip().splitlines()[-1])
    assert (seen["uid"], seen["gid"]) == (107, 107), seen
    # The image's programs, not the host's: the venv the image ships (absent on the host),
    # Debian's qemu-img and nbdkit in the image, and no trace of the checkout under test.
    assert seen["tools"] == {"qemu-img": "/usr/bin/qemu-img", "nbdkit": "/usr/bin/nbdkit",
                             "cdi-importer": "/opt/cdi-py/bin/cdi-importer"}, seen
    assert seen["importer_python"] == "#!/opt/cdi-py/bin/python3", seen
    assert seen["versions"]["qemu-img"].startswith("qemu-img version"), seen
    assert seen["versions"]["nbdkit"].startswith("nbdkit"), seen
    assert not Path("/opt/cdi-py").exists() and seen["checkout_visible"] is False, seen
    dirs = seen["dirs"]
    assert dirs["/tmp"] == "ok" and dirs["/data"] == "ok", dirs
    read_only = {d: r for d, r in dirs.items() if d not in ("/tmp", "/data")}
    assert set(read_only.values()) <= {"EROFS", "EACCES"}, dirs
    dv = cdi.wait_phase(namespace, "sandboxed", "Succeeded", "Failed", timeout=180)
    assert dv["status"]["phase"] == "Succeeded", dv["status"]
