import pytest

from cdicontract.reasons import Reason
from importer.driver import Phase, drive
from importer.errors import ImportFailure


def test_walks_phases_until_complete() -> None:
    walked = drive(
        {Phase.INFO: lambda: Phase.TRANSFER_RAW, Phase.TRANSFER_RAW: lambda: Phase.COMPLETE}
    )
    assert walked == [Phase.INFO, Phase.TRANSFER_RAW, Phase.COMPLETE]


def test_refuses_a_loop() -> None:
    with pytest.raises(ImportFailure) as e:
        drive({Phase.INFO: lambda: Phase.TRANSFER_RAW, Phase.TRANSFER_RAW: lambda: Phase.INFO})
    assert e.value.reason is Reason.INTERNAL
    assert "loop" in e.value.message


def test_allows_bounded_revisits() -> None:
    visits = {"n": 0}

    def info() -> Phase:
        visits["n"] += 1
        return Phase.COMPLETE if visits["n"] == 2 else Phase.TRANSFER_RAW

    walked = drive(
        {Phase.INFO: info, Phase.TRANSFER_RAW: lambda: Phase.INFO}, allowed_visits=lambda _p: 2
    )
    assert walked.count(Phase.INFO) == 2


def test_unknown_phase_is_an_internal_error() -> None:
    with pytest.raises(ImportFailure):
        drive({Phase.INFO: lambda: Phase.BLANK})
