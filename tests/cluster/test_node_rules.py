"""Pure rules of the simulated node: env expansion, DNS names, quantities."""

from __future__ import annotations

import pytest
from localcluster import podenv, serviceproxy


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$(A)-$(B)", "1-2"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("plain", "plain"),
    ],
)
def test_env_expansion(value, expected):
    assert podenv.expand(value, {"A": "1", "B": "2"}) == expected


@pytest.mark.parametrize(
    ("q", "value"),
    [("600M", 600e6), ("750m", 0.75), ("1Gi", 2**30), ("64Mi", 64 * 2**20), ("2", 2)],
)
def test_quantities(q, value):
    assert podenv.quantity(q) == value


def test_hosts_name_services_in_every_cluster_form():
    svcs = [
        {"metadata": {"name": "up", "namespace": "a"}, "spec": {"clusterIP": "10.201.0.9"}},
        {"metadata": {"name": "hl", "namespace": "a"}, "spec": {"clusterIP": "None"}},
    ]
    assert serviceproxy.hosts_lines(svcs, "a") == [
        "10.201.0.9\tup.a.svc.cluster.local up.a.svc up.a up"
    ]
    assert serviceproxy.hosts_lines(svcs, "b") == [
        "10.201.0.9\tup.a.svc.cluster.local up.a.svc up.a"
    ]
