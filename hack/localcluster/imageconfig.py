"""What an image's configuration means for a container: process, environment, user.

Why pure: Kubernetes' command/args rules over the image's Entrypoint/Cmd, the image's
Env under the pod's, WorkingDir and User (names looked up in the image's own
/etc/passwd and /etc/group) are decisions; the store reads the files, this decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# containerd's default when an image sets no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""

    @classmethod
    def from_oci(cls, doc: dict[str, Any]) -> ImageConfig:
        """From an image configuration blob (OCI or Docker: the ``config`` section)."""
        c = doc.get("config") or {}
        return cls(
            entrypoint=list(c.get("Entrypoint") or []),
            cmd=list(c.get("Cmd") or []),
            env=list(c.get("Env") or []),
            workdir=c.get("WorkingDir") or "",
            user=c.get("User") or "",
        )


class UserError(ValueError):
    """The image's user (or group) name is not in its /etc/passwd (/etc/group)."""


def process_argv(cfg: ImageConfig, command: list[str] | None, args: list[str] | None) -> list[str]:
    """Kubernetes' rules: command replaces Entrypoint and drops Cmd; args replace Cmd."""
    if command:
        return [*command, *(args or [])]
    if args:
        return [*cfg.entrypoint, *args]
    return [*cfg.entrypoint, *cfg.cmd]


def image_env(cfg: ImageConfig) -> dict[str, str]:
    """The image's Env, with PATH defaulted as containerd does."""
    env = {}
    for item in cfg.env:
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def _table(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: list[int]
    home: str


def identity(
    cfg: ImageConfig,
    passwd: str,
    group: str,
    run_as_user: int | None,
    run_as_group: int | None,
    extra_groups: list[int],
) -> Identity:
    """uid, gid, supplementary groups and HOME, as containerd derives them.

    The image's ``User`` (``uid``, ``name``, ``uid:gid``, ``name:group``) unless the pod
    sets runAsUser/runAsGroup; a uid without a group takes its passwd entry's group (0 if
    none); the supplementary groups are the user's in /etc/group, then fsGroup and
    supplementalGroups.
    """
    users = _table(passwd)
    groups = _table(group)
    user_part, _, group_part = cfg.user.partition(":")
    uid, gid = 0, None
    name = None
    if user_part:
        if user_part.isdigit():
            uid = int(user_part)
        else:
            entry = next((u for u in users if u[0] == user_part and len(u) >= 4), None)
            if entry is None:
                raise UserError(
                    f"unable to find user {user_part}: no matching entries in passwd file"
                )
            uid, gid, name = int(entry[2]), int(entry[3]), user_part
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            g = next((g for g in groups if g[0] == group_part and len(g) >= 3), None)
            if g is None:
                raise UserError(
                    f"unable to find group {group_part}: no matching entries in group file"
                )
            gid = int(g[2])
    if run_as_user is not None:
        uid, gid, name = run_as_user, None, None
    entry = next((u for u in users if len(u) >= 6 and u[2].isdigit() and int(u[2]) == uid), None)
    if gid is None:
        gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    if run_as_group is not None:
        gid = run_as_group
    name = name or (entry[0] if entry is not None else None)
    member = [int(g[2]) for g in groups if len(g) >= 4 and name and name in g[3].split(",")]
    supplementary = []
    for g2 in [*member, *extra_groups]:
        if g2 != gid and g2 not in supplementary:
            supplementary.append(g2)
    home = entry[5] if entry is not None and len(entry) >= 6 and entry[5] else "/"
    return Identity(uid, gid, supplementary, home)
