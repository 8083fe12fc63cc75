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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from localcluster import launcher, network, rootfs
from localcluster.api import ApiError, Obj
from localcluster.container import Process
from localcluster.layout import Layout
from localcluster.podenv import ConfigError
from localcluster.podstatus import ContainerState, PodView, now, terminated
from localcluster.podvolumes import NotReady, Ownership, Volume, VolumeBuilder
from localcluster.probes import Prober

log = logging.getLogger(__name__)

MAX_MESSAGE = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048


class NodeContext(launcher.Runtime, Protocol):
    """What a pod worker needs of the node agent."""

    layout: Layout
    backoff_base: float
    backoff_max: float
    name: str  # the node's
    node_ip: str
    node_dir: Path
    pod_logs: Path

    def allocate_ip(self, uid: str) -> str: ...
    def release_ip(self, uid: str) -> None: ...
    def register_hosts(self, pod: Obj, path: Path) -> None: ...
    def forget_hosts(self, uid: str) -> None: ...


@dataclass
class _Slot:
    """A container's runtime bookkeeping beside its rendered state."""

    spec: Obj
    state: ContainerState
    proc: Process | None = None
    started_at: str = ""
    restart_at: float = 0.0
    backoff: float = 0.0
    launched: launcher.Launched | None = None
    prober: Prober | None = None
    liveness: Prober | None = None
    done: bool = False  # terminated and will not restart
    pull_backoff: float = 0.0
    pull_failed_at: float | None = None  # ErrImagePull shows until ImagePullBackOff


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
        self.dir = ctx.node_dir / "pods" / self.uid
        self.log_dir = ctx.pod_logs / f"{self.ns}_{self.pod_name}_{self.uid}"
        self.wake = threading.Event()
        self.removed = threading.Event()
        self.stopping = threading.Event()
        self.view = PodView(host_ip=ctx.node_ip)
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

    def _ownership(self) -> Ownership:
        """Whose the volumes must be: one runAsUser shared by all containers, fsGroup."""
        uids = {launcher.identity(self.pod, c)[0] for c in self.pod["spec"]["containers"]}
        uid = next(iter(uids)) if len(uids) == 1 else None
        fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        return Ownership(uid=uid, fs_group=fs_group)

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
        own = self._ownership()
        self.dir.mkdir(parents=True, exist_ok=True)
        while True:
            if self._deleting():
                return False
            try:
                self.volumes = VolumeBuilder(
                    self.ctx.api, self.pod, self.dir, own, node=self.ctx.name
                ).build_all()
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
        self.pod["status"]["hostIP"] = self.ctx.node_ip
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
                self._pull_backoff(slot)
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
                self._pull_backoff(slot)
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

    def _start(self, slot: _Slot) -> None:
        c, st = slot.spec, slot.state
        sb = launcher.PodSandbox(
            pod=self._pod_with_addresses(),
            pod_dir=self.dir,
            log_dir=self.log_dir,
            netns=self.netns,
            volumes=self.volumes,
            key=self.key,
        )
        try:
            launched = launcher.launch(self.ctx, sb, c, st.restart_count)
        except launcher.Waiting as e:
            st.waiting_reason, st.waiting_message = e.reason, e.message
            delay = 2.0
            if e.reason == "ErrImagePull":
                # As the kubelet: the error shows, then ImagePullBackOff until the next
                # attempt, each back-off twice the last (up to the node's maximum).
                slot.pull_backoff = min(
                    self.ctx.backoff_max, slot.pull_backoff * 2 or self.ctx.backoff_base
                )
                slot.pull_failed_at = time.monotonic()
                delay = slot.pull_backoff + 1.0
            slot.restart_at = time.monotonic() + delay
            log.info(
                "container waiting pod=%s/%s container=%s reason=%s message=%s",
                self.ns,
                self.pod_name,
                c["name"],
                e.reason,
                e.message,
            )
            return
        except launcher.StartError as e:
            st.terminated = terminated(128, "StartError", now(), str(e), "")
            st.running_since = None
            self._after_exit(slot, 128, restartable=self.policy != "Never")
            return
        slot.launched = launched
        slot.proc = launched.proc
        slot.pull_backoff, slot.pull_failed_at = 0.0, None
        st.image = str(launched.image.ref)
        st.image_id = launched.image.image_id
        slot.started_at = now()
        st.container_id = launched.container_id
        st.running_since = slot.started_at
        st.waiting_reason = ""
        st.waiting_message = ""
        st.terminated = None
        st.ready = "readinessProbe" not in c
        run_in = functools.partial(launcher.exec_in, launched, self.pod, c)
        if "readinessProbe" in c:
            slot.prober = Prober(c["readinessProbe"], c, run_in)
        if "livenessProbe" in c:
            slot.liveness = Prober(c["livenessProbe"], c, run_in)
            slot.liveness.result = True
        log.info(
            "container started pod=%s/%s container=%s argv=%s",
            self.ns,
            self.pod_name,
            c["name"],
            launched.argv,
        )

    def _pull_backoff(self, slot: _Slot) -> None:
        """ErrImagePull becomes ImagePullBackOff a second after the failed pull."""
        st = slot.state
        failed = slot.pull_failed_at
        if st.waiting_reason == "ErrImagePull" and failed and time.monotonic() - failed >= 1.0:
            st.waiting_reason = "ImagePullBackOff"
            st.waiting_message = f'Back-off pulling image "{slot.spec["image"]}"'
            slot.pull_failed_at = None

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
        launched = slot.launched
        msg = _tail(launched.term_file, MAX_MESSAGE) if launched else ""
        if (
            not msg
            and rc != 0
            and slot.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
            and launched
        ):
            lines = _tail(launched.log_file, 64 * 1024).splitlines()[-FALLBACK_LINES:]
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
        rootfs.unmount(self.dir / "containers" / slot.spec["name"])
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
        rootfs.unmount_all(self.dir)
        if not self.stopping.is_set():
            shutil.rmtree(self.dir, ignore_errors=True)
