import pytest

from controller import quantity


@pytest.mark.parametrize(("text", "expected"), [
    ("1Gi", 1 << 30), ("10Mi", 10 << 20), ("1G", 10**9), ("500M", 5 * 10**8),
    ("1.5Gi", 3 << 29), ("1e3", 1000), ("100m", 1), ("123", 123), (42, 42), ("2Ti", 2 << 40),
], ids=str)
def test_parses_kubernetes_quantities_to_bytes(text, expected):
    assert quantity.parse(text) == expected


@pytest.mark.parametrize("text", ["", "Gi", "1 Gi", "1GB", "-x", "1.2.3"])
def test_rejects_malformed_quantities(text):
    with pytest.raises(quantity.QuantityError):
        quantity.parse(text)


def test_formats_exact_binary_sizes_compactly():
    assert quantity.format_bytes(1 << 30) == "1Gi"
    assert quantity.format_bytes(1090 << 20) == "1090Mi"
    assert quantity.format_bytes(1000) == "1000"


@pytest.mark.parametrize("requested", [1 << 20, 1 << 30, 10 << 30, 5 * 10**9 + 7])
@pytest.mark.parametrize("overhead", [0.0, 0.055, 0.06, 0.5])
def test_inflated_claim_leaves_the_requested_size_usable(requested, overhead):
    claim = quantity.with_overhead(requested, overhead)
    # The importer's rule: usable = available / (1 + overhead), rounded down to 1 MiB.
    usable = int(claim / (1 + overhead)) // (1 << 20) * (1 << 20)
    assert usable >= requested // (1 << 20) * (1 << 20)
    assert claim % (1 << 20) == 0 or overhead == 0
