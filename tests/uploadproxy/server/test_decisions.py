"""The upload server's answers as a pure table: state x Upload-Offset -> action."""

from __future__ import annotations

import pytest

from cdicontract.reasons import Reason
from uploadproxy.server.decisions import (
    Action,
    BadHeader,
    State,
    decide_post,
    ends_server,
    parse_offset,
    resumed_length_problem,
    status_for_failure,
)

S = State


@pytest.mark.parametrize(
    ("state", "requested", "offset", "action"),
    [
        (S.IDLE, None, 0, Action.START),
        (S.IDLE, 0, 0, Action.START),
        (S.IDLE, 10, 0, Action.OFFSET_MISMATCH),
        (S.RECEIVING, None, 5, Action.BUSY),
        (S.RECEIVING, 5, 5, Action.BUSY),
        (S.PROCESSING, None, 5, Action.BUSY),
        (S.PAUSED, 5, 5, Action.RESUME),
        (S.PAUSED, 4, 5, Action.OFFSET_MISMATCH),
        (S.PAUSED, 6, 5, Action.OFFSET_MISMATCH),
        (S.PAUSED, 0, 5, Action.OFFSET_MISMATCH),
        (S.PAUSED, None, 5, Action.RESTART),
        (S.DONE, None, 0, Action.CONFLICT),
        (S.DONE, 3, 3, Action.CONFLICT),
        (S.FAILED, None, 0, Action.CONFLICT),
    ],
    ids=str,
)
def test_decide_post(state: State, requested: int | None, offset: int, action: Action) -> None:
    assert decide_post(state, requested, offset) is action


@pytest.mark.parametrize(("text", "value"), [(None, None), ("0", 0), ("123", 123), (" 42 ", 42)])
def test_parse_offset(text: str | None, value: int | None) -> None:
    assert parse_offset(text) == value


@pytest.mark.parametrize("text", ["", "-1", "1.5", "abc", "0x10", "١٢", "9" * 20])
def test_parse_offset_refuses(text: str) -> None:
    with pytest.raises(BadHeader, match="Upload-Offset"):
        parse_offset(text)


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (Reason.IMAGE_TOO_LARGE, 400),
        (Reason.CHECKSUM_MISMATCH, 400),
        (Reason.INVALID_IMAGE, 400),
        (Reason.UNSAFE_IMAGE, 400),
        (Reason.NO_SPACE, 400),
        (Reason.INTERNAL, 500),
        (Reason.CONVERSION_FAILED, 500),
        (Reason.CANCELLED, 500),
    ],
)
def test_status_for_failure(reason: Reason, status: int) -> None:
    assert status_for_failure(reason) == status


def test_only_permanent_or_unreported_failures_end_the_server() -> None:
    assert not ends_server(Reason.CHECKSUM_MISMATCH, answered_early=False)
    assert not ends_server(Reason.IMAGE_TOO_LARGE, answered_early=False)
    assert ends_server(Reason.INVALID_CONFIG, answered_early=False)
    assert ends_server(Reason.CHECKSUM_MISMATCH, answered_early=True)
    assert ends_server(Reason.INTERNAL, answered_early=True)
    assert not ends_server(Reason.INTERNAL, answered_early=False)
    assert not ends_server(Reason.CANCELLED, answered_early=False)


@pytest.mark.parametrize(
    ("declared", "offset", "length", "ok"),
    [
        (None, 5, 10, True),
        (100, 40, None, True),
        (100, 40, 60, True),
        (100, 40, 61, False),
        (100, 40, 59, False),
    ],
)
def test_resumed_length(declared: int | None, offset: int, length: int | None, ok: bool) -> None:
    problem = resumed_length_problem(declared, offset, length)
    assert (problem is None) is ok
    if not ok:
        assert "continues at byte 40 of 100" in problem
