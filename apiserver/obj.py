"""Kubernetes objects as plain JSON dicts, and the one accessor this server needs."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def get_path(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None where any step is missing or not a dict."""
    cur = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur
