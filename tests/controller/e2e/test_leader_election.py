"""Leader election between real controller processes on the real control plane.

Each candidate is a `cdi-controller` process (webhook off, a 3 s lease: 2 s renew
deadline, 0.5 s retry) electing through a Lease in the test's namespace. The product's
own controller Deployment is scaled to zero meanwhile, so only these candidates act.
A candidate whose API access must hang talks to the API server through `Relay`, a TCP
relay the test can black-hole (connections stay open, no byte passes): what a network
partition or a stuck apiserver connection looks like to the process.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.cluster.helpers import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
DEPLOY = "/apis/apps/v1/namespaces/cdi/deployments/cdi-deployment"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/cdi-controller-leader"
LEASE_SECONDS = 3.0
RENEW_DEADLINE = LEASE_SECONDS * 2 / 3
ROOT = Path(__file__).resolve().parents[3]


class Relay:
    """A TCP relay to the API server that can stop passing bytes (black-hole)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = threading.Event()
        self.open.set()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self.open.wait()
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.open.set()
        for s in [self.sock, *self.conns]:
            s.close()


class Candidate:
    """One `cdi-controller` process electing in `ns`; its log is kept in a file."""

    def __init__(self, name: str, kubeconfig: Path, ns: str, log: Path) -> None:
        self.name = name
        self.log_path = log
        self.log_file = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "--kubeconfig", str(kubeconfig),
             "--namespace", ns, "--identity", name, "--webhook-addr", "off",
             "--metrics-addr", "127.0.0.1:0", "--lease-duration", str(LEASE_SECONDS),
             "--drain-seconds", "0", "--workers", "1"],
            stdout=self.log_file, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def when(self, message: str) -> datetime | None:
        """The (local wall clock) time of the first log line containing `message`."""
        for line in self.log().splitlines():
            if message in line and (m := re.match(r"(\S+ \S+) ", line)):
                return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
        return None

    def leads(self) -> bool:
        return self.when("became leader") is not None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.log_file.close()


def kubeconfig_via(cluster: Any, server: str | None, dest: Path) -> Path:
    """The admin kubeconfig with absolute file paths, optionally through another server."""
    doc = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    base = Path(cluster.kubeconfig).parent
    for section in [*(c["cluster"] for c in doc["clusters"]), *(u["user"] for u in doc["users"])]:
        for key in ("certificate-authority", "client-certificate", "client-key"):
            if section.get(key):
                section[key] = str(base / section[key])
        if server and "server" in section:
            section["server"] = server
    dest.write_text(yaml.safe_dump(doc))
    return dest


