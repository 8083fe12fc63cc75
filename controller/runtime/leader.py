"""Leader election through a coordination.k8s.io Lease, as client-go's leaderelection does.

Only the leader reconciles, so two replicas never act on the same object. Three rules
make that hold, as in client-go (`tools/leaderelection/leaderelection.go`):

- Expiry is measured by local observation: a candidate records, with its own monotonic
  clock, when it last saw the lease record change, and treats another holder's lease as
  expired only `leaseDurationSeconds` after that. The remote `renewTime` is written for
  people and tools but never compared with the local wall clock, so clock skew between
  nodes cannot make two leaders (`observe`, `decide`).
- Every write carries the resourceVersion it read, so of two candidates racing for an
  expired lease one update fails with 409 and only one wins.
- A leader whose renewal does not succeed within `renew_deadline` of its last successful
  one (measured from when that renewal was sent) has lost: `keep` fires `on_lost` at that
  instant from a timer, whatever the pending request is doing, so the process stops acting
  before any other candidate can have seen the lease expire (renew_deadline <
  lease_duration). The timer also fires first when a paused (SIGSTOP) process resumes.

CDI's controller uses controller-runtime's defaults: 15 s lease, 10 s renew deadline,
2 s retry period; `Timing` has the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import aiohttp

from controller.runtime import kube
from controller.runtime.objects import Obj

log = logging.getLogger(__name__)

# What a failed attempt may raise; anything of it is retried until the deadline.
_FAILURES = (kube.ApiError, OSError, TimeoutError, aiohttp.ClientError, ValueError)

# The fields of a LeaderElectionRecord; a change of any of them is a change of the record.
RECORD_FIELDS = ("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime",
                 "leaseTransitions")


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


def record_of(lease_spec: Obj | None) -> tuple[object, ...]:
    """The lease record as a comparable value (client-go compares the raw record)."""
    spec = lease_spec or {}
    return tuple(spec.get(f) for f in RECORD_FIELDS)


@dataclass(frozen=True)
class Observation:
    """A lease record and the local monotonic time it was first seen in this form."""

    record: tuple[object, ...]
    at: float

    @property
    def holder(self) -> str:
        return str(self.record[0] or "")

    @property
    def duration(self) -> float:
        try:
            return float(self.record[1] or 0) or 15.0  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 15.0


def observe(previous: Observation | None, lease_spec: Obj | None, now: float) -> Observation:
    """The observation after reading `lease_spec` at local monotonic time `now`: the
    previous one while the record is unchanged, else the new record seen `now`."""
    record = record_of(lease_spec)
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def decide(seen: Observation, me: str, now: float) -> Action:
    """What a candidate may do with the lease it has observed, at local monotonic `now`."""
    if not seen.holder:
        return Action.ACQUIRE
    if seen.holder == me:
        return Action.RENEW
    if now >= seen.at + seen.duration:
        return Action.ACQUIRE
    return Action.WAIT


def renewal_deadline(last_renewed: float, timing: Timing) -> float:
    """When a leader that last renewed (sent a renewal that succeeded) at `last_renewed`
    must have stopped acting."""
    return last_renewed + timing.renew_deadline


@dataclass(frozen=True)
class Timing:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        # client-go refuses the same: a renew deadline at or past the lease duration
        # would let a stalled leader act after another took over.
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("need 0 < retry_period < renew_deadline < lease_duration, got "
                             f"{self.retry_period}, {self.renew_deadline}, "
                             f"{self.lease_duration}")


class LeadershipLost(Exception):
    pass


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
        self.seen: Observation | None = None
        self.last_renewed = 0.0

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _try(self) -> bool:
        """One attempt to acquire or renew; True when we hold the lease afterwards."""
        lease = await self.client.get(kube.LEASES.path(self.namespace, self.name))
        sent = self._now()
        spec = (lease or {}).get("spec") or {}
        self.seen = observe(self.seen, spec, sent)
        action = decide(self.seen, self.identity, sent)
        if action is Action.WAIT:
            return False
        wall = format_time(self.clock())
        new_spec: Obj = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.timing.lease_duration),
            "renewTime": wall,
            "acquireTime": spec.get("acquireTime") if action is Action.RENEW else wall,
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
                # The resourceVersion read above goes along: a concurrent writer makes this 409.
                lease["spec"] = new_spec
                await self.client.replace(kube.LEASES.path(self.namespace, self.name), lease)
        except kube.Conflict:
            return False
        self.seen = observe(self.seen, new_spec, self._now())
        self.last_renewed = sent
        return True

    async def acquire(self) -> None:
        """Block until this candidate is the leader."""
        while True:
            try:
                if await asyncio.wait_for(self._try(), self.timing.renew_deadline):
                    self.is_leader = True
                    log.info("became leader lease=%s identity=%s", self.name, self.identity)
                    return
            except _FAILURES as exc:
                log.warning("lease attempt failed error=%s", repr(exc))
            await asyncio.sleep(self.timing.retry_period)

    async def keep(self, on_lost: Callable[[], None] | None = None) -> None:
        """Renew every retry period while leading. Leadership is lost when a renewal has
        not succeeded by `renew_deadline` after the last successful one, or another holder
        is seen: `on_lost` is then called synchronously (from a timer when the deadline
        passes, even while a request hangs) and `keep` returns."""
        loop = asyncio.get_running_loop()
        lost = asyncio.Event()

        def fire() -> None:
            if not lost.is_set():
                lost.set()
                self.is_leader = False
                log.error("lost leadership lease=%s identity=%s", self.name, self.identity)
                if on_lost is not None:
                    on_lost()

        fence = loop.call_at(renewal_deadline(self.last_renewed, self.timing), fire)
        waiting = asyncio.create_task(lost.wait())
        try:
            while not lost.is_set():
                sleeping = asyncio.create_task(asyncio.sleep(self.timing.retry_period))
                await asyncio.wait({sleeping, waiting}, return_when=asyncio.FIRST_COMPLETED)
                sleeping.cancel()
                if lost.is_set():
                    break
                attempt = asyncio.create_task(self._try())
                await asyncio.wait({attempt, waiting}, return_when=asyncio.FIRST_COMPLETED)
                if lost.is_set():
                    attempt.cancel()
                    break
                try:
                    ok = attempt.result()
                except _FAILURES as exc:
                    log.warning("lease renewal failed error=%s", repr(exc))
                    continue
                if not ok:
                    log.warning("lease taken by another candidate lease=%s", self.name)
                    fire()
                    break
                fence.cancel()
                fence = loop.call_at(renewal_deadline(self.last_renewed, self.timing), fire)
        finally:
            fence.cancel()
            waiting.cancel()

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
