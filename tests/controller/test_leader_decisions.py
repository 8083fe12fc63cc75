from datetime import UTC, datetime, timedelta

import pytest

from controller.runtime.leader import Action, decide, format_time, parse_time

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def lease(holder, renewed_ago, duration=15):
    return {"holderIdentity": holder, "leaseDurationSeconds": duration,
            "renewTime": format_time(NOW - timedelta(seconds=renewed_ago))}


@pytest.mark.parametrize(("spec", "action"), [
    (None, Action.ACQUIRE),
    ({}, Action.ACQUIRE),
    ({"holderIdentity": None}, Action.ACQUIRE),
    (lease("me", 3), Action.RENEW),
    (lease("me", 100), Action.RENEW),
    (lease("other", 3), Action.WAIT),
    (lease("other", 14.9), Action.WAIT),
    (lease("other", 15), Action.ACQUIRE),
    (lease("other", 3, duration=1), Action.ACQUIRE),
], ids=["no-lease", "empty", "released", "mine", "mine-stale", "held", "almost-expired",
        "expired", "short"])
def test_candidate_acquires_only_free_or_expired_leases(spec, action):
    assert decide(spec, "me", NOW) is action


def test_lease_times_round_trip_as_microtime():
    text = format_time(NOW)
    assert text == "2024-05-01T12:00:00.000000Z"
    assert parse_time(text) == NOW
