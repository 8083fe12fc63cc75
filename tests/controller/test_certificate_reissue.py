"""When the controller re-issues a leaf certificate instead of keeping the Secret it found:
`certs.leaf_problem` names why a leaf cannot serve with the current CA, or says None."""

from __future__ import annotations

import datetime as dt

import pytest

from cdicontract import upload
from controller import certs

CN = upload.CLIENT_COMMON_NAME


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.new_ca("cdi-uploadserver-client-ca")


def test_a_leaf_the_ca_issued_to_the_name_is_usable(ca: certs.KeyPair) -> None:
    assert certs.leaf_problem(certs.issue(ca, CN, client=True), ca, common_name=CN) is None


def test_a_leaf_from_another_ca_with_the_same_name_is_not(ca: certs.KeyPair) -> None:
    impostor = certs.new_ca("cdi-uploadserver-client-ca")  # same subject, other key
    leaf = certs.issue(impostor, CN, client=True)
    assert certs.leaf_problem(leaf, ca, common_name=CN) == (
        "not issued by CN=cdi-uploadserver-client-ca")


def test_a_leaf_whose_key_is_another_leafs_is_not(ca: certs.KeyPair) -> None:
    a, b = certs.issue(ca, CN, client=True), certs.issue(ca, CN, client=True)
    mixed = certs.KeyPair(a.cert_pem, b.key_pem)
    assert certs.leaf_problem(mixed, ca, common_name=CN) == "the key is not the certificate's"


def test_a_leaf_issued_to_someone_else_is_not(ca: certs.KeyPair) -> None:
    leaf = certs.issue(ca, "someone.else", client=True)
    assert certs.leaf_problem(leaf, ca, common_name=CN) == f"not issued to {CN}"


def test_a_leaf_outside_its_validity_is_not(ca: certs.KeyPair) -> None:
    leaf = certs.issue(ca, CN, client=True, days=1)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    assert certs.leaf_problem(leaf, ca, common_name=CN, now=later) == "outside its validity"
    assert certs.leaf_problem(leaf, ca, common_name=CN, now=earlier) == "outside its validity"
    assert certs.leaf_problem(leaf, ca, common_name=CN) is None


@pytest.mark.parametrize("cert_pem, key_pem", [
    (b"", b""),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b"junk"),
])
def test_a_leaf_that_is_not_pem_is_not(ca: certs.KeyPair, cert_pem: bytes,
                                       key_pem: bytes) -> None:
    problem = certs.leaf_problem(certs.KeyPair(cert_pem, key_pem), ca, common_name=CN)
    assert problem == "the certificate or its key is not PEM"
