"""The cloner's one failure type: a reason the controller branches on and a message."""

from __future__ import annotations

from cdicontract.reasons import Reason, is_permanent


class CloneFailure(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def permanent(self) -> bool:
        return is_permanent(self.reason)

    def __str__(self) -> str:
        return self.message
