"""Pod address allocation: round-robin, so a freed address is not reused at once."""

from __future__ import annotations

import pytest
from localcluster.ipam import FIRST, LAST, Ipam, next_free


def test_next_free_goes_round_and_skips_used():
    assert next_free(set(), FIRST - 1) == FIRST
    assert next_free({3, 4}, 2) == 5
    assert next_free(set(), LAST) == FIRST
    assert next_free({FIRST}, LAST) == FIRST + 1
    assert next_free(set(range(FIRST, LAST + 1)), 10) is None


def test_a_released_address_is_not_handed_out_again_until_the_range_turns():
    ipam = Ipam("10.9.0.")
    a = ipam.allocate("a")
    ipam.release("a")
    b = ipam.allocate("b")
    assert a == "10.9.0.2" and b == "10.9.0.3"
    assert ipam.allocate("b") == b  # idempotent per pod
    seen = {ipam.allocate(f"p{i}") for i in range(LAST - FIRST)}
    assert b not in seen and len(seen) == LAST - FIRST
    with pytest.raises(RuntimeError, match="exhausted"):
        ipam.allocate("one too many")
    freed = ipam.allocate("p7")
    ipam.release("p7")
    assert ipam.allocate("again") == freed  # the only free address left
