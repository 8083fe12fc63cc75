import json

import pytest

from cdicontract.reasons import Reason, is_permanent
from cdicontract.report import MAX_BYTES, TerminationReport


def test_round_trips_through_json() -> None:
    r = TerminationReport(
        reason=Reason.COMPLETED, message="ok", format="qcow2", virtual_size=10, resumes=2
    )
    back = TerminationReport.from_json(r.to_json())
    assert back == r
    assert back.ok


def test_huge_message_is_trimmed_under_the_kubelet_cap() -> None:
    r = TerminationReport(reason=Reason.INVALID_IMAGE, message="x" * 10_000, extra={"a": "b" * 500})
    text = r.to_json()
    assert len(text.encode()) <= MAX_BYTES
    doc = json.loads(text)
    assert doc["reason"] == "InvalidImage"
    assert doc["message"].endswith("...")


@pytest.mark.parametrize("text", ["", "not json", "[1]", '{"reason": "Nope"}', '{"message": "x"}'])
def test_garbage_becomes_an_internal_report(text: str) -> None:
    r = TerminationReport.from_json(text)
    assert r.reason is Reason.INTERNAL


@pytest.mark.parametrize(
    ("reason", "permanent"),
    [
        (Reason.CHECKSUM_MISMATCH, True),
        (Reason.UNSAFE_IMAGE, True),
        (Reason.IMAGE_TOO_LARGE, True),
        (Reason.UNSUPPORTED_FORMAT, True),
        (Reason.NETWORK_ERROR, False),
        (Reason.SOURCE_NOT_FOUND, False),
        (Reason.NO_SPACE, False),
        (Reason.CORRUPT_IMAGE, True),
        (Reason.ARCHIVE_REFUSED, True),
        (Reason.REDIRECT_REFUSED, True),
        # A source that changed may be consistent again on the next attempt.
        (Reason.SOURCE_CHANGED, False),
    ],
)
def test_permanence_of_reasons(reason: Reason, permanent: bool) -> None:
    assert is_permanent(reason) is permanent
