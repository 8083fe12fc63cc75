"""CDI's bound condition annotations on a transfer's PVC (pure).

As CDI's UpdatePVCBoundConditionFromEvents: while the PVC is Pending,
`storage.condition.bound: "false"`, `.reason: "Pending"` and `.message` the latest event
about the PVC (what the volume binder or provisioner says it waits for, e.g. "waiting for
first consumer to be created before binding"); once it is Bound the three are removed.
The DataVolume's Bound condition then reads them (`dvstatus`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from cdicontract import annotations as ann
from controller.runtime import objects as o
from controller.runtime.objects import Obj

KEYS = (ann.CONDITION_BOUND, ann.CONDITION_BOUND_REASON, ann.CONDITION_BOUND_MESSAGE)
PENDING = "Pending"
BOUND = "Bound"


def event_selector(pvc: Obj) -> str:
    """The field selector of the events about exactly this PVC (not an earlier namesake)."""
    return f"involvedObject.name={o.name(pvc)},involvedObject.uid={o.uid(pvc)}"


def _when(event: Obj) -> datetime:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        text = event.get(key)
        if isinstance(text, str) and text:
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                continue
    created = o.meta(event).get("creationTimestamp")
    if isinstance(created, str) and created:
        try:
            return datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.min.replace(tzinfo=UTC)


def latest_message(events: list[Obj]) -> str | None:
    """The message of the most recent event; of two at the same time, the longer one (as
    CDI sorts them, so the choice does not depend on the listing's order)."""
    best: tuple[datetime, int, str] | None = None
    for e in events:
        message = e.get("message")
        if not isinstance(message, str):
            continue
        key = (_when(e), len(message), message)
        if best is None or key > best:
            best = key
    return best[2] if best is not None else None


def needs_events(pvc: Obj) -> bool:
    """Only a Pending PVC's annotations depend on its events."""
    return o.status(pvc).get("phase") == PENDING


def patch(pvc: Obj, events: list[Obj]) -> dict[str, str | None]:
    """The annotation changes (a merge patch: None removes) that bring the PVC's bound
    condition up to date; empty when nothing changes."""
    current = o.annotations(pvc)
    phase = o.status(pvc).get("phase")
    if phase == BOUND:
        return {k: None for k in KEYS if k in current}
    if phase != PENDING:
        return {}
    message = latest_message(events)
    if message is None:
        return {}
    want = {ann.CONDITION_BOUND: "false", ann.CONDITION_BOUND_REASON: PENDING,
            ann.CONDITION_BOUND_MESSAGE: message}
    return {k: v for k, v in want.items() if current.get(k) != v}