@pytest.fixture
def electing(cdi: Any, namespace: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The product's controller scaled to zero while candidates are started by the test."""
    api = cdi.api
    replicas = api.get(DEPLOY)["spec"]["replicas"]
    api.merge_patch(DEPLOY, {"spec": {"replicas": 0}})
    wait_for("product controller gone", lambda: not api.get(
        "/api/v1/namespaces/cdi/pods", labelSelector="cdi.kubevirt.io=cdi-deployment")["items"],
        timeout=60)
    started: list[Candidate] = []
    relays: list[Relay] = []
    direct = kubeconfig_via(cdi.cluster, None, tmp_path / "direct.kubeconfig")

    def start(name: str, relay: Relay | None = None) -> Candidate:
        config = direct
        if relay is not None:
            config = kubeconfig_via(cdi.cluster, f"https://127.0.0.1:{relay.port}",
                                    tmp_path / f"{name}.kubeconfig")
        c = Candidate(name, config, namespace, tmp_path / f"{name}.log")
        started.append(c)
        return c

    def relay() -> Relay:
        u = urlsplit(cdi.cluster.api_url)
        r = Relay((u.hostname or "127.0.0.1", u.port or 443))
        relays.append(r)
        return r

    try:
        yield {"start": start, "relay": relay, "lease": LEASE.format(ns=namespace),
               "api": api, "ns": namespace}
    finally:
        for c in started:
            c.stop()
        for r in relays:
            r.close()
        api.merge_patch(DEPLOY, {"spec": {"replicas": replicas}})


def holder(api: Any, lease: str) -> str | None:
    doc = api.get_or_none(lease)
    return (doc or {}).get("spec", {}).get("holderIdentity")


def test_of_two_candidates_one_acts_and_a_killed_leader_hands_over_after_the_lease(electing):
    start, api, lease = electing["start"], electing["api"], electing["lease"]
    a, b = start("cand-a"), start("cand-b")
    first = wait_for("a leader", lambda: holder(api, lease), timeout=60)
    leader, standby = (a, b) if first == "cand-a" else (b, a)
    wait_for("leader log", leader.leads, timeout=10)
    time.sleep(3 * LEASE_SECONDS)  # many renewals: the standby never takes over meanwhile
    assert not standby.leads(), standby.log()
    assert holder(api, lease) == leader.name
    assert standby.proc.poll() is None and leader.proc.poll() is None

    killed = datetime.now()
    leader.proc.send_signal(signal.SIGKILL)
    wait_for("standby leads", standby.leads, timeout=30)
    took = standby.when("became leader")
    assert took is not None
    waited = (took - killed).total_seconds()
    # Not before the lease could have expired as the standby observed it (the last
    # renewal was at most one retry period before the kill), and soon after.
    assert LEASE_SECONDS - 0.5 - 0.3 <= waited <= LEASE_SECONDS + 5, waited
    assert holder(api, lease) == standby.name


def test_a_leader_whose_api_access_hangs_stops_acting_before_the_standby_takes_over(electing):
    start, api, lease = electing["start"], electing["api"], electing["lease"]
    relay = electing["relay"]()
    hung = start("cand-hung", relay)
    wait_for("relayed candidate leads", lambda: holder(api, lease) == "cand-hung", timeout=60)
    standby = start("cand-standby")
    wait_for("standby waiting", lambda: standby.when("waiting for leadership"), timeout=30)
    time.sleep(LEASE_SECONDS)
    assert not standby.leads()

    relay.open.clear()
    cut = datetime.now()
    wait_for("hung leader exits", lambda: hung.proc.poll() is not None, timeout=30)
    assert hung.proc.returncode == 1, hung.log()
    lost = hung.when("lost leadership")
    assert lost is not None, hung.log()
    # Within the renew deadline of its last renewal (at most one retry period before the cut).
    assert (lost - cut).total_seconds() <= RENEW_DEADLINE + 0.5, hung.log()
    wait_for("standby leads", standby.leads, timeout=30)
    took = standby.when("became leader")
    assert took is not None
    assert lost < took, (lost, took)
    assert holder(api, lease) == "cand-standby"


@pytest.mark.parametrize("renew_time", ["2000-01-01T00:00:00.000000Z",
                                        "2999-01-01T00:00:00.000000Z"],
                         ids=["holder-clock-behind", "holder-clock-ahead"])
def test_lease_expiry_is_measured_by_local_observation_not_the_holders_clock(
        electing, renew_time):
    api, ns, lease = electing["api"], electing["ns"], electing["lease"]
    api.create(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "cdi-controller-leader"},
        "spec": {"holderIdentity": "ghost", "leaseDurationSeconds": int(LEASE_SECONDS),
                 "renewTime": renew_time, "acquireTime": renew_time}})
    c = electing["start"]("cand-local")
    wait_for("candidate leads", c.leads, timeout=30)
    waiting, took = c.when("waiting for leadership"), c.when("became leader")
    assert waiting is not None and took is not None
    # The candidate first saw the ghost's record after it logged that it waits, and must
    # then see it unchanged for a whole lease duration.
    assert (took - waiting).total_seconds() >= LEASE_SECONDS, c.log()
    assert holder(api, lease) == "cand-local"
