"""Leader election through a coordination.k8s.io Lease, as client-go's leaderelection does.

Only the leader reconciles, so two replicas never act on the same object. The decision
(`decide`) is pure; `LeaderElector` does the get/create/update with the Lease's
resourceVersion, so two candidates racing for an expired lease cannot both win (one
update fails with 409). A leader that cannot renew within `renew_deadline` steps down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from controller.runtime import kube
from controller.runtime.objects import Obj

log = logging.getLogger(__name__)


class Action(StrEnum):
    ACQUIRE = "acquire"
    RENEW = "renew"
    WAIT = "wait"


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def decide(lease_spec: Obj | None, me: str, now: datetime) -> Action:
    """What a candidate may do with the lease as observed at `now`."""
    if not lease_spec or not lease_spec.get("holderIdentity"):
        return Action.ACQUIRE
    if lease_spec["holderIdentity"] == me:
        return Action.RENEW
    renewed = parse_time(lease_spec.get("renewTime")) or parse_time(
        lease_spec.get("acquireTime"))
    duration = int(lease_spec.get("leaseDurationSeconds") or 15)
    if renewed is None or now >= renewed + timedelta(seconds=duration):
        return Action.ACQUIRE
    return Action.WAIT


@dataclass(frozen=True)
class Timing:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


class LeaderElector:
    def __init__(self, client: kube.Kube, namespace: str, name: str, identity: str, *,
                 timing: Timing = Timing(),
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client = client
        self.path = kube.LEASES.path(namespace)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.clock = clock
        self.is_leader = False

    async def _try(self) -> bool:
        """One attempt to acquire or renew; True when we hold the lease afterwards."""
        now = self.clock()
        lease = await self.client.get(kube.LEASES.path(self.namespace, self.name))
        spec = (lease or {}).get("spec") or {}
        action = decide(spec, self.identity, now)
        if action is Action.WAIT:
            return False
        new_spec: Obj = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timing.lease_duration),
            "renewTime": format_time(now),
            "acquireTime": spec.get("acquireTime") if action is Action.RENEW
            else format_time(now),
            "leaseTransitions": int(spec.get("leaseTransitions") or 0)
            + (1 if action is Action.ACQUIRE and spec.get("holderIdentity") else 0),
        }
        try:
            if lease is None:
                await self.client.create(self.path, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": new_spec})
            else:
                lease["spec"] = new_spec
                await self.client.replace(kube.LEASES.path(self.namespace, self.name), lease)
        except kube.Conflict:
            return False
        return True

    async def acquire(self) -> None:
        """Block until this candidate is the leader."""
        while True:
            try:
                if await self._try():
                    self.is_leader = True
                    log.info("became leader lease=%s identity=%s", self.name, self.identity)
                    return
            except (kube.ApiError, OSError, TimeoutError) as exc:
                log.warning("lease attempt failed error=%s", exc)
            await asyncio.sleep(self.timing.retry_period)

    async def keep(self) -> None:
        """Renew every retry period; return when leadership is lost."""
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        while True:
            await asyncio.sleep(self.timing.retry_period)
            try:
                if await self._try():
                    last_ok = loop.time()
                    continue
                log.warning("lease taken by another candidate lease=%s", self.name)
                break
            except (kube.ApiError, OSError, TimeoutError) as exc:
                log.warning("lease renewal failed error=%s", exc)
            if loop.time() - last_ok > self.timing.renew_deadline:
                break
        self.is_leader = False

    async def release(self) -> None:
        """Give the lease up on a clean shutdown so a standby takes over at once."""
        if not self.is_leader:
            return
        lease = await self.client.get(kube.LEASES.path(self.namespace, self.name))
        if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["leaseDurationSeconds"] = 1
            try:
                await self.client.replace(kube.LEASES.path(self.namespace, self.name), lease)
            except kube.ApiError as exc:
                log.warning("lease release failed error=%s", exc)
        self.is_leader = False
