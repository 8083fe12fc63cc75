"""The cloner's one failure type: a reason the controller branches on and a message."""

from __future__ import annotations

from cdicontract.reasons import Failure


class CloneFailure(Failure):
    """A failed clone stream (source side)."""
