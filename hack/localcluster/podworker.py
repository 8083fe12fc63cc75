"""The life of one pod on the simulated node, from volumes to deletion.

Why one thread per pod: like the kubelet's pod workers, each pod is driven by a small
level-triggered loop (start what should run, observe exits, restart per
``restartPolicy`` with back-off, probe, publish status), independent of other pods.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from localcluster import images, network, sandbox
from localcluster.api import Api, ApiError, Obj
from localcluster.container import Process
from localcluster.layout import Layout, Network
from localcluster.podenv import ConfigError, EnvResolver, expand, quantity
from localcluster.podstatus import ContainerState, PodView, now, terminated
from localcluster.podvolumes import NotReady, Ownership, Volume, VolumeBuilder
from localcluster.probes import Prober

log = logging.getLogger(__name__)

MAX_MESSAGE = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048


class NodeContext(Protocol):
    api: Api
    layout: Layout
    net: Network
    repo_root: Path
    backoff_base: float
    backoff_max: float
    unified_cgroup: Path | None
    memory_cgroup: Path | None

    def allocate_ip(self, uid: str) -> str: ...
    def release_ip(self, uid: str) -> None: ...
    def register_hosts(self, pod: Obj, path: Path) -> None: ...
    def forget_hosts(self, uid: str) -> None: ...
    def service_env(self, namespace: str) -> dict[str, str]: ...


@dataclass
class _Slot:
    """A container's runtime bookkeeping beside its rendered state."""

    spec: Obj
    state: ContainerState
    proc: Process | None = None
    started_at: str = ""
    restart_at: float = 0.0
    backoff: float = 0.0
    term_file: Path | None = None
    log_file: Path | None = None
    env: dict[str, str] | None = None
    prober: Prober | None = None
    liveness: Prober | None = None
    done: bool = False  # terminated and will not restart


def _tail(path: Path, limit: int) -> str:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        return f.read().decode("utf-8", "replace")
    return ""


class PodWorker(threading.Thread):
    def __init__(self, ctx: NodeContext, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod {meta['namespace']}/{meta['name']}", daemon=True)
        self.ctx = ctx
        self.pod = pod
        self.uid: str = meta["uid"]
        self.ns: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.key = self.uid.replace("-", "")[:10]
        self.dir = ctx.layout.node / "pods" / self.uid
        self.log_dir = ctx.layout.pod_logs / f"{self.ns}_{self.pod_name}_{self.uid}"
        self.wake = threading.Event()
        self.removed = threading.Event()
        self.stopping = threading.Event()
        self.view = PodView(host_ip=ctx.net.gateway)
        self.netns: str | None = None
        self.volumes: dict[str, Volume] = {}
        self._pushed: Obj | None = None
        spec = pod["spec"]
        self.init_slots = [
            _Slot(c, ContainerState(c["name"], c["image"], waiting_reason="PodInitializing"))
            for c in spec.get("initContainers", [])
        ]
        self.slots = [_Slot(c, ContainerState(c["name"], c["image"])) for c in spec["containers"]]
        for s in self.init_slots[:1]:
            s.state.waiting_reason = "ContainerCreating"
        if self.init_slots:
            for s in self.slots:
                s.state.waiting_reason = "PodInitializing"
        self.view.init = [s.state for s in self.init_slots]
        self.view.main = [s.state for s in self.slots]

    # -- events from the agent -------------------------------------------------------

    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def gone(self) -> None:
        self.removed.set()
        self.wake.set()

    def shutdown(self) -> None:
        """The agent is stopping: kill containers, leave the API object alone."""
        self.stopping.set()
        self.wake.set()

    # -- helpers -----------------------------------------------------------------------

    @property
    def policy(self) -> str:
        return str(self.pod["spec"].get("restartPolicy", "Always"))

    def _deleting(self) -> bool:
        return (
            bool(self.pod["metadata"].get("deletionTimestamp"))
            or self.removed.is_set()
            or self.stopping.is_set()
        )

    def _sleep(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def _push(self) -> None:
        if self.removed.is_set():
            return
        status = self.view.render()
        if status == self._pushed:
            return
        try:
            self.ctx.api.merge_patch(
                f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}/status",
                {"metadata": {"uid": self.uid}, "status": status},
            )
            self._pushed = status
        except ApiError as e:
            if e.status == 404:
                self.removed.set()
            else:
                log.warning("status update failed pod=%s/%s error=%s", self.ns, self.pod_name, e)

    def _ownership(self) -> tuple[Ownership, int | None, int | None, list[int]]:
        psc = self.pod["spec"].get("securityContext") or {}
        uids = {
            (c.get("securityContext") or {}).get("runAsUser", psc.get("runAsUser"))
            for c in self.pod["spec"]["containers"]
        }
        uid = next(iter(uids)) if len(uids) == 1 else None
        fs_group = psc.get("fsGroup")
        groups = list(psc.get("supplementalGroups", []))
        return Ownership(uid=uid, fs_group=fs_group), uid, psc.get("runAsGroup"), groups

    # -- the main loop -----------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("pod worker failed pod=%s/%s", self.ns, self.pod_name)
        finally:
            self._teardown()

    def _run(self) -> None:
        status = self.pod.get("status", {})
        if status.get("phase") in ("Succeeded", "Failed"):
            # Finished before this agent started (an agent restart): nothing to run.
            self._await_deletion()
            return
        self.view.start_time = status.get("startTime") or now()
        self._push()
        if not self._setup():
            self._finish()
            return
        if not self._run_init_containers():
            self._finish()
            return
        self.view.initialized = True
        for s in self.slots:
            s.state.waiting_reason = "ContainerCreating"
        self._push()
        self._run_main()
        self._finish()

    def _setup(self) -> bool:
        """Volumes, then the network namespace; False if the pod went away meanwhile."""
        own, _, _, _ = self._ownership()
        self.dir.mkdir(parents=True, exist_ok=True)
        while True:
            if self._deleting():
                return False
            try:
                self.volumes = VolumeBuilder(self.ctx.api, self.pod, self.dir, own).build_all()
                break
            except (NotReady, ConfigError) as e:
                for s in [*self.init_slots[:1], *self.slots]:
                    if s.state.waiting_reason == "ContainerCreating":
                        s.state.waiting_message = ""
                log.info("volumes not ready pod=%s/%s reason=%s", self.ns, self.pod_name, e)
                self._sleep(1.0)
            except ApiError as e:
                log.warning("volume setup failed pod=%s/%s error=%s", self.ns, self.pod_name, e)
                self._sleep(1.0)
        ip = self.ctx.allocate_ip(self.uid)
        self.netns = network.create_pod_netns(self.ctx.net, self.key, ip)
        self.view.pod_ip = ip
        self.pod.setdefault("status", {})["podIP"] = ip
        self.pod["status"]["podIPs"] = [{"ip": ip}]
        self.pod["status"]["hostIP"] = self.ctx.net.gateway
        hosts = self.dir / "hosts"
        self.ctx.register_hosts(self.pod, hosts)
        resolv = self.dir / "resolv.conf"
        resolv.write_text(
            f"search {self.ns}.svc.cluster.local svc.cluster.local cluster.local\n"
            "options ndots:5 timeout:1 attempts:1\n"
        )
        self._push()
        return True

    def _run_init_containers(self) -> bool:
        for i, slot in enumerate(self.init_slots):
            slot.state.waiting_reason = "ContainerCreating"
            while True:
                if self._deleting():
                    return False
                if self._deadline_exceeded():
                    self._fail_deadline()
                    return False
                if slot.proc is None and time.monotonic() >= slot.restart_at:
                    self._start(slot)
                    self._push()
                if slot.proc is not None:
                    rc = self._reap(slot, restartable=self.policy != "Never")
                    if rc == 0:
                        break
                    if rc is not None and self.policy == "Never":
                        self.view.phase = "Failed"
                        self._push()
                        return False
                self._push()
                self._sleep(0.3)
            for later in self.init_slots[i + 1 : i + 2]:
                later.state.waiting_reason = "ContainerCreating"
        return True

    def _run_main(self) -> None:
        while True:
            if self._deleting():
                return
            if self._deadline_exceeded():
                self._fail_deadline()
                return
            for slot in self.slots:
                if slot.done:
                    continue
                if slot.proc is None and time.monotonic() >= slot.restart_at:
                    self._start(slot)
                if slot.proc is not None:
                    restartable = self.policy == "Always" or self.policy == "OnFailure"
                    rc = self._reap(slot, restartable=restartable)
                    if rc is None:
                        self._probe(slot)
            self._compute_phase()
            self._push()
            if self.view.phase in ("Succeeded", "Failed"):
                return
            self._sleep(0.3)

    def _compute_phase(self) -> None:
        if all(s.done for s in self.slots):
            codes = [int((s.state.terminated or {}).get("exitCode", 1)) for s in self.slots]
            self.view.phase = "Succeeded" if all(c == 0 for c in codes) else "Failed"
        elif any(
            s.proc is not None or s.state.restart_count > 0 or s.state.terminated
            for s in self.slots
        ):
            self.view.phase = "Running"

    def _deadline_exceeded(self) -> bool:
        ads = self.pod["spec"].get("activeDeadlineSeconds")
        if ads is None or not self.view.start_time:
            return False
        started = datetime.datetime.strptime(self.view.start_time, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC
        )
        return (datetime.datetime.now(datetime.UTC) - started).total_seconds() > float(ads)

    def _fail_deadline(self) -> None:
        self._stop_all(grace=0)
        self.view.phase = "Failed"
        self.view.reason = "DeadlineExceeded"
        self.view.message = "Pod was active on the node longer than the specified deadline"
        self._push()

    # -- containers --------------------------------------------------------------------

    def _pod_with_addresses(self) -> Obj:
        """The pod as the API will show it once our status lands (for fieldRefs)."""
        status = dict(self.pod.get("status", {}))
        if self.view.pod_ip:
            status["podIP"] = self.view.pod_ip
            status["podIPs"] = [{"ip": self.view.pod_ip}]
        status["hostIP"] = self.view.host_ip
        status["hostIPs"] = [{"ip": self.view.host_ip}]
        return {**self.pod, "status": status}

    def _base_env(self) -> dict[str, str]:
        svc = self.ctx.net.kubernetes_service_ip
        env = {
            "PATH": images.search_path(),
            "HOSTNAME": self.pod_name,
            "KUBERNETES_SERVICE_HOST": svc,
            "KUBERNETES_SERVICE_PORT": "443",
            "KUBERNETES_SERVICE_PORT_HTTPS": "443",
            "KUBERNETES_PORT": f"tcp://{svc}:443",
            "KUBERNETES_PORT_443_TCP": f"tcp://{svc}:443",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": "443",
            "KUBERNETES_PORT_443_TCP_ADDR": svc,
        }
        if self.pod["spec"].get("enableServiceLinks", True):
            env.update(self.ctx.service_env(self.ns))
        return env

    def _start(self, slot: _Slot) -> None:
        c = slot.spec
        st = slot.state
        try:
            argv = images.argv_for(c["image"], c.get("command"), c.get("args"))
        except images.ImagePullError as e:
            st.waiting_reason = (
                "ImagePullBackOff"
                if st.waiting_reason in ("ErrImagePull", "ImagePullBackOff")
                else "ErrImagePull"
            )
            st.waiting_message = (
                str(e)
                if st.waiting_reason == "ErrImagePull"
                else f'Back-off pulling image "{c["image"]}"'
            )
            slot.restart_at = time.monotonic() + 2.0
            return
        except FileNotFoundError as e:
            self._start_error(slot, f'exec: "{e.args[0]}": executable file not found in $PATH')
            return
        try:
            env = EnvResolver(self.ctx.api, self._pod_with_addresses()).resolve(c, self._base_env())
        except (ConfigError, ApiError) as e:
            st.waiting_reason = "CreateContainerConfigError"
            st.waiting_message = str(e)
            slot.restart_at = time.monotonic() + 1.0
            return
        argv = [argv[0], *(expand(a, env) for a in argv[1:])]
        psc = self.pod["spec"].get("securityContext") or {}
        csc = c.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        gid = csc.get("runAsGroup", psc.get("runAsGroup"))
        groups = [
            g for g in [psc.get("fsGroup"), *psc.get("supplementalGroups", [])] if g is not None
        ]
        if uid not in (None, 0):
            env.setdefault("HOME", "/")
        else:
            env.setdefault("HOME", "/root")

        cid = uuid.uuid4().hex
        cdir = self.dir / "containers" / c["name"]
        cdir.mkdir(parents=True, exist_ok=True)
        term = cdir / f"termination-log-{st.restart_count}"
        term.write_bytes(b"")
        term.chmod(0o666)
        mounts = self._mounts(c, cdir)
        mounts.append(sandbox.Mount(term, c.get("terminationMessagePath", "/dev/termination-log")))
        hosts = self.dir / "hosts"
        mounts.append(sandbox.Mount(hosts, "/etc/hosts", read_only=True))
        mounts.append(sandbox.Mount(self.dir / "resolv.conf", "/etc/resolv.conf", read_only=True))
        spec = sandbox.Spec(
            argv=argv,
            hostname=self.pod["spec"].get("hostname") or self.pod_name,
            mounts=mounts,
            workdir=c.get("workingDir") or "/",
            uid=uid,
            gid=gid,
            groups=groups,
            extra_roots=[self.ctx.repo_root],
        )
        limit = (c.get("resources") or {}).get("limits", {}).get("memory")
        slot.log_file = self.log_dir / c["name"] / f"{st.restart_count}.log"
        unified = (
            self.ctx.unified_cgroup / f"{self.key}-{cid[:8]}" if self.ctx.unified_cgroup else None
        )
        memory = (
            self.ctx.memory_cgroup / f"{self.key}-{cid[:8]}" if self.ctx.memory_cgroup else None
        )
        try:
            slot.proc = Process(
                sandbox.argv(spec, self.netns, "{INFO_FD}"),
                env,
                slot.log_file,
                unified,
                memory,
                int(quantity(limit)) if limit else None,
            )
        except OSError as e:
            self._start_error(slot, str(e))
            return
        slot.env = env
        slot.term_file = term
        slot.started_at = now()
        st.container_id = f"cdipy://{cid}"
        st.running_since = slot.started_at
        st.waiting_reason = ""
        st.waiting_message = ""
        st.terminated = None
        st.ready = "readinessProbe" not in c
        if "readinessProbe" in c:
            slot.prober = Prober(c["readinessProbe"], c, functools.partial(self._exec_in, slot))
        if "livenessProbe" in c:
            slot.liveness = Prober(c["livenessProbe"], c, functools.partial(self._exec_in, slot))
            slot.liveness.result = True
        log.info(
            "container started pod=%s/%s container=%s argv=%s",
            self.ns,
            self.pod_name,
            c["name"],
            argv,
        )

    def _start_error(self, slot: _Slot, message: str) -> None:
        st = slot.state
        st.terminated = terminated(128, "StartError", now(), message, "")
        st.running_since = None
        self._after_exit(slot, 128, restartable=self.policy != "Never")

    def _mounts(self, c: Obj, cdir: Path) -> list[sandbox.Mount]:
        mounts = []
        for vm in c.get("volumeMounts", []):
            vol = self.volumes.get(vm["name"])
            if vol is None:
                continue
            src = vol.path / vm["subPath"] if vm.get("subPath") else vol.path
            if vm.get("subPath") and not src.exists():
                src.mkdir(parents=True, exist_ok=True)
            mounts.append(sandbox.Mount(src, vm["mountPath"], read_only=bool(vm.get("readOnly"))))
        for vd in c.get("volumeDevices", []):
            vol = self.volumes.get(vd["name"])
            if vol is None:
                continue
            mounts.append(
                sandbox.Mount(self._device_node(vol, cdir), vd["devicePath"], device=True)
            )
        return mounts

    def _device_node(self, vol: Volume, cdir: Path) -> Path:
        """A private node of the block device, owned so the container's user can open it."""
        st = os.stat(vol.path)
        node = cdir / f"dev-{vol.name}"
        with contextlib.suppress(FileNotFoundError):
            node.unlink()
        try:
            os.mknod(node, 0o660 | (st.st_mode & 0o170000), st.st_rdev)
        except OSError:
            return vol.path
        own, uid, _, _ = self._ownership()
        os.chown(node, uid or 0, own.fs_group if own.fs_group is not None else (uid or 0))
        return node

    def _exec_in(self, slot: _Slot, cmd: list[str], timeout: float) -> int:
        if slot.proc is None or not slot.proc.child_pid:
            return 1
        csc = slot.spec.get("securityContext") or {}
        psc = self.pod["spec"].get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        argv = ["nsenter", "-t", str(slot.proc.child_pid), "-m", "-n", "-u", "-i", "--"]
        if uid not in (None, 0):
            argv += [
                "setpriv",
                f"--reuid={uid}",
                f"--regid={csc.get('runAsGroup', psc.get('runAsGroup', uid))}",
                "--clear-groups",
                "--",
            ]
        return subprocess.run(
            [*argv, *cmd], env=slot.env, capture_output=True, timeout=timeout, check=False
        ).returncode

    def _probe(self, slot: _Slot) -> None:
        ip = self.view.pod_ip or ""
        if slot.prober is not None:
            slot.state.ready = slot.prober.run(ip)
        if slot.liveness is not None and not slot.liveness.run(ip) and slot.proc is not None:
            log.info(
                "liveness failed pod=%s/%s container=%s", self.ns, self.pod_name, slot.spec["name"]
            )
            self._kill(slot, float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    def _termination_message(self, slot: _Slot, rc: int) -> str:
        msg = _tail(slot.term_file, MAX_MESSAGE) if slot.term_file else ""
        if (
            not msg
            and rc != 0
            and slot.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
            and slot.log_file
        ):
            lines = _tail(slot.log_file, 64 * 1024).splitlines()[-FALLBACK_LINES:]
            msg = "\n".join(lines)[-FALLBACK_BYTES:]
        return msg

    def _reap(self, slot: _Slot, *, restartable: bool) -> int | None:
        """If the container exited, record it and plan a restart; return its exit code."""
        assert slot.proc is not None
        rc = slot.proc.poll()
        if rc is None:
            return None
        oom = slot.proc.oom_killed()
        slot.proc.cleanup()
        slot.proc = None
        reason = "OOMKilled" if oom else ("Completed" if rc == 0 else "Error")
        slot.state.terminated = terminated(
            rc,
            reason,
            slot.started_at,
            self._termination_message(slot, rc),
            slot.state.container_id,
        )
        slot.state.running_since = None
        slot.state.ready = False
        self._after_exit(slot, rc, restartable=restartable)
        log.info(
            "container exited pod=%s/%s container=%s code=%s reason=%s",
            self.ns,
            self.pod_name,
            slot.spec["name"],
            rc,
            reason,
        )
        return rc

    def _after_exit(self, slot: _Slot, rc: int, *, restartable: bool) -> None:
        st = slot.state
        # Init containers run to completion whatever the policy; only failures repeat.
        always = self.policy == "Always" and slot not in self.init_slots
        again = restartable and (always or rc != 0)
        if not again:
            slot.done = slot in self.slots
            st.waiting_reason = ""
            return
        # The kubelet restarts at once the first time, then backs off exponentially.
        delay = slot.backoff
        slot.backoff = min(
            self.ctx.backoff_max, slot.backoff * 2 if slot.backoff else self.ctx.backoff_base
        )
        slot.restart_at = time.monotonic() + delay
        st.last_terminated = st.terminated
        st.restart_count += 1
        if delay > 0:
            st.waiting_reason = "CrashLoopBackOff"
            st.waiting_message = (
                f"back-off {int(delay)}s restarting failed container={slot.spec['name']}"
                f" pod={self.pod_name}_{self.ns}({self.uid})"
            )
        else:
            st.waiting_reason = "ContainerCreating"

    def _kill(self, slot: _Slot, grace: float) -> None:
        proc = slot.proc
        if proc is None:
            return
        proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(5)

    def _stop_all(self, grace: float) -> None:
        threads = [
            threading.Thread(target=self._kill, args=(s, grace))
            for s in [*self.init_slots, *self.slots]
            if s.proc
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in [*self.init_slots, *self.slots]:
            if s.proc is not None:
                rc = s.proc.poll()
                self._reap(s, restartable=False)
                if rc is not None:
                    s.done = True

    # -- the end -----------------------------------------------------------------------

    def _finish(self) -> None:
        """Stop what runs; if the pod is being deleted, confirm the deletion."""
        if self._deleting():
            grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is None:
                grace = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
            if self.removed.is_set() or self.stopping.is_set():
                grace = 0 if self.removed.is_set() else min(float(grace), 5.0)
            self._stop_all(float(grace))
            if self.stopping.is_set():
                return
            if self.view.phase not in ("Succeeded", "Failed"):
                done = [s for s in self.slots if s.state.terminated]
                ok = done and all(
                    int((s.state.terminated or {}).get("exitCode", 1)) == 0 for s in done
                )
                self.view.phase = "Succeeded" if ok and len(done) == len(self.slots) else "Failed"
            self._push()
            self._confirm_deletion()
            return
        self._stop_all(0)
        self._push()
        self._release_sandbox()
        self._await_deletion()

    def _await_deletion(self) -> None:
        while not self._deleting():
            self._sleep(5.0)
        if not self.stopping.is_set():
            self._confirm_deletion()

    def _confirm_deletion(self) -> None:
        if self.removed.is_set():
            return
        with contextlib.suppress(ApiError):
            self.ctx.api.request(
                "DELETE",
                f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}",
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid},
                },
            )

    def _release_sandbox(self) -> None:
        if self.netns:
            network.delete_pod_netns(self.netns)
            self.netns = None
            self.ctx.release_ip(self.uid)
        self.ctx.forget_hosts(self.uid)

    def _teardown(self) -> None:
        for s in [*self.init_slots, *self.slots]:
            if s.proc is not None:
                s.proc.kill()
                s.proc.cleanup()
        self._release_sandbox()
        if not self.stopping.is_set():
            shutil.rmtree(self.dir, ignore_errors=True)
