from datetime import UTC, datetime

import pytest

from controller.runtime.leader import (
    Action,
    Observation,
    Timing,
    decide,
    format_time,
    observe,
    parse_time,
    record_of,
    renewal_deadline,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def spec(holder, renew_time="2024-05-01T12:00:00.000000Z", duration=15):
    return {"holderIdentity": holder, "leaseDurationSeconds": duration,
            "renewTime": renew_time, "acquireTime": renew_time}


def seen(holder, ago, duration=15, now=1000.0):
    return Observation(record_of(spec(holder, duration=duration)), now - ago)


@pytest.mark.parametrize(("observation", "action"), [
    (Observation(record_of(None), 1000.0), Action.ACQUIRE),
    (Observation(record_of({"holderIdentity": None}), 1000.0), Action.ACQUIRE),
    (Observation(record_of({"holderIdentity": ""}), 1000.0), Action.ACQUIRE),
    (seen("me", 3), Action.RENEW),
    (seen("me", 100), Action.RENEW),
    (seen("other", 3), Action.WAIT),
    (seen("other", 14.9), Action.WAIT),
    (seen("other", 15), Action.ACQUIRE),
    (seen("other", 3, duration=1), Action.ACQUIRE),
], ids=["no-lease", "released", "empty-holder", "mine", "mine-stale", "held",
        "almost-expired", "expired", "short"])
def test_candidate_acquires_only_free_or_expired_leases(observation, action):
    assert decide(observation, "me", 1000.0) is action


def test_expiry_counts_from_when_the_record_was_first_seen_changed_not_from_renew_time():
    # A holder on a node whose clock is far behind (or ahead) writes renewTimes that the
    # local wall clock would call expired (or fresh forever); only local observation counts.
    for renew in ("2000-01-01T00:00:00.000000Z", "2999-01-01T00:00:00.000000Z"):
        first = observe(None, spec("other", renew, duration=15), 100.0)
        assert first.at == 100.0
        assert decide(first, "me", 100.0) is Action.WAIT
        again = observe(first, spec("other", renew, duration=15), 114.0)
        assert again is first
        assert decide(again, "me", 114.0) is Action.WAIT
        assert decide(again, "me", 115.0) is Action.ACQUIRE


def test_a_renewal_restarts_the_observed_expiry():
    first = observe(None, spec("other", "2024-05-01T12:00:00.000000Z"), 100.0)
    renewed = observe(first, spec("other", "2024-05-01T12:00:02.000000Z"), 110.0)
    assert renewed.at == 110.0
    assert decide(renewed, "me", 120.0) is Action.WAIT
    assert decide(renewed, "me", 125.0) is Action.ACQUIRE


def test_a_leader_stops_acting_before_a_standby_can_take_the_lease():
    t = Timing()
    assert (t.lease_duration, t.renew_deadline, t.retry_period) == (15.0, 10.0, 2.0)
    # The standby sees our last renewal no earlier than we sent it.
    sent = 500.0
    standby = observe(None, spec("leader"), sent)
    stop = renewal_deadline(sent, t)
    assert decide(standby, "standby", stop) is Action.WAIT
    assert stop < standby.at + standby.duration


@pytest.mark.parametrize(("lease", "renew", "retry"), [
    (15, 15, 2), (15, 20, 2), (15, 10, 10), (15, 10, 0)])
def test_timings_that_would_let_two_leaders_act_are_refused(lease, renew, retry):
    with pytest.raises(ValueError, match="renew_deadline"):
        Timing(lease_duration=lease, renew_deadline=renew, retry_period=retry)


def test_lease_times_round_trip_as_microtime():
    text = format_time(NOW)
    assert text == "2024-05-01T12:00:00.000000Z"
    assert parse_time(text) == NOW
