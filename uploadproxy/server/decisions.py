"""What the upload server answers, decided from its state and the request's headers alone.

Pure functions over one enum (not CDI's three booleans `uploading`, `processing`,
`done`), so the whole table is tested without a socket. The handlers in `app` act on the
returned `Action`; nothing here does I/O.
"""

from __future__ import annotations

from enum import StrEnum

from cdicontract.reasons import Reason, is_permanent


class State(StrEnum):
    IDLE = "idle"
    """Nothing received yet, or a retryable failure was answered: a POST starts afresh."""
    RECEIVING = "receiving"
    """One connection is sending the body."""
    PAUSED = "paused"
    """The sending connection dropped mid-body; the pipeline waits for a resume."""
    PROCESSING = "processing"
    """The whole body arrived; the pipeline finishes (converts, syncs)."""
    DONE = "done"
    FAILED = "failed"
    """Failed for good (or after an async answer): the server is about to exit."""


class Action(StrEnum):
    START = "start"
    RESUME = "resume"
    RESTART = "restart"
    """Abandon the paused upload (its target is aborted) and start over."""
    BUSY = "busy"
    CONFLICT = "conflict"
    OFFSET_MISMATCH = "offset-mismatch"


STATUS: dict[Action, int] = {
    Action.BUSY: 503,
    Action.CONFLICT: 409,
    Action.OFFSET_MISMATCH: 416,
}
"""Status codes of the actions that answer at once."""


class BadHeader(ValueError):
    """A request header that cannot be understood: 400 with this message."""


def parse_offset(text: str | None) -> int | None:
    """`Upload-Offset`: a non-negative decimal integer, or None when absent."""
    if text is None:
        return None
    value = text.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 19:
        raise BadHeader(f"Upload-Offset must be a non-negative integer, got {text[:32]!r}")
    return int(value)


def decide_post(state: State, requested: int | None, offset: int) -> Action:
    """What a POST does, given the state, its `Upload-Offset` (or None) and the server's offset.

    While paused, `Upload-Offset` equal to ours continues, another value gets 416, no header
    starts over. Without a paused upload only offset 0 (or none) starts one; any other
    offset gets 416 with `Upload-Offset: 0`, so a resuming client learns to start over.
    """
    if state in (State.DONE, State.FAILED):
        return Action.CONFLICT
    if state in (State.RECEIVING, State.PROCESSING):
        return Action.BUSY
    if state is State.PAUSED:
        if requested is None:
            return Action.RESTART
        return Action.RESUME if requested == offset else Action.OFFSET_MISMATCH
    return Action.START if requested in (None, 0) else Action.OFFSET_MISMATCH


def resumed_length_problem(declared: int | None, offset: int, length: int | None) -> str | None:
    """Why a resuming request's Content-Length cannot be the rest of the body, or None.

    Checked before anything is taken, so a client's mistake leaves the upload paused
    instead of failing it.
    """
    if declared is None or length is None or offset + length == declared:
        return None
    return (
        f"the upload continues at byte {offset} of {declared}: the rest is "
        f"{declared - offset} bytes, not {length}"
    )


def status_for_failure(reason: Reason) -> int:
    """CDI answers 400 when the image cannot fit and 500 otherwise; we also answer 400 for
    every failure the body itself causes (bad checksum, unsafe or invalid image)."""
    if is_permanent(reason) or reason is Reason.NO_SPACE:
        return 400
    return 500


def ends_server(reason: Reason, answered_early: bool) -> bool:
    """Whether a failure ends the server (report written, exit 1) instead of allowing a retry.

    A permanent failure cannot be fixed by uploading again; after a 200 went out (async,
    or a sync keepalive) a client that reads only the status waits for the PVC's phase,
    so the termination report must say it.
    """
    return answered_early or is_permanent(reason)
