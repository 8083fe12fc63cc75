"""TransferEvents: each signal once, listeners told once, the failure kept."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cdicontract.reasons import Reason
from importer.errors import ImportFailure
from importer.events import TransferEvents
from importer.pipeline import run_transfer
from importer.progress import Progress
from importer.transferspec import TransferSpec


def test_each_signal_fires_its_listener_once() -> None:
    calls: list[object] = []
    events = TransferEvents(on_drained=lambda: calls.append("drained"), on_failed=calls.append)
    events.mark_drained()
    events.mark_drained()
    first = ImportFailure(Reason.CONVERSION_FAILED, "qemu-img failed")
    events.mark_failed(first)
    events.mark_failed(ImportFailure(Reason.INTERNAL, "later"))
    assert calls == ["drained", first]
    assert events.drained.is_set() and events.failed.is_set()
    assert events.failure is first


def test_without_listeners_the_flags_still_tell() -> None:
    events = TransferEvents()
    assert not events.drained.is_set() and not events.failed.is_set()
    assert events.failure is None
    events.mark_failed(ImportFailure(Reason.CANCELLED, "gone"))
    assert events.failed.is_set() and not events.drained.is_set()


def test_a_spec_without_a_usable_target_fails_through_the_events_too(tmp_path: Path) -> None:
    events = TransferEvents()
    spec = TransferSpec(dest=str(tmp_path))  # a directory is no disk image target
    with pytest.raises(ImportFailure) as e:
        run_transfer(None, None, spec, Progress(), threading.Event(), events=events)
    assert e.value.reason is Reason.INVALID_CONFIG
    assert events.failure is e.value
