"""After each answer (or silence) of the proxy, what cdictl does next."""

from __future__ import annotations

import pytest

from cdictl import resume
from cdictl.resume import Next, Step

SIZE = 1000


@pytest.mark.parametrize(("status", "offset", "expected"), [
    pytest.param(200, None, Next(Step.DONE), id="ok"),
    pytest.param(416, "400", Next(Step.SEND, offset=400), id="416-server-offset"),
    pytest.param(416, None, Next(Step.PROBE), id="416-without-offset"),
    pytest.param(416, "2000", Next(Step.PROBE), id="416-offset-beyond-file"),
    pytest.param(416, "-3", Next(Step.PROBE), id="416-negative"),
    pytest.param(401, None, Next(Step.PROBE, renew_token=True), id="expired-token"),
    pytest.param(503, None, Next(Step.PROBE, pause=True), id="busy"),
    pytest.param(502, None, Next(Step.PROBE, pause=True), id="bad-gateway"),
    pytest.param(400, None, Next(Step.FAIL, error="unexpected return value 400, nope"),
                 id="bad-request"),
    pytest.param(409, None, Next(Step.FAIL, error="unexpected return value 409, nope"),
                 id="already-done"),
    pytest.param(500, None, Next(Step.FAIL, error="unexpected return value 500, nope"),
                 id="server-error"),
])
def test_after_an_answer(status: int, offset: str | None, expected: Next) -> None:
    assert resume.after_post(status, offset, "nope", SIZE) == expected


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param("", Next(Step.DONE), id="cdi-empty"),
    pytest.param("   \n", Next(Step.DONE), id="spaces"),
    pytest.param("OK", Next(Step.DONE), id="plain-text"),
    pytest.param('    \n{"reason":"Completed","format":"qcow2"}\n', Next(Step.DONE),
                 id="report-completed"),
    pytest.param('  \n{"reason":"ImageTooLarge","message":"no room"}\n',
                 Next(Step.FAIL, error="ImageTooLarge: no room"), id="report-failed"),
    pytest.param('{"reason":"Completed"', Next(Step.FAIL, error='InternalError: {"reason":"Completed"'),
                 id="cut-report"),
])
def test_after_a_200_its_body(body: str, expected: Next) -> None:
    assert resume.after_result(body) == expected


def test_a_409_after_resending_everything_means_the_first_try_arrived() -> None:
    assert resume.after_post(409, None, "done", SIZE, resent=True) == Next(Step.DONE)


def test_after_a_drop_the_server_is_asked_unless_it_had_answered() -> None:
    assert resume.after_drop(answered=False) == Next(Step.PROBE, pause=True)
    assert resume.after_drop(answered=True) == Next(Step.DONE)


@pytest.mark.parametrize(("status", "offset", "expected"), [
    pytest.param(200, "600", Next(Step.SEND, offset=600), id="paused-at-600"),
    pytest.param(200, "1000", Next(Step.SEND, offset=1000), id="all-but-the-end"),
    pytest.param(200, None, Next(Step.SEND, offset=0), id="nothing-kept"),
    pytest.param(200, "junk", Next(Step.SEND, offset=0), id="junk-offset"),
    pytest.param(401, None, Next(Step.PROBE, renew_token=True), id="expired"),
    pytest.param(None, None, Next(Step.PROBE, pause=True), id="no-answer"),
    pytest.param(503, None, Next(Step.PROBE, pause=True), id="busy"),
    pytest.param(403, None, Next(Step.FAIL, error="unexpected return value 403 to HEAD"),
                 id="forbidden"),
])
def test_after_a_probe(status: int | None, offset: str | None, expected: Next) -> None:
    assert resume.after_probe(status, offset, SIZE) == expected


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [resume.backoff_seconds(n) for n in range(7)] == [0, 0.5, 1, 2, 4, 8, 10]


def test_the_budget_counts_attempts_without_progress() -> None:
    budget = resume.Budget(2)
    assert budget.record(0) and budget.record(0)
    assert not budget.record(0)
    budget = resume.Budget(2)
    assert budget.record(0) and budget.record(0) and budget.record(10) and budget.record(10)
    assert budget.record(20) and budget.record(20) and not budget.record(20)
