"""A clone token bound to one object (CDI's `params.uid` on its long-lived tokens)."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cdicontract import clonetoken

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REF = clonetoken.CloneRef("src-ns", "golden", "ns", "target")


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_a_token_bound_to_a_uid_verifies_only_for_that_object(key):
    bound = clonetoken.CloneRef(REF.source_namespace, REF.source_name, REF.target_namespace,
                                REF.target_name, target_uid="uid-1")
    token = clonetoken.sign(key, bound, now=NOW, lifetime=timedelta(days=1))
    assert clonetoken.verify(token, key.public_key(), bound, now=NOW)
    other = clonetoken.CloneRef(REF.source_namespace, REF.source_name, REF.target_namespace,
                                REF.target_name, target_uid="uid-2")
    with pytest.raises(clonetoken.TokenError, match="another target object"):
        clonetoken.verify(token, key.public_key(), other, now=NOW)
    # A check that names no object still accepts it (the name is what it names).
    assert clonetoken.verify(token, key.public_key(), REF, now=NOW)


def test_a_token_without_a_uid_is_refused_where_one_is_required(key):
    token = clonetoken.sign(key, REF, now=NOW)
    bound = clonetoken.CloneRef(REF.source_namespace, REF.source_name, REF.target_namespace,
                                REF.target_name, target_uid="uid-1")
    with pytest.raises(clonetoken.TokenError, match="another target object"):
        clonetoken.verify(token, key.public_key(), bound, now=NOW)
