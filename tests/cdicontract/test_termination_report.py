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


@pytest.mark.parametrize("text", ["", "not json", "[1]"])
def test_garbage_becomes_an_internal_report(text: str) -> None:
    r = TerminationReport.from_json(text)
    assert r.reason is Reason.INTERNAL


@pytest.mark.parametrize("text", ['{"reason": "Nope"}', '{"message": "x"}',
                                  '{"reason": "Completed", "resumes": true}',
                                  '{"reason": "Completed", "bytes_written": -1}',
                                  '{"reason": "Completed", "checksum": "' + "c" * 300 + '"}',
                                  '{"reason": "Completed", "extra": []}',
                                  '{"reason": "Completed", "scratch_used": "yes"}',
                                  '{"reason": "Completed", "preallocation_applied": 1}'])
def test_an_object_breaking_a_rule_is_malformed_and_quotes_nothing(text: str) -> None:
    for r in (TerminationReport.from_json(text),
              TerminationReport.from_termination_message(text)):
        assert r.reason is Reason.MALFORMED_REPORT
        assert r.message.startswith("termination report is malformed: ")
        assert "Nope" not in r.message and "ccc" not in r.message
        assert not r.ok and not is_permanent(r.reason)


@pytest.mark.parametrize("text", ["", "Traceback: secret", "[1]", '"secret"', "[" * 100000])
def test_a_termination_message_that_is_no_report_quotes_nothing(text: str) -> None:
    r = TerminationReport.from_termination_message(text)
    assert r.reason is Reason.MALFORMED_REPORT
    assert "secret" not in r.message and "[" not in r.message


def test_every_report_the_importer_writes_is_well_formed() -> None:
    full = TerminationReport(
        reason=Reason.COMPLETED, message="m" * 10_000, format="qcow2", compression="gz",
        virtual_size=1 << 40, bytes_transferred=5, bytes_written=0, duration_seconds=1.5,
        throughput_bytes_per_second=3, scratch_used=True, scratch_reason="no ranges",
        resumes=0, checksum="sha256:" + "a" * 64, extra={"k": "v"})
    for r in (full, TerminationReport(Reason.NETWORK_ERROR)):
        assert TerminationReport.from_termination_message(r.to_json()).reason is r.reason


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
