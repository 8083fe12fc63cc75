"""The bearer token: 400 for a missing or malformed header, 401 for any token that does
not verify, the PVC's names only when everything checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from cdicontract import uploadtoken
from tests.uploadproxy.proxy.pki import rsa_pair
from uploadproxy.proxy import auth
from uploadproxy.proxy.refusal import Refused

PRIVATE, PUBLIC = rsa_pair()
OTHER_PRIVATE, _ = rsa_pair()


@pytest.mark.parametrize("header", ["Bearer abc.def-ghi", "bearer abc", "BEARER  a/b+c~d_e"],
                         ids=["plain", "lowercase-scheme", "two-spaces-and-symbols"])
def test_the_token_is_taken_from_a_bearer_header(header: str) -> None:
    assert auth.bearer(header) == header.rsplit(maxsplit=1)[-1]


@pytest.mark.parametrize("header", [None, ""], ids=["absent", "empty"])
def test_a_missing_header_is_400(header: str | None) -> None:
    with pytest.raises(Refused) as e:
        auth.bearer(header)
    assert e.value.status == 400
    assert "missing" in e.value.message


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer a b", "Bearer a=b",
                                    "Token abc", " Bearer abc"],
                         ids=["basic", "no-token", "two-tokens", "bad-char", "other-scheme",
                              "leading-space"])
def test_a_malformed_header_is_400_and_never_quoted(header: str) -> None:
    with pytest.raises(Refused) as e:
        auth.bearer(header)
    assert e.value.status == 400
    assert "dXNlcjpwdw" not in e.value.message


def test_a_valid_token_names_its_pvc() -> None:
    claims = auth.authorize(uploadtoken.sign(PRIVATE, namespace="ns", pvc="disk.a"), PUBLIC)
    assert (claims.namespace, claims.name) == ("ns", "disk.a")


def test_a_forged_token_is_401_and_may_be_retried_with_a_fresh_key() -> None:
    token = uploadtoken.sign(OTHER_PRIVATE, namespace="ns", pvc="disk")
    with pytest.raises(auth.BadSignature) as e:
        auth.authorize(token, PUBLIC)
    assert e.value.status == 401
    assert token not in e.value.message


def _raw(payload: dict[str, object]) -> str:
    """A token for `payload`; an `exp` given as a timedelta is taken from now, at signing
    (a module-level "now" goes stale when the suite runs long after collection)."""
    exp = payload.get("exp", timedelta(minutes=5))
    if isinstance(exp, timedelta):
        payload = {**payload, "exp": datetime.now(UTC) + exp}
    return jwt.encode(payload, PRIVATE, algorithm="PS256")


GOOD = {"iss": "cdi-apiserver", "exp": timedelta(minutes=5), "operation": "Upload",
        "name": "disk", "namespace": "ns", "resource": dict(uploadtoken.PVC_RESOURCE)}


@pytest.mark.parametrize("change", [
    {"exp": -timedelta(seconds=11)},
    {"operation": "Clone"},
    {"iss": "someone-else"},
    {"resource": {"group": "", "version": "v1", "resource": "secrets"}},
    {"name": "Not_A_Name"},
    {"namespace": "ns/../kube-system"},
], ids=["expired-beyond-leeway", "wrong-operation", "wrong-issuer", "wrong-resource",
        "invalid-pvc-name", "invalid-namespace"])
def test_other_bad_tokens_are_401_not_retried(change: dict[str, object]) -> None:
    with pytest.raises(Refused) as e:
        auth.authorize(_raw({**GOOD, **change}), PUBLIC)
    assert e.value.status == 401
    assert not isinstance(e.value, auth.BadSignature)


def test_expiry_has_ten_seconds_of_leeway() -> None:
    claims = auth.authorize(_raw({**GOOD, "exp": -timedelta(seconds=5)}), PUBLIC)
    assert claims.name == "disk"


def test_a_token_with_a_broken_signature_is_401() -> None:
    token = _raw(GOOD)[:-10] + "AAAAAAAAAA"
    with pytest.raises(Refused) as e:
        auth.authorize(token, PUBLIC)
    assert e.value.status == 401
