"""Container and pod status blocks, shaped exactly as the kubelet writes them.

Why a module of pure functions: the product's controller reads these fields
(``state.terminated.exitCode``, ``reason``, ``message``, ``restartCount``, the Ready
condition), so their shape is the contract; keeping it pure makes it easy to check.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerState:
    """What the node knows of one container, from which its status is rendered."""

    name: str
    image: str
    restart_count: int = 0
    waiting_reason: str = "ContainerCreating"
    waiting_message: str = ""
    running_since: str | None = None
    terminated: Obj | None = None
    last_terminated: Obj | None = None
    ready: bool = False
    container_id: str = ""
    image_id: str = ""  # <repo>@sha256:... once pulled

    def render(self) -> Obj:
        status: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.running_since is not None and self.terminated is None,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        if self.running_since is not None and self.terminated is None:
            status["state"] = {"running": {"startedAt": self.running_since}}
        elif self.terminated is not None and not self.waiting_reason:
            status["state"] = {"terminated": self.terminated}
        else:
            waiting: Obj = {"reason": self.waiting_reason}
            if self.waiting_message:
                waiting["message"] = self.waiting_message
            status["state"] = {"waiting": waiting}
        status["lastState"] = {"terminated": self.last_terminated} if self.last_terminated else {}
        return status


def terminated(exit_code: int, reason: str, started: str, message: str, cid: str) -> Obj:
    t: Obj = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started,
        "finishedAt": now(),
        "containerID": cid,
    }
    if message:
        t["message"] = message
    return t


def condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> Obj:
    c: Obj = {"type": kind, "status": "True" if ok else "False", "lastProbeTime": None}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


@dataclass
class PodView:
    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    pod_ip: str | None = None
    host_ip: str = ""
    start_time: str | None = None
    initialized: bool = False
    init: list[ContainerState] = field(default_factory=list)
    main: list[ContainerState] = field(default_factory=list)
    transitions: dict[tuple[str, str], str] = field(default_factory=dict)

    def _cond(self, kind: str, ok: bool, reason: str | None = None) -> Obj:
        c = condition(kind, ok, reason)
        key = (kind, c["status"])
        c["lastTransitionTime"] = self.transitions.setdefault(key, now())
        return c

    def render(self) -> Obj:
        ready = bool(self.main) and all(c.ready for c in self.main)
        done = self.phase in ("Succeeded", "Failed")
        not_ready_reason = "PodCompleted" if done else "ContainersNotReady"
        status: Obj = {
            "phase": self.phase,
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "conditions": [
                self._cond(
                    "Initialized",
                    self.initialized or done,
                    None
                    if self.initialized
                    else ("PodCompleted" if done else "ContainersNotInitialized"),
                ),
                self._cond("Ready", ready, None if ready else not_ready_reason),
                self._cond("ContainersReady", ready, None if ready else not_ready_reason),
                self._cond("PodScheduled", True),
            ],
            "containerStatuses": [c.render() for c in self.main],
            "qosClass": None,
        }
        del status["qosClass"]
        if self.init:
            status["initContainerStatuses"] = [c.render() for c in self.init]
        if self.pod_ip:
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        if self.start_time:
            status["startTime"] = self.start_time
        status["reason"] = self.reason
        status["message"] = self.message
        return status
