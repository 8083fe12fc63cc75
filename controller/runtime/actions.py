"""What a plan asks for: creates, merge patches and deletes, as plain data.

Planners are pure functions that return these; the executor is the only thing that
applies them, so every write follows the same rules (409 on create, 404 on delete: done).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.runtime.kube import Resource
from controller.runtime.objects import Obj


@dataclass(frozen=True)
class Create:
    resource: Resource
    namespace: str
    body: Obj

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))


@dataclass(frozen=True)
class Patch:
    """A JSON merge patch (RFC 7386) of one object or of its `sub`resource."""

    resource: Resource
    namespace: str
    name: str
    patch: Obj
    sub: str | None = None


@dataclass(frozen=True)
class Delete:
    resource: Resource
    namespace: str
    name: str
    uid: str | None = None
    """A precondition: never delete a newer object of the same name."""


@dataclass(frozen=True)
class CreateCopy:
    """Create `body` with the `data` of another object of the same resource (read when
    applied, so a planner need not cache it): how a ConfigMap of the CDI namespace reaches
    a pod in another namespace. Nothing is created while the source is missing."""

    resource: Resource
    namespace: str
    body: Obj
    source_namespace: str
    source_name: str

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))


Action = Create | Patch | Delete | CreateCopy
