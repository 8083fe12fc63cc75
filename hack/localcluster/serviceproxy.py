"""Services for the simulated node: a userspace kube-proxy and cluster DNS names.

Why userspace: this machine has neither iptables nor IPVS to program, and a proxy
listening on each ClusterIP:port (the ClusterIPs are /32s on the cluster bridge) gives
pods and tests on the host the same view: connect to the Service's IP, reach a ready
endpoint, as kube-proxy's historical userspace mode did. Endpoints come from the real
EndpointSlice controller, so readiness decides routing as in a real cluster.

NodePorts: a NodePort Service is also served at every node's InternalIP (addresses of
this host on the bridge, which the Node objects advertise) and its nodePort.

Names: each pod's ``/etc/hosts`` (bound into its sandbox, rewritten in place when
Services change; glibc reads it on every lookup) lists every Service under
``svc.ns.svc.cluster.local``, ``svc.ns.svc``, ``svc.ns`` and, in the pod's own
namespace, ``svc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import threading
from collections.abc import Sequence
from pathlib import Path

from localcluster import network
from localcluster.api import Api, Obj
from localcluster.informer import Informer
from localcluster.layout import CLUSTER_DOMAIN, Network

log = logging.getLogger(__name__)


def hosts_lines(services: list[Obj], namespace: str) -> list[str]:
    lines = []
    for svc in services:
        ip = svc["spec"].get("clusterIP")
        if not ip or ip == "None":
            continue
        name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
        names = [f"{name}.{ns}.svc.{CLUSTER_DOMAIN}", f"{name}.{ns}.svc", f"{name}.{ns}"]
        if ns == namespace:
            names.append(name)
        lines.append(f"{ip}\t{' '.join(names)}")
    return lines


def service_env(services: list[Obj], namespace: str) -> dict[str, str]:
    """Docker-links-style variables the kubelet injects for each Service."""
    env: dict[str, str] = {}
    for svc in services:
        ip = svc["spec"].get("clusterIP")
        if svc["metadata"]["namespace"] != namespace or not ip or ip == "None":
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ports = svc["spec"].get("ports", [])
        if not ports:
            continue
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            proto = p.get("protocol", "TCP")
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
            base = f"{prefix}_PORT_{p['port']}_{proto}"
            env[base] = f"{proto.lower()}://{ip}:{p['port']}"
            env[f"{base}_PROTO"] = proto.lower()
            env[f"{base}_PORT"] = str(p["port"])
            env[f"{base}_ADDR"] = ip
        first = ports[0]
        env[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
    return env


Target = tuple[str, str, str]
"""A Service port: namespace, name, port name."""

NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def listen_addresses(services: list[Obj], node_ips: Sequence[str]) -> dict[tuple[str, int], Target]:
    """Where the proxy listens: each TCP port at its ClusterIP, and, for NodePort (and
    LoadBalancer) Services, at every node's InternalIP and the port's nodePort, so a
    process on this host reaches the Service as a client outside a real cluster would."""
    wanted: dict[tuple[str, int], Target] = {}
    for svc in services:
        spec = svc["spec"]
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        for p in spec.get("ports", []):
            if p.get("protocol", "TCP") != "TCP":
                continue
            target = (svc["metadata"]["namespace"], svc["metadata"]["name"], p.get("name", ""))
            wanted[(ip, int(p["port"]))] = target
            if spec.get("type") in NODE_PORT_TYPES and p.get("nodePort"):
                for node_ip in node_ips:
                    wanted[(node_ip, int(p["nodePort"]))] = target
    return wanted


class ServiceProxy:
    def __init__(
        self,
        api: Api,
        net: Network,
        stop: threading.Event,
        node_ips: Sequence[str] | None = None,
    ) -> None:
        self.api = api
        self.net = net
        self.node_ips = list(node_ips or [net.gateway])
        self.stop = stop
        self.loop = asyncio.new_event_loop()
        self.listeners: dict[tuple[str, int], asyncio.AbstractServer] = {}
        self.ips: set[str] = set()
        self.hosts: dict[str, tuple[str, Path, list[str]]] = {}
        self.hosts_lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self.loop.run_forever, name="service proxy", daemon=True).start()
        self.services = Informer(self.api, "/api/v1/services", self._changed, self.stop).start()
        self.slices = Informer(
            self.api, "/apis/discovery.k8s.io/v1/endpointslices", lambda k, o: None, self.stop
        ).start()
        self.services.synced.wait(30)
        self.slices.synced.wait(30)

    # -- DNS names ----------------------------------------------------------------------

    def register_hosts(self, pod: Obj, path: Path) -> None:
        meta = pod["metadata"]
        own = [
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            f"{pod['status']['podIP']}\t{pod['spec'].get('hostname') or meta['name']}",
        ]
        with self.hosts_lock:
            self.hosts[meta["uid"]] = (meta["namespace"], path, own)
        self._write_hosts(meta["uid"])

    def forget_hosts(self, uid: str) -> None:
        with self.hosts_lock:
            self.hosts.pop(uid, None)

    def _write_hosts(self, uid: str) -> None:
        with self.hosts_lock:
            entry = self.hosts.get(uid)
        if entry is None:
            return
        ns, path, own = entry
        content = "\n".join([*own, *hosts_lines(self.services.items(), ns)]) + "\n"
        # In place, not by rename: the sandbox has this very inode bound at /etc/hosts.
        with contextlib.suppress(OSError), open(path, "a+") as f:
            f.seek(0)
            if f.read() != content:
                f.seek(0)
                f.truncate()
                f.write(content)

    def env_for(self, namespace: str) -> dict[str, str]:
        return service_env(self.services.items(), namespace)

    # -- proxying -----------------------------------------------------------------------

    def _changed(self, kind: str, svc: Obj) -> None:
        with self.hosts_lock:
            uids = list(self.hosts)
        for uid in uids:
            self._write_hosts(uid)
        asyncio.run_coroutine_threadsafe(self._reconcile(), self.loop)

    async def _reconcile(self) -> None:
        wanted = listen_addresses(self.services.items(), self.node_ips)
        for key in [k for k in self.listeners if k not in wanted]:
            server = self.listeners.pop(key)
            server.close()
        # The nodes' own addresses are the bridge's: they exist already, never removed.
        service_ips = {k[0] for k in wanted} - set(self.node_ips)
        for ip in service_ips - self.ips:
            network.add_service_ip(self.net, ip)
            self.ips.add(ip)
        for key, target in wanted.items():
            if key in self.listeners:
                continue
            try:
                server = await asyncio.start_server(
                    functools.partial(self._handle, target=target),
                    host=key[0],
                    port=key[1],
                    reuse_address=True,
                )
                self.listeners[key] = server
            except OSError as e:
                log.warning(
                    "cannot listen service=%s/%s addr=%s:%s error=%s",
                    target[0],
                    target[1],
                    key[0],
                    key[1],
                    e,
                )
        for ip in self.ips - service_ips:
            if ip != self.net.kubernetes_service_ip:
                network.del_service_ip(self.net, ip)
        self.ips &= service_ips | {self.net.kubernetes_service_ip}

    def _endpoints(self, ns: str, name: str, port_name: str) -> list[tuple[str, int]]:
        found = []
        for s in self.slices.items():
            meta = s["metadata"]
            if (
                meta.get("namespace") != ns
                or meta.get("labels", {}).get("kubernetes.io/service-name") != name
            ):
                continue
            port = next(
                (p.get("port") for p in s.get("ports") or [] if (p.get("name") or "") == port_name),
                None,
            )
            if port is None:
                continue
            for ep in s.get("endpoints") or []:
                conditions = ep.get("conditions") or {}
                if conditions.get("ready", True) is False or conditions.get("terminating"):
                    continue
                found += [(addr, int(port)) for addr in ep.get("addresses", [])]
        return found

    async def _handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        target: tuple[str, str, str],
    ) -> None:
        endpoints = self._endpoints(*target)
        random.shuffle(endpoints)
        # Like kube-proxy's userspace mode: an endpoint that refuses or does not answer
        # (a pod just gone, its slice not yet updated) costs a retry, not the request.
        for host, port in endpoints:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), 3
                )
                break
            except (TimeoutError, OSError):
                continue
        else:
            log.info(
                "no endpoint answered service=%s/%s port=%s endpoints=%s",
                *target,
                endpoints,
            )
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(256 * 1024):
                    dst.write(data)
                    await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()
            except (OSError, asyncio.IncompleteReadError):
                pass

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        for w in (writer, up_writer):
            with contextlib.suppress(OSError):
                w.close()
